"""``cage bench``: the command line of [`cage.bench.benchmark`] (light: nothing heavy is imported here)."""

from __future__ import annotations

import argparse
import sys


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
    bench.add_argument(
        "--latency-only",
        action="store_true",
        help="only photo -> JSON latency per runtime path and detector (YuNet where its file can be had, and "
        "dlib), of --model (default: the model bundled with cage)",
    )
    bench.add_argument("--detector-model", default=None, help="YuNet's ONNX file for the latency rows")
    bench.add_argument("--crops", type=int, default=96, help="face crops for the whole-process run (default: 96)")
    bench.add_argument("--threads", type=int, default=None, help="torch/ONNX Runtime/OpenVINO threads")
    bench.add_argument("--output-dir", default="benchmark-results", help="where benchmark.json/.md go")
    bench.set_defaults(handler=_run_bench)


def _run_bench(args: argparse.Namespace) -> int:
    from .benchmark import markdown_table, run_benchmark, write_report

    if args.latency_only:
        return _run_latency_only(args)
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


def _run_latency_only(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from .benchmark import hardware_line, latency_table, run_latency_benchmark

    report = run_latency_benchmark(args.model, args.faces, rounds=max(args.rounds, 20), threads=args.threads,
                                   detector_model=args.detector_model,
                                   log=lambda message: print(message, file=sys.stderr, flush=True))  # fmt: skip
    text = "\n".join([hardware_line(report["machine"]), "", f"Model: {report['model']}", ""]
                      + latency_table(report["photo_latency_ms"]))  # fmt: skip
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "latency.json").write_text(json.dumps(report, indent=2))
    (out / "latency.md").write_text(text + "\n")
    print(text)
    print(f"cage bench: wrote {out / 'latency.json'} and {out / 'latency.md'}", file=sys.stderr)
    return 0
