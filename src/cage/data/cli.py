"""``cage prepare affectnet|emotic ROOT --out DIR``: parser and handler (registered by ``cage.cli``)."""

from __future__ import annotations

import argparse
import sys

EXIT_OK = 0
EXIT_USAGE = 2


def add_prepare_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``cage prepare`` with its ``affectnet`` and ``emotic`` subcommands."""
    prepare = subparsers.add_parser(
        "prepare",
        help="turn an AffectNet or EMOTIC copy on disk into a Hugging Face dataset",
        description="Read a licensed AffectNet or EMOTIC copy in any of its usual on-disk layouts, check every "
        "example, and save a DatasetDict (train/validation/test) that datasets.load_from_disk reads. Problems "
        "(missing or corrupt images, labels out of range, boxes outside the image, NaN labels) are counted, "
        "summarised on stderr and written to DIR/cage_report.jsonl; class statistics go to DIR/cage_stats.json "
        "and every split's info.description.",
    )
    datasets_parsers = prepare.add_subparsers(dest="dataset", required=True, metavar="DATASET")

    affectnet = datasets_parsers.add_parser(
        "affectnet",
        help="AffectNet (2017 release, cropped release or flat number,exp,val,aro CSV)",
        description="AffectNet -> train (minus the hold-out), validation (stratified, seeded hold-out of the "
        "training set) and test (AffectNet's official validation set).",
    )
    affectnet.add_argument("root", help="the AffectNet folder")
    affectnet.add_argument("--classes", type=int, default=8, choices=[8, 7], help="AffectNet-8 or -7 (no Contempt)")
    affectnet.add_argument("--val-fraction", type=float, default=0.05, help="hold-out share (default: %(default)s)")
    affectnet.add_argument("--seed", type=int, default=0, help="seed of the hold-out split")
    affectnet.add_argument(
        "--layout", default="auto", choices=["auto", "release2017", "cropped", "flat-csv"], help="default: detect"
    )
    _add_common(affectnet)
    affectnet.set_defaults(handler=_run_prepare_affectnet)

    emotic = datasets_parsers.add_parser(
        "emotic",
        help="EMOTIC (Annotations/Annotations.mat or the preprocessed train/val/test CSVs)",
        description="EMOTIC -> one example per annotated person (body-box crop), train/validation/test as "
        "EMOTIC splits them; validation and test use the combined annotations.",
    )
    emotic.add_argument("root", help="the EMOTIC folder (with Annotations/ and emotic/, or the CSVs)")
    emotic.add_argument("--layout", default="auto", choices=["auto", "mat", "csv"], help="default: detect")
    emotic.add_argument("--images", default=None, help="folder the annotations' Folder/Filename are relative to")
    _add_common(emotic)
    emotic.set_defaults(handler=_run_prepare_emotic)


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="output folder (datasets.load_from_disk reads it)")
    parser.add_argument("--num-proc", type=int, default=None, help="processes decoding and cropping images")
    parser.add_argument(
        "--crop-format",
        default="jpeg",
        choices=["jpeg", "png"],
        help="encoding of re-encoded (cropped) images: jpeg (quality 95, default) or png (lossless, ~4x larger)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty --out folder")
    parser.add_argument("--report", default=None, help="also write the problem report (JSON lines) here")
    parser.add_argument("--push-to-hub", default=None, metavar="REPO", help="upload to this Hub dataset repo")
    parser.add_argument("--public", action="store_true", help="make the --push-to-hub repo public (default: private)")


def _run(prepare, args: argparse.Namespace, **kwargs) -> int:
    from .build import PrepareError
    from .stats import REPORT_FILE

    try:
        loaded, _, problems = prepare(
            args.root,
            args.out,
            num_proc=args.num_proc,
            crop_format=args.crop_format,
            overwrite=args.overwrite,
            report_path=args.report,
            push_to_hub=args.push_to_hub,
            private=not args.public,
            **kwargs,
        )
    except (PrepareError, OSError) as error:
        print(f"cage prepare: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    print(problems.summary({name: len(split) for name, split in loaded.items()}), file=sys.stderr)
    print(f"cage prepare: wrote {args.out} (problem report: {args.out}/{REPORT_FILE})", file=sys.stderr)
    return EXIT_OK


def _run_prepare_affectnet(args: argparse.Namespace) -> int:
    from .affectnet import prepare_affectnet

    return _run(
        prepare_affectnet,
        args,
        classes=args.classes,
        val_fraction=args.val_fraction,
        seed=args.seed,
        layout=args.layout,
    )


def _run_prepare_emotic(args: argparse.Namespace) -> int:
    from .emotic import prepare_emotic

    return _run(prepare_emotic, args, layout=args.layout, images=args.images)
