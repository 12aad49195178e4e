"""The default `cage predict` path: the fastest variant that passes the agreement bar (issue 8), and ONNX."""

from __future__ import annotations

import json

import pytest
import torch

from cage import ExpressionAnalyzer
from cage.cli import main
from cage.pipeline_cage import has_native_bf16, resolve_precision
from conftest import face_photo

PHOTOS = ("two_people.jpg", "obama.jpg", "obama_small.jpg", "biden.jpg", "32bit.png", "obama_partial_face.jpg")


def test_auto_precision_follows_the_hardware(monkeypatch):
    cpu = torch.device("cpu")
    assert resolve_precision("fp32", cpu) == "fp32" and resolve_precision("bf16", cpu) == "bf16"
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True)
    assert has_native_bf16(cpu) and resolve_precision("auto", cpu) == "bf16"
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    assert not has_native_bf16(cpu) and resolve_precision("auto", cpu) == "fp32"
    with pytest.raises(ValueError, match="precision"):
        resolve_precision("fp16", cpu)


def test_bf16_path_passes_the_agreement_bar_on_real_faces(tiny_model_dir):
    exact = ExpressionAnalyzer.from_pretrained(tiny_model_dir, precision="fp32")
    fast = ExpressionAnalyzer.from_pretrained(tiny_model_dir, precision="bf16")
    assert fast.precision == "bf16" and exact.precision == "fp32"
    faces = 0
    for name in PHOTOS:
        photo = face_photo(name)
        for a, b in zip(exact.predict(photo), fast.predict(photo), strict=True):
            faces += 1
            assert a["box"] == b["box"] and a["expression"] == b["expression"]
            assert abs(a["valence"] - b["valence"]) <= 0.02 and abs(a["arousal"] - b["arousal"]) <= 0.02
    assert faces == 7


def _records(capsys, *args) -> list[dict]:
    assert main(["predict", *args, "--format", "jsonl", "--no-progress"]) == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def test_cli_default_agrees_with_forced_fp32_and_onnx(tiny_model_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("CAGE_CACHE", str(tmp_path / "cache"))
    photo = str(face_photo("two_people.jpg"))
    default = _records(capsys, photo, "--model", str(tiny_model_dir))
    fp32 = _records(capsys, photo, "--model", str(tiny_model_dir), "--precision", "fp32")
    onnx = _records(capsys, photo, "--model", str(tiny_model_dir), "--runtime", "onnx")
    assert len(list((tmp_path / "cache" / "onnx").glob("*.onnx"))) == 1  # exported once, then cached
    onnx_again = _records(capsys, photo, "--model", str(tiny_model_dir), "--runtime", "onnx")
    assert onnx_again == onnx
    for d, f, o in zip(default[0]["faces"], fp32[0]["faces"], onnx[0]["faces"], strict=True):
        assert d["box"] == f["box"] == o["box"] and d["expression"] == f["expression"] == o["expression"]
        assert abs(d["valence"] - f["valence"]) <= 0.02 and abs(d["arousal"] - f["arousal"]) <= 0.02
        for key in ("valence", "arousal"):
            assert o[key] == pytest.approx(f[key], abs=1e-4)
        for label, p in f["probabilities"].items():
            assert o["probabilities"][label] == pytest.approx(p, abs=1e-4)
    assert len(fp32[0]["faces"]) == 2
