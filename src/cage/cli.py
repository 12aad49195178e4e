"""The ``cage`` command line: a thin layer over library functions that the tests also call.

    cage init-model DIR [--backbone NAME] [--image-size N] [--labels affectnet8|affectnet7|emotic]
    cage predict IMAGE... --model DIR_OR_REPO [--format json|jsonl|csv] [--detector dlib|none]
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Sequence

EXIT_OK = 0
EXIT_INPUT_ERRORS = 1  # some inputs could not be processed; the others were
EXIT_USAGE = 2


def _add_init_model(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "init-model",
        help="write a randomly initialised (untrained) model and processor",
        description="Write an UNTRAINED model (random weights, marked weights_status=untrained) with its "
        "processor, to exercise the pipeline before trained weights exist.",
    )
    parser.add_argument("output_dir", help="folder to write (config.json, model.safetensors, code, processor)")
    parser.add_argument("--backbone", default="maxvit_tiny_tf_224", help="timm model name (default: %(default)s)")
    parser.add_argument("--image-size", type=int, default=224, help="square input side in pixels (default: 224)")
    parser.add_argument("--labels", default="affectnet8", choices=["affectnet8", "affectnet7", "emotic"])
    parser.add_argument("--objective", default="combined", choices=["discrete", "combined", "valence_arousal"])
    parser.add_argument("--seed", type=int, default=0)
    parser.set_defaults(handler=_run_init_model)


def _run_init_model(args: argparse.Namespace) -> int:
    from .presets import write_untrained_model

    path = write_untrained_model(
        args.output_dir,
        labels=args.labels,
        backbone=args.backbone,
        image_size=args.image_size,
        objective=args.objective,
        seed=args.seed,
    )
    print(f"wrote an UNTRAINED {args.labels} model ({args.backbone}, {args.image_size} px) to {path}", file=sys.stderr)
    return EXIT_OK


def _add_predict(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "predict",
        help="expression, valence and arousal for every face in images",
        description="Detect the faces in each image, crop them as the model was trained, and print per image "
        "a list of faces: box [x, y, w, h] (pixels of the original image), expression, probabilities, "
        "valence and arousal (clamped to [-1, 1]). Unreadable files are reported by name; the others are "
        "still processed and the exit code is 1.",
    )
    parser.add_argument("images", nargs="+", help="image files")
    parser.add_argument("--model", required=True, help="model folder or Hub repo id")
    parser.add_argument("--format", default="json", choices=["json", "jsonl"], help="output format")
    parser.add_argument(
        "--detector", default=None, choices=["dlib", "none"], help="face detector; none = inputs are face crops"
    )
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    parser.add_argument("--batch-size", type=int, default=32, help="face crops per forward pass")
    parser.set_defaults(handler=_run_predict)


def _run_predict(args: argparse.Namespace) -> int:
    from .inference import ModelLoadError, load_analyzer, predict_paths

    try:
        analyzer = load_analyzer(args.model, detector=args.detector, device=args.device, batch_size=args.batch_size)
    except (ModelLoadError, ValueError, ImportError) as error:
        print(f"cage predict: {error}", file=sys.stderr)
        return EXIT_USAGE
    started = time.perf_counter()
    results, failures, faces = [], 0, 0
    for result in predict_paths(analyzer, args.images):
        if result.error:
            failures += 1
            print(f"cage predict: error: {result.error}", file=sys.stderr)
        faces += len(result.faces)
        if args.format == "jsonl":
            print(json.dumps(result.to_dict()), flush=True)
        else:
            results.append(result.to_dict())
    if args.format == "json":
        print(json.dumps(results, indent=2))
    elapsed = time.perf_counter() - started
    print(
        f"cage predict: {len(args.images)} images, {faces} faces, {failures} failed, {elapsed:.1f} s",
        file=sys.stderr,
    )
    return EXIT_INPUT_ERRORS if failures else EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cage", description="CAGE facial expression, valence and arousal inference (Hugging Face models)."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_init_model(subparsers)
    _add_predict(subparsers)
    from .runtimes.cli import add_bench_parser, add_export_parser

    add_export_parser(subparsers)
    add_bench_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING, format="%(levelname)s: %(message)s")
    if not args.verbose:
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()
    return args.handler(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
