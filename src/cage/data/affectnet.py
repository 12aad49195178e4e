"""AffectNet (Mollahosseini et al. 2017) as users have it on disk -> a ``datasets.DatasetDict``.

Three layouts are read (see ``../shared/reference/cage.md``), auto-detected:

- ``release2017``: ``Manually_Annotated_file_lists/{training,validation}.csv`` (columns
  ``subDirectory_filePath, face_x, face_y, face_width, face_height, facial_landmarks, expression, valence,
  arousal``) and the full images in ``Manually_Annotated_Images/``; each image is cropped to its face box.
- ``cropped``: ``{train_set,val_set}/images/<id>.jpg`` with ``annotations/<id>_{exp,val,aro}.npy`` (one
  value each, numeric or a string).
- ``flat-csv``: CSV files with columns ``number, exp, val, aro`` (one with "train" in its name, one with
  "val") next to folders of ``<number>.jpg`` (``images/``, ``train_set/images/``, ``val_set/images/``).

The official validation set becomes the ``test`` split (what papers report on); ``validation`` is a
stratified, seeded hold-out of the training set for model selection.
"""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path

import datasets
import numpy as np

from ..configuration_cage import LABEL_SETS, affectnet_label_set
from ..image_processing_cage import to_rgb
from .build import (
    ANNOTATION_CROP_POLICY,
    CROP_FORMATS,
    Builder,
    PrepareError,
    check_output_dir,
    class_counts,
    crop_box,
    encode_image,
    is_nan,
    parse_float,
    read_source_image,
    stored_image,
)
from .problems import BAD_ANNOTATION, EXCLUDED_CLASS, LABEL_OUT_OF_RANGE, NAN_LABEL, Problem, ProblemLog
from .stats import REPORT_FILE, STATS_FILE, class_weights_from_counts

LAYOUTS = ("release2017", "cropped", "flat-csv")
# AffectNet's codes that are not expressions: valence and arousal are -2 ("not annotated") for them.
NON_EXPRESSIONS = {8: "None", 9: "Uncertain", 10: "No-Face"}
NOT_ANNOTATED = -2.0
RELEASE2017_COLUMNS = (
    "subDirectory_filePath",
    "face_x",
    "face_y",
    "face_width",
    "face_height",
    "facial_landmarks",
    "expression",
    "valence",
    "arousal",
)
FLAT_COLUMNS = ("number", "exp", "val", "aro")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
# Source split folder/CSV -> output split. AffectNet's validation set is the test split.
SPLIT_OF = {"training": "train", "validation": "test"}


def affectnet_features(num_classes: int = 8) -> datasets.Features:
    """The fixed schema of a prepared AffectNet dataset.

    ``image`` (upright RGB face crop), ``label`` (``ClassLabel`` with AffectNet's names and order),
    ``valence`` and ``arousal`` (float32 in [-1, 1]), ``source_id`` (the image's path or id in the source).
    ``num_classes``: 8 (``LABEL_SETS["affectnet8"]``) or 7 (``"affectnet7"``); any other value raises ``ValueError``.
    """
    names = list(affectnet_label_set(num_classes).labels)
    return datasets.Features(
        {
            "image": datasets.Image(),
            "label": datasets.ClassLabel(names=names),
            "valence": datasets.Value("float32"),
            "arousal": datasets.Value("float32"),
            "source_id": datasets.Value("string"),
        }
    )


def detect_affectnet_layout(root: str | Path) -> str:
    """Which of [`LAYOUTS`] the folder ``root`` holds.

    Raises:
        PrepareError: if ``root`` is not a folder, holds none of the layouts, or more than one.
    """
    root = Path(root)
    if not root.is_dir():
        raise PrepareError(f"AffectNet root {root} is not a folder")
    found = []
    if _release2017_lists(root) is not None:
        found.append("release2017")
    if (root / "train_set" / "annotations").is_dir() or (root / "val_set" / "annotations").is_dir():
        found.append("cropped")
    if _flat_csvs(root):
        found.append("flat-csv")
    if not found:
        raise PrepareError(
            f"{root} holds no AffectNet layout: expected Manually_Annotated_file_lists/training.csv (2017 "
            "release), train_set/annotations/*.npy (cropped release) or a number,exp,val,aro CSV (flat)"
        )
    if len(found) > 1:
        raise PrepareError(f"{root} holds several AffectNet layouts ({', '.join(found)}); choose one with --layout")
    return found[0]


def prepare_affectnet(
    root: str | Path,
    out_dir: str | Path,
    *,
    classes: int = 8,
    val_fraction: float = 0.05,
    seed: int = 0,
    layout: str = "auto",
    num_proc: int | None = None,
    crop_format: str = "jpeg",
    overwrite: bool = False,
    report_path: str | Path | None = None,
    push_to_hub: str | None = None,
    private: bool = True,
    calibrate: bool = True,
    calibration_sample: int = 500,
    detector: str = "auto",
    detector_model: str | None = None,
) -> tuple[datasets.DatasetDict, dict, ProblemLog]:
    """Prepare an AffectNet copy as ``train``/``validation``/``test`` and save it to ``out_dir``.

    Args:
        root: the AffectNet folder, in one of [`LAYOUTS`].
        out_dir: where ``DatasetDict.save_to_disk`` writes; also gets ``cage_stats.json`` (statistics) and
            ``cage_report.jsonl`` (one JSON object per problem).
        classes: 8 (AffectNet-8) or 7 (AffectNet-7: Contempt examples are left out, counted as
            ``excluded_class``).
        val_fraction: share of the training set held out, stratified by class, as ``validation``.
        seed: seed of the hold-out split.
        layout: ``"auto"`` or one of [`LAYOUTS`].
        num_proc: processes decoding and cropping images (``None``/1: the current process).
        crop_format: ``"jpeg"`` (quality 95, default) or ``"png"`` (lossless, ~4x larger and slower) for
            the 2017 release's face crops. Whole images keep their original bytes when they are upright RGB
            JPEG/PNG and are stored as PNG otherwise.
        overwrite: replace a non-empty ``out_dir``.
        report_path: also write the problem report here.
        push_to_hub: a Hub dataset repo id to upload the result to (private unless ``private=False``).
        calibrate: measure the framing of the training crops with the inference ``detector`` (see
            ``cage.data.framing``) on ``calibration_sample`` training examples (seeded with ``seed``): the 2017
            release's full images with their face boxes, or the stored crops of the other layouts. The result
            goes to the stats' ``framing.calibration``; ``cage train`` writes it into the saved processor.
        detector, detector_model: the inference detector(s) calibrated for: ``"auto"`` (default) measures
            with YuNet (where its model file can be had) and dlib, ``"yunet"``/``"dlib"`` with that one
            (``framing.calibrate_each``; the stats keep ``framing.calibrations`` by detector).

    Returns:
        ``(dataset_dict, stats, problems)``; ``stats`` is also in every split's ``info.description``.

    Raises:
        PrepareError: on bad options, an unknown or ambiguous layout, missing annotation files, or a training
            set too small to stratify. Problems with single examples never raise; they are logged.
    """
    try:
        affectnet_label_set(classes)
    except ValueError as error:
        raise PrepareError(str(error)) from None
    if not 0.0 < val_fraction < 1.0:
        raise PrepareError(f"val_fraction must be in (0, 1), got {val_fraction}")
    if crop_format not in CROP_FORMATS:
        raise PrepareError(f"crop_format must be one of {CROP_FORMATS}, got {crop_format!r}")
    root = Path(root)
    out_dir = check_output_dir(out_dir, overwrite, root)
    if layout == "auto":
        layout = detect_affectnet_layout(root)
    elif layout not in LAYOUTS:
        raise PrepareError(f"layout must be 'auto' or one of {LAYOUTS}, got {layout!r}")
    log = ProblemLog()
    read_records = {"release2017": _release2017_records, "cropped": _cropped_records, "flat-csv": _flat_records}
    records = read_records[layout](root, log)
    # Before decoding any image: can the annotated training labels be split at all? (Unreadable images can
    # only lower these counts, so the same check runs again on the decoded split below.)
    problem = holdout_problem(annotated_class_counts(records["train"], classes), val_fraction)
    if problem:
        raise PrepareError(f"{root}: {problem} (counted from the annotations, before decoding any image)")
    features = affectnet_features(classes)
    options = {"classes": classes, "crop_format": crop_format}
    builder = Builder(out_dir, num_proc)
    try:
        full_train = builder.split(
            records["train"], split="train", features=features, make_example=_make_example, options=options
        )
        test = builder.split(
            records["test"], split="test", features=features, make_example=_make_example, options=options
        )
        problem = holdout_problem(class_counts(full_train, classes), val_fraction)
        if problem:
            raise PrepareError(f"{root}: {problem} (after dropping the unreadable examples in the report)")
        held_out = full_train.train_test_split(test_size=val_fraction, stratify_by_column="label", seed=seed)
        splits = datasets.DatasetDict({"train": held_out["train"], "validation": held_out["test"], "test": test})
        names = features["label"].names
        framing = {"crops": _crop_policy(layout), "calibration": None}
        if calibrate:
            from .framing import calibrate_each

            framing.update(calibrate_each(
                lambda name, model: _calibrate(layout, records["train"], full_train, calibration_sample, seed, name, model),
                detector, detector_model,
            ))  # fmt: skip
        else:
            framing["calibration"] = {"status": "skipped", "reason": "calibration was switched off"}
        split_counts = {name: class_counts(dataset, classes) for name, dataset in splits.items()}
        stats = {
            "cage_stats_version": 1,
            "dataset": "affectnet",
            "layout": layout,
            "classes": classes,
            "label_names": names,
            "num_examples": {name: len(dataset) for name, dataset in splits.items()},
            "class_counts": {name: dict(zip(names, values)) for name, values in split_counts.items()},
            "class_weights": class_weights_from_counts(split_counts["train"])
            if min(split_counts["train"]) > 0
            else None,
            "class_weights_formula": "w_c = (1/n_c) / sum_k (1/n_k) over the train split (Wagner et al. 2024)",
            "validation": {"source": "stratified hold-out of the training set", "fraction": val_fraction, "seed": seed},
            "test": {"source": "AffectNet's official validation set"},
            "image_encoding": {
                "crops": crop_format,
                "whole_images": "original bytes if upright RGB JPEG/PNG, else PNG",
            },
            "framing": framing,
            "files": {"stats": STATS_FILE, "report": REPORT_FILE},
        }
        builder.finish(splits, stats, log, report_path=report_path, push_to_hub=push_to_hub, private=private)
    finally:
        builder.cleanup()
    return datasets.load_from_disk(str(out_dir)), stats, log


def _crop_policy(layout: str) -> dict:
    if layout == "release2017":
        return dict(ANNOTATION_CROP_POLICY, box="the file list's face_x, face_y, face_width, face_height")
    return {"policy": "as distributed", "description": "the release's own face crops, stored whole (not re-cropped)"}


def _calibrate(layout, train_records, full_train, sample, seed, detector, detector_model) -> dict:
    from .framing import calibrate_split, make_detector, measure_framing, sample_indices

    if layout != "release2017":
        return calibrate_split(full_train, sample=sample, seed=seed, detector=detector, detector_model=detector_model)
    if not train_records:
        return {"status": "no_examples", "reason": "the training file list is empty"}
    indices = sample_indices(len(train_records), sample, seed)
    found, settings = make_detector(detector, detector_model)
    result = measure_framing((_full_image_pair(train_records[i]) for i in indices), found, settings)
    result.update({"source": "full images with their face boxes (training file list)", "split": "train"})
    result["seed"] = seed
    return result


def _full_image_pair(record: dict):
    """(upright RGB full image, clamped face box, source_id) of a 2017-release record; (None, None, id) if the
    image or its box cannot be used."""
    from ..image_processing_cage import clamp_box

    source_id = record["source_id"]
    loaded = read_source_image(record["image"], "train", source_id, ProblemLog())
    try:
        x, y, w, h = (parse_float(v) for v in record["box"])
    except ValueError:
        return None, None, source_id
    if loaded is None:
        return None, None, source_id
    image = to_rgb(loaded[1])
    clamped = clamp_box((x, y, w, h), image.width, image.height)
    if clamped is None:
        return None, None, source_id
    return image, clamped[0], source_id


# ---------------------------------------------------------------------------------------------- pass 1: records


def _release2017_lists(root: Path) -> Path | None:
    for folder in (
        root / "Manually_Annotated_file_lists",
        root / "Manually_Annotated" / "Manually_Annotated_file_lists",
    ):
        if (folder / "training.csv").is_file():
            return folder
    return None


def holdout_problem(counts: list[int], val_fraction: float) -> str | None:
    """Why a stratified hold-out of ``val_fraction`` cannot be drawn from a training set with these per-class
    ``counts``, and what to do instead; ``None`` when it can.

    A stratified split (``datasets.Dataset.train_test_split(stratify_by_column=...)``) needs every class to
    have at least 2 examples, and both parts at least one example per class: the hold-out has
    ``ceil(val_fraction * n)`` examples, so ``val_fraction`` must be at least ``classes / n`` and at most
    ``(n - classes) / n``.
    """
    total, classes = sum(counts), len(counts)
    short = [index for index, count in enumerate(counts) if count < 2]
    if short or total < 2 * classes:
        return (
            f"cannot hold out a stratified validation set from {total} training examples (per-class counts "
            f"{counts}): every class needs at least 2 examples (classes {short} have fewer) and the training "
            f"set at least {2 * classes}; add examples, or use a training set with every class"
        )
    held_out = math.ceil(val_fraction * total)
    if held_out < classes or total - held_out < classes:
        smallest = math.ceil(classes / total * 1000) / 1000
        largest = math.floor((total - classes) / total * 1000) / 1000
        return (
            f"cannot hold out a stratified {val_fraction:g} of the {total} training examples: that is {held_out} "
            f"example(s), and both parts need one example of each of the {classes} classes; use --val-fraction "
            f"{smallest:g} (the smallest that works; at most {largest:g})"
        )
    return None


def annotated_class_counts(records: list[dict], classes: int) -> list[int]:
    """Per-class counts of the records whose annotation passes [`check_affectnet_labels`], read from the
    annotations only (CSV values, or the cropped release's small ``*_exp.npy`` files); no image is opened."""
    counts = [0] * classes
    for record in records:
        if "annotation_dir" in record:
            raw = []
            for suffix in ("exp", "val", "aro"):
                try:
                    raw.append(_load_npy(os.path.join(record["annotation_dir"], f"{record['id']}_{suffix}.npy")))
                except (OSError, ValueError):
                    break
            if len(raw) != 3:
                continue
        else:
            raw = [record[key] for key in ("expression", "valence", "arousal")]
        label = check_affectnet_labels(*raw, classes)[0]
        if label is not None:
            counts[label] += 1
    return counts


def _release2017_records(root: Path, log: ProblemLog) -> dict[str, list[dict]]:
    lists = _release2017_lists(root)
    if lists is None:
        raise PrepareError(f"{root} has no Manually_Annotated_file_lists/training.csv (2017 release)")
    candidates = [
        root / "Manually_Annotated_Images",
        root / "Manually_Annotated" / "Manually_Annotated_Images",
        lists.parent / "Manually_Annotated_Images",
    ]
    images = next((folder for folder in candidates if folder.is_dir()), None)
    if images is None:
        raise PrepareError(f"no Manually_Annotated_Images folder found beside {lists}")
    records: dict[str, list[dict]] = {}
    for source, split in SPLIT_OF.items():
        path = lists / f"{source}.csv"
        if not path.is_file():
            raise PrepareError(f"{path} is missing (the 2017 release has training.csv and validation.csv)")
        records[split] = []
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            columns = list(RELEASE2017_COLUMNS)
            for line_number, row in enumerate(reader, start=1):
                if not row or not any(cell.strip() for cell in row):
                    continue
                if line_number == 1 and row[0].strip() == "subDirectory_filePath":
                    columns = [cell.strip() for cell in row]
                    missing = set(RELEASE2017_COLUMNS) - set(columns)
                    if missing:
                        raise PrepareError(f"{path} lacks the columns {sorted(missing)}")
                    continue
                if len(row) != len(columns):
                    detail = f"line {line_number} has {len(row)} fields, expected {len(columns)}"
                    log.add(Problem(split, str(path), BAD_ANNOTATION, detail, source_id=f"{path.name}:{line_number}"))
                    continue
                fields = dict(zip(columns, row))
                relative = fields["subDirectory_filePath"].strip()
                records[split].append(
                    {
                        "image": str(images / relative),
                        "annotation": f"{path}",
                        "line": line_number,
                        "source_id": relative,
                        "box": [fields[k] for k in ("face_x", "face_y", "face_width", "face_height")],
                        "expression": fields["expression"],
                        "valence": fields["valence"],
                        "arousal": fields["arousal"],
                    }
                )
    return records


def _sort_key(identifier: str):
    return (0, int(identifier), "") if identifier.isdigit() else (1, 0, identifier)


def _cropped_records(root: Path, log: ProblemLog) -> dict[str, list[dict]]:
    records: dict[str, list[dict]] = {}
    for folder_name, split in (("train_set", "train"), ("val_set", "test")):
        folder = root / folder_name
        images, annotations = folder / "images", folder / "annotations"
        if not annotations.is_dir():
            raise PrepareError(f"{annotations} is missing (the cropped release has train_set/ and val_set/)")
        image_files = {}
        if images.is_dir():
            with os.scandir(images) as entries:
                for entry in entries:
                    stem, suffix = os.path.splitext(entry.name)
                    if suffix.lower() in IMAGE_SUFFIXES:
                        image_files[stem] = entry.path
        annotated = set()
        with os.scandir(annotations) as entries:
            for entry in entries:
                if entry.name.endswith("_exp.npy"):
                    annotated.add(entry.name[: -len("_exp.npy")])
        records[split] = []
        for identifier in sorted(image_files.keys() | annotated, key=_sort_key):
            source_id = f"{folder_name}/{identifier}"
            if identifier not in annotated:
                detail = f"no annotation {identifier}_exp.npy in {annotations}"
                log.add(Problem(split, image_files[identifier], BAD_ANNOTATION, detail, source_id=source_id))
                continue
            records[split].append(
                {
                    "image": image_files.get(identifier, str(images / f"{identifier}.jpg")),
                    "annotation_dir": str(annotations),
                    "id": identifier,
                    "source_id": source_id,
                }
            )
    return records


def _flat_csvs(root: Path) -> list[Path]:
    found = []
    for depth_glob in ("*.csv", "*/*.csv"):
        for path in sorted(root.glob(depth_glob)):
            try:
                with open(path, newline="", encoding="utf-8-sig") as handle:
                    header = [cell.strip() for cell in next(csv.reader(handle), [])]
            except (OSError, UnicodeDecodeError):
                continue
            if set(FLAT_COLUMNS) <= set(header):
                found.append(path)
    return found


def _flat_records(root: Path, log: ProblemLog) -> dict[str, list[dict]]:
    csvs = _flat_csvs(root)
    by_split: dict[str, Path] = {}
    for path in csvs:
        name = path.stem.lower()
        split = "test" if "val" in name else "train" if "train" in name else None
        if split is None:
            continue
        if split in by_split:
            raise PrepareError(f"two {split} CSVs found: {by_split[split]} and {path}; keep one")
        by_split[split] = path
    for split, source in (
        ("train", "a training CSV (name containing 'train')"),
        ("test", "a validation CSV (name containing 'val')"),
    ):
        if split not in by_split:
            raise PrepareError(f"{root} has no {source} with columns {', '.join(FLAT_COLUMNS)}")
    records: dict[str, list[dict]] = {}
    for split, path in by_split.items():
        set_name = "train_set" if split == "train" else "val_set"
        with open(path, newline="", encoding="utf-8-sig") as handle:
            rows = list(csv.DictReader(handle))
        candidates = [path.parent / set_name / "images", path.parent / "images", path.parent / set_name, path.parent]
        existing = [folder for folder in candidates if folder.is_dir()]
        image_dir = None
        if rows:
            first = str(rows[0].get("number", "")).strip()
            image_dir = next(
                (f for f in existing if any((f / f"{first}{suffix}").is_file() for suffix in IMAGE_SUFFIXES)), None
            )
        image_dir = image_dir or (existing[0] if existing else path.parent)
        records[split] = []
        for line_number, row in enumerate(rows, start=2):
            number = str(row.get("number") or "").strip()
            if not number:
                detail = f"line {line_number} has no image number"
                log.add(Problem(split, str(path), BAD_ANNOTATION, detail, source_id=f"{path.name}:{line_number}"))
                continue
            records[split].append(
                {
                    "image_dir": str(image_dir),
                    "number": number,
                    "annotation": str(path),
                    "line": line_number,
                    "source_id": number,
                    "expression": row.get("exp"),
                    "valence": row.get("val"),
                    "arousal": row.get("aro"),
                }
            )
    return records


# --------------------------------------------------------------------------------------------- pass 2: examples


def check_affectnet_labels(expression, valence, arousal, classes: int) -> tuple[int | None, float, float, str, str]:
    """Parse and check one AffectNet annotation.

    Args:
        expression, valence, arousal: the raw values (numbers or strings, as read from CSV or .npy).
        classes: 8 or 7.

    Returns:
        ``(label, valence, arousal, kind, detail)``: ``label`` is the class index (None when the example
        must be dropped, then ``kind``/``detail`` say why: ``nan_label``, ``label_out_of_range`` for a
        non-expression code 8/9/10, a code outside 0..10, -2 ("not annotated") or a value outside [-1, 1],
        ``excluded_class`` for Contempt in AffectNet-7, ``bad_annotation`` for unparsable values).
    """
    try:
        code = parse_float(expression)
        values = {"valence": parse_float(valence), "arousal": parse_float(arousal)}
    except (TypeError, ValueError) as error:
        return None, math.nan, math.nan, BAD_ANNOTATION, f"unparsable label: {error}"
    if is_nan(code):
        return None, math.nan, math.nan, NAN_LABEL, "expression is NaN"
    if not math.isfinite(code) or code != int(code) or not 0 <= code <= 10:
        return None, math.nan, math.nan, LABEL_OUT_OF_RANGE, f"expression {expression!r} is not a code 0..10"
    code = int(code)
    if code in NON_EXPRESSIONS:
        detail = f"expression {code} ({NON_EXPRESSIONS[code]}) is not an expression class"
        return None, math.nan, math.nan, LABEL_OUT_OF_RANGE, detail
    if code >= classes:
        return (
            None,
            math.nan,
            math.nan,
            EXCLUDED_CLASS,
            f"expression {code} ({LABEL_SETS['affectnet8'].labels[code]}) is not in AffectNet-7",
        )
    for name, value in values.items():
        if is_nan(value):
            return None, math.nan, math.nan, NAN_LABEL, f"{name} is NaN"
        if value == NOT_ANNOTATED:
            return None, math.nan, math.nan, LABEL_OUT_OF_RANGE, f"{name} is -2 (AffectNet's 'not annotated')"
        if not -1.0 <= value <= 1.0:
            return None, math.nan, math.nan, LABEL_OUT_OF_RANGE, f"{name} {value} is outside [-1, 1]"
    return code, values["valence"], values["arousal"], "", ""


def _load_npy(path: str):
    return np.load(path, allow_pickle=False)


def _make_example(record: dict, split: str, options: dict, log: ProblemLog) -> dict | None:
    source_id = record["source_id"]
    if "annotation_dir" in record:  # cropped release: one .npy per value
        raw = {}
        for key, suffix in (("expression", "exp"), ("valence", "val"), ("arousal", "aro")):
            path = os.path.join(record["annotation_dir"], f"{record['id']}_{suffix}.npy")
            try:
                raw[key] = _load_npy(path)
            except FileNotFoundError:
                log.add(Problem(split, path, BAD_ANNOTATION, "annotation file is missing", source_id=source_id))
                return None
            except (OSError, ValueError) as error:
                log.add(Problem(split, path, BAD_ANNOTATION, f"cannot read: {error}", source_id=source_id))
                return None
        annotation_file = os.path.join(record["annotation_dir"], f"{record['id']}_exp.npy")
    else:
        raw = {key: record[key] for key in ("expression", "valence", "arousal")}
        annotation_file = record["annotation"]
    label, valence, arousal, kind, detail = check_affectnet_labels(
        raw["expression"], raw["valence"], raw["arousal"], options["classes"]
    )
    if label is None:
        if "line" in record:
            detail = f"line {record['line']}: {detail}"
        log.add(Problem(split, annotation_file, kind, detail, source_id=source_id))
        return None
    if "image_dir" in record:  # flat CSV: <number>.jpg (or .jpeg/.png)
        stem = os.path.join(record["image_dir"], record["number"])
        image_path = next((stem + s for s in IMAGE_SUFFIXES if os.path.isfile(stem + s)), stem + ".jpg")
    else:
        image_path = record["image"]
    loaded = read_source_image(image_path, split, source_id, log)
    if loaded is None:
        return None
    data, image = loaded
    if "box" in record:  # 2017 release: crop the face box (x, y, w, h) from the full image
        try:
            x, y, w, h = (parse_float(v) for v in record["box"])
        except ValueError as error:
            detail = f"line {record['line']}: unparsable face box {record['box']}: {error}"
            log.add(Problem(split, annotation_file, BAD_ANNOTATION, detail, source_id=source_id))
            return None
        crop = crop_box(to_rgb(image), (x, y, x + w, y + h), split=split, path=image_path, source_id=source_id, log=log)
        if crop is None:
            return None
        stored = encode_image(crop, options["crop_format"])
    else:
        stored = stored_image(data, image)
    return {"image": stored, "label": label, "valence": valence, "arousal": arousal, "source_id": source_id}
