"""The ``cage`` command line: a thin layer over library functions that the tests also call.

    cage init-model DIR [--backbone NAME] [--image-size N] [--backbone-kwargs JSON] [--labels ...]
    cage predict INPUT... --model DIR_OR_REPO [--format json|jsonl|csv] [--detector dlib|yunet|none] ...
    cage webcam --model DIR_OR_REPO [--camera 0] ...
    cage prepare affectnet|emotic ROOT --out DIR [...]   (cage.data)
    cage calibrate-framing DATASET [--split train] [--sample N]   (cage.data)
    cage train --data DIR --output-dir OUT [...]          (cage.training)
    cage evaluate --model M --data DIR [--split test]     (cage.evaluation)
    cage push MODEL_DIR --repo-id ID [--dry-run DIR]      (cage.hub)
    cage convert-authors-checkpoint model.pt --variant V --out DIR   (cage.hub)
    cage export onnx MODEL --out FILE [--dynamic-batch]   (cage.runtimes)
    cage bench [--model DIR]                              (cage.bench)
    cage reproduce affectnet|emotic ROOT --out RUN_DIR    (cage.reproduce: prepare -> train x2 -> card -> Hub)

Fast start (``cage --help`` imports neither torch nor transformers; tests/test_cli_startup.py checks it).
The rule for every CLI module (``cli.py``, ``*/cli.py``) and for the package ``__init__`` files on the way:
import only the standard library at module level and while building parsers (``add_*_parser``); import the
work (torch, transformers, the library modules) inside the handler that runs it::

    def add_foo_parser(subparsers):
        parser = subparsers.add_parser("foo", help="...")
        parser.add_argument("--bar", choices=["a", "b"])   # literal choices, not imported constants
        parser.set_defaults(handler=run_foo)

    def run_foo(args):
        from .foo import do_foo   # heavy imports here
        return do_foo(args.bar)

Package ``__init__`` files export their names lazily (a ``_EXPORTS`` dict and a module ``__getattr__``).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import warnings
from collections.abc import Sequence

from .bench.cli import add_bench_parser
from .data.cli import add_calibrate_parser, add_prepare_parser
from .evaluation.cli import add_evaluate_parser
from .hub import cli as hub_cli
from .inference.cli import add_predict_parser, add_webcam_parser
from .reproduce import add_reproduce_parser
from .runtimes.cli import add_export_parser
from .training.cli import add_train_parser

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report Ctrl-C


def _add_init_model(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "init-model",
        help="write a randomly initialised (untrained) model and processor",
        description="Write an UNTRAINED model (random weights, marked weights_status=untrained) with its "
        "processor, to exercise the pipeline before trained weights exist.",
    )
    parser.add_argument("output_dir", help="folder to write (config.json, model.safetensors, code, processor)")
    parser.add_argument(
        "--backbone",
        default="maxvit_t",
        help="trunk: torchvision's maxvit_t (default; the authors' network) or a timm model name",
    )
    parser.add_argument("--image-size", type=int, default=224, help="square input side in pixels (default: 224)")
    parser.add_argument(
        "--backbone-kwargs", default=None, metavar="JSON",
        help='extra arguments for the backbone\'s constructor, a JSON object (e.g. \'{"window_size": 2}\')',
    )  # fmt: skip
    parser.add_argument("--labels", default="affectnet8", choices=["affectnet8", "affectnet7", "emotic"])
    parser.add_argument("--objective", default="combined", choices=["discrete", "combined", "valence_arousal"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--overwrite", action="store_true", help="replace an existing, non-empty OUTPUT_DIR")
    parser.set_defaults(handler=_run_init_model)


def _run_init_model(args: argparse.Namespace) -> int:
    import json

    from .presets import write_untrained_model

    backbone_kwargs = None
    if args.backbone_kwargs is not None:
        try:
            backbone_kwargs = json.loads(args.backbone_kwargs)
        except json.JSONDecodeError as error:
            raise SystemExit(f"cage init-model: --backbone-kwargs is not valid JSON: {error}") from None
        if not isinstance(backbone_kwargs, dict):
            raise SystemExit("cage init-model: --backbone-kwargs must be a JSON object")
    try:
        path = write_untrained_model(
            args.output_dir,
            labels=args.labels,
            backbone=args.backbone,
            image_size=args.image_size,
            objective=args.objective,
            seed=args.seed,
            backbone_kwargs=backbone_kwargs,
            overwrite=args.overwrite,
        )
    except FileExistsError as error:
        print(f"cage init-model: {error}", file=sys.stderr)
        return EXIT_USAGE
    print(f"wrote an UNTRAINED {args.labels} model ({args.backbone}, {args.image_size} px) to {path}", file=sys.stderr)
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cage", description="CAGE facial expression, valence and arousal inference (Hugging Face models)."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_init_model(subparsers)
    add_predict_parser(subparsers)
    add_webcam_parser(subparsers)
    add_prepare_parser(subparsers)
    add_calibrate_parser(subparsers)
    add_train_parser(subparsers)
    add_evaluate_parser(subparsers)
    hub_cli.add_push_command(subparsers)
    hub_cli.add_convert_authors_checkpoint_command(subparsers)
    add_export_parser(subparsers)
    add_bench_parser(subparsers)
    add_reproduce_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING, format="%(levelname)s: %(message)s")
    # huggingface_hub prints its warnings through its own handler; propagating them too printed each twice
    logging.getLogger("huggingface_hub").propagate = False
    # Once-per-model notes of long steps (the first OpenVINO conversion): shown as plain lines
    progress = logging.getLogger("cage.progress")
    if not progress.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        progress.addHandler(handler)
        progress.setLevel(logging.INFO)
        progress.propagate = False
    if not args.verbose:  # no transformers/Hub progress bars; read when they are imported (not here: fast start)
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        # Python warnings (e.g. a detector the model's framing was not measured with) as one line, like the logs,
        # not with the source file and line the default format adds
        warnings.formatwarning = lambda message, category, filename, lineno, line=None: f"WARNING: {message}\n"
    try:
        return args.handler(args)
    except KeyboardInterrupt:  # Ctrl-C: one line, the shell's code for SIGINT; partial outputs are removed
        hint = " (rerun with --resume to continue)" if getattr(args, "resume", False) else ""
        print(f"cage {args.command}: interrupted{hint}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as error:
        if not _is_usage_error(error):
            raise
        print(f"cage {args.command}: {error}", file=sys.stderr)
        return EXIT_USAGE


# Errors that mean "the command line names something unusable" (a model that cannot be loaded, a dataset
# folder that cannot be prepared, an option whose optional extra is not installed): every command reports them as one line and exit code 2, whichever handler
# let them through. Looked up by module so that this file imports nothing heavy.
USAGE_ERRORS = (
    ("cage.model_folder", "ModelLoadError"),
    ("cage.data.build", "PrepareError"),
    ("cage.extras", "MissingExtraError"),  # an optional extra a command needs is not installed
)


def _is_usage_error(error: BaseException) -> bool:
    for module_name, class_name in USAGE_ERRORS:
        cls = getattr(sys.modules.get(module_name), class_name, None)
        if cls is not None and isinstance(error, cls):
            return True
    return False


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
