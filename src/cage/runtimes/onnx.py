"""Export a CAGE model to ONNX, check it against PyTorch, and run it with ONNX Runtime."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import EXACT_TOLERANCE


class _OutputsAsTuple(torch.nn.Module):
    """ONNX graphs have positional outputs: (logits (B, num_labels), regression (B, R))."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        output = self.model(pixel_values=pixel_values)
        return output.logits, output.regression


@dataclass
class ExportReport:
    """Result of [`export_onnx`]: the file, and the largest |ONNX - PyTorch| difference on the check batch."""

    path: Path
    opset: int
    dynamic_batch: bool
    max_abs_diff_logits: float
    max_abs_diff_regression: float

    @property
    def passed(self) -> bool:
        return max(self.max_abs_diff_logits, self.max_abs_diff_regression) <= EXACT_TOLERANCE


def export_onnx(
    model: torch.nn.Module,
    output_file: str | Path,
    opset: int = 18,
    dynamic_batch: bool = True,
    check_inputs: torch.Tensor | None = None,
) -> ExportReport:
    """Export ``model`` to ONNX (inputs ``pixel_values``; outputs ``logits``, ``regression``) and check it.

    The graph is traced in eval mode with the TorchScript-based exporter; with ``dynamic_batch`` the batch
    axis is symbolic. The check runs ONNX Runtime (CPU) and PyTorch fp32 on ``check_inputs`` (default:
    three seeded random images; with a fixed batch, one image per traced batch row).

    Args:
        model: a CAGE model (``config.image_size`` gives the input side).
        output_file: the ``.onnx`` file to write; its folder is created.

    Returns:
        An [`ExportReport`]; ``report.passed`` is max |delta| <= 1e-4 on both outputs.

    Raises:
        cage.extras.MissingExtraError: ``onnx``/``onnxruntime`` are missing (``pip install 'cage[onnx]'``).
    """
    from ..extras import require_extra

    require_extra("onnx", "ONNX export")
    output_file = Path(output_file)
    output_file.parent.mkdir(parents=True, exist_ok=True)
    size = int(model.config.image_size)
    wrapper = _OutputsAsTuple(model).eval()  # the exporter follows the wrapper's own mode
    generator = torch.Generator().manual_seed(0)
    example = torch.randn(2, 3, size, size, generator=generator)
    axes = {"pixel_values": {0: "batch"}, "logits": {0: "batch"}, "regression": {0: "batch"}} if dynamic_batch else None
    with torch.no_grad():
        torch.onnx.export(
            wrapper,
            (example,),
            str(output_file),
            input_names=["pixel_values"],
            output_names=["logits", "regression"],
            dynamic_axes=axes,
            opset_version=opset,
            dynamo=False,
        )
    if check_inputs is None:
        check_inputs = torch.randn(3 if dynamic_batch else 2, 3, size, size, generator=generator)
    runtime = OnnxRuntimeModel(output_file, model.config)
    with torch.no_grad():
        expected = model(pixel_values=check_inputs)
        got = runtime(pixel_values=check_inputs)
    return ExportReport(
        path=output_file,
        opset=opset,
        dynamic_batch=dynamic_batch,
        max_abs_diff_logits=float((got.logits - expected.logits).abs().max()),
        max_abs_diff_regression=float((got.regression - expected.regression).abs().max()),
    )


def cached_onnx_export(model: torch.nn.Module, source: str | Path, cache_dir: str | Path | None = None) -> Path:
    """The ONNX export of ``model`` from the cache, exporting (and parity-checking) it on first use.

    The cache key is a hash of the model's weights and config, so a changed model is exported again.
    Files live in ``cache_dir`` (default ``$CAGE_CACHE`` or ``~/.cache/cage``) under ``onnx/``.

    Raises:
        RuntimeError: the export does not match PyTorch to 1e-4 (the file is not kept); ``source`` names
            the model in the message.
    """
    import os

    from .cache import cache_root, model_digest

    path = cache_root(cache_dir) / "onnx" / f"{model_digest(model)}.onnx"
    if path.is_file():
        return path
    scratch = path.with_suffix(f".{os.getpid()}.tmp.onnx")
    import logging

    logging.getLogger("cage.progress").info(
        "cage: exporting the model to ONNX (once per model), cached in %s", path.parent
    )
    report = export_onnx(model, scratch, dynamic_batch=True)
    if not report.passed:
        scratch.unlink(missing_ok=True)
        raise RuntimeError(
            f"{source}: the ONNX export differs from PyTorch by {report.max_abs_diff_logits:.2e} (logits) / "
            f"{report.max_abs_diff_regression:.2e} (regression), above {EXACT_TOLERANCE:.0e}; use --runtime torch"
        )
    scratch.replace(path)
    return path


class OnnxRuntimeModel:
    """Run an exported CAGE graph with ONNX Runtime behind the model's calling convention.

    Args:
        path: the ``.onnx`` file written by [`export_onnx`].
        config: the model's ``CageConfig`` (labels, regression targets; read by the pipeline).
        threads: intra-op threads (default: ONNX Runtime's choice, one per core).

    ``__call__(pixel_values)`` takes ``(B, 3, S, S)`` float32 (torch or NumPy) and returns a ``CageOutput``
    with CPU tensors ``logits`` ``(B, num_labels)`` and ``regression`` ``(B, R)``.

    Raises:
        cage.extras.MissingExtraError: onnxruntime is not installed (``pip install 'cage[onnx]'``).
    """

    def __init__(self, path: str | Path, config: Any, threads: int | None = None):
        from ..extras import require_extra

        require_extra("onnx", "the ONNX Runtime path")
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            options.intra_op_num_threads = int(threads)
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"ONNX model {self.path} does not exist; create it with `cage export onnx`")
        self.session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        self.config = config
        self.runtime, self.precision = "onnx", "fp32"  # how it runs, for messages (analyzer.engine)

    def __call__(self, pixel_values: Any = None, **_: Any) -> Any:
        from ..modeling_cage import CageOutput

        array = pixel_values.detach().cpu().numpy() if isinstance(pixel_values, torch.Tensor) else pixel_values
        logits, regression = self.session.run(None, {"pixel_values": np.ascontiguousarray(array, dtype=np.float32)})
        return CageOutput(logits=torch.from_numpy(logits), regression=torch.from_numpy(regression))
