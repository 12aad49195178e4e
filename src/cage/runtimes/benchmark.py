"""Inference benchmark: every way to run CAGE's MaxViT-T, measured side by side in one run.

The reference is the authors' way: torchvision ``maxvit_t`` with their head (pool, flatten, LayerNorm,
Linear, Tanh, Linear without bias; 10 outputs for AffectNet-8), eager fp32 under ``torch.no_grad``. All
variants are timed interleaved (round-robin, one call each per round) after warm-up, so that drifts of the
machine's speed hit every variant alike; ratios to the reference are the result, absolute numbers only
describe this machine. Agreement of each variant with our eager fp32 is measured on real face crops.

Weights are random (no trained CAGE weights exist): agreement of argmax on an untrained model is a stricter
test than on a trained one, whose logits are better separated.
"""

from __future__ import annotations

import json
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

MAXVIT_T_GMACS = 5.6  # multiply-accumulates per 224 x 224 image, in 1e9 (torchvision's maxvit_t model card)
ARGMAX_AGREEMENT_BAR = 1.0  # reduced precision must agree on every shared crop...
VA_DELTA_BAR = 0.02  # ...and move valence/arousal by at most this much (issue 8's acceptance bar)
FP32_DELTA_BAR = 1e-4  # fp32 paths must match eager fp32 to this max |delta| on all outputs


def build_authors_network(num_outputs: int = 10) -> torch.nn.Module:
    """The CAGE authors' network: torchvision ``maxvit_t`` whose classifier is their head with K outputs.

    Random weights (``weights=None``); used as the speed reference and for checkpoint conversion tests.
    """
    from torch import nn
    from torchvision.models import maxvit_t

    network = maxvit_t(weights=None)
    network.classifier = nn.Sequential(
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.LayerNorm(512),
        nn.Linear(512, 512),
        nn.Tanh(),
        nn.Linear(512, num_outputs, bias=False),
    )
    return network.eval()


def measure_peak_matmul_flops(dtype: torch.dtype, size: int = 2048, repeats: int = 5) -> float:
    """Best observed FLOP/s of one ``size``-cubed matmul in ``dtype`` on the CPU (2 * size^3 FLOP per call)."""
    a = torch.randn(size, size).to(dtype)
    b = torch.randn(size, size).to(dtype)
    torch.matmul(a, b)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        torch.matmul(a, b)
        best = min(best, time.perf_counter() - start)
    return 2.0 * size**3 / best


@dataclass
class VariantResult:
    name: str
    description: str
    timings_s: dict[str, list[float]] = field(default_factory=dict)  # batch size -> per-call seconds
    argmax_agreement: float | None = None
    max_abs_delta_va: float | None = None
    max_abs_delta_logits: float | None = None
    passes: bool | None = None
    error: str | None = None

    def throughput(self, batch: int) -> float | None:
        times = self.timings_s.get(str(batch))
        return batch / statistics.median(times) if times else None

    def latency_ms(self, batch: int, quantile: float) -> float | None:
        times = sorted(self.timings_s.get(str(batch), []))
        if not times:
            return None
        return 1000.0 * times[min(len(times) - 1, int(round(quantile * (len(times) - 1))))]


def face_crops(processor: Any, faces_dir: str | Path) -> torch.Tensor:
    """``pixel_values`` ``(N, 3, S, S)`` of every face dlib finds in the ``*.jpg``/``*.png`` photos of
    ``faces_dir`` (sorted), cropped and normalised by ``processor``.

    Raises:
        RuntimeError: no face was found.
    """
    faces_dir = Path(faces_dir)
    from PIL import Image

    from ..face_detection_cage import create_face_detector

    detector = create_face_detector("dlib")
    crops = []
    for path in sorted(faces_dir.glob("*.jpg")) + sorted(faces_dir.glob("*.png")):
        with Image.open(path) as image:
            image = image.convert("RGB")
            crops += [processor.crop(image, d.box) for d in detector.detect(image)]
    if not crops:
        raise RuntimeError(f"no face found in {faces_dir}")
    return processor(crops, return_tensors="pt")["pixel_values"]


def run_benchmark(
    model_dir: str | Path | None = None,
    faces_dir: str | Path = "../shared/faces",
    batch_sizes: tuple[int, ...] = (1, 32),
    rounds: int = 7,
    warmup: int = 2,
    include_compile: bool = True,
    threads: int | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Measure every variant and return the report (see ``write_report``).

    Args:
        model_dir: a saved CAGE model; ``None`` builds an untrained MaxViT-T at 224 (seed 0).
        faces_dir: the shared real photos whose face crops measure agreement.
        batch_sizes: batch sizes to time; throughput is images/s, latency is per call in ms.
        rounds: timed calls per variant and batch size (interleaved across variants).
    """
    from .. import CageForExpressionInference
    from ..inference.loading import load_model_and_processor
    from ..presets import make_config, make_image_processor
    from .onnx import OnnxRuntimeModel, export_onnx
    from .torch_variants import TorchRunner

    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(0)
    if model_dir is None:
        model = CageForExpressionInference(make_config()).eval()
        processor = make_image_processor(model.config)
    else:
        model, processor = load_model_and_processor(model_dir)
    size = model.config.image_size
    crops = face_crops(processor, Path(faces_dir))
    log(f"{len(crops)} real face crops from {faces_dir}; image size {size}")

    authors = build_authors_network(model.config.num_outputs)
    workdir = Path(tempfile.mkdtemp(prefix="cage-bench-"))

    def authors_call(pixel_values: torch.Tensor) -> Any:
        with torch.no_grad():
            out = authors(pixel_values)
        return out[:, : model.config.num_labels], out[:, model.config.num_labels :]

    def runner_call(runner: Any) -> Callable[[torch.Tensor], Any]:
        def call(pixel_values: torch.Tensor) -> Any:
            out = runner(pixel_values=pixel_values)
            return out.logits, out.regression

        return call

    variants: list[tuple[VariantResult, Callable[[], Callable[[torch.Tensor], Any]], bool]] = [
        (VariantResult("authors_eager_fp32", "torchvision maxvit_t + authors' head, eager fp32 (reference)"),
         lambda: authors_call, True),
        (VariantResult("eager_fp32", "cage (timm MaxViT-T), eager fp32"), lambda: runner_call(TorchRunner(model)), True),
        (VariantResult("channels_last_fp32", "cage, channels-last fp32"),
         lambda: runner_call(TorchRunner(model, channels_last=True)), True),
        (VariantResult("bf16_autocast", "cage, bf16 autocast"),
         lambda: runner_call(TorchRunner(model, autocast_dtype=torch.bfloat16)), False),
        (VariantResult("bf16_autocast_channels_last", "cage, bf16 autocast + channels-last"),
         lambda: runner_call(TorchRunner(model, autocast_dtype=torch.bfloat16, channels_last=True)), False),
        (VariantResult("int8_dynamic_torch", "cage, dynamic int8 Linear layers (torch.ao)"),
         lambda: runner_call(TorchRunner(model, int8=True)), False),
    ]  # fmt: skip
    if include_compile:
        variants.append(
            (VariantResult("compile_fp32", "cage, torch.compile fp32"),
             lambda: runner_call(TorchRunner(model, compile=True)), True)
        )  # fmt: skip

    def onnx_fp32() -> Callable[[torch.Tensor], Any]:
        report = export_onnx(model, workdir / "cage.onnx")
        log(f"ONNX export parity: logits {report.max_abs_diff_logits:.2e}, regression {report.max_abs_diff_regression:.2e}")
        return runner_call(OnnxRuntimeModel(report.path, model.config, threads=threads))

    def onnx_int8() -> Callable[[torch.Tensor], Any]:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        if not (workdir / "cage.onnx").exists():
            export_onnx(model, workdir / "cage.onnx")
        quantize_dynamic(str(workdir / "cage.onnx"), str(workdir / "cage-int8.onnx"), weight_type=QuantType.QInt8)
        return runner_call(OnnxRuntimeModel(workdir / "cage-int8.onnx", model.config, threads=threads))

    variants.append((VariantResult("onnxruntime_fp32", "cage exported to ONNX, ONNX Runtime fp32"), onnx_fp32, True))
    variants.append((VariantResult("onnxruntime_int8", "ONNX Runtime, dynamic int8 MatMul"), onnx_int8, False))

    calls: dict[str, Callable[[torch.Tensor], Any]] = {}
    with torch.no_grad():
        baseline_logits, baseline_va = runner_call(TorchRunner(model))(crops)
    for result, build, fp32 in variants:
        try:
            call = build()
            logits, va = call(crops)
        except Exception as error:  # a variant that cannot run here is reported, not fatal
            result.error = f"{type(error).__name__}: {error}"
            log(f"{result.name}: unavailable ({result.error})")
            continue
        calls[result.name] = call
        if result.name != "authors_eager_fp32":
            result.argmax_agreement = float((logits.argmax(-1) == baseline_logits.argmax(-1)).float().mean())
            result.max_abs_delta_va = float((va - baseline_va).abs().max())
            result.max_abs_delta_logits = float((logits - baseline_logits).abs().max())
            if fp32:
                result.passes = max(result.max_abs_delta_va, result.max_abs_delta_logits) <= FP32_DELTA_BAR
            else:
                result.passes = result.argmax_agreement >= ARGMAX_AGREEMENT_BAR and result.max_abs_delta_va <= VA_DELTA_BAR
        log(f"{result.name}: ready (agreement {result.argmax_agreement}, max|dVA| {result.max_abs_delta_va})")

    generator = torch.Generator().manual_seed(1)
    for batch in batch_sizes:
        inputs = torch.randn(batch, 3, size, size, generator=generator)
        for name, call in calls.items():
            for _ in range(warmup):
                call(inputs)
        for round_index in range(rounds):
            for result, _, _ in variants:
                if result.name not in calls:
                    continue
                start = time.perf_counter()
                calls[result.name](inputs)
                result.timings_s.setdefault(str(batch), []).append(time.perf_counter() - start)
            log(f"batch {batch}: round {round_index + 1}/{rounds} done")

    end_to_end = measure_end_to_end(model, processor, Path(faces_dir), rounds=rounds, log=log)
    peak_fp32 = measure_peak_matmul_flops(torch.float32)
    peak_bf16 = measure_peak_matmul_flops(torch.bfloat16)
    flops_per_image = 2.0 * MAXVIT_T_GMACS * 1e9 * (size / 224) ** 2
    return {
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__,
        },
        "model": str(model_dir) if model_dir else "untrained MaxViT-T (maxvit_tiny_tf_224), seed 0",
        "image_size": size,
        "num_face_crops": len(crops),
        "peak_matmul_flops": {"fp32": peak_fp32, "bf16": peak_bf16},
        "flops_per_image": flops_per_image,
        "roofline_images_per_s": {"fp32": peak_fp32 / flops_per_image, "bf16": peak_bf16 / flops_per_image},
        "variants": [asdict(result) for result, _, _ in variants],
        "end_to_end_ms": end_to_end,
        "batch_sizes": list(batch_sizes),
        "rounds": rounds,
    }


def measure_end_to_end(
    model: Any, processor: Any, faces_dir: Path, rounds: int, log: Callable[[str], None] = print
) -> dict[str, dict[str, float]]:
    """Median milliseconds from a photo file to its JSON text (decode, detect, crop, predict, serialise), for
    ``obama.jpg`` and ``two_people.jpg``, with `cage predict`'s default precision and with forced fp32."""
    from ..inference.predict import predict_paths
    from ..pipeline_cage import FaceExpressionAnalyzer

    results: dict[str, dict[str, float]] = {}
    analyzers = {
        precision: FaceExpressionAnalyzer(model, processor, device="cpu", precision=precision)
        for precision in ("auto", "fp32")
    }
    for name in ("obama.jpg", "two_people.jpg"):
        path = faces_dir / name
        if not path.is_file():
            continue
        for precision, analyzer in analyzers.items():
            times = []
            for index in range(rounds + 1):
                start = time.perf_counter()
                json.dumps([result.to_dict() for result in predict_paths(analyzer, [path])])
                if index:  # the first call warms up
                    times.append(time.perf_counter() - start)
            key = f"{precision} ({analyzer.precision})"
            results.setdefault(name, {})[key] = 1000.0 * statistics.median(times)
        log(f"end to end {name}: {results[name]}")
    return results


def markdown_table(report: dict[str, Any]) -> str:
    """The report as a Markdown table: ratios to the reference first, absolute numbers for this machine."""
    variants = [VariantResult(**v) for v in report["variants"]]
    reference = next(v for v in variants if v.name == "authors_eager_fp32")
    batches = report["batch_sizes"]
    big = max(batches)
    header = (
        f"| variant | x reference @{big} | images/s @{big} | images/s @1 | latency @1 median / p90 (ms) "
        f"| argmax agreement | max abs dVA | passes | % bf16 roofline @{big} |"
    )
    lines = [header, "|" + "---|" * 9]
    roofline = report["roofline_images_per_s"]["bf16"]
    for v in variants:
        if v.error:
            lines.append(f"| {v.name} | unavailable: {v.error[:60]} | | | | | | | |")
            continue
        tp, tp1 = v.throughput(big), v.throughput(1) if 1 in batches else None
        ratio = tp / reference.throughput(big) if reference.throughput(big) else float("nan")
        agreement = "reference" if v.argmax_agreement is None else f"{100 * v.argmax_agreement:.0f} %"
        delta = "" if v.max_abs_delta_va is None else f"{v.max_abs_delta_va:.1e}"
        passes = "" if v.passes is None else ("yes" if v.passes else "no")
        lat = f"{v.latency_ms(1, 0.5):.0f} / {v.latency_ms(1, 0.9):.0f}" if tp1 else ""
        lines.append(
            f"| {v.name} | {ratio:.2f} | {tp:.2f} | {tp1 or float('nan'):.2f} | {lat} | {agreement} | {delta} "
            f"| {passes} | {100 * tp / roofline:.0f} % |"
        )
    peaks = report["peak_matmul_flops"]
    if report.get("end_to_end_ms"):
        lines.append("")
        lines.append("| end to end: photo file -> JSON (detection included) | " + " | ".join(
            f"`cage predict` precision {key}" for key in next(iter(report["end_to_end_ms"].values()))) + " |")
        lines.append("|---|" + "---|" * len(next(iter(report["end_to_end_ms"].values()))))
        for name, row in report["end_to_end_ms"].items():
            lines.append(f"| {name} | " + " | ".join(f"{ms:.0f} ms" for ms in row.values()) + " |")
    lines.append("")
    lines.append(
        f"Peak matmul: fp32 {peaks['fp32'] / 1e9:.0f} GFLOP/s, bf16 {peaks['bf16'] / 1e9:.0f} GFLOP/s; "
        f"MaxViT-T needs {report['flops_per_image'] / 1e9:.1f} GFLOP per image, so the roofline is "
        f"{report['roofline_images_per_s']['fp32']:.1f} images/s (fp32) and {roofline:.1f} images/s (bf16). "
        f"{report['num_face_crops']} real face crops for agreement; {report['rounds']} interleaved rounds; "
        f"{report['machine']['torch_threads']} threads; model: {report['model']}."
    )
    return "\n".join(lines)


def write_report(report: dict[str, Any], output_dir: str | Path) -> tuple[Path, Path]:
    """Write ``benchmark.json`` and ``benchmark.md`` to ``output_dir``; return their paths."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    json_path, md_path = output_dir / "benchmark.json", output_dir / "benchmark.md"
    json_path.write_text(json.dumps(report, indent=2))
    md_path.write_text(markdown_table(report) + "\n")
    return json_path, md_path
