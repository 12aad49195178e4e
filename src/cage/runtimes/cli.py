"""``cage export onnx``."""

from __future__ import annotations

import argparse
import sys

from . import EXACT_TOLERANCE


def add_export_parser(subparsers: argparse._SubParsersAction) -> None:
    export = subparsers.add_parser("export", help="export a model to another runtime")
    formats = export.add_subparsers(dest="format", required=True, metavar="FORMAT")
    onnx = formats.add_parser(
        "onnx",
        help="export to ONNX and check parity with PyTorch",
        description="Export a CAGE model to ONNX (input pixel_values; outputs logits, regression) and check "
        f"it against PyTorch fp32 with ONNX Runtime: max |delta| must be <= {EXACT_TOLERANCE:.0e}, else the exit code "
        "is 1.",
    )
    onnx.add_argument("model", help="model folder or Hub repo id")
    onnx.add_argument("--out", required=True, help="the .onnx file to write")
    onnx.add_argument("--opset", type=int, default=18, help="ONNX opset (default: %(default)s)")
    onnx.add_argument("--dynamic-batch", action="store_true", help="make the batch axis dynamic")
    onnx.set_defaults(handler=_run_export_onnx)


def _run_export_onnx(args: argparse.Namespace) -> int:
    from ..model_folder import ModelLoadError, load_model_and_processor
    from .onnx import export_onnx

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
        f"(tolerance {EXACT_TOLERANCE:.0e})",
        file=sys.stderr,
    )
    return 0 if report.passed else 1
