"""`cage export onnx`: parity of ONNX Runtime with PyTorch fp32, on real face crops and any batch size."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

pytest.importorskip("onnxruntime")

from cage.model_folder import load_model_and_processor  # noqa: E402
from cage.runtimes import OnnxRuntimeModel, export_onnx  # noqa: E402
from conftest import face_crops  # noqa: E402


def _crops(processor) -> torch.Tensor:
    crops = face_crops(processor, ["two_people.jpg", "obama.jpg", "obama_small.jpg"])
    return processor(crops, return_tensors="pt")["pixel_values"]


def test_export_parity_on_real_crops_dynamic_batch(tiny_model_dir, tmp_path):
    model, processor = load_model_and_processor(tiny_model_dir)
    report = export_onnx(model, tmp_path / "model.onnx", dynamic_batch=True)
    assert report.passed, report
    runtime = OnnxRuntimeModel(report.path, model.config)
    pixel_values = _crops(processor)
    assert pixel_values.shape[0] == 4
    for batch in (pixel_values[:1], pixel_values):  # batch sizes other than the traced one
        with torch.no_grad():
            expected = model(pixel_values=batch)
        got = runtime(pixel_values=batch)
        torch.testing.assert_close(got.logits, expected.logits, rtol=0, atol=1e-4)
        torch.testing.assert_close(got.regression, expected.regression, rtol=0, atol=1e-4)
    assert not torch.allclose(got.logits[0], got.logits[-1])


def test_cli_export_onnx(tiny_model_dir, tmp_path):
    out = tmp_path / "cli.onnx"
    done = subprocess.run(
        [sys.executable, "-m", "cage", "export", "onnx", str(tiny_model_dir), "--out", str(out), "--dynamic-batch"],
        capture_output=True, text=True, env=dict(os.environ, HF_HUB_OFFLINE="1"), timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "parity with PyTorch fp32 passed" in done.stderr and out.stat().st_size > 1_000_000
