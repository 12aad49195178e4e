"""``--runtime auto``: choose how to run a CAGE network from the CPU's instruction sets and the installed
runtimes, check the choice against PyTorch, and fall back down the list with one warning line.

The order comes from ``cage bench`` (README, "Speed"): OpenVINO beats ONNX Runtime and PyTorch on CPUs with
AVX2 and with AVX-512 alike; on CPUs with native bf16 (AVX512-BF16 or AMX) its bf16 mode is faster still.
Every path except the PyTorch reference is checked once per model, runtime version and machine against
PyTorch eager fp32 on two seeded images: exact paths to max |delta| <= 1e-4, bf16 paths to <= 0.02 on
probabilities and valence/arousal. A path that cannot be loaded, compiled or checked gives way to the next.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import platform
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import EXACT_TOLERANCE, REDUCED_TOLERANCE, error_line

logger = logging.getLogger("cage")

RUNTIMES = ("auto", "torch", "onnx", "openvino")


@dataclass(frozen=True)
class CpuFeatures:
    """The CPU's name and the instruction sets that decide the runtime (from ``/proc/cpuinfo`` on Linux)."""

    name: str
    avx2: bool = False
    avx512: bool = False
    avx512_bf16: bool = False
    amx: bool = False
    vnni: bool = False
    capped_by: str | None = None  # "ONEDNN_MAX_CPU_ISA=AVX2" when the flags above were masked (see cpu_features)

    @property
    def native_bf16(self) -> bool:
        """bf16 matrix products in hardware: AVX512-BF16 or AMX (elsewhere bf16 is emulated, slower than fp32)."""
        return self.avx512_bf16 or self.amx

    def describe(self) -> str:
        """One line: the name and which of AVX2, AVX-512, AVX512-BF16, AMX, VNNI are present."""
        flags = {"AVX2": self.avx2, "AVX-512": self.avx512, "AVX512-BF16": self.avx512_bf16, "AMX": self.amx,
                 "VNNI": self.vnni}  # fmt: skip
        line = f"{self.name}; " + ", ".join(f"{key} {'yes' if value else 'no'}" for key, value in flags.items())
        return line + (f" (capped by {self.capped_by})" if self.capped_by else "")


def parse_cpu_flags(name: str, flags: set[str]) -> CpuFeatures:
    """``CpuFeatures`` from Linux ``/proc/cpuinfo`` flag names (``avx2``, ``avx512f``, ``avx512_bf16``,
    ``amx_bf16``/``amx_tile``, ``avx512_vnni``/``avx_vnni``)."""
    return CpuFeatures(
        name=name,
        avx2="avx2" in flags,
        avx512="avx512f" in flags,
        avx512_bf16="avx512_bf16" in flags,
        amx=bool({"amx_bf16", "amx_tile"} & flags),
        vnni=bool({"avx512_vnni", "avx_vnni"} & flags),
    )


# ``ONEDNN_MAX_CPU_ISA`` values (oneDNN's names) -> the instruction sets they leave usable
ISA_CAPS = {
    "SSE41": set(),
    "AVX": set(),
    "AVX2": {"avx2"},
    "AVX2_VNNI": {"avx2", "vnni"},
    "AVX512_CORE": {"avx2", "avx512"},
    "AVX512_CORE_VNNI": {"avx2", "avx512", "vnni"},
    "AVX512_CORE_BF16": {"avx2", "avx512", "vnni", "avx512_bf16"},
}


def cap_features(features: CpuFeatures, max_isa: str | None) -> CpuFeatures:
    """``features`` limited to what ``max_isa`` (an ``ONEDNN_MAX_CPU_ISA`` value, e.g. ``"AVX2"``) leaves usable.

    oneDNN, which runs OpenVINO's and PyTorch's CPU kernels, honours ``ONEDNN_MAX_CPU_ISA``: with ``AVX2`` an
    AVX-512/bf16 CPU computes as an AVX2 CPU would, and the runtime choice must follow (``cage bench`` uses it
    to measure an AVX2 machine's paths; with ``MKL_ENABLE_INSTRUCTIONS=AVX2`` and ``ATEN_CPU_CAPABILITY=avx2``
    for PyTorch's other kernels). Unknown values and ``ALL``/``DEFAULT`` (no cap) change nothing.
    """
    allowed = ISA_CAPS.get((max_isa or "").strip().upper())
    if allowed is None:
        return features
    fields = ("avx2", "avx512", "avx512_bf16", "amx", "vnni")
    masked = {name: getattr(features, name) and name in allowed for name in fields}
    if all(masked[name] == getattr(features, name) for name in fields):
        return features
    return CpuFeatures(name=features.name, **masked, capped_by=f"ONEDNN_MAX_CPU_ISA={max_isa}")


def cpu_features() -> CpuFeatures:
    """This machine's ``CpuFeatures``: ``/proc/cpuinfo`` where it exists, else PyTorch's CPU capability checks;
    limited by ``ONEDNN_MAX_CPU_ISA`` where it is set (see [`cap_features`])."""
    return cap_features(_detected_cpu_features(), os.environ.get("ONEDNN_MAX_CPU_ISA"))


def _detected_cpu_features() -> CpuFeatures:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        text = cpuinfo.read_text(errors="replace")
        name = re.search(r"^model name\s*:\s*(.+)$", text, re.M)
        flags = re.search(r"^flags\s*:\s*(.+)$", text, re.M)
        if flags:
            return parse_cpu_flags(name.group(1).strip() if name else platform.processor(), set(flags.group(1).split()))
    import torch

    capability = torch.backends.cpu.get_cpu_capability()  # "DEFAULT", "AVX2", "AVX512", "ZVECTOR", ...
    return CpuFeatures(
        name=platform.processor() or platform.machine(),
        avx2=capability in ("AVX2", "AVX512"),
        avx512=capability == "AVX512",
        avx512_bf16=bool(torch.cpu._is_avx512_bf16_supported()),
        amx=bool(torch.cpu._is_amx_tile_supported()),
        vnni=bool(torch.cpu._is_avx512_vnni_supported()),
    )


def installed_runtimes() -> set[str]:
    """Which optional runtimes can be imported: a subset of ``{"openvino", "onnx"}``; ``torch`` is always there."""
    found = {"torch"}
    if importlib.util.find_spec("openvino") is not None:
        found.add("openvino")
    if importlib.util.find_spec("onnxruntime") is not None:
        found.add("onnx")
    return found


def runtime_candidates(
    features: CpuFeatures, installed: set[str], runtime: str = "auto", precision: str = "auto"
) -> list[tuple[str, str]]:
    """The ``(runtime, precision)`` paths to try, best first, for a CPU.

    ``precision="auto"`` puts bf16 paths first where the CPU has native bf16 (they passed the agreement bar of
    ``cage bench``: 100 % expression agreement, |delta valence/arousal| <= 0.02 on real face crops), then the
    exact fp32 paths; ``"fp32"`` keeps only exact paths; ``"bf16"`` only bf16 paths. ``runtime`` other than
    ``"auto"`` keeps only that runtime's paths. Uninstalled runtimes are left out.

    Raises:
        ValueError: unknown runtime or precision, or a combination without any path (ONNX has no bf16 path).
    """
    if runtime not in RUNTIMES:
        raise ValueError(f"runtime must be one of {RUNTIMES}, got {runtime!r}")
    if precision not in ("auto", "fp32", "bf16"):
        raise ValueError(f"precision must be auto, fp32 or bf16, got {precision!r}")
    bf16 = [("openvino", "bf16"), ("torch", "bf16")] if features.native_bf16 else [("torch", "bf16")]
    fp32 = [("openvino", "fp32"), ("onnx", "fp32"), ("torch", "fp32")]
    order = {"auto": (bf16 if features.native_bf16 else []) + fp32, "fp32": fp32, "bf16": bf16}[precision]
    paths = [p for p in order if p[0] in installed and runtime in ("auto", p[0])]
    if not paths:
        hint = "; the onnx runtime needs the 'onnx' extra: pip install 'cage[onnx]'" if runtime == "onnx" else ""
        raise ValueError(
            f"no {precision} path for runtime {runtime!r} (installed: {', '.join(sorted(installed))}){hint}"
        )
    return paths


def _check_inputs(size: int) -> Any:
    import torch

    generator = torch.Generator().manual_seed(0)
    return torch.randn(2, 3, size, size, generator=generator)


def check_runner(runner: Any, model: Any, precision: str) -> dict[str, float]:
    """Compare ``runner`` with ``model`` (PyTorch eager fp32) on two seeded images.

    Returns:
        ``{"logits": max |delta|, "probabilities": ..., "regression": ...}``.

    Raises:
        RuntimeError: exact (fp32) paths beyond 1e-4 on logits or regression; bf16 paths beyond 0.02 on
            probabilities or regression; or non-finite outputs.
    """
    import torch

    inputs = _check_inputs(int(model.config.image_size))
    with torch.inference_mode():
        expected = model(pixel_values=inputs)
        got = runner(pixel_values=inputs)
    deltas = {
        "logits": float((got.logits.float() - expected.logits).abs().max()),
        "probabilities": float((got.logits.float().softmax(-1) - expected.logits.softmax(-1)).abs().max()),
        "regression": float((got.regression.float() - expected.regression).abs().max()),
    }
    finite = bool(torch.isfinite(got.logits).all() and torch.isfinite(got.regression).all())
    if precision == "fp32":
        ok = finite and max(deltas["logits"], deltas["regression"]) <= EXACT_TOLERANCE
        bar = f"{EXACT_TOLERANCE:.0e} on logits and regression"
    else:
        ok = finite and max(deltas["probabilities"], deltas["regression"]) <= REDUCED_TOLERANCE
        bar = f"{REDUCED_TOLERANCE} on probabilities and regression"
    if not ok:
        shown = ", ".join(f"{k} {v:.1e}" for k, v in deltas.items())
        raise RuntimeError(f"differs from PyTorch fp32 ({shown}; allowed {bar})")
    return deltas


def _build(path: tuple[str, str], model: Any, source: str, threads: int | None, cache_dir: Any) -> Any:
    runtime, precision = path
    if runtime == "torch":
        return model  # FaceExpressionAnalyzer applies bf16 autocast + channels-last itself
    if runtime == "onnx":
        from .onnx import OnnxRuntimeModel, cached_onnx_export

        def convert() -> Path:
            return Path(cached_onnx_export(model, source, cache_dir))

        def load(artifact: Path) -> Any:
            return OnnxRuntimeModel(artifact, model.config, threads=threads)
    else:
        from .openvino import OpenVinoModel, cached_openvino_model

        def convert() -> Path:
            return cached_openvino_model(model, cache_dir)

        def load(artifact: Path) -> Any:
            return OpenVinoModel(artifact, model.config, precision=precision, threads=threads)

    artifact = convert()
    verdict = artifact.with_name(f"{artifact.stem}.{precision}.check.json")  # checked once per model and machine
    try:
        runner = load(artifact)
    except Exception:
        if not verdict.is_file():
            raise
        # It passed its check on this machine before, so the cached file was damaged since (the cache is
        # written atomically; e.g. a truncated copy): convert it again, once.
        logger.info("cage: %s %s: the cached %s cannot be loaded; converting again", runtime, precision, artifact)
        for stale in (artifact, artifact.with_suffix(".bin"), verdict):
            stale.unlink(missing_ok=True)
        artifact = convert()
        runner = load(artifact)
    if not verdict.is_file():
        verdict.write_text(json.dumps(check_runner(runner, model, precision)))
    return runner


def load_runner(
    model: Any,
    runtime: str = "auto",
    precision: str = "auto",
    source: str = "model",
    latency: bool = False,
    threads: int | None = None,
    cache_dir: str | Path | None = None,
    features: CpuFeatures | None = None,
) -> tuple[Any, str, str]:
    """The fastest working way to run ``model`` (a CPU ``CageForExpressionInference``) on this CPU.

    Tries [`runtime_candidates`] in order; a path that fails to load, compile or pass [`check_runner`] gives
    way to the next, and ONE warning line (logger ``cage``) names what failed and what is used instead. With
    an explicit ``runtime`` the failure of its last path is an error instead. With ``latency`` (the webcam)
    every working path (ONNX Runtime only without OpenVINO) is timed on one image ([`measure_latency_s`]) and
    the fastest is used: which of bf16 and fp32 wins at batch 1 differs between CPUs.

    Args:
        model: the PyTorch model (the reference, and the last resort).
        runtime: ``"auto"``, ``"openvino"``, ``"onnx"`` or ``"torch"``.
        precision: ``"auto"``, ``"fp32"`` or ``"bf16"``.
        source: the model's name for messages.
        latency: time every working path on one image and pick the lowest-latency one (webcam).
        features: the CPU's features (default: [`cpu_features`]); tests pass fake ones.

    Returns:
        ``(runner, runtime, precision)``: the runner is ``model`` itself for PyTorch paths (run it with the
        returned precision), else an ``OpenVinoModel``/``OnnxRuntimeModel``.

    Raises:
        RuntimeError: an explicitly requested runtime could not be used (the message says why).
    """
    paths = runtime_candidates(features or cpu_features(), installed_runtimes(), runtime, precision)
    failures: list[str] = []
    working = []
    for path in paths:
        if latency and path[0] == "onnx" and any(p[0] == "openvino" for p, _ in working):
            continue  # with OpenVINO working, ONNX Runtime is not worth a conversion for the latency race
        try:
            runner = _build(path, model, source, threads, cache_dir)
        except Exception as error:  # noqa: BLE001 - any failure of an optional runtime means: use the next path
            failures.append(f"{path[0]} {path[1]} failed ({error_line(error)})")
            continue
        working.append((path, runner))
        if not latency:
            break
    if not working:
        raise RuntimeError(f"{source}: no runtime could be used: {'; '.join(failures)}")
    if len(working) > 1:  # latency: the live path takes the fastest working path for one image, measured here
        size = int(model.config.image_size)
        working.sort(key=lambda item: measure_latency_s(item[1], item[0], size))
    path, runner = working[0]
    if failures:
        logger.warning("cage: %s; using %s %s", "; ".join(failures), *path)
    return runner, path[0], path[1]


def measure_latency_s(runner: Any, path: tuple[str, str], size: int, calls: int = 3) -> float:
    """Median seconds of one ``(1, 3, size, size)`` forward pass of ``runner`` on ``path`` after one warm-up
    (PyTorch bf16 paths run under bf16 autocast with channels-last, as ``FaceExpressionAnalyzer`` runs them)."""
    import statistics
    import time

    import torch

    if path == ("torch", "bf16"):
        from .torch_variants import TorchRunner

        runner = TorchRunner(runner, autocast_dtype=torch.bfloat16, channels_last=True)
    inputs = torch.zeros(1, 3, size, size)
    times = []
    with torch.inference_mode():
        for index in range(calls + 1):
            start = time.perf_counter()
            runner(pixel_values=inputs)
            if index:
                times.append(time.perf_counter() - start)
    return statistics.median(times)
