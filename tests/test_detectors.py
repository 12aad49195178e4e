"""Detectors in the wild (issue 23): `auto` picks YuNet where its file is and dlib (one notice) where not;
YuNet's landmarks; framing that holds from 40 to 800 px faces for both detectors; the composed group photo;
users' stderr kept clean of OpenCV's warnings; the fast start with YuNet.

YuNet's model file comes from ../shared/detectors (the OpenCV Zoo 2023mar model); tests that need it skip with
the reason where it is absent.
"""

from __future__ import annotations

import importlib.util
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from conftest import REPO_ROOT, face_photo

YUNET_FILE = REPO_ROOT.parent / "shared" / "detectors" / "yunet_s_640_640.onnx"


@pytest.fixture(scope="module")
def yunet_file() -> Path:
    if not YUNET_FILE.is_file():
        pytest.skip(f"YuNet's model file {YUNET_FILE} is absent (tests expect ../shared/detectors)")
    return YUNET_FILE


def script(name: str):
    """A module of scripts/ (the measurement scripts the README quotes), imported by path."""
    spec = importlib.util.spec_from_file_location(name, REPO_ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def no_yunet_environment(tmp_path) -> dict:
    """An environment where YuNet cannot be had: no CAGE_YUNET_MODEL, an empty Hugging Face cache, offline."""
    env = {k: v for k, v in os.environ.items() if k != "CAGE_YUNET_MODEL"}
    env.update(HF_HOME=str(tmp_path / "hf-home"), HF_HUB_OFFLINE="1")
    return env


# --------------------------------------------------------------------------------------------- auto


def test_auto_is_yunet_when_its_file_is_named(yunet_file, monkeypatch):
    from cage.face_detection_cage import YuNetDetector, create_face_detector

    monkeypatch.setenv("CAGE_YUNET_MODEL", str(yunet_file))
    detector = create_face_detector("auto")
    assert isinstance(detector, YuNetDetector) and detector.name == "yunet"
    monkeypatch.delenv("CAGE_YUNET_MODEL")
    assert isinstance(create_face_detector("auto", model_path=yunet_file), YuNetDetector)


def test_auto_is_dlib_with_one_notice_when_yunet_cannot_be_had(tiny_model_dir, tmp_path):
    photo = face_photo("obama.jpg")
    env = no_yunet_environment(tmp_path)
    done = subprocess.run(
        [sys.executable, "-m", "cage", "predict", str(photo), "--model", str(tiny_model_dir), "--format", "jsonl"],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    notices = [line for line in done.stderr.splitlines() if "YuNet is not available" in line]
    assert len(notices) == 1, done.stderr
    assert "--detector-model" in notices[0] and "CAGE_YUNET_MODEL" in notices[0]
    summary = done.stderr.strip().splitlines()[-1]
    assert "dlib" in summary and "1 face" in summary, summary
    assert len(json.loads(done.stdout)["faces"]) == 1


def test_the_summary_names_yunet_and_opencv_s_warning_never_reaches_stderr(yunet_file, tiny_model_dir, tmp_path):
    env = dict(no_yunet_environment(tmp_path), CAGE_YUNET_MODEL=str(yunet_file))
    photos = [str(face_photo(name)) for name in ("obama.jpg", "two_people.jpg", "biden.jpg")]
    done = subprocess.run(
        [sys.executable, "-m", "cage", "predict", *photos, "--model", str(tiny_model_dir), "--format", "jsonl"],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "setPreferableTarget" not in done.stderr and "graph engine" not in done.stderr, done.stderr
    assert "YuNet is not available" not in done.stderr
    summary = done.stderr.strip().splitlines()[-1]
    assert "yunet" in summary and "4 faces" in summary, summary


# --------------------------------------------------------------------------------------------- landmarks


def test_yunet_landmarks_are_in_original_pixels_inside_the_box(yunet_file):
    from cage.face_detection_cage import LANDMARK_NAMES, create_face_detector

    detector = create_face_detector("yunet", model_path=yunet_file)
    for name, count in (("obama.jpg", 1), ("two_people.jpg", 2), ("biden.jpg", 1)):
        photo = Image.open(face_photo(name)).convert("RGB")
        found = detector.detect(photo)
        assert len(found) == count, name
        for face in found:
            x, y, w, h = face.box
            assert face.landmarks is not None and len(face.landmarks) == len(LANDMARK_NAMES) == 5
            for px, py in face.landmarks:
                assert x <= px <= x + w and y <= py <= y + h, (name, face.box, face.landmarks)
            (lx, ly), (rx, ry), (nx, ny), (mlx, mly), (mrx, mry) = face.landmarks
            assert ly < ny < mly and ry < ny < mry  # eyes above the nose tip above the mouth corners
            assert min(lx, rx) < nx < max(lx, rx)


def test_records_carry_the_landmarks_only_for_yunet(yunet_file, tiny_model_dir, cli):
    photo = str(face_photo("obama.jpg"))
    code, out, err = cli("predict", photo, "--model", str(tiny_model_dir), "--detector", "yunet",
                         "--detector-model", str(yunet_file), "--format", "jsonl")  # fmt: skip
    assert code == 0, err
    (face,) = json.loads(out)["faces"]
    x, y, w, h = face["box"]
    landmarks = face["landmarks"]
    assert len(landmarks) == 5
    assert all(x <= px <= x + w and y <= py <= y + h for px, py in landmarks)  # LANDMARK_NAMES order
    code, out, err = cli("predict", photo, "--model", str(tiny_model_dir), "--detector", "dlib", "--format", "jsonl")
    assert code == 0, err
    assert json.loads(out)["faces"][0].get("landmarks") is None


# --------------------------------------------------------------------------------------------- framing


@pytest.mark.parametrize(
    ("detector_name", "store"),
    [("dlib", 224), ("yunet", 48)],
    ids=["dlib, AffectNet-like 224 px crops", "yunet, FER+-like 48 px gray crops"],
)
def test_calibrated_framing_holds_from_40_to_800_pixel_faces(detector_name, store, yunet_file):
    """The crop inference makes from a detection equals the training crop (median IoU >= 0.9) whatever the
    face's size in the photo: scripts/check_framing_scales.py's measurement, on the shared photos."""
    from cage.face_detection_cage import create_face_detector

    check = script("check_framing_scales")
    detector = create_face_detector(detector_name, model_path=yunet_file if detector_name == "yunet" else None)
    faces = check.load_faces(detector, refine=True, faces_dir=face_photo("obama.jpg").parent)
    assert len(faces) >= 3
    calibration = check.calibrate(faces, detector, store, refine=True)
    assert calibration["status"] == "measured"
    sizes = (40, 200, 800)  # scripts/check_framing_scales.py measures 10 sizes (README, "Detectors")
    rows = check.agreement(faces, detector, calibration, refine=True, sizes=sizes)
    for size in sizes:
        values = [r["iou"] for r in rows if r["size"] == size and r["iou"] is not None]
        assert len(values) >= len(faces) - 1, (size, rows)  # a 40 px face may be missed by dlib, no more
        assert statistics.median(values) >= 0.9, (size, values)
    assert statistics.median(r["iou"] for r in rows if r["iou"] is not None) >= 0.9


# --------------------------------------------------------------------------------------------- group photo


@pytest.fixture(scope="module")
def group_photo(yunet_file):
    check = script("check_group_photo")
    check.FACES_DIR = face_photo("obama.jpg").parent
    faces = check.source_faces(str(yunet_file))
    canvas, truth = check.compose(faces, sizes=(24, 40, 80, 180), angles=(0, 15))
    return check, canvas, truth


def test_yunet_finds_every_face_of_40_px_or_more_in_the_composed_group_photo(group_photo, yunet_file):
    check, canvas, truth = group_photo
    assert len(truth) >= 40
    for view, (image, faces) in {"composed": (canvas, truth), "mirrored, turned": check.turned_copy(canvas, truth)}.items():
        result = check.measure("yunet", str(yunet_file), image, faces)
        for size, (found, total) in result["by_size"].items():
            if size >= 40:
                assert found == total, (view, result["by_size"])
        assert result["false_positives"] <= 2, (view, result)


def test_dlib_recall_on_the_composed_group_photo_is_reported_and_lower(group_photo, yunet_file):
    check, canvas, truth = group_photo
    dlib = check.measure("dlib", None, canvas, truth)
    yunet = check.measure("yunet", str(yunet_file), canvas, truth)
    assert yunet["found"] > dlib["found"] > 0
    assert dlib["by_size"][24][0] < dlib["by_size"][24][1]  # HOG's 80-px window at 1 upsampling: tiny faces go
    assert dlib["by_size"][80][0] == dlib["by_size"][80][1]


# --------------------------------------------------------------------------------------------- fast start


def test_the_fast_start_works_with_yunet(yunet_file, tiny_model_dir, tmp_path, monkeypatch):
    """Two runs with YuNet: the second takes the fast start (no torch, no transformers), gives the same records
    (landmarks included) and keeps stderr clean of OpenCV's warning."""
    from test_fast_start import _predict

    monkeypatch.setenv("CAGE_YUNET_MODEL", str(yunet_file))
    args = [str(face_photo("two_people.jpg")), "--model", str(tiny_model_dir), "--format", "jsonl", "--no-progress"]
    first, _ = _predict(args, tmp_path / "cache")
    second, stderr = _predict(args, tmp_path / "cache")
    assert not second["torch"] and not second["transformers"]
    assert second["out"] == first["out"]
    (record,) = [json.loads(line) for line in second["out"].splitlines()]
    assert len(record["faces"]) == 2 and all(len(face["landmarks"]) == 5 for face in record["faces"])
    assert stderr.rstrip().endswith(", fast start; detector yunet")
    assert "setPreferableTarget" not in stderr


def test_a_detector_without_a_calibration_is_one_warning_line_in_the_cli(yunet_file, tmp_path):
    """A model whose framing was measured with dlib only (a FER+ model prepared offline), run with YuNet."""
    import shutil

    from cage.model_folder import BUNDLED_MODEL_DIR

    folder = tmp_path / "dlib-only"
    shutil.copytree(BUNDLED_MODEL_DIR, folder)
    settings = json.loads((folder / "preprocessor_config.json").read_text())
    settings["framing"] = settings.pop("framings")["dlib"]
    (folder / "preprocessor_config.json").write_text(json.dumps(settings))
    env = dict(no_yunet_environment(tmp_path), CAGE_YUNET_MODEL=str(yunet_file))
    done = subprocess.run([sys.executable, "-m", "cage", "predict", str(face_photo("obama.jpg")), "--model",
                           str(folder), "--format", "jsonl"], capture_output=True, text=True, env=env, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stderr.splitlines() if "measured with the 'dlib' face detector" in line]
    assert len(lines) == 1 and lines[0].startswith("WARNING: "), done.stderr
    assert ".py:" not in done.stderr and "locate_faces(" not in done.stderr  # no source file, line or code
