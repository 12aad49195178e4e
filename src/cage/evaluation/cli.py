"""``cage evaluate``: metrics (and plots) of a saved model on a split of a prepared dataset.

Single process: ``cage evaluate --model M --data DIR``. Several processes or GPUs:
``accelerate launch -m cage evaluate --model M --data DIR`` (same metrics).
"""

from __future__ import annotations

import argparse
import json
import sys


def add_evaluate_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="metrics of a model on a prepared dataset split",
        description="Expression accuracy, macro/weighted P/R/F1 and confusion matrix; per valence/arousal"
        "(/dominance) RMSE, MAE, PCC, CCC, SAGR; the paper's pooled valence+arousal RMSE/MSE/MAE/CCC; EMOTIC "
        "mAP and top-3 accuracy. Prints the metrics JSON.",
    )
    parser.add_argument("--model", default=None, help="model folder or Hub repo id (default: the bundled FER+ model)")
    parser.add_argument(
        "--trust-remote-code", action="store_true", help="let the model folder run its own code (off by default)"
    )
    parser.add_argument("--data", required=True, help="prepared dataset folder (`cage prepare`) or Hub dataset id")
    parser.add_argument("--split", default="test", help="split to evaluate (default: %(default)s)")
    parser.add_argument("--output", default=None, help="write the metrics JSON here")
    parser.add_argument("--plots", default=None, help="write confusion matrix, circumplex and error CDF PNGs here")
    parser.add_argument("--batch-size", type=int, default=64, help="per device (default: %(default)s)")
    parser.add_argument("--num-workers", type=int, default=0)
    parser.add_argument("--mixed-precision", default="no", choices=["no", "bf16", "fp16"])
    parser.set_defaults(handler=run_evaluate)


def run_evaluate(args: argparse.Namespace) -> int:
    from ..model_folder import ModelLoadError
    from ..files import output_path_problem
    from .metrics import to_json_ready
    from .runner import evaluate_model

    problem = output_path_problem(args.output) if args.output else None
    if problem:  # checked before the (long) evaluation, not when writing
        print(f"cage evaluate: {problem}", file=sys.stderr)
        return 2
    try:
        metrics = evaluate_model(
            args.model,
            args.data,
            split=args.split,
            batch_size=args.batch_size,
            num_workers=args.num_workers,
            output=args.output,
            plots=args.plots,
            mixed_precision=args.mixed_precision,
            trust_remote_code=args.trust_remote_code,
        )
    except (ModelLoadError, ValueError, FileNotFoundError) as error:
        print(f"cage evaluate: {error}", file=sys.stderr)
        return 2
    from accelerate import PartialState

    if PartialState().is_main_process:
        print(json.dumps(to_json_ready(metrics), indent=2, allow_nan=False))
        if metrics.get("skipped_images"):
            print(f"cage evaluate: skipped {metrics['skipped_images']} undecodable image(s)", file=sys.stderr)
    return 0
