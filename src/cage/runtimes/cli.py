"""``cage export onnx`` and ``cage bench``."""

from __future__ import annotations

import argparse
import sys


def add_export_parser(subparsers: argparse._SubParsersAction) -> None:
    export = subparsers.add_parser("export", help="export a model to another runtime")
    formats = export.add_subparsers(dest="format", required=True, metavar="FORMAT")
    onnx = formats.add_parser(
        "onnx",
        help="export to ONNX and check parity with PyTorch",
        description="Export a CAGE model to ONNX (input pixel_values; outputs logits, regression) and check "
        "it against PyTorch fp32 with ONNX Runtime: max |delta| must be <= 1e-4, else the exit code is 1.",
    )
    onnx.add_argument("model", help="model folder or Hub repo id")
    onnx.add_argument("--out", required=True, help="the .onnx file to write")
    onnx.add_argument("--opset", type=int, default=18, help="ONNX opset (default: %(default)s)")
    onnx.add_argument("--dynamic-batch", action="store_true", help="make the batch axis dynamic")
    onnx.set_defaults(handler=_run_export_onnx)


def _run_export_onnx(args: argparse.Namespace) -> int:
    from ..model_folder import ModelLoadError, load_model_and_processor
    from .onnx import FP32_PARITY_TOLERANCE, export_onnx

    try:
        model, _ = load_model_and_processor(args.model)
    except ModelLoadError as error:
        print(f"cage export onnx: {error}", file=sys.stderr)
        return 2
    report = export_onnx(model, args.out, opset=args.opset, dynamic_batch=args.dynamic_batch)
    verdict = "passed" if report.passed else "FAILED"
    print(
        f"cage export onnx: wrote {report.path}; parity with PyTorch fp32 {verdict}: max |delta| logits "
        f"{report.max_abs_diff_logits:.2e}, regression {report.max_abs_diff_regression:.2e} "
        f"(tolerance {FP32_PARITY_TOLERANCE:.0e})",
        file=sys.stderr,
    )
    return 0 if report.passed else 1


def add_bench_parser(subparsers: argparse._SubParsersAction) -> None:
    bench = subparsers.add_parser(
        "bench",
        help="benchmark inference paths against the authors' implementation",
        description="Time the authors' torchvision MaxViT-T and cage's paths (eager, channels-last, bf16, "
        "OpenVINO fp32/bf16/int8, ONNX Runtime, compile) side by side, interleaved, check their agreement on "
        "real face crops, report which path --runtime auto picks and its ratio, the whole process (cage "
        "predict vs the authors' script, start-up included) and photo -> JSON latency per path. Every table "
        "carries the CPU's name, instruction sets, library versions and threads.",
    )
    bench.add_argument("--model", default=None, help="model folder (default: untrained networks, see the README)")
    bench.add_argument("--faces", default="../shared/faces", help="folder of photos for agreement checks")
    bench.add_argument("--batch-sizes", default="1,32", help="comma-separated (default: %(default)s)")
    bench.add_argument("--rounds", type=int, default=5, help="timed calls per variant and batch size")
    bench.add_argument("--no-compile", action="store_true", help="skip the torch.compile variant")
    bench.add_argument("--no-whole-process", action="store_true", help="skip cage predict vs the authors' script")
    bench.add_argument("--no-latency", action="store_true", help="skip photo -> JSON latency per path")
    bench.add_argument("--crops", type=int, default=96, help="face crops for the whole-process run (default: 96)")
    bench.add_argument("--threads", type=int, default=None, help="torch/ONNX Runtime/OpenVINO threads")
    bench.add_argument("--output-dir", default="benchmark-results", help="where benchmark.json/.md go")
    bench.set_defaults(handler=_run_bench)


def _run_bench(args: argparse.Namespace) -> int:
    from .benchmark import markdown_table, run_benchmark, write_report

    report = run_benchmark(
        model_dir=args.model,
        faces_dir=args.faces,
        batch_sizes=tuple(int(b) for b in args.batch_sizes.split(",")),
        rounds=args.rounds,
        include_compile=not args.no_compile,
        threads=args.threads,
        log=lambda message: print(message, file=sys.stderr, flush=True),
        whole_process=not args.no_whole_process,
        whole_process_crops=args.crops,
        latency=not args.no_latency,
    )
    json_path, md_path = write_report(report, args.output_dir)
    print(markdown_table(report))
    print(f"cage bench: wrote {json_path} and {md_path}", file=sys.stderr)
    return 0
