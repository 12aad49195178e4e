"""The README's end-to-end path, as a new user runs it: ``cage init-model`` then ``cage predict``."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import face_photo


def cage_command() -> list[str]:
    script = Path(sys.executable).with_name("cage")
    return [str(script)] if script.exists() else [sys.executable, "-m", "cage"]


def run_cage(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")  # 1 thread: faster on a loaded 2-core machine
    return subprocess.run([*cage_command(), *args], capture_output=True, text=True, env=env, timeout=timeout)


@pytest.fixture(scope="module")
def maxvit_t_model(tmp_path_factory) -> Path:
    """The README's command with the real default backbone (torchvision's MaxViT-T, the authors' network, 224 px)."""
    path = tmp_path_factory.mktemp("cli") / "m"
    done = run_cage("init-model", str(path))
    assert done.returncode == 0, done.stderr
    assert "UNTRAINED" in done.stderr
    config = json.loads((path / "config.json").read_text())
    assert (config["backbone"], config["backbone_library"], config["image_size"]) == ("maxvit_t", "torchvision", 224)
    return path


def test_predict_real_photos(maxvit_t_model, coffee_image):
    two, obama = face_photo("two_people.jpg"), face_photo("obama.jpg")
    done = run_cage("predict", str(two), str(obama), str(coffee_image), "--model", str(maxvit_t_model), "--format", "json")
    assert done.returncode == 0, done.stderr
    results = json.loads(done.stdout)
    assert [r["file"] for r in results] == [str(two), str(obama), str(coffee_image)]
    two_faces, obama_faces, coffee_faces = (r["faces"] for r in results)
    width = Image.open(two).width
    assert len(two_faces) == 2
    left, right = two_faces[0]["box"], two_faces[1]["box"]
    assert left[0] + left[2] <= width / 2 < right[0]
    assert len(obama_faces) == 1 and coffee_faces == []
    labels = ["Neutral", "Happy", "Sad", "Surprise", "Fear", "Disgust", "Anger", "Contempt"]
    for face in two_faces + obama_faces:
        assert list(face["probabilities"]) == labels
        assert sum(face["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)
        assert face["expression"] == max(face["probabilities"], key=face["probabilities"].get)
        assert -1.0 <= face["valence"] <= 1.0 and -1.0 <= face["arousal"] <= 1.0
        assert len(face["box"]) == 4 and all(isinstance(v, int) for v in face["box"])
    assert "untrained" in done.stderr  # the CLI never lets random weights pass for a trained model


def test_bad_inputs_are_reported_and_others_processed(cli, tiny_model_dir, tmp_path):
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    missing = tmp_path / "missing.jpg"
    obama = face_photo("obama.jpg")
    code, out, err = cli("predict", str(corrupt), str(obama), str(missing), "--model", str(tiny_model_dir), "--format", "jsonl")
    assert code == 1
    records = [json.loads(line) for line in out.splitlines()]
    assert [r["file"] for r in records] == [str(corrupt), str(obama), str(missing)]
    assert "corrupt.jpg" in records[0]["error"] and "missing.jpg" in records[2]["error"]
    assert len(records[1]["faces"]) == 1 and "error" not in records[1]
    assert "corrupt.jpg" in err and "missing.jpg" in err
    assert "3 images, 1 face, 2 failed" in err


def test_missing_model_is_a_clear_error(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    code, _, err = cli("predict", str(face_photo("obama.jpg")), "--model", "cage/maxvit-va")
    assert code == 2
    assert "cage/maxvit-va" in err and "HF_HUB_OFFLINE" in err
    code, _, err = cli("predict", str(face_photo("obama.jpg")), "--model", str(tmp_path / "nothing"))
    assert code == 2 and "no such folder" in err


def test_detector_none_treats_images_as_crops(cli, tiny_model_dir, tmp_path):
    crop = tmp_path / "crop.png"
    Image.open(face_photo("obama.jpg")).convert("RGB").crop((330, 120, 650, 440)).save(crop)
    code, out, err = cli("predict", str(crop), "--model", str(tiny_model_dir), "--detector", "none")
    assert code == 0, err
    (record,) = json.loads(out)
    assert [f["box"] for f in record["faces"]] == [[0, 0, 320, 320]]


def test_console_script_is_installed():
    assert shutil.which("cage") or Path(sys.executable).with_name("cage").exists()


# In-process runs of `cage.cli.main` below (conftest's `cli` fixture): the same code path as the console script,
# minus interpreter start-up.


def test_folder_with_broken_files_reports_each_and_processes_the_rest(cli, tiny_model_dir, tmp_path):
    folder = tmp_path / "photos"
    (folder / "b").mkdir(parents=True)
    obama = face_photo("obama.jpg").read_bytes()
    (folder / "a_truncated.jpg").write_bytes(obama[: len(obama) // 2])
    (folder / "b" / "notes.jpg").write_text("this is a text file, not a JPEG\n")
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "obama.jpg").write_bytes(obama)
    (folder / "b" / "two_people.jpg").write_bytes(face_photo("two_people.jpg").read_bytes())
    (folder / "readme.txt").write_text("not an image extension: ignored")
    code, out, err = cli("predict", str(folder), "--model", str(tiny_model_dir), "--format", "jsonl")
    assert code == 1
    records = {Path(r["file"]).relative_to(folder).as_posix(): r for r in map(json.loads, out.splitlines())}
    assert list(records) == ["a_truncated.jpg", "b/notes.jpg", "b/two_people.jpg", "empty.jpg", "obama.jpg"]
    for bad, reason in (("a_truncated.jpg", "truncated"), ("b/notes.jpg", "cannot identify"), ("empty.jpg", "empty")):
        assert bad in records[bad]["error"] and reason in records[bad]["error"], records[bad]["error"]
        assert records[bad]["faces"] == [] and bad in err
    assert len(records["b/two_people.jpg"]["faces"]) == 2 and len(records["obama.jpg"]["faces"]) == 1
    assert "5 images, 3 faces, 3 failed" in err


def test_csv_has_one_row_per_face(cli, tiny_model_dir, coffee_image):
    import csv
    import io

    two = face_photo("two_people.jpg")
    code, out, _ = cli("predict", str(two), str(coffee_image), "--model", str(tiny_model_dir), "--format", "csv")
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [(r["file"], r["face"]) for r in rows] == [(str(two), "0"), (str(two), "1"), (str(coffee_image), "")]
    labels = ["Neutral", "Happy", "Sad", "Surprise", "Fear", "Disgust", "Anger", "Contempt"]
    assert [c for c in rows[0] if c.startswith("p_")] == [f"p_{label}" for label in labels]
    first = rows[0]
    assert first["expression"] == max(labels, key=lambda label: float(first[f"p_{label}"]))
    assert -1 <= float(first["valence"]) <= 1 and int(first["x"]) + int(first["w"]) <= Image.open(two).width / 2


def test_annotate_writes_boxes_on_copies(cli, tiny_model_dir, tmp_path):
    out_dir = tmp_path / "annotated"
    photo = face_photo("obama.jpg")
    code, out, _ = cli("predict", str(photo), "--model", str(tiny_model_dir), "--annotate", str(out_dir))
    assert code == 0
    (face,) = json.loads(out)[0]["faces"]
    original = np.asarray(Image.open(photo).convert("RGB")).astype(int)
    drawn = np.asarray(Image.open(out_dir / "obama.jpg")).astype(int)
    assert drawn.shape == original.shape
    x, y, w, h = face["box"]
    changed = np.abs(drawn - original).sum(axis=2) > 60
    assert changed[y + h // 2, x : x + 3].any() and changed[y + h // 2, x + w - 3 : x + w + 1].any()  # box edges
    assert not changed[y + h // 2 - 10 : y + h // 2 + 10, x + w // 2 - 10 : x + w // 2 + 10].any()  # face untouched


def test_yunet_without_model_file_is_a_clear_error(cli, tiny_model_dir, tmp_path):
    photo = str(face_photo("obama.jpg"))
    code, _, err = cli("predict", photo, "--model", str(tiny_model_dir), "--detector", "yunet")
    assert code == 2 and "face_detection_yunet_2023mar.onnx" in err and "--detector-model" in err
    missing = tmp_path / "yunet.onnx"
    code, _, err = cli("predict", photo, "--model", str(tiny_model_dir), "--detector", "yunet", "--detector-model", str(missing))
    assert code == 2 and str(missing) in err


def test_unavailable_device_is_a_clear_error(cli, tiny_model_dir):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is present")
    code, _, err = cli("predict", str(face_photo("obama.jpg")), "--model", str(tiny_model_dir), "--device", "cuda")
    assert code == 2 and "no CUDA GPU" in err


def test_webcam_without_camera_exits_with_a_message(cli, tiny_model_dir):
    code, out, err = cli("webcam", "--model", str(tiny_model_dir), "--camera", "9")
    assert code == 2 and out == ""
    assert "no camera" in err and "'9'" in err


def test_webcam_loop_on_a_stream(cli, tiny_model_dir, tmp_path):
    cv2 = pytest.importorskip("cv2")
    # OpenCV opens a file like a camera stream: the live loop runs here without a camera.
    frame = np.asarray(Image.open(face_photo("two_people.jpg")).convert("RGB").resize((320, 188)))[:, :, ::-1]
    stream = tmp_path / "stream.avi"
    writer = cv2.VideoWriter(str(stream), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (320, 188))
    for _ in range(6):
        writer.write(np.ascontiguousarray(frame))
    writer.release()
    code, out, err = cli("webcam", "--model", str(tiny_model_dir), "--camera", str(stream), "--every", "2", "--max-frames", "2")
    assert code == 0
    records = [json.loads(line) for line in out.splitlines()]
    assert [(r["frame"], r["time_s"], len(r["faces"])) for r in records] == [(0, 0.0, 2), (2, 0.2, 2)]
    assert "2 frames, 4 faces" in err
