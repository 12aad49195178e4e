"""Fast start of `cage predict` (issue 14): a model folder that has run on its checked OpenVINO graph runs again
without importing torch or transformers, with the same crops, pixel values and records."""

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

from conftest import FACES_DIR, face_crops, face_photo

pytest.importorskip("openvino")
pytestmark = pytest.mark.skipif(not FACES_DIR.is_dir(), reason=f"shared face photos not found at {FACES_DIR}")

from cage.inference.fast_start import (  # noqa: E402
    ArrayImageProcessor,
    _processor_settings,
    fast_start_parts,
    folder_key,
)

SRC = str(Path(__file__).resolve().parents[1] / "src")
PHOTOS = ("two_people.jpg", "obama.jpg", "biden.jpg", "32bit.png")


@pytest.fixture(scope="module")
def tiny_processor(tiny_model_dir):
    from cage.model_folder import load_model_and_processor

    return load_model_and_processor(tiny_model_dir)[1]


def _odd_crops(crops):
    """The crops in the modes a caller may hand over: grayscale, RGBA, palette, 16-bit."""
    first = crops[0]
    sixteen = Image.fromarray(np.asarray(first.convert("L"), dtype=np.uint16) * 257)
    assert sixteen.mode == "I;16"
    return [first.convert("L"), first.convert("RGBA"), first.convert("P"), sixteen]


@pytest.mark.parametrize(
    "overrides",
    [
        {},  # as saved: the tiny backbone's 0.5/0.5 mean/std, bicubic, 64 px
        {"image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225], "resample": 2,
         "size": {"height": 224, "width": 224}},  # the default MaxViT-T's ImageNet settings, bilinear
        {"size": {"height": 48, "width": 80}, "resample": 1, "do_normalize": False},
    ],
    ids=["saved", "imagenet-bilinear-224", "non-square-lanczos-no-normalize"],
)  # fmt: skip
def test_array_processor_equals_the_transformers_processor_to_the_bit(tiny_processor, overrides):
    from cage.image_processing_cage import CageImageProcessor

    processor = CageImageProcessor(**{**tiny_processor.to_dict(), **overrides})
    crops = face_crops(processor, PHOTOS)
    assert len(crops) >= 5
    crops += _odd_crops(crops)
    expected = processor(crops, return_tensors="np")["pixel_values"]
    got = ArrayImageProcessor(_processor_settings(processor))(crops)["pixel_values"]
    assert got.dtype == np.float32 and got.shape == expected.shape
    np.testing.assert_array_equal(got, expected)


def test_array_processor_crops_by_the_saved_framing(tiny_processor):
    from cage.image_processing_cage import CageImageProcessor

    framing = {"side_ratio": [1.6, 1.7], "center_offset": [0.0, -0.1], "detector": "dlib"}
    for settings in ({"framing": framing}, {"crop_exact": True}, {"crop_square": False, "crop_margin": 0.3}):
        processor = CageImageProcessor(**{**tiny_processor.to_dict(), **settings})
        array = ArrayImageProcessor(_processor_settings(processor))
        assert array.crop_policy == processor.crop_policy
        with Image.open(face_photo("two_people.jpg")) as image:
            image = image.convert("RGB")
            for box in ((100.5, 80.2, 120.0, 140.0), (-20.0, -10.0, 90.0, 90.0)):
                assert array.crop_box(box) == processor.crop_box(box)
                assert np.array_equal(np.asarray(array.crop(image, box)), np.asarray(processor.crop(image, box)))
    assert ArrayImageProcessor(_processor_settings(processor)).detector_mismatch("yunet") is None
    with pytest.raises(ValueError, match="crop_margin"):
        ArrayImageProcessor({**_processor_settings(processor), "crop_margin": 5.0})


PROBE = """
import contextlib, io, json, sys
from cage.cli import main
out = io.StringIO()
with contextlib.redirect_stdout(out):
    code = main(sys.argv[1:])
print(json.dumps({"code": code, "out": out.getvalue(), "torch": "torch" in sys.modules,
                  "transformers": "transformers" in sys.modules}))
"""


def _predict(args: list[str], cache: Path) -> tuple[dict, str]:
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", ""), "CAGE_CACHE": str(cache),
           "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}  # fmt: skip
    done = subprocess.run([sys.executable, "-c", PROBE, "predict", *args], capture_output=True, text=True, env=env,
                          timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1]), done.stderr


def test_second_run_needs_neither_torch_nor_transformers_and_gives_the_same_records(tiny_model_dir, tmp_path):
    cache = tmp_path / "cache"
    photos = [str(face_photo(name)) for name in PHOTOS]
    args = [*photos, "--model", str(tiny_model_dir), "--format", "jsonl", "--no-progress", "--batch-size", "3"]
    first, _ = _predict(args, cache)
    assert first["code"] == 0 and first["torch"] and first["transformers"]  # the full path: load, convert, check
    assert len(list((cache / "openvino" / "folders").glob("*.json"))) == 1
    second, stderr = _predict(args, cache)
    assert second["code"] == 0 and not second["torch"] and not second["transformers"]
    assert second["out"] == first["out"]  # the same graph, crops and pixel values: the same records, to the digit
    records = [json.loads(line) for line in second["out"].splitlines()]
    assert [len(r["faces"]) for r in records] == [2, 1, 1, 1]
    assert "weights_status='untrained'" in stderr  # the full path's warning, also here
    assert "; openvino " in stderr.splitlines()[-1] and ", fast start; detector " in stderr.splitlines()[-1]  # summary
    crops_dir = tmp_path / "crops"
    crops_dir.mkdir()
    Image.open(face_photo("obama.jpg")).convert("RGB").resize((64, 64)).save(crops_dir / "a.png")
    whole = ["--detector", "none", "--format", "jsonl", "--no-progress", "--model", str(tiny_model_dir)]
    fast_crops, _ = _predict([str(crops_dir), *whole], cache)
    assert not fast_crops["torch"]
    full_crops, _ = _predict([str(crops_dir), *whole, "--runtime", "openvino", "--device", "cpu"], tmp_path / "cold")
    assert fast_crops["out"] == full_crops["out"]


def test_the_fast_start_replays_only_what_the_full_path_recorded(tiny_model_dir, tmp_path, monkeypatch):
    from cage import ExpressionAnalyzer
    from cage.runtimes.openvino import OpenVinoModel

    monkeypatch.setenv("CAGE_CACHE", str(tmp_path / "cache"))
    folder = Path(shutil.copytree(tiny_model_dir, tmp_path / "model"))
    exact = {"precision": "fp32"}  # the Python API's default precision
    assert fast_start_parts(folder, **exact) is None  # nothing recorded yet
    full = ExpressionAnalyzer.from_pretrained(folder, runtime="auto", detector="none")
    assert isinstance(full.model, OpenVinoModel)
    runner, processor = fast_start_parts(folder, **exact)
    assert isinstance(runner, OpenVinoModel) and runner.precision == full.model.precision
    assert runner.config.id2label == full.config.id2label and processor.crop_policy == full.image_processor.crop_policy
    fast = ExpressionAnalyzer.from_pretrained(folder, runtime="auto", detector="none")
    assert isinstance(fast.image_processor, ArrayImageProcessor)
    photo = Image.open(face_photo("biden.jpg"))
    assert fast.predict(photo) == full.predict(photo)
    for other in ({"runtime": "torch"}, {"runtime": "onnx"}, {"device": "cuda"}):
        assert fast_start_parts(folder, **exact, **other) is None, other
    assert fast_start_parts("cage/maxvit-va", **exact) is None  # a Hub id: the full path resolves and checks it
    key = folder_key(folder, "v")
    original = (folder / "preprocessor_config.json").read_bytes()
    (folder / "preprocessor_config.json").write_text(json.dumps({**json.loads(original), "crop_margin": 0.2}))
    assert folder_key(folder, "v") != key and fast_start_parts(folder, **exact) is None  # changed: a new key
    (folder / "preprocessor_config.json").write_bytes(original)
    assert fast_start_parts(folder, **exact) is not None
    for verdict in (tmp_path / "cache" / "openvino").glob("*.check.json"):
        verdict.unlink()  # a graph without a passed check against PyTorch is never replayed
    assert fast_start_parts(folder, **exact) is None
