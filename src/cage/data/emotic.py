"""EMOTIC (Kosti et al. 2019) as users have it on disk -> a ``datasets.DatasetDict``, one example per person.

Two layouts are read (see ``../shared/reference/cage.md``), auto-detected:

- ``mat``: the original release, ``Annotations/Annotations.mat`` (read with ``scipy.io.loadmat``) with
  ``train``/``val``/``test`` struct arrays, images under ``emotic/<folder>/<filename>``. Each entry has
  ``filename``, ``folder``, ``image_size`` (``n_col`` = width, ``n_row`` = height) and ``person`` structs with
  ``body_bbox`` (x1, y1, x2, y2), ``annotations_categories`` (``categories``), ``annotations_continuous``
  (``valence``, ``arousal``, ``dominance``) and, in val/test, ``combined_categories`` and
  ``combined_continuous``, which are used there (several annotators).
- ``csv``: the common preprocessed ``train.csv``/``val.csv``/``test.csv`` with columns ``Index, Folder,
  Filename, Image Size, BBox, Categorical_Labels, Continuous_Labels, Gender, Age`` (lists as Python literals).

Each example is the person's body box cropped from the image (clamped to it), the 26 categories as a
multi-hot vector in EMOTIC's order, and valence/arousal/dominance both raw (1..10) and scaled to [-1, 1].
"""

from __future__ import annotations

import ast
import csv
import math
from pathlib import Path

import datasets
import numpy as np

from ..configuration_cage import LABEL_SETS
from ..image_processing_cage import to_rgb
from .build import (
    ANNOTATION_CROP_POLICY,
    CROP_FORMATS,
    Builder,
    PrepareError,
    check_output_dir,
    crop_box,
    encode_image,
    is_nan,
    multi_hot_counts,
    parse_float,
    read_source_image,
)
from .problems import (
    BAD_ANNOTATION,
    IMAGE_SIZE_MISMATCH,
    KEPT,
    LABEL_OUT_OF_RANGE,
    NAN_LABEL,
    Problem,
    ProblemLog,
)
from .stats import REPORT_FILE, STATS_FILE, pos_weights_from_counts

LAYOUTS = ("mat", "csv")
SPLITS = {"train": "train", "val": "validation", "test": "test"}
DIMENSIONS = ("valence", "arousal", "dominance")
RAW_MIN, RAW_MAX = 1.0, 10.0
# EMOTIC's 26 categories in the dataset's order, from the registry of label sets.
EMOTIC_LABELS = LABEL_SETS["emotic"].labels
_CATEGORY_INDEX = {name: index for index, name in enumerate(EMOTIC_LABELS)}


def scale_emotic(raw: float) -> float:
    """Map an EMOTIC valence/arousal/dominance score from 1..10 onto [-1, 1]: ``(x - 5.5) / 4.5``.

    The linear map the CAGE paper uses to compare EMOTIC with AffectNet (1 -> -1, 5.5 -> 0, 10 -> 1).
    """
    return (raw - 5.5) / 4.5


def emotic_features() -> datasets.Features:
    """The fixed schema of a prepared EMOTIC dataset.

    ``image`` (upright RGB body crop), ``labels`` (26 float32, multi-hot in ``EMOTIC_LABELS`` order),
    ``valence``/``arousal``/``dominance`` (float32 in [-1, 1]), ``valence_raw``/``arousal_raw``/
    ``dominance_raw`` (float32, EMOTIC's 1..10; averages of annotators in val/test), ``source_id``
    (``<folder>/<filename>#person<k>``, k counting the image's persons from 0 in annotation order).
    """
    columns = {
        "image": datasets.Image(),
        "labels": datasets.Sequence(datasets.Value("float32"), length=len(EMOTIC_LABELS)),
    }
    for name in DIMENSIONS:
        columns[name] = datasets.Value("float32")
    for name in DIMENSIONS:
        columns[f"{name}_raw"] = datasets.Value("float32")
    columns["source_id"] = datasets.Value("string")
    return datasets.Features(columns)


def _annotation_file(root: Path) -> Path | None:
    for path in (root / "Annotations" / "Annotations.mat", root / "Annotations.mat"):
        if path.is_file():
            return path
    return None


def _csv_folder(root: Path) -> Path | None:
    for folder in (root, root / "emotic_pre"):
        if all((folder / f"{name}.csv").is_file() for name in SPLITS):
            return folder
    return None


def detect_emotic_layout(root: str | Path) -> str:
    """``"mat"`` or ``"csv"`` for the EMOTIC folder ``root``.

    Raises:
        PrepareError: if ``root`` holds neither (or both; then choose with ``layout``).
    """
    root = Path(root)
    if not root.is_dir():
        raise PrepareError(f"EMOTIC root {root} is not a folder")
    found = [name for name, present in (("mat", _annotation_file(root)), ("csv", _csv_folder(root))) if present]
    if not found:
        raise PrepareError(
            f"{root} holds no EMOTIC layout: expected Annotations/Annotations.mat or train.csv, val.csv and "
            "test.csv (in it or in emotic_pre/)"
        )
    if len(found) > 1:
        raise PrepareError(f"{root} holds both EMOTIC layouts (mat, csv); choose one with --layout")
    return found[0]


def prepare_emotic(
    root: str | Path,
    out_dir: str | Path,
    *,
    layout: str = "auto",
    images: str | Path | None = None,
    num_proc: int | None = None,
    crop_format: str = "jpeg",
    overwrite: bool = False,
    report_path: str | Path | None = None,
    push_to_hub: str | None = None,
    private: bool = True,
) -> tuple[datasets.DatasetDict, dict, ProblemLog]:
    """Prepare an EMOTIC copy as ``train``/``validation``/``test`` (EMOTIC's own splits), saved to ``out_dir``.

    Args:
        root: the EMOTIC folder (``Annotations/Annotations.mat`` and ``emotic/``, or the CSVs).
        out_dir: where ``DatasetDict.save_to_disk`` writes, with ``cage_stats.json`` and ``cage_report.jsonl``.
        layout: ``"auto"``, ``"mat"`` or ``"csv"``.
        images: the folder the annotations' ``folder/filename`` are relative to (default: ``root/emotic``
            if it exists, else ``root``; for CSVs also the CSV folder's ``emotic/`` or its parent's).
        num_proc: processes decoding and cropping images.
        crop_format: ``"jpeg"`` (quality 95, default) or ``"png"`` (lossless, ~4x larger) for the body crops.
        overwrite, report_path, push_to_hub, private: as for [`prepare_affectnet`].

    Returns:
        ``(dataset_dict, stats, problems)``; ``stats`` (category counts per split, ``pos_weight`` from the
        train split, means of the raw scores) is also in every split's ``info.description``.

    Raises:
        PrepareError: on an unknown or ambiguous layout, an unreadable annotation file or bad options.
    """
    if crop_format not in CROP_FORMATS:
        raise PrepareError(f"crop_format must be one of {CROP_FORMATS}, got {crop_format!r}")
    root = Path(root)
    out_dir = check_output_dir(out_dir, overwrite, root)
    if layout == "auto":
        layout = detect_emotic_layout(root)
    elif layout not in LAYOUTS:
        raise PrepareError(f"layout must be 'auto' or one of {LAYOUTS}, got {layout!r}")
    log = ProblemLog()
    if layout == "mat":
        annotation = _annotation_file(root)
        if annotation is None:
            raise PrepareError(f"{root} has no Annotations/Annotations.mat")
        image_root = Path(images) if images else (root / "emotic" if (root / "emotic").is_dir() else root)
        records = _mat_records(annotation, image_root, log)
    else:
        folder = _csv_folder(root)
        if folder is None:
            raise PrepareError(f"{root} has no train.csv, val.csv and test.csv")
        if images:
            image_root = Path(images)
        else:
            candidates = [root / "emotic", folder / "emotic", folder.parent / "emotic", root]
            image_root = next(c for c in candidates if c.is_dir())
        records = _csv_records(folder, image_root, log)
    features = emotic_features()
    options = {"crop_format": crop_format}
    builder = Builder(out_dir, num_proc)
    try:
        splits = datasets.DatasetDict(
            {
                split: builder.split(
                    records[split], split=split, features=features, make_example=_make_example, options=options
                )
                for split in SPLITS.values()
            }
        )
        counts = {name: multi_hot_counts(dataset, len(EMOTIC_LABELS)) for name, dataset in splits.items()}
        stats = {
            "cage_stats_version": 1,
            "dataset": "emotic",
            "layout": layout,
            "label_names": list(EMOTIC_LABELS),
            "num_examples": {name: len(dataset) for name, dataset in splits.items()},
            "category_counts": {name: dict(zip(EMOTIC_LABELS, values)) for name, values in counts.items()},
            "pos_weight": pos_weights_from_counts(counts["train"], len(splits["train"]))
            if len(splits["train"])
            else None,
            "pos_weight_formula": "(N - n_c) / n_c over the train split (negatives per positive); 1.0 if n_c = 0",
            "raw_means": {
                name: {dim: _mean(dataset, f"{dim}_raw") for dim in DIMENSIONS} for name, dataset in splits.items()
            },
            "scaling": "scaled = (raw - 5.5) / 4.5",
            "validation": {"source": "EMOTIC val split, combined annotations"},
            "test": {"source": "EMOTIC test split, combined annotations"},
            "image_encoding": {"crops": crop_format},
            "framing": {
                "crops": dict(ANNOTATION_CROP_POLICY, box="the annotated person's body_bbox"),
                "calibration": {
                    "status": "not_applicable",
                    "reason": "body crops: inference crops person boxes (or the whole image) exactly, as here",
                },
            },
            "files": {"stats": STATS_FILE, "report": REPORT_FILE},
        }
        builder.finish(splits, stats, log, report_path=report_path, push_to_hub=push_to_hub, private=private)
    finally:
        builder.cleanup()
    return datasets.load_from_disk(str(out_dir)), stats, log


def _mean(dataset: datasets.Dataset, column: str) -> float | None:
    if len(dataset) == 0:
        return None
    return float(np.mean(dataset.with_format("numpy", columns=[column])[column]))


# ---------------------------------------------------------------------------------------------- pass 1: records


def _as_list(value) -> list:
    """``loadmat(simplify_cells=True)`` squeezes 1-element struct arrays and cells: undo that."""
    if value is None:
        return []
    if isinstance(value, list):
        return value
    if isinstance(value, np.ndarray) and value.dtype == object:
        return list(value.ravel())
    return [value]


def _names(value) -> list[str]:
    """Category names from a cell array as loadmat returns it (a str, a list of str, or an array)."""
    if isinstance(value, str):
        return [value] if value else []
    if isinstance(value, np.ndarray):
        return [str(v) for v in value.ravel()]
    return [str(v) for v in _as_list(value)]


def _number(value) -> float:
    """One number from a loadmat value; NaN for an empty value (no annotation)."""
    array = np.asarray(value, dtype=np.float64).ravel()
    if array.size == 0:
        return math.nan
    if array.size != 1:
        raise ValueError(f"expected one number, got {array.size}")
    return float(array[0])


def _continuous(struct) -> list[float]:
    if not isinstance(struct, dict):
        raise ValueError(f"continuous labels are a {type(struct).__name__}, not a struct")
    return [_number(struct.get(name)) for name in DIMENSIONS]


def _declared_size(size) -> tuple[int, int] | None:
    """``(width, height)`` from an ``image_size`` struct (``n_col`` = width, ``n_row`` = height), if usable.

    Only used to report a mismatch with the decoded image, whose own size is what crops are clamped to.
    """
    try:
        width, height = _number(size["n_col"]), _number(size["n_row"])
    except (KeyError, TypeError, ValueError):
        return None
    return (int(width), int(height)) if math.isfinite(width) and math.isfinite(height) else None


def _mat_records(annotation: Path, image_root: Path, log: ProblemLog) -> dict[str, list[dict]]:
    from scipy.io import loadmat

    try:
        mat = loadmat(annotation, simplify_cells=True)
    except (OSError, ValueError, NotImplementedError) as error:
        raise PrepareError(f"cannot read {annotation} with scipy.io.loadmat: {error}") from error
    records: dict[str, list[dict]] = {}
    for source, split in SPLITS.items():
        if source not in mat:
            present = sorted(key for key in mat if not key.startswith("__"))
            raise PrepareError(f"{annotation} has no '{source}' struct array (found {present})")
        records[split] = []
        for entry_index, entry in enumerate(_as_list(mat[source])):
            where = f"{source}({entry_index + 1})"
            try:
                folder, filename = str(entry["folder"]), str(entry["filename"])
                declared = _declared_size(entry.get("image_size"))
                persons = _as_list(entry["person"])
            except (KeyError, TypeError, ValueError) as error:
                detail = f"{where}: malformed entry ({type(error).__name__}: {error})"
                log.add(Problem(split, str(annotation), BAD_ANNOTATION, detail, source_id=where))
                continue
            for person_index, person in enumerate(persons):
                source_id = f"{folder}/{filename}#person{person_index}"
                record = {
                    "image": str(image_root / folder / filename),
                    "annotation": str(annotation),
                    "where": f"{where}.person({person_index + 1})",
                    "declared_size": declared,
                    "source_id": source_id,
                }
                try:
                    record["box"] = [float(v) for v in np.asarray(person["body_bbox"], dtype=np.float64).ravel()]
                    if source == "train" and "combined_categories" not in person:
                        annotators = _as_list(person["annotations_categories"])
                        continuous = _as_list(person["annotations_continuous"])
                        if len(annotators) != 1 or len(continuous) != 1:
                            raise ValueError(
                                f"{len(annotators)} category / {len(continuous)} continuous annotators "
                                "and no combined labels"
                            )
                        record["categories"] = _names(annotators[0]["categories"])
                        record["continuous"] = _continuous(continuous[0])
                    else:
                        record["categories"] = _names(person["combined_categories"])
                        record["continuous"] = _continuous(person["combined_continuous"])
                except (KeyError, TypeError, ValueError) as error:
                    detail = f"{record['where']}: malformed person ({type(error).__name__}: {error})"
                    log.add(Problem(split, str(annotation), BAD_ANNOTATION, detail, source_id=source_id))
                    continue
                records[split].append(record)
    return records


def _literal_list(text: str) -> list:
    """A list written as a Python literal; ``nan`` entries (numeric lists) become NaN."""
    text = text.strip()
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        inner = text.strip("[]() ")
        value = [float(v) for v in inner.split(",") if v.strip()]  # handles "nan"
    if isinstance(value, (str, int, float)):
        value = [value]
    return list(value)


def _csv_records(folder: Path, image_root: Path, log: ProblemLog) -> dict[str, list[dict]]:
    records: dict[str, list[dict]] = {}
    for source, split in SPLITS.items():
        path = folder / f"{source}.csv"
        records[split] = []
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            required = {"Folder", "Filename", "BBox", "Categorical_Labels", "Continuous_Labels"}
            missing = required - set(reader.fieldnames or [])
            if missing:
                raise PrepareError(f"{path} lacks the columns {sorted(missing)}")
            persons_seen: dict[tuple[str, str], int] = {}
            for line_number, row in enumerate(reader, start=2):
                key = (row["Folder"], row["Filename"])
                person_index = persons_seen[key] = persons_seen.get(key, -1) + 1
                source_id = f"{row['Folder']}/{row['Filename']}#person{person_index}"
                record = {
                    "image": str(image_root / row["Folder"] / row["Filename"]),
                    "annotation": str(path),
                    "where": f"line {line_number}",
                    "source_id": source_id,
                }
                try:
                    size = _literal_list(row["Image Size"]) if row.get("Image Size") else None
                    record["declared_size"] = (int(size[0]), int(size[1])) if size else None
                    record["box"] = [float(v) for v in _literal_list(row["BBox"])]
                    labels = _literal_list(row["Categorical_Labels"])
                    if len(labels) == len(EMOTIC_LABELS) and all(isinstance(v, (int, float)) for v in labels):
                        labels = [name for name, v in zip(EMOTIC_LABELS, labels) if v]  # already multi-hot
                    record["categories"] = [str(v) for v in labels]
                    record["continuous"] = [parse_float(v) for v in _literal_list(row["Continuous_Labels"])]
                    if len(record["continuous"]) != 3:
                        raise ValueError(f"{len(record['continuous'])} continuous labels, expected 3")
                except (KeyError, TypeError, ValueError, IndexError) as error:
                    detail = f"line {line_number}: malformed row ({type(error).__name__}: {error})"
                    log.add(Problem(split, str(path), BAD_ANNOTATION, detail, source_id=source_id))
                    continue
                records[split].append(record)
    return records


# --------------------------------------------------------------------------------------------- pass 2: examples


def _make_example(record: dict, split: str, options: dict, log: ProblemLog) -> dict | None:
    source_id, annotation, where = record["source_id"], record["annotation"], record["where"]
    multi_hot = [0.0] * len(EMOTIC_LABELS)
    for name in record["categories"]:
        if name not in _CATEGORY_INDEX:
            detail = f"{where}: unknown category {name!r}"
            log.add(Problem(split, annotation, LABEL_OUT_OF_RANGE, detail, source_id=source_id))
            return None
        multi_hot[_CATEGORY_INDEX[name]] = 1.0
    raw = dict(zip(DIMENSIONS, record["continuous"]))
    for name, value in raw.items():
        if is_nan(value):
            log.add(Problem(split, annotation, NAN_LABEL, f"{where}: {name} is NaN", source_id=source_id))
            return None
        if not RAW_MIN <= value <= RAW_MAX:
            detail = f"{where}: {name} {value} is outside EMOTIC's 1..10"
            log.add(Problem(split, annotation, LABEL_OUT_OF_RANGE, detail, source_id=source_id))
            return None
    box = record["box"]
    if len(box) != 4 or not all(math.isfinite(v) for v in box):
        detail = f"{where}: body_bbox {box} is not four finite numbers (x1, y1, x2, y2)"
        log.add(Problem(split, annotation, BAD_ANNOTATION, detail, source_id=source_id))
        return None
    loaded = read_source_image(record["image"], split, source_id, log)
    if loaded is None:
        return None
    image = to_rgb(loaded[1])
    declared = record.get("declared_size")
    if declared is not None and tuple(declared) != image.size:
        detail = (
            f"{where}: annotated image size (width, height) = {tuple(declared)}, decoded {image.size}; "
            "the decoded size is used"
        )
        log.add(Problem(split, record["image"], IMAGE_SIZE_MISMATCH, detail, action=KEPT, source_id=source_id))
    crop = crop_box(image, box, split=split, path=record["image"], source_id=source_id, log=log)
    if crop is None:
        return None
    example = {"image": encode_image(crop, options["crop_format"]), "labels": multi_hot}
    for name, value in raw.items():
        example[name] = scale_emotic(value)
    for name, value in raw.items():
        example[f"{name}_raw"] = value
    example["source_id"] = source_id
    return example
