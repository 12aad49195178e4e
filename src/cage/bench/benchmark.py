"""Inference benchmark (`cage bench`): every way to run CAGE's MaxViT-T, measured side by side in one run.

The reference is the authors' way: torchvision ``maxvit_t`` with their head (pool, flatten, LayerNorm,
Linear, Tanh, Linear without bias; 10 outputs for AffectNet-8), eager fp32 under ``torch.no_grad``. All
variants are timed interleaved (round-robin, one call each per round) after warm-up, so that drifts of the
machine's speed hit every variant alike; ratios to the reference are the result, absolute numbers only
describe this machine. Agreement of each variant with its network's eager fp32 is measured on real face crops.

Networks: the default config (``cage.presets.make_config()``, whatever it is when the benchmark runs), the
timm TF port ``maxvit_tiny_tf_224`` and the paper's torchvision ``maxvit_t`` trunk, each once (duplicates of
the default are left out). Three more measurements: which path ``--runtime auto`` picks here and its ratio;
the whole process (``cage predict DIR --detector none --batch-size 32`` vs an emulation of the authors'
inference script, both as subprocesses, start-up included); photo -> JSON latency with detection, per path.

Weights are random (no trained CAGE weights exist): agreement of argmax on an untrained model is a stricter
test than on a trained one, whose logits are better separated.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..runtimes import EXACT_TOLERANCE, REDUCED_TOLERANCE, error_line

MAXVIT_T_GMACS = 5.6  # multiply-accumulates per 224 x 224 image, in 1e9 (torchvision's maxvit_t model card)
ARGMAX_AGREEMENT_BAR = 1.0  # reduced precision must agree on every shared crop...
TF_PORT = {"backbone_library": "timm", "backbone": "maxvit_tiny_tf_224"}
PAPER_TORCHVISION = {"backbone_library": "torchvision", "backbone": "maxvit_t"}
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


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


def machine_info(threads: int | None = None) -> dict[str, Any]:
    """CPU name and instruction sets, library versions and thread count: printed with every table."""
    from ..runtimes.openvino import runtime_version
    from ..runtimes.select import cpu_features

    features = cpu_features()
    try:
        import onnxruntime

        ort_version = onnxruntime.__version__
    except ImportError:
        ort_version = None
    return {
        "cpu": features.name,
        "flags": {k: v for k, v in asdict(features).items() if k != "name"},
        "cpu_line": features.describe(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "openvino": runtime_version(),
        "onnxruntime": ort_version,
        "torch_threads": threads or torch.get_num_threads(),
        "logical_cpus": os.cpu_count(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "isa_caps": {name: os.environ[name] for name in ISA_CAP_VARIABLES if os.environ.get(name)},
    }


# Environment variables that make this CPU compute as an older one: oneDNN (OpenVINO and PyTorch convolutions
# and matrix products), MKL (PyTorch's fp32 GEMM), ATen's vectorised kernels. ONNX Runtime (MLAS) ignores them.
ISA_CAP_VARIABLES = ("ONEDNN_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS", "ATEN_CPU_CAPABILITY")


def hardware_line(machine: dict[str, Any]) -> str:
    """One Markdown line: CPU, flags, versions, threads (and the GPU, or that none was measured), and the
    instruction-set caps in force, if any (``ISA_CAP_VARIABLES``)."""
    gpu = machine.get("gpu") or "none (GPU rows: not measured)"
    caps = machine.get("isa_caps") or {}
    emulated = (
        "; instruction sets capped by " + ", ".join(f"{k}={v}" for k, v in caps.items())
        + " (an emulation of an older CPU on this one; ONNX Runtime is not capped)"
        if caps else ""
    )  # fmt: skip
    return (
        f"Machine: {machine['cpu_line']}; {machine['torch_threads']} threads of {machine['logical_cpus']} logical "
        f"CPUs; GPU: {gpu}; torch {machine['torch']}, OpenVINO {machine['openvino']}, ONNX Runtime "
        f"{machine['onnxruntime']}, Python {machine['python']}{emulated}."
    )


@dataclass
class VariantResult:
    name: str
    description: str
    network: str = "default"
    kind: str = "fp32"  # "fp32": must match eager fp32 to 1e-4; "reduced": the agreement bar; "reference"
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


def _detected_crops(processor: Any, faces_dir: str | Path) -> list[Any]:
    from PIL import Image

    from ..face_detection_cage import create_face_detector

    faces_dir = Path(faces_dir)
    detector = create_face_detector("dlib")
    crops = []
    for path in sorted(faces_dir.glob("*.jpg")) + sorted(faces_dir.glob("*.png")):
        with Image.open(path) as image:
            image = image.convert("RGB")
            crops += [processor.crop(image, d.box) for d in detector.detect(image)]
    if not crops:
        raise RuntimeError(f"no face found in {faces_dir}")
    return crops


def face_crops(processor: Any, faces_dir: str | Path) -> torch.Tensor:
    """``pixel_values`` ``(N, 3, S, S)`` of every face dlib finds in the ``*.jpg``/``*.png`` photos of
    ``faces_dir`` (sorted), cropped and normalised by ``processor``.

    Raises:
        RuntimeError: no face was found.
    """
    return processor(_detected_crops(processor, faces_dir), return_tensors="pt")["pixel_values"]


def _networks(model_dir: str | Path | None) -> dict[str, tuple[Any, Any, str]]:
    """name -> (model, processor, description): the default config, the TF port, the paper's torchvision trunk."""
    from .. import CageForExpressionInference
    from ..model_folder import load_model_and_processor
    from ..presets import make_config, make_image_processor

    if model_dir is not None:
        model, processor = load_model_and_processor(model_dir)
        return {"model": (model, processor, str(model_dir))}
    networks: dict[str, tuple[Any, Any, str]] = {}
    seen = set()
    for name, overrides in (("default", {}), ("tf_port", TF_PORT), ("paper_torchvision", PAPER_TORCHVISION)):
        config = make_config(**overrides)
        key = (config.backbone_library, config.backbone)
        if key in seen:
            continue
        seen.add(key)
        torch.manual_seed(0)
        model = CageForExpressionInference(config).eval()
        what = f"{config.backbone_library} {config.backbone}"
        what += " (make_config() default)" if name == "default" else ""
        networks[name] = (model, make_image_processor(config), what)
    return networks


def _runner_call(runner: Any) -> Callable[[torch.Tensor], Any]:
    def call(pixel_values: torch.Tensor) -> Any:
        out = runner(pixel_values=pixel_values)
        return out.logits, out.regression

    return call


def _variants(
    network: str, model: Any, crops: torch.Tensor, workdir: Path, threads: int | None, full: bool, compile: bool
) -> list[tuple[VariantResult, Callable[[], Callable[[torch.Tensor], Any]]]]:
    """The variants of one network: (result holder, builder of its call)."""
    from ..runtimes.onnx import OnnxRuntimeModel, cached_onnx_export
    from ..runtimes.openvino import OpenVinoModel, cached_openvino_model, openvino_core, quantize_int8
    from ..runtimes.select import cpu_features
    from ..runtimes.torch_variants import TorchRunner

    native_bf16 = cpu_features().native_bf16
    converted: dict[str, Any] = {}

    def openvino(precision: str) -> Callable[[], Callable[[torch.Tensor], Any]]:
        def build() -> Callable[[torch.Tensor], Any]:
            if "fp32" not in converted:  # through the cache, which the latency runs reuse
                converted["fp32"] = cached_openvino_model(model, workdir / "cache")
            source = converted["fp32"]
            if precision == "int8":  # calibrated on the face crops and their mirror images
                source = quantize_int8(openvino_core().read_model(str(source)), torch.cat([crops, crops.flip(-1)]))
            return _runner_call(OpenVinoModel(source, model.config, precision=precision, threads=threads))

        return build

    def onnx() -> Callable[[torch.Tensor], Any]:
        path = cached_onnx_export(model, network, workdir / "cache")
        return _runner_call(OnnxRuntimeModel(path, model.config, threads=threads))

    def v(name: str, description: str, kind: str = "fp32") -> VariantResult:
        return VariantResult(f"{network}/{name}", description, network=network, kind=kind)

    variants = [
        (v("eager_fp32", "eager fp32"), lambda: _runner_call(TorchRunner(model))),
        (v("openvino_fp32", "OpenVINO fp32 (precision hint f32)"), openvino("fp32")),
        (v("onnxruntime_fp32", "ONNX Runtime fp32"), onnx),
    ]
    if native_bf16 or full:
        variants.append((v("openvino_bf16", "OpenVINO, precision hint bf16", "reduced"), openvino("bf16")))
    if full:
        variants += [
            (v("channels_last_fp32", "channels-last fp32"),
             lambda: _runner_call(TorchRunner(model, channels_last=True))),
            (v("bf16_autocast_channels_last", "bf16 autocast + channels-last", "reduced"),
             lambda: _runner_call(TorchRunner(model, autocast_dtype=torch.bfloat16, channels_last=True))),
            (v("openvino_int8", "OpenVINO static int8 (NNCF, calibrated on face crops)", "reduced"), openvino("int8")),
        ]  # fmt: skip
        if compile:
            compiled = lambda: _runner_call(TorchRunner(model, compile=True))  # noqa: E731
            variants.append((v("compile_fp32", "torch.compile fp32"), compiled))
    return variants


def run_benchmark(
    model_dir: str | Path | None = None,
    faces_dir: str | Path = "../shared/faces",
    batch_sizes: tuple[int, ...] = (1, 32),
    rounds: int = 7,
    warmup: int = 1,
    include_compile: bool = True,
    threads: int | None = None,
    log: Callable[[str], None] = print,
    whole_process: bool = True,
    whole_process_crops: int = 96,
    latency: bool = True,
) -> dict[str, Any]:
    """Measure every variant and return the report (see ``write_report``).

    Args:
        model_dir: a saved CAGE model; ``None`` builds untrained networks (seed 0): the default config, the timm
            TF port and the paper's torchvision trunk. The first network gets every variant (torch variants,
            OpenVINO fp32/bf16/int8, ONNX Runtime), the others the runtime variants.
        faces_dir: the shared real photos whose face crops measure agreement (and calibrate int8).
        batch_sizes: batch sizes to time; throughput is images/s, latency is per call in ms.
        rounds: timed calls per variant and batch size (interleaved across variants).
        whole_process: also time ``cage predict`` vs the authors' script as subprocesses.
        latency: also time photo -> JSON with detection, batch 1, per path.
    """
    from ..runtimes.select import cpu_features, installed_runtimes, runtime_candidates
    from ..runtimes.torch_variants import TorchRunner

    if threads:
        torch.set_num_threads(threads)
    machine = machine_info(threads)
    log(hardware_line(machine))
    networks = _networks(model_dir)
    workdir = Path(tempfile.mkdtemp(prefix="cage-bench-"))
    first_model, first_processor, _ = next(iter(networks.values()))
    num_labels, num_outputs = first_model.config.num_labels, first_model.config.num_outputs
    size = first_model.config.image_size
    authors = build_authors_network(num_outputs)

    def authors_call(pixel_values: torch.Tensor) -> Any:
        with torch.no_grad():
            out = authors(pixel_values)
        return out[:, :num_labels], out[:, num_labels:]

    reference = VariantResult("authors_eager_fp32", "torchvision maxvit_t + authors' head, eager fp32 (reference)",
                              network="authors", kind="reference")  # fmt: skip
    variants: list[tuple[VariantResult, Callable[[], Callable[[torch.Tensor], Any]]]] = [
        (reference, lambda: authors_call)
    ]
    calls: dict[str, Callable[[torch.Tensor], Any]] = {}
    num_crops = 0
    for index, (network, (model, processor, what)) in enumerate(networks.items()):
        crops = face_crops(processor, faces_dir)
        num_crops = len(crops)
        log(f"{network}: {what}; {len(crops)} real face crops from {faces_dir}")
        with torch.no_grad():
            base_logits, base_va = _runner_call(TorchRunner(model))(crops)
        for result, build in _variants(network, model, crops, workdir, threads, index == 0, include_compile):
            variants.append((result, build))
            try:
                call = build()
                logits, va = call(crops)
            except Exception as error:  # a variant that cannot run here is reported, not fatal
                result.error = error_line(error)
                log(f"{result.name}: unavailable ({result.error})")
                continue
            calls[result.name] = call
            result.argmax_agreement = float((logits.argmax(-1) == base_logits.argmax(-1)).float().mean())
            result.max_abs_delta_va = float((va - base_va).abs().max())
            result.max_abs_delta_logits = float((logits - base_logits).abs().max())
            if result.kind == "fp32":
                result.passes = max(result.max_abs_delta_va, result.max_abs_delta_logits) <= EXACT_TOLERANCE
            else:
                result.passes = (result.argmax_agreement >= ARGMAX_AGREEMENT_BAR
                                 and result.max_abs_delta_va <= REDUCED_TOLERANCE)  # fmt: skip
            log(f"{result.name}: ready (agreement {result.argmax_agreement:.0%}, "
                f"max|dVA| {result.max_abs_delta_va:.1e})")
    calls[reference.name] = authors_call

    generator = torch.Generator().manual_seed(1)
    for batch in batch_sizes:
        inputs = torch.randn(batch, 3, size, size, generator=generator)
        for call in calls.values():
            for _ in range(warmup):
                call(inputs)
        for round_index in range(rounds):
            for result, _ in variants:
                if result.name in calls:
                    start = time.perf_counter()
                    calls[result.name](inputs)
                    result.timings_s.setdefault(str(batch), []).append(time.perf_counter() - start)
            log(f"batch {batch}: round {round_index + 1}/{rounds} done")
    calls.clear()
    peak_rss_gb = _peak_rss_gb()

    # What --runtime auto picks here: the first candidate path whose variant of the first network passes.
    first = next(iter(networks))
    names = {("openvino", "fp32"): "openvino_fp32", ("openvino", "bf16"): "openvino_bf16",
             ("onnx", "fp32"): "onnxruntime_fp32", ("torch", "fp32"): "eager_fp32",
             ("torch", "bf16"): "bf16_autocast_channels_last"}  # fmt: skip
    by_name = {result.name: result for result, _ in variants}
    auto_path = None
    for path in runtime_candidates(cpu_features(), installed_runtimes()):
        result = by_name.get(f"{first}/{names[path]}")
        if result is not None and result.passes and result.timings_s:
            auto_path = {"runtime": path[0], "precision": path[1], "variant": result.name}
            break

    report: dict[str, Any] = {
        "machine": machine,
        "networks": {name: what for name, (_, _, what) in networks.items()},
        "image_size": size,
        "num_face_crops": num_crops,
        "variants": [asdict(result) for result, _ in variants],
        "auto_path": auto_path,
        "batch_sizes": list(batch_sizes),
        "rounds": rounds,
        "peak_rss_gb": peak_rss_gb,  # of this process while timing the table (None where unknown)
    }
    if latency:
        report["photo_latency_ms"] = measure_photo_latency(first_model, first_processor, Path(faces_dir),
                                                           max(rounds, 10), threads, workdir, log)  # fmt: skip
    if whole_process:
        report["whole_process"] = measure_whole_process(first_model, first_processor, Path(faces_dir), authors,
                                                        whole_process_crops, workdir, log)  # fmt: skip
    peak_fp32 = measure_peak_matmul_flops(torch.float32)
    peak_bf16 = measure_peak_matmul_flops(torch.bfloat16)
    flops_per_image = 2.0 * MAXVIT_T_GMACS * 1e9 * (size / 224) ** 2
    report["peak_matmul_flops"] = {"fp32": peak_fp32, "bf16": peak_bf16}
    report["flops_per_image"] = flops_per_image
    report["roofline_images_per_s"] = {"fp32": peak_fp32 / flops_per_image, "bf16": peak_bf16 / flops_per_image}
    return report


def latency_detectors(detector_model: str | os.PathLike | None = None) -> tuple[list[Any], str | None]:
    """The face detectors the latency rows are measured with: YuNet (when its model file can be had, see
    ``cage.face_detection_cage.resolve_yunet_model``) and dlib; plus why YuNet is missing, or ``None``."""
    from ..face_detection_cage import create_face_detector

    detectors, missing = [], None
    try:
        detectors.append(create_face_detector("yunet", model_path=detector_model))
    except (FileNotFoundError, ImportError, ValueError) as error:
        missing = str(error).split("; ", 1)[0]
    detectors.append(create_face_detector("dlib"))
    return detectors, missing


def measure_photo_latency(
    model: Any, processor: Any, faces_dir: Path, rounds: int, threads: int | None, workdir: Path, log: Callable,
    detector_model: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """Photo file -> JSON text (decode, detection, crop, predict with batch 1, serialise) for ``obama.jpg`` (one
    face), warm (the first call is not timed): median and p90 milliseconds per detector (YuNet where its file
    can be had, and dlib) and runtime path, which path ``cage webcam`` (``--runtime auto``, timing the working
    paths on one frame) picks here, and the fastest row.

    Returns:
        ``{"photo", "paths": {"<runtime> <precision>, <detector>": {"median_ms", "p90_ms"} or {"error"}},
        "yunet_unavailable": reason or None, "webcam_auto", "lowest_latency"}``.
    """
    from ..face_analysis_cage import FaceExpressionAnalyzer
    from ..inference.predict import predict_paths
    from ..runtimes.select import cpu_features, installed_runtimes, load_runner, runtime_candidates

    photo = faces_dir / "obama.jpg"
    cache = workdir / "cache"  # the graphs converted for the throughput runs
    paths = runtime_candidates(cpu_features(), installed_runtimes())
    if ("torch", "fp32") in paths and ("torch", "bf16") not in paths:
        paths.insert(paths.index(("torch", "fp32")), ("torch", "bf16"))  # measured even where not native
    detectors, missing = latency_detectors(detector_model)
    results: dict[str, Any] = {"photo": photo.name, "paths": {}, "yunet_unavailable": missing}
    for runtime, precision in paths:
        try:
            runner, _, used = load_runner(model, runtime, precision, latency=True, threads=threads, cache_dir=cache)
        except Exception as error:  # reported, not fatal
            for detector in detectors:
                results["paths"][f"{runtime} {precision}, {detector.name}"] = {"error": error_line(error)}
            continue
        for detector in detectors:
            key = f"{runtime} {precision}, {detector.name}"
            analyzer = FaceExpressionAnalyzer(runner, processor, detector=detector, device="cpu", batch_size=1,
                                              precision=used)  # fmt: skip
            times = []
            for index in range(rounds + 1):
                start = time.perf_counter()
                json.dumps([result.to_dict() for result in predict_paths(analyzer, [photo])])
                if index:  # the first call warms up
                    times.append(time.perf_counter() - start)
            times.sort()
            results["paths"][key] = {
                "median_ms": 1000 * statistics.median(times),
                "p90_ms": 1000 * times[min(len(times) - 1, int(round(0.9 * (len(times) - 1))))],
            }
            log(f"photo -> JSON, {key}: {results['paths'][key]}")
    _, runtime, precision = load_runner(model, latency=True, threads=threads, cache_dir=cache)
    results["webcam_auto"] = f"{runtime} {precision}"
    timed = {k: v["median_ms"] for k, v in results["paths"].items() if "median_ms" in v}
    results["lowest_latency"] = min(timed, key=timed.get) if timed else None
    return results


def run_latency_benchmark(
    model_dir: str | Path | None, faces_dir: str | Path, rounds: int = 20, threads: int | None = None,
    detector_model: str | os.PathLike | None = None, log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Only the photo -> JSON latency rows (``cage bench --latency-only``) for a saved model (``None``: the model
    bundled with cage): ``{"machine", "model", "photo_latency_ms"}`` (see [`measure_photo_latency`])."""
    from ..model_folder import default_model, load_model_and_processor

    if threads:
        torch.set_num_threads(threads)
    machine = machine_info(threads)
    log(hardware_line(machine))
    name = default_model(model_dir)
    model, processor = load_model_and_processor(name)
    workdir = Path(tempfile.mkdtemp(prefix="cage-bench-"))
    latency = measure_photo_latency(model, processor, Path(faces_dir), rounds, threads, workdir, log, detector_model)
    return {"machine": machine, "model": name, "photo_latency_ms": latency}


def latency_table(latency: dict[str, Any]) -> list[str]:
    """Markdown lines of the photo -> JSON latency rows (one per runtime path and detector)."""
    lines = [f"| photo -> JSON, one face ({latency['photo']}), batch 1, warm: path, detector | median (ms) | "
             "p90 (ms) |", "|---|---|---|"]  # fmt: skip
    for key, row in latency["paths"].items():
        if "error" in row:
            lines.append(f"| {key} | unavailable: {row['error'][:70]} | |")
        else:
            lines.append(f"| {key} | {row['median_ms']:.0f} | {row['p90_ms']:.0f} |")
    lines.append("")
    if latency.get("yunet_unavailable"):
        lines.append(f"YuNet not measured: {latency['yunet_unavailable']}.")
    lines.append(f"`cage webcam` (`--runtime auto`: the working path fastest on one frame) uses "
                 f"{latency['webcam_auto']}; the lowest median latency measured: {latency['lowest_latency']}.")  # fmt: skip
    return lines


AUTHORS_SCRIPT = '''"""Emulation of the CAGE authors' inference: torchvision maxvit_t + their head, eager fp32."""
import glob, json, sys
import torch
from PIL import Image
from torch import nn
from torchvision import transforms
from torchvision.models import maxvit_t

folder, weights, num_labels = sys.argv[1], sys.argv[2], int(sys.argv[3])
state = torch.load(weights, weights_only=True)
net = maxvit_t()
net.classifier = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.LayerNorm(512), nn.Linear(512, 512),
                               nn.Tanh(), nn.Linear(512, state["classifier.5.weight"].shape[0], bias=False))
net.load_state_dict(state)
net.eval()
transform = transforms.Compose([transforms.Resize((224, 224)), transforms.ToTensor(),
                                transforms.Normalize(MEAN, STD)])
files = sorted(glob.glob(folder + "/*.jpg"))
with torch.no_grad():
    for start in range(0, len(files), 32):
        batch = files[start:start + 32]
        out = net(torch.stack([transform(Image.open(f).convert("RGB")) for f in batch]))
        for name, row in zip(batch, out):
            print(json.dumps({"file": name, "expression": int(row[:num_labels].argmax()),
                              "valence": float(row[num_labels]), "arousal": float(row[num_labels + 1])}))
'''


def measure_whole_process(
    model: Any, processor: Any, faces_dir: Path, authors: torch.nn.Module, count: int, workdir: Path, log: Callable
) -> dict[str, Any]:
    """Wall-clock seconds of two subprocesses on ``count`` face crops (224 px JPEGs made from the shared photos'
    faces, mirrored and cycled), start-up included: ``cage predict DIR --detector none --batch-size 32`` with
    its defaults (``--runtime auto``) on ``model`` saved as a folder, and the authors' script (eager fp32,
    batch 32, weights loaded from a state dict). The first cage run converts the model into the cache and is
    reported apart; then the two alternate, ``rounds`` = 2 each, medians compared (the later cage runs take
    the fast start, ``cage.inference.fast_start``, when the first one ran on OpenVINO). How each cage run
    ran is read from its summary line (``cage_engine``, ``first_cage_engine``)."""
    from ..model_folder import save_model_folder

    crops_dir = workdir / "crops"
    crops_dir.mkdir(exist_ok=True)
    faces = _detected_crops(processor, faces_dir)
    for index in range(count):
        face = faces[index % len(faces)].resize((224, 224))
        if (index // len(faces)) % 2:
            face = face.transpose(0)  # mirror every other cycle
        face.save(crops_dir / f"face_{index:03d}.jpg", quality=95)
    model_dir = save_model_folder(model, processor, workdir / "model")
    weights = workdir / "authors.pt"
    torch.save(authors.state_dict(), weights)
    script = workdir / "authors_inference.py"
    script.write_text(AUTHORS_SCRIPT.replace("MEAN", repr(IMAGENET_MEAN)).replace("STD", repr(IMAGENET_STD)))
    env = {**os.environ, "CAGE_CACHE": str(workdir / "whole-process-cache"), "HF_HUB_OFFLINE": "1"}  # cold
    src = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    commands = {
        "authors": [sys.executable, str(script), str(crops_dir), str(weights), str(model.config.num_labels)],
        "cage": [sys.executable, "-m", "cage", "predict", str(crops_dir), "--model", str(model_dir), "--detector",
                 "none", "--batch-size", "32", "--format", "jsonl", "--no-progress"],
    }  # fmt: skip

    engines: dict[str, str] = {}

    def timed(name: str) -> float:
        start = time.perf_counter()
        done = subprocess.run(commands[name], capture_output=True, text=True, env=env)
        elapsed = time.perf_counter() - start
        lines = done.stdout.strip().splitlines()
        if done.returncode != 0 or len(lines) != count:
            raise RuntimeError(f"{name} failed (exit {done.returncode}, {len(lines)} lines): {done.stderr[-500:]}")
        if name == "cage":  # the summary line says how the network ran ("; openvino bf16, fast start; detector ...")
            summary = done.stderr.strip().splitlines()[-1]
            engines["first" if "first" not in engines else "timed"] = summary.split("; ")[1]
        return elapsed

    result: dict[str, Any] = {"crops": count, "first_cage_run_s": timed("cage")}
    log(f"whole process: first cage run (converts into the cache) {result['first_cage_run_s']:.1f} s")
    times: dict[str, list[float]] = {"authors": [], "cage": []}
    for _ in range(2):
        for name in ("authors", "cage"):
            times[name].append(timed(name))
    result.update({f"{name}_s": statistics.median(values) for name, values in times.items()})
    result["ratio"] = result["authors_s"] / result["cage_s"]
    result["cage_engine"], result["first_cage_engine"] = engines.get("timed"), engines.get("first")
    isolated = [sys.executable, "-c", "import sys; from cage.bench.benchmark import isolated_pair_main; "
                "isolated_pair_main(sys.argv[1:])", str(model_dir), str(weights), str(model.config.num_outputs), "32",
                "5"]  # fmt: skip
    done = subprocess.run(isolated, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"isolated pair failed (exit {done.returncode}): {done.stderr[-500:]}")
    result["isolated_pair"] = json.loads(done.stdout.strip().splitlines()[-1])
    log(f"isolated pair at batch 32: {result['isolated_pair']}")
    startup = [sys.executable, "-m", "cage", "--help"]
    start = time.perf_counter()
    subprocess.run(startup, capture_output=True, env=env, check=True)
    result["cage_help_s"] = time.perf_counter() - start
    log(f"whole process: authors {result['authors_s']:.1f} s, cage {result['cage_s']:.1f} s -> {result['ratio']:.2f}x")
    return result


def _peak_rss_gb() -> float | None:
    """This process's peak resident memory in GB (Linux and macOS), or ``None``."""
    try:
        import resource
    except ImportError:
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return peak / (1 << 30) if sys.platform == "darwin" else peak / (1 << 20)


def isolated_pair_main(argv: list[str]) -> None:
    """``MODEL_DIR AUTHORS_WEIGHTS NUM_OUTPUTS BATCH ROUNDS``: in a fresh process (run by
    [`measure_whole_process`]), time the authors' network (eager fp32, their weights file) and the path
    ``--runtime auto`` takes for ``MODEL_DIR`` (from the cache in ``$CAGE_CACHE``), alternating, after one
    warm-up each, on the same random batch; print one JSON line with the median images/s of both and their
    ratio. The main table times every variant in one process, where the many compiled graphs and sessions
    (16 GB resident in one run on 2 cores) slow PyTorch's large allocations; this pair shows the default
    path's ratio without that."""
    from ..model_folder import load_model_and_processor
    from ..runtimes.select import load_runner
    from ..runtimes.torch_variants import TorchRunner

    model_dir, weights, num_outputs, batch, rounds = argv[0], argv[1], int(argv[2]), int(argv[3]), int(argv[4])
    authors = build_authors_network(num_outputs).eval()
    authors.load_state_dict(torch.load(weights, weights_only=True))
    model = load_model_and_processor(model_dir)[0]
    runner, runtime, precision = load_runner(model)
    if runtime == "torch":
        bf16 = precision == "bf16"
        runner = TorchRunner(model, autocast_dtype=torch.bfloat16 if bf16 else None, channels_last=bf16)
    generator = torch.Generator().manual_seed(1)
    size = model.config.image_size  # the authors' network takes 224 px, as does the default config
    inputs, authors_inputs = (torch.randn(batch, 3, side, side, generator=generator) for side in (size, 224))
    calls = {"authors": lambda: authors(authors_inputs), "default": lambda: runner(pixel_values=inputs)}
    times: dict[str, list[float]] = {"authors": [], "default": []}
    with torch.inference_mode():
        for index in range(rounds + 1):
            for name, call in calls.items():
                start = time.perf_counter()
                call()
                if index:  # the first round warms up
                    times[name].append(time.perf_counter() - start)
    speed = {name: batch / statistics.median(values) for name, values in times.items()}
    print(json.dumps({"path": f"{runtime} {precision}", "batch": batch, "rounds": rounds,
                      "authors_images_per_s": speed["authors"], "default_images_per_s": speed["default"],
                      "ratio": speed["default"] / speed["authors"]}))  # fmt: skip


def markdown_table(report: dict[str, Any]) -> str:
    """The report as Markdown: the hardware line, the variant table (ratios to the reference first), the auto
    choice, the whole-process ratio and the photo latency per path."""
    variants = [VariantResult(**v) for v in report["variants"]]
    reference = next(v for v in variants if v.kind == "reference")
    batches = report["batch_sizes"]
    big = max(batches)
    ref_tp = reference.throughput(big)
    lines = [hardware_line(report["machine"]), ""]
    lines.append(
        f"| variant | x authors @{big} | images/s @{big} | images/s @1 | latency @1 median / p90 (ms) "
        f"| argmax agreement | max abs dVA | passes | % fp32 / bf16 roofline @{big} |"
    )
    lines.append("|" + "---|" * 9)
    roofline = report["roofline_images_per_s"]

    def bf16_share(images_per_s: float) -> str:  # n/a where bf16 matrix products are slower than fp32 (emulated)
        if roofline["bf16"] < roofline["fp32"]:
            return "n/a"
        return f"{100 * images_per_s / roofline['bf16']:.0f} %"
    for v in variants:
        if v.error:
            lines.append(f"| {v.name} | unavailable: {v.error[:70]} | | | | | | | |")
            continue
        tp, tp1 = v.throughput(big), v.throughput(1) if 1 in batches else None
        ratio = tp / ref_tp if ref_tp and tp else float("nan")
        agreement = "reference" if v.argmax_agreement is None else f"{100 * v.argmax_agreement:.0f} %"
        delta = "" if v.max_abs_delta_va is None else f"{v.max_abs_delta_va:.1e}"
        passes = "" if v.passes is None else ("yes" if v.passes else "no")
        lat = f"{v.latency_ms(1, 0.5):.0f} / {v.latency_ms(1, 0.9):.0f}" if tp1 else ""
        lines.append(
            f"| {v.name} | {ratio:.2f} | {tp:.2f} | {f'{tp1:.2f}' if tp1 else ''} | {lat} | {agreement} | {delta} "
            f"| {passes} | {100 * tp / roofline['fp32']:.0f} % / {bf16_share(tp)} |"
        )
    lines.append("")
    auto = report.get("auto_path")
    if auto:
        chosen = next(v for v in variants if v.name == auto["variant"])
        lines.append(
            f"**Default path** (`--runtime auto` here): {auto['runtime']} {auto['precision']} = `{auto['variant']}`: "
            f"**{chosen.throughput(big) / ref_tp:.2f}x** the authors' eager fp32 at batch {big}."
        )
    whole = report.get("whole_process")
    if whole:
        lines.append(
            f"**Whole process** ({whole['crops']} face crops, start-up included; medians of 2 alternating runs): "
            f"authors' script {whole['authors_s']:.1f} s, `cage predict DIR --detector none --batch-size 32` "
            f"{whole['cage_s']:.1f} s ({whole.get('cage_engine')}): **{whole['ratio']:.2f}x**. First cage run "
            f"(converts the model into the cache once; {whole.get('first_cage_engine')}): "
            f"{whole['first_cage_run_s']:.1f} s. `cage --help`: {whole['cage_help_s']:.2f} s."
        )
    pair = (whole or {}).get("isolated_pair")
    if pair:
        lines.append(
            f"**Default path alone** (a fresh process holding only the authors' network and the path `--runtime "
            f"auto` takes, {pair['path']}; batch {pair['batch']}, medians of {pair['rounds']} alternating calls): "
            f"authors {pair['authors_images_per_s']:.2f} images/s, default path {pair['default_images_per_s']:.2f} "
            f"images/s: **{pair['ratio']:.2f}x**. The table above holds every variant in one process "
            f"({report.get('peak_rss_gb') or float('nan'):.0f} GB resident at its peak), which slows PyTorch's "
            "eager rows; this pair is the fair ratio."
        )
    latency = report.get("photo_latency_ms")
    if latency:
        lines += [""] + latency_table(latency)
    peaks = report["peak_matmul_flops"]
    lines.append("")
    lines.append(
        f"Peak matmul: fp32 {peaks['fp32'] / 1e9:.0f} GFLOP/s, bf16 {peaks['bf16'] / 1e9:.0f} GFLOP/s; "
        f"MaxViT-T needs {report['flops_per_image'] / 1e9:.1f} GFLOP per image, so the roofline is "
        f"{roofline['fp32']:.1f} images/s (fp32) and {roofline['bf16']:.1f} images/s (bf16). "
        f"{report['num_face_crops']} real face crops for agreement; {report['rounds']} interleaved rounds. Networks: "
        + "; ".join(f"{name} = {what}" for name, what in report["networks"].items())
        + ". Random weights (seed 0)."
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
