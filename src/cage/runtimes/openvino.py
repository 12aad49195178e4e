"""Run a CAGE network with OpenVINO on the CPU: fp32 (exact), bf16 (inference precision hint, where the CPU has
native bf16) and static int8 (NNCF post-training quantisation calibrated on face crops).

OpenVINO is a dependency of cage; int8 quantisation also needs ``nncf`` (``pip install 'cage[int8]'``).
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

MISSING = "the OpenVINO runtime needs the openvino package: pip install openvino"
PRECISION_HINTS = {"fp32": "f32", "bf16": "bf16", "int8": "f32"}  # int8 graphs keep f32 between int8 layers


def _openvino() -> Any:
    try:
        import openvino
    except ImportError as error:
        raise ImportError(MISSING) from error
    return openvino


def openvino_core() -> Any:
    """An ``openvino.Core`` (raises ImportError with the install command when openvino is missing)."""
    return _openvino().Core()


def runtime_version() -> str | None:
    """OpenVINO's version string, or ``None`` when it is not installed."""
    try:
        import openvino
    except ImportError:
        return None
    return openvino.get_version()


def convert_to_openvino(model: Any) -> Any:
    """Convert a CAGE model to an ``openvino.Model`` with inputs ``pixel_values`` ``(batch, 3, S, S)`` (dynamic
    batch) and outputs ``logits``, ``regression``. Tracing MaxViT-T takes about a minute on 2 cores: use
    [`cached_openvino_model`] to do it once."""
    import torch

    from .onnx import _OutputsAsTuple

    ov = _openvino()
    size = int(model.config.image_size)
    # Tracing reads every attribute of the model, which makes transformers and torch print deprecation and
    # tracer warnings that say nothing about the converted graph (it is checked against PyTorch afterwards).
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        converted = ov.convert_model(
            _OutputsAsTuple(model).eval(),
            example_input=torch.zeros(1, 3, size, size),
            input=[ov.PartialShape([-1, 3, size, size])],
        )
    converted.inputs[0].get_tensor().set_names({"pixel_values"})
    for output, name in zip(converted.outputs, ("logits", "regression")):
        output.get_tensor().set_names({name})
    return converted


def quantize_int8(converted: Any, calibration: Any, subset_size: int = 300) -> Any:
    """Static int8 post-training quantisation of an ``openvino.Model`` with NNCF, calibrated on
    ``calibration`` ``(N, 3, S, S)`` preprocessed face crops (``nncf.quantize``, transformer model type)."""
    try:
        import nncf
    except ImportError as error:
        raise ImportError("int8 quantisation needs nncf: pip install 'cage[int8]'") from error
    batches = [calibration[i : i + 1].numpy() for i in range(len(calibration))]
    return nncf.quantize(
        converted,
        nncf.Dataset(batches),
        model_type=nncf.ModelType.TRANSFORMER,
        subset_size=min(subset_size, len(batches)),
    )


def cached_openvino_model(model: Any, cache_dir: str | Path | None = None) -> Path:
    """The OpenVINO IR (``.xml`` + ``.bin``) of ``model`` from the cache, converting it on first use.

    The key is a hash of the weights and config (see ``cache.model_digest``) and OpenVINO's version; files live
    under ``cache_dir`` (default ``$CAGE_CACHE`` or ``~/.cache/cage``) in ``openvino/``. A conversion is announced
    once on the logger ``cage.progress`` (the ``cage`` command shows its INFO messages).
    """
    from .cache import cache_root, model_digest

    ov = _openvino()
    root = cache_root(cache_dir) / "openvino"
    path = root / f"{model_digest(model, ov.get_version())}.xml"
    if path.is_file() and path.with_suffix(".bin").is_file():
        return path
    root.mkdir(parents=True, exist_ok=True)
    import logging

    logging.getLogger("cage.progress").info(
        "cage: converting the model for OpenVINO (once per model and OpenVINO version; seconds for a small network, "
        "about 20 s for MaxViT-T), cached in %s", root,
    )  # fmt: skip
    scratch = path.with_name(f"{path.stem}.{os.getpid()}.tmp.xml")
    ov.save_model(convert_to_openvino(model), str(scratch), compress_to_fp16=False)
    scratch.with_suffix(".bin").replace(path.with_suffix(".bin"))
    scratch.replace(path)
    return path


def _threads_from_environment() -> int | None:
    """``OMP_NUM_THREADS`` as a positive int, or ``None`` (unset or not a number)."""
    value = os.environ.get("OMP_NUM_THREADS", "").strip()
    return int(value) if value.isdigit() and int(value) > 0 else None


@dataclass
class ArrayOutput:
    """A runner's outputs as NumPy float32 arrays: ``logits`` ``(B, num_labels)``, ``regression`` ``(B, R)``."""

    logits: np.ndarray
    regression: np.ndarray


class OpenVinoModel:
    """Run a CAGE network with OpenVINO on the CPU behind the model's calling convention.

    The network is compiled for one request at a time using every inference thread (OpenVINO's ``LATENCY``
    performance hint), whatever the batch: called synchronously, a ``THROUGHPUT`` compilation runs each call
    on one of its streams, i.e. on a share of the cores (on 2 cores: 21 against 40 images/s at batch 32,
    bf16).

    Args:
        source: an ``openvino.Model``, or the ``.xml`` IR file written by [`cached_openvino_model`].
        config: the model's config (``id2label``, ``multi_label``, ``regression_targets``; read by the
            analyzer): a ``CageConfig`` or any object with those attributes.
        precision: ``"fp32"`` (exact; OpenVINO's default on CPUs with native bf16 is bf16, so it is set
            explicitly), ``"bf16"`` (inference precision hint bf16; emulated and slow without AVX512-BF16/AMX)
            or ``"int8"`` (``source`` is a quantised graph; see [`quantize_int8`]).
        threads: inference threads (default: ``OMP_NUM_THREADS`` where it is set, as PyTorch reads it, else
            OpenVINO's choice, one per physical core). A fixed count makes results reproducible to the bit
            across runs and process counts; with OpenVINO's own choice the split of the work among threads
            may vary with the machine's load (up to ~1e-6 on outputs).

    ``__call__(pixel_values)`` takes ``(B, 3, S, S)`` float32, a torch tensor or a NumPy array, and returns
    the outputs in the same kind: a ``CageOutput`` with CPU float32 tensors for a tensor, an [`ArrayOutput`]
    for an array (so that a NumPy caller never needs torch); ``logits`` ``(B, num_labels)`` and
    ``regression`` ``(B, R)``.

    Raises:
        ImportError: openvino is not installed (the message says how to install it).
        ValueError: unknown precision.
    """

    def __init__(
        self,
        source: Any,
        config: Any,
        precision: str = "fp32",
        threads: int | None = None,
    ):
        if precision not in PRECISION_HINTS:
            raise ValueError(f"OpenVINO precision must be one of {tuple(PRECISION_HINTS)}, got {precision!r}")
        ov = _openvino()
        core = ov.Core()
        properties = {"INFERENCE_PRECISION_HINT": PRECISION_HINTS[precision], "PERFORMANCE_HINT": "LATENCY"}
        threads = threads or _threads_from_environment()
        if threads:
            properties["INFERENCE_NUM_THREADS"] = int(threads)
        # Not OpenVINO's compiled-graph cache (CACHE_DIR): it would save ~0.6 s per start, but the run that
        # compiles and writes it computes ~2e-7 differently from the runs that load it (OpenVINO 2026.4), and
        # records must not depend on which run came first.
        network = str(source) if isinstance(source, (str, Path)) else source
        self.compiled = core.compile_model(network, "CPU", properties)
        self.source = Path(source) if isinstance(source, (str, Path)) else None
        self.config = config
        self.precision = precision
        self.runtime = "openvino"

    accepts_numpy = True  # FaceExpressionAnalyzer feeds it NumPy arrays (no torch needed)

    def __call__(self, pixel_values: Any = None, **_: Any) -> Any:
        is_tensor = hasattr(pixel_values, "detach")
        array = pixel_values.detach().cpu().numpy() if is_tensor else pixel_values
        result = self.compiled(np.ascontiguousarray(array, dtype=np.float32))
        logits, regression = (np.asarray(result[output], dtype=np.float32) for output in self.compiled.outputs)
        if not is_tensor:
            return ArrayOutput(logits=logits, regression=regression)
        import torch

        from ..modeling_cage import CageOutput

        return CageOutput(logits=torch.from_numpy(logits), regression=torch.from_numpy(regression))
