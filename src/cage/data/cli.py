"""``cage prepare affectnet|emotic ROOT --out DIR``: parser and handler (registered by ``cage.cli``)."""

from __future__ import annotations

import argparse
import sys

EXIT_OK = 0
EXIT_USAGE = 2


def add_prepare_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``cage prepare`` with its ``affectnet``, ``emotic`` and ``ferplus`` subcommands."""
    prepare = subparsers.add_parser(
        "prepare",
        help="turn an AffectNet, EMOTIC or FER+ copy on disk into a Hugging Face dataset",
        description="Read an AffectNet, EMOTIC or FER+ copy in any of its usual on-disk layouts, check every "
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
    affectnet.add_argument(
        "--no-calibrate",
        dest="calibrate",
        action="store_false",
        help="skip framing calibration (measuring how the training crops frame the detector's face box)",
    )
    _add_calibration_options(affectnet, sample_help="training examples measured by framing calibration")
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

    ferplus = datasets_parsers.add_parser(
        "ferplus",
        help="FER+ (Microsoft's FER2013Train/FER2013Valid folders, or Kaggle's fer2013.csv + fer2013new.csv)",
        description="FER+ -> train (FER2013 Training), validation (FER2013Valid / PublicTest: model selection) and "
        "test (FER2013Test / PrivateTest, where present). Keeps the 10 votes, the majority label of the FER+ "
        "protocol (-1 where there is none) and the cross-entropy-mode soft label, both in AffectNet-8 names and "
        "order; valence/arousal are DERIVED from the votes and AffectNet's class centroids (not human ratings).",
    )
    ferplus.add_argument("root", help="the FER+ folder")
    ferplus.add_argument("--layout", default="auto", choices=["auto", "folders", "csv"], help="default: detect")
    ferplus.add_argument("--seed", type=int, default=0, help="seed of the framing calibration sample")
    _add_common(ferplus, crop_format=False)
    ferplus.add_argument(
        "--no-calibrate",
        dest="calibrate",
        action="store_false",
        help="skip framing calibration (measuring how the FER+ crops frame the detector's face box)",
    )
    _add_calibration_options(ferplus, sample_help="training faces measured by framing calibration")
    ferplus.set_defaults(handler=_run_prepare_ferplus)


def _add_calibration_options(parser: argparse.ArgumentParser, sample_help: str) -> None:
    parser.add_argument("--sample", type=int, default=500, help=f"{sample_help} (default: %(default)s)")
    parser.add_argument(
        "--detector",
        default="auto",
        choices=["auto", "yunet", "dlib"],
        help="the inference face detector(s) to calibrate for (default: auto = YuNet where its model file can be "
        "had, and dlib)",
    )
    parser.add_argument("--detector-model", default=None, help="the detector's model file (YuNet's ONNX file)")


def add_calibrate_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``cage calibrate-framing DATASET [--split train] [--sample N]``."""
    parser = subparsers.add_parser(
        "calibrate-framing",
        help="measure how a prepared face dataset's crops frame the inference detector's face box",
        description="Run the inference face detector on a seeded sample of a prepared dataset's face crops and "
        "measure the crops' side ratio per axis and centre offset relative to the detected box (medians, "
        "quartiles, share of crops with a detection). A local folder's cage_stats.json and info.description "
        "get the result (framing.calibration), which `cage train` writes into the saved processor; for a Hub "
        "dataset, write it with --output and pass that file to `cage train --framing-file`.",
    )
    parser.add_argument("dataset", help="prepared dataset folder (`cage prepare`) or Hub dataset id")
    parser.add_argument("--split", default="train", help="split whose crops are measured (default: train)")
    _add_calibration_options(parser, sample_help="crops measured")
    parser.add_argument("--seed", type=int, default=0, help="seed of the sample (default: 0)")
    parser.add_argument(
        "--pad", type=float, default=0.25, help="black border around each crop before detection, share of its side"
    )
    parser.add_argument("--output", default=None, help="also write the calibration JSON here (needed for Hub ids)")
    parser.set_defaults(handler=_run_calibrate)


def _run_calibrate(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from .framing import CalibrationError, calibrate_each, calibrate_split, describe, store_calibration

    local = Path(args.dataset).exists()
    if not local and args.output is None:
        print("cage calibrate-framing: error: a Hub dataset needs --output FILE for the result", file=sys.stderr)
        return EXIT_USAGE
    try:
        import datasets

        if local:
            loaded = datasets.load_from_disk(args.dataset)
        else:
            loaded = datasets.load_dataset(args.dataset)
        if isinstance(loaded, datasets.DatasetDict):
            if args.split not in loaded:
                raise CalibrationError(f"{args.dataset} has no split {args.split!r} (has {', '.join(loaded)})")
            split = loaded[args.split]
        else:
            split = loaded
        if "image" not in split.column_names or "label" not in split.column_names:
            raise CalibrationError(f"{args.dataset}: not a prepared face (AffectNet) dataset (image, label columns)")
        upscale_to = None
        try:
            from .stats import load_stats

            if (load_stats(split).get("image_domain") or {}).get("resolution"):
                from .framing import CALIBRATION_FACE_SIDE

                upscale_to = CALIBRATION_FACE_SIDE  # small stored faces (FER+), as cage prepare measures them
        except ValueError:
            pass
        measured = calibrate_each(
            lambda name, model: calibrate_split(
                split, sample=args.sample, seed=args.seed, detector=name, detector_model=model, pad=args.pad,
                split_name=args.split, upscale_to=upscale_to,
            ),
            args.detector, args.detector_model,
        )  # fmt: skip
        calibration = measured["calibration"]
        if local:
            store_calibration(args.dataset, calibration, measured["calibrations"])
        if args.output:
            Path(args.output).write_text(json.dumps(calibration, indent=2) + "\n", encoding="utf-8")
    except (CalibrationError, OSError, ImportError, ValueError) as error:
        print(f"cage calibrate-framing: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    for each in measured["calibrations"].values():
        print(describe(each), file=sys.stderr)
    written = [f"{args.dataset} (cage_stats.json, info.description)"] if local else []
    written += [args.output] if args.output else []
    print(f"cage calibrate-framing: wrote {' and '.join(written)}", file=sys.stderr)
    return EXIT_OK


def _add_common(parser: argparse.ArgumentParser, crop_format: bool = True) -> None:
    parser.add_argument("--out", required=True, help="output folder (datasets.load_from_disk reads it)")
    parser.add_argument("--num-proc", type=int, default=None, help="processes decoding and cropping images")
    if crop_format:
        parser.add_argument(
            "--crop-format",
            default="jpeg",
            choices=["jpeg", "png"],
            help="encoding of re-encoded (cropped) images: jpeg (quality 95, default) or png (lossless, ~4x larger)",
        )
    else:
        parser.set_defaults(crop_format=None)
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty --out folder")
    parser.add_argument("--report", default=None, help="also write the problem report (JSON lines) here")
    parser.add_argument("--push-to-hub", default=None, metavar="REPO", help="upload to this Hub dataset repo")
    parser.add_argument("--public", action="store_true", help="make the --push-to-hub repo public (default: private)")


def _run(prepare, args: argparse.Namespace, **kwargs) -> int:
    from .build import PrepareError
    from .stats import REPORT_FILE

    try:
        loaded, stats, problems = prepare(
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
    framing = stats.get("framing") or {}
    from .framing import describe

    for calibration in (framing.get("calibrations") or {"": framing.get("calibration") or {}}).values():
        if "detected" in calibration:
            print(f"cage prepare: {describe(calibration)}", file=sys.stderr)
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
        calibrate=args.calibrate,
        calibration_sample=args.sample,
        detector=args.detector,
        detector_model=args.detector_model,
    )


def _run_prepare_ferplus(args: argparse.Namespace) -> int:
    from .ferplus import prepare_ferplus

    return _run(
        prepare_ferplus,
        args,
        layout=args.layout,
        seed=args.seed,
        calibrate=args.calibrate,
        calibration_sample=args.sample,
        detector=args.detector,
        detector_model=args.detector_model,
    )


def _run_prepare_emotic(args: argparse.Namespace) -> int:
    from .emotic import prepare_emotic

    return _run(prepare_emotic, args, layout=args.layout, images=args.images)
