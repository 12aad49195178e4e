"""The README's end-to-end path, as a new user runs it: ``cage init-model`` then ``cage predict``."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from conftest import face_photo


def cage_command() -> list[str]:
    script = Path(sys.executable).with_name("cage")
    return [str(script)] if script.exists() else [sys.executable, "-m", "cage"]


def run_cage(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    return subprocess.run([*cage_command(), *args], capture_output=True, text=True, env=env, timeout=timeout)


@pytest.fixture(scope="module")
def maxvit_t_model(tmp_path_factory) -> Path:
    """The README's command with the real default backbone (MaxViT-T, 224 px)."""
    path = tmp_path_factory.mktemp("cli") / "m"
    done = run_cage("init-model", str(path), "--backbone", "maxvit_tiny_tf_224")
    assert done.returncode == 0, done.stderr
    assert "UNTRAINED" in done.stderr
    assert json.loads((path / "config.json").read_text())["backbone"] == "maxvit_tiny_tf_224"
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


def test_bad_inputs_are_reported_and_others_processed(tiny_model_dir, tmp_path):
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    missing = tmp_path / "missing.jpg"
    obama = face_photo("obama.jpg")
    done = run_cage("predict", str(corrupt), str(obama), str(missing), "--model", str(tiny_model_dir), "--format", "jsonl")
    assert done.returncode == 1
    records = [json.loads(line) for line in done.stdout.splitlines()]
    assert [r["file"] for r in records] == [str(corrupt), str(obama), str(missing)]
    assert "corrupt.jpg" in records[0]["error"] and "missing.jpg" in records[2]["error"]
    assert len(records[1]["faces"]) == 1 and "error" not in records[1]
    assert "corrupt.jpg" in done.stderr and "missing.jpg" in done.stderr
    assert "3 images, 1 faces, 2 failed" in done.stderr


def test_missing_model_is_a_clear_error(tmp_path):
    done = run_cage("predict", str(face_photo("obama.jpg")), "--model", "cage/maxvit-va")
    assert done.returncode == 2
    assert "cage/maxvit-va" in done.stderr and "HF_HUB_OFFLINE" in done.stderr
    done = run_cage("predict", str(face_photo("obama.jpg")), "--model", str(tmp_path / "nothing"))
    assert done.returncode == 2 and "no such folder" in done.stderr


def test_detector_none_treats_images_as_crops(tiny_model_dir, tmp_path):
    crop = tmp_path / "crop.png"
    Image.open(face_photo("obama.jpg")).convert("RGB").crop((330, 120, 650, 440)).save(crop)
    done = run_cage("predict", str(crop), "--model", str(tiny_model_dir), "--detector", "none")
    assert done.returncode == 0, done.stderr
    (record,) = json.loads(done.stdout)
    assert [f["box"] for f in record["faces"]] == [[0, 0, 320, 320]]


def test_console_script_is_installed():
    assert shutil.which("cage") or Path(sys.executable).with_name("cage").exists()
