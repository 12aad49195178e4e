"""``cage train``: the same as ``scripts/train.py`` (run it under ``accelerate launch`` for several processes)."""

from __future__ import annotations

import argparse
import sys


def add_train_parser(subparsers: argparse._SubParsersAction) -> None:
    from .arguments import add_training_arguments

    parser = subparsers.add_parser(
        "train",
        help="train a CAGE model (the paper's recipe) with Accelerate",
        description="Train on a prepared dataset; defaults are the paper's recipe. Several GPUs: "
        "`accelerate launch -m cage train ...` or `accelerate launch scripts/train.py ...`.",
    )
    add_training_arguments(parser)
    parser.set_defaults(handler=run_train)


def run_train(args: argparse.Namespace) -> int:
    from .arguments import arguments_from_namespace
    from .loop import train

    try:
        train(arguments_from_namespace(args))
    except (ValueError, FileNotFoundError) as error:
        print(f"cage train: {error}", file=sys.stderr)
        return 2
    return 0
