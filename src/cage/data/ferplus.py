"""FER+ (FER2013 faces with Microsoft's crowd labels) as users have it on disk -> a ``datasets.DatasetDict``.

Barsoum, Zhang, Canton Ferrer, Zhang, "Training Deep Networks for Facial Expression Recognition with
Crowd-Sourced Label Distribution", ICMI 2016 (arXiv 1608.01041). Every FER2013 face (48 x 48 gray, found by
web image search) was labelled by 10 annotators over ten columns, in this order: neutral, happiness, surprise,
sadness, anger, disgust, fear, contempt, unknown, NF (not a face).

Two layouts are read, auto-detected:

- ``folders``: what Microsoft's ``generate_training_data.py`` writes: ``FER2013Train/``, ``FER2013Valid/``
  (and ``FER2013Test/`` where the user has it), each a folder of 48 x 48 gray PNGs plus ``label.csv`` (no
  header: file name, ``"(x, y, w, h)"`` face box, then the 10 vote counts).
- ``csv``: Kaggle's ``fer2013.csv`` (columns ``emotion, pixels, Usage``; pixels as 2304 space-separated
  gray values) plus Microsoft's ``fer2013new.csv`` (``Usage, Image name`` and the 10 vote columns), row i of
  one describing row i of the other; rows without an image name are faces FER+ removed.

Splits: FER2013 ``Training`` -> ``train``, ``PublicTest`` (FER2013Valid) -> ``validation`` (the split every
choice is made on), ``PrivateTest`` (FER2013Test) -> ``test``.

Labels (the FER+ paper's vote processing, as Microsoft's reference code ``ferplus.py`` implements it):

- outlier removal: a vote count of 1 is set to 0;
- majority mode (the evaluation protocol): an image has a majority label when one column holds more than half
  of the remaining votes and it is an emotion (not unknown/NF); accuracy is measured on those images only;
- cross-entropy mode (training): the top columns, at most 3, are taken until they hold 75 % of the remaining
  votes; the image is unusable if they hold 50 % or less, or if unknown/NF is among them (ahead of every
  emotion); the taken votes, normalised, are the soft label.

Emotions are mapped to AffectNet-8 by name (FER+'s third column is surprise, AffectNet's index 2 is Sad).
Valence and arousal are not FER+ annotations: they are DERIVED from the votes and AffectNet's class centroids
(see [`derived_valence_arousal`]).
"""

from __future__ import annotations

import csv
import io
import math
import re
from dataclasses import dataclass
from pathlib import Path

import datasets
import numpy as np
from PIL import Image

from ..configuration_cage import LABEL_SETS
from .build import Builder, PrepareError, check_output_dir, read_source_image
from .problems import BAD_ANNOTATION, LABEL_OUT_OF_RANGE, NO_CONSENSUS, NOT_A_FACE, Problem, ProblemLog
from .stats import REPORT_FILE, STATS_FILE

LAYOUTS = ("folders", "csv")
# FER+'s ten vote columns, in label.csv / fer2013new.csv order.
FERPLUS_COLUMNS = (
    "neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt", "unknown", "NF",
)  # fmt: skip
FERPLUS_EMOTIONS = FERPLUS_COLUMNS[:8]
# FER+ emotion -> AffectNet class name (the same eight expressions under other names; SOURCES.md of the data).
AFFECTNET_NAME = {
    "neutral": "Neutral", "happiness": "Happy", "surprise": "Surprise", "sadness": "Sad",
    "anger": "Anger", "disgust": "Disgust", "fear": "Fear", "contempt": "Contempt",
}  # fmt: skip
AFFECTNET8 = LABEL_SETS["affectnet8"].labels
# Column of FER+'s vote vector for each AffectNet-8 index: AFFECTNET8[i] is FER+ column COLUMN_OF_CLASS[i].
COLUMN_OF_CLASS = tuple(FERPLUS_COLUMNS.index(next(k for k, v in AFFECTNET_NAME.items() if v == name)) for name in AFFECTNET8)

# Mean (valence, arousal) of each AffectNet-8 class over the 500 images per class of AffectNet's official
# validation set, computed from the annotation CSV in the CAGE authors' repository (number, exp, val, aro):
# ../shared/reference/cage.md, "AffectNet class centroids". In AffectNet order.
AFFECTNET_CENTROIDS = {
    "Neutral": (-0.025, -0.019), "Happy": (0.672, 0.081), "Sad": (-0.628, -0.267), "Surprise": (0.183, 0.701),
    "Fear": (-0.117, 0.760), "Disgust": (-0.684, 0.446), "Anger": (-0.426, 0.554), "Contempt": (-0.510, 0.576),
}  # fmt: skip
DERIVED_TARGETS_NOTE = (
    "valence and arousal of FER+ are DERIVED, not human ratings: the share of each emotion among the "
    "annotators' emotion votes (single votes removed as outliers) times AffectNet's class centroid "
    "(mean valence/arousal of that class on AffectNet's validation set), summed"
)
SPLIT_OF_USAGE = {"Training": "train", "PublicTest": "validation", "PrivateTest": "test"}
FOLDER_OF_SPLIT = {"train": "FER2013Train", "validation": "FER2013Valid", "test": "FER2013Test"}
IMAGE_SIDE = 48


@dataclass(frozen=True)
class VoteLabels:
    """The labels the FER+ protocol gives one image's 10 votes.

    Attributes:
        majority: AffectNet-8 index of the majority emotion (majority mode), or ``None``.
        soft_label: 8 probabilities in AffectNet-8 order (cross-entropy mode), or ``None`` when that mode
            drops the image.
        drop_kind: why neither mode keeps the image (``no_consensus`` or ``not_a_face``), else ``""``.
        detail: a sentence for the problem report.
    """

    majority: int | None
    soft_label: tuple[float, ...] | None
    drop_kind: str = ""
    detail: str = ""


def remove_outliers(votes) -> list[float]:
    """The FER+ paper's outlier removal: a column with a single vote is set to 0 (10 values, FER+ order)."""
    return [0.0 if value < 1.0 + 1e-9 else float(value) for value in votes]


def majority_column(votes) -> int | None:
    """FER+ majority mode: the column (0..9) holding more than half of the votes left after outlier removal,
    or ``None``. Columns 8 (unknown) and 9 (NF) can win; callers drop those images."""
    cleaned = remove_outliers(votes)
    total = sum(cleaned)
    best = int(np.argmax(cleaned))
    return best if total > 0 and cleaned[best] > 0.5 * total else None


def crossentropy_distribution(votes) -> list[float] | None:
    """FER+ cross-entropy mode (Microsoft's reference ``_process_data``): after outlier removal, take the
    columns with the most votes (ties together, at most 3) until they hold 75 % of the votes; a tie with
    unknown/NF stops the taking (and unknown/NF is left out when an emotion was taken before it). Returns the
    taken votes normalised over the 10 columns, or ``None`` when they hold 50 % or less of the votes, more
    than 3 columns were taken, or unknown/NF leads (the image is unusable in this mode)."""
    raw = remove_outliers(votes)
    total = sum(raw)
    if total <= 0:
        return None
    taken = [0.0] * len(raw)
    taken_sum, count, valid = 0.0, 0, True
    while taken_sum < 0.75 * total and count < 3 and valid:
        peak = max(raw)
        for index in range(len(raw)):
            if raw[index] == peak:
                taken[index] = peak
                raw[index] = 0.0
                taken_sum += peak
                count += 1
                if index >= 8:  # unknown or not-a-face tied with the peak
                    valid = False
                    if sum(taken) > peak:  # emotions came first: leave unknown/NF out
                        taken[index] = 0.0
                        count -= 1
                    break
    if sum(taken) <= 0.5 * total or count > 3:
        return None
    if int(np.argmax(taken)) >= 8:
        return None
    norm = sum(taken)
    return [value / norm for value in taken]


def vote_labels(votes) -> VoteLabels:
    """Both FER+ label modes for one image's 10 votes (FER+ column order), in AffectNet-8 order.

    Raises:
        ValueError: not 10 non-negative finite counts.
    """
    votes = [float(v) for v in votes]
    if len(votes) != len(FERPLUS_COLUMNS) or not all(math.isfinite(v) and v >= 0 for v in votes):
        raise ValueError(f"expected 10 non-negative vote counts, got {votes}")
    column = majority_column(votes)
    majority = COLUMN_OF_CLASS.index(column) if column is not None and column < 8 else None
    distribution = crossentropy_distribution(votes)
    soft = None if distribution is None else tuple(distribution[c] for c in COLUMN_OF_CLASS)
    if majority is None and soft is None:
        cleaned = remove_outliers(votes)
        if sum(cleaned[:8]) <= 0 or (column is not None and column >= 8):
            kind, detail = NOT_A_FACE, f"votes {_votes_text(votes)}: unknown/not-a-face leads"
        else:
            kind, detail = NO_CONSENSUS, f"votes {_votes_text(votes)}: no emotion passes the FER+ protocol"
        return VoteLabels(None, None, kind, detail)
    if soft is None:  # a majority the cross-entropy mode rejects (ties beyond 3 columns): its one-hot
        soft = tuple(1.0 if index == majority else 0.0 for index in range(len(AFFECTNET8)))
    return VoteLabels(majority, soft)


def derived_valence_arousal(votes) -> tuple[float, float]:
    """DERIVED valence and arousal in [-1, 1] for one image's 10 votes (not human ratings).

    ``(v, a) = sum_e s_e * centroid_e`` over the eight emotions, where ``s_e`` is emotion e's share of the emotion
    votes after outlier removal (unknown/NF votes left out) and ``centroid_e`` the mean (valence, arousal) of
    the AffectNet class e ([`AFFECTNET_CENTROIDS`]). It places each face on the circumplex where AffectNet's
    annotators put the mix of emotions FER+'s annotators saw.

    Raises:
        ValueError: no emotion vote is left.
    """
    cleaned = remove_outliers([float(v) for v in votes])[:8]
    total = sum(cleaned)
    if total <= 0:
        raise ValueError(f"votes {list(votes)} hold no emotion vote after outlier removal")
    valence = arousal = 0.0
    for column, count in enumerate(cleaned):
        v, a = AFFECTNET_CENTROIDS[AFFECTNET_NAME[FERPLUS_EMOTIONS[column]]]
        valence += count / total * v
        arousal += count / total * a
    return valence, arousal


def _votes_text(votes) -> str:
    return "(" + ", ".join(f"{name} {int(v)}" for name, v in zip(FERPLUS_COLUMNS, votes) if v) + ")"


def ferplus_features() -> datasets.Features:
    """The schema of a prepared FER+ dataset.

    ``image`` (48 x 48 gray PNG as distributed), ``label`` (``ClassLabel``, AffectNet-8 names and order: the
    majority-mode label, -1 where the protocol gives none; accuracy is measured where it is not -1),
    ``soft_label`` (8 float32 in AffectNet-8 order, summing to 1: the cross-entropy-mode target),
    ``votes`` (10 int32 vote counts in FER+ column order, [`FERPLUS_COLUMNS`]), ``valence`` and ``arousal``
    (float32 in [-1, 1], DERIVED from the votes, see [`derived_valence_arousal`]), ``source_id`` (FER+ file name).
    """
    return datasets.Features(
        {
            "image": datasets.Image(),
            "label": datasets.ClassLabel(names=list(AFFECTNET8)),
            "soft_label": datasets.Sequence(datasets.Value("float32"), length=len(AFFECTNET8)),
            "votes": datasets.Sequence(datasets.Value("int32"), length=len(FERPLUS_COLUMNS)),
            "valence": datasets.Value("float32"),
            "arousal": datasets.Value("float32"),
            "source_id": datasets.Value("string"),
        }
    )


def detect_ferplus_layout(root: str | Path) -> str:
    """``"folders"`` or ``"csv"`` for the FER+ folder ``root``.

    Raises:
        PrepareError: ``root`` is not a folder, or holds neither layout (or both: choose with ``layout``).
    """
    root = Path(root)
    if not root.is_dir():
        raise PrepareError(f"FER+ root {root} is not a folder")
    found = []
    if any((root / folder / "label.csv").is_file() for folder in FOLDER_OF_SPLIT.values()):
        found.append("folders")
    if _csv_files(root) is not None:
        found.append("csv")
    if not found:
        raise PrepareError(
            f"{root} holds no FER+ layout: expected FER2013Train/label.csv (and FER2013Valid/) as Microsoft's "
            "FERPlus tools write them, or Kaggle's fer2013.csv beside Microsoft's fer2013new.csv"
        )
    if len(found) > 1:
        raise PrepareError(f"{root} holds both FER+ layouts (folders, csv); choose one with --layout")
    return found[0]


def _csv_files(root: Path) -> tuple[Path, Path] | None:
    for folder in (root, root / "fer2013"):
        pixels, votes = folder / "fer2013.csv", folder / "fer2013new.csv"
        if pixels.is_file() and votes.is_file():
            return pixels, votes
    return None


_BOX = re.compile(r"^\(?\s*(-?\d+)\s*,\s*(-?\d+)\s*,\s*(\d+)\s*,\s*(\d+)\s*\)?$")


def _parse_votes(cells, where: str) -> list[int]:
    if len(cells) != len(FERPLUS_COLUMNS):
        raise ValueError(f"{where}: expected {len(FERPLUS_COLUMNS)} vote counts, got {len(cells)}")
    try:
        votes = [int(float(cell)) for cell in cells]
    except ValueError as error:
        raise ValueError(f"{where}: vote counts must be numbers ({error})") from None
    if any(v < 0 for v in votes):
        raise ValueError(f"{where}: negative vote count in {votes}")
    return votes


def copy_ferplus_subset(root: str | Path, out: str | Path, counts: dict[str, int], start: int = 0) -> Path:
    """Copy the first ``counts[folder]`` faces (from row ``start``) of each FER+ split folder of ``root``
    (Microsoft's folder layout, e.g. ``{"FER2013Train": 240, "FER2013Valid": 120}``) with their ``label.csv``
    rows into ``out`` (created), in the same layout; returns ``out``. Rows keep the file's order, so a subset
    is fixed by its counts (the bundled model's 500-face FER2013Valid check uses the first 500 rows).

    Raises:
        PrepareError: a folder has no ``label.csv``, or a listed image is missing.
    """
    import shutil

    root, out = Path(root), Path(out)
    for folder, count in counts.items():
        labels = root / folder / "label.csv"
        if not labels.is_file():
            raise PrepareError(f"{labels} is missing (FER+ folders need label.csv in {folder}/)")
        with open(labels, newline="", encoding="utf-8-sig") as handle:
            rows = [row for row in csv.reader(handle) if row][start : start + count]
        (out / folder).mkdir(parents=True, exist_ok=True)
        for row in rows:
            source = root / folder / row[0].strip()
            if not source.is_file():
                raise PrepareError(f"{source} is listed in {labels} but missing")
            shutil.copyfile(source, out / folder / source.name)
        with open(out / folder / "label.csv", "w", newline="", encoding="utf-8") as handle:
            csv.writer(handle).writerows(rows)
    return out


def _folder_records(root: Path, log: ProblemLog) -> dict[str, list[dict]]:
    records: dict[str, list[dict]] = {split: [] for split in FOLDER_OF_SPLIT}
    for split, folder_name in FOLDER_OF_SPLIT.items():
        folder = root / folder_name
        labels = folder / "label.csv"
        if not labels.is_file():
            if split != "test":
                raise PrepareError(f"{labels} is missing (FER+ folders need label.csv in {folder_name}/)")
            continue
        with open(labels, newline="", encoding="utf-8-sig") as handle:
            for line_number, row in enumerate(csv.reader(handle), start=1):
                if not row or not any(cell.strip() for cell in row):
                    continue
                source_id = row[0].strip()
                where = f"line {line_number}"
                try:
                    if len(row) != 12:
                        raise ValueError(f"{where} has {len(row)} fields, expected 12 (file, box, 10 votes)")
                    box = _BOX.match(row[1].strip())
                    if box is None:
                        raise ValueError(f"{where}: face box {row[1]!r} is not '(x, y, w, h)'")
                    votes = _parse_votes(row[2:], where)
                except ValueError as error:
                    log.add(Problem(split, str(labels), BAD_ANNOTATION, str(error), source_id=source_id or where))
                    continue
                records[split].append(
                    {"image": str(folder / source_id), "votes": votes, "source_id": source_id,
                     "annotation": str(labels), "line": line_number}
                )  # fmt: skip
    return records


def _csv_records(root: Path, log: ProblemLog) -> dict[str, list[dict]]:
    files = _csv_files(root)
    if files is None:
        raise PrepareError(f"{root} has no fer2013.csv beside fer2013new.csv")
    pixels_path, votes_path = files
    with open(votes_path, newline="", encoding="utf-8-sig") as handle:
        vote_rows = list(csv.reader(handle))
    header = [cell.strip() for cell in vote_rows[0]] if vote_rows else []
    expected = ["Usage", "Image name", *FERPLUS_COLUMNS]
    if header != expected:
        raise PrepareError(f"{votes_path}: header {header} is not {expected} (Microsoft's fer2013new.csv)")
    vote_rows = vote_rows[1:]
    records: dict[str, list[dict]] = {split: [] for split in FOLDER_OF_SPLIT}
    with open(pixels_path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        columns = [cell.strip() for cell in next(reader, [])]
        if not {"pixels", "Usage"} <= set(columns):
            raise PrepareError(f"{pixels_path}: header {columns} lacks pixels and Usage (Kaggle's fer2013.csv)")
        pixels_at, usage_at = columns.index("pixels"), columns.index("Usage")
        count = 0
        for index, row in enumerate(reader):
            count += 1
            line_number = index + 2
            if index >= len(vote_rows):
                detail = f"line {line_number} has no row in {votes_path.name} (it has {len(vote_rows)} rows)"
                log.add(Problem("train", str(pixels_path), BAD_ANNOTATION, detail, source_id=f"row {index}"))
                continue
            vote_row = vote_rows[index]
            name = vote_row[1].strip() if len(vote_row) > 1 else ""
            if not name:  # FER+ removed this FER2013 face (no image name): not part of FER+
                continue
            usage = row[usage_at].strip() if len(row) > usage_at else ""
            split = SPLIT_OF_USAGE.get(usage)
            where = f"{pixels_path.name} line {line_number}"
            if split is None:
                detail = f"{where}: Usage {usage!r} is not one of {sorted(SPLIT_OF_USAGE)}"
                log.add(Problem("train", str(pixels_path), BAD_ANNOTATION, detail, source_id=name))
                continue
            if vote_row[0].strip() != usage:
                detail = f"{where}: Usage {usage!r} but {votes_path.name} says {vote_row[0].strip()!r} for {name}"
                log.add(Problem(split, str(votes_path), BAD_ANNOTATION, detail, source_id=name))
                continue
            try:
                votes = _parse_votes(vote_row[2:], f"{votes_path.name} line {index + 2}")
            except ValueError as error:
                log.add(Problem(split, str(votes_path), BAD_ANNOTATION, str(error), source_id=name))
                continue
            records[split].append(
                {"pixels": row[pixels_at] if len(row) > pixels_at else "", "votes": votes, "source_id": name,
                 "annotation": str(pixels_path), "line": line_number}
            )  # fmt: skip
    if count != len(vote_rows):
        detail = f"{pixels_path.name} has {count} rows but {votes_path.name} has {len(vote_rows)}"
        log.add(Problem("train", str(votes_path), BAD_ANNOTATION, detail, action="kept", source_id="row count"))
    return records


def pixels_to_image(text: str) -> Image.Image:
    """A 48 x 48 gray image from Kaggle's space-separated pixel string (2304 values 0..255, row by row).

    Raises:
        ValueError: not 2304 integers in 0..255.
    """
    try:
        values = np.array([int(v) for v in text.split()], dtype=np.int64)
    except ValueError as error:
        raise ValueError(f"pixels are not integers ({error})") from None
    if values.size != IMAGE_SIDE * IMAGE_SIDE:
        raise ValueError(f"{values.size} pixel values, expected {IMAGE_SIDE * IMAGE_SIDE} (48 x 48)")
    if values.min() < 0 or values.max() > 255:
        raise ValueError(f"pixel values outside 0..255 (min {values.min()}, max {values.max()})")
    return Image.fromarray(values.reshape(IMAGE_SIDE, IMAGE_SIDE).astype(np.uint8), mode="L")


def _make_example(record: dict, split: str, options: dict, log: ProblemLog) -> dict | None:
    source_id = record["source_id"]
    labels = vote_labels(record["votes"])
    if labels.drop_kind:
        detail = f"line {record['line']}: {labels.detail}"
        log.add(Problem(split, record["annotation"], labels.drop_kind, detail, source_id=source_id))
        return None
    if "pixels" in record:
        try:
            image = pixels_to_image(record["pixels"])
        except ValueError as error:
            detail = f"line {record['line']}: {error}"
            log.add(Problem(split, record["annotation"], LABEL_OUT_OF_RANGE if "outside" in str(error) else BAD_ANNOTATION,
                            detail, source_id=source_id))  # fmt: skip
            return None
        stored = _png(image)
    else:
        loaded = read_source_image(record["image"], split, source_id, log)
        if loaded is None:
            return None
        data, image = loaded
        # FER+ PNGs are stored as distributed (gray, lossless); anything else is stored as gray PNG.
        stored = {"bytes": data, "path": None} if image.format == "PNG" and image.mode == "L" else _png(image.convert("L"))
    valence, arousal = derived_valence_arousal(record["votes"])
    return {
        "image": stored,
        "label": -1 if labels.majority is None else labels.majority,
        "soft_label": list(labels.soft_label),
        "votes": list(record["votes"]),
        "valence": valence,
        "arousal": arousal,
        "source_id": source_id,
    }


def _png(image: Image.Image) -> dict:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return {"bytes": buffer.getvalue(), "path": None}


def prepare_ferplus(
    root: str | Path,
    out_dir: str | Path,
    *,
    layout: str = "auto",
    num_proc: int | None = None,
    overwrite: bool = False,
    report_path: str | Path | None = None,
    push_to_hub: str | None = None,
    private: bool = True,
    calibrate: bool = True,
    calibration_sample: int = 500,
    detector: str = "auto",
    detector_model: str | None = None,
    seed: int = 0,
    crop_format: str | None = None,
) -> tuple[datasets.DatasetDict, dict, ProblemLog]:
    """Prepare a FER+ copy as ``train``/``validation`` (FER2013Valid)/``test`` (FER2013Test, where present).

    Args:
        root: the FER+ folder, in one of [`LAYOUTS`].
        out_dir: where ``DatasetDict.save_to_disk`` writes, with ``cage_stats.json`` and ``cage_report.jsonl``.
        layout: ``"auto"``, ``"folders"`` or ``"csv"``.
        num_proc: processes reading images.
        overwrite, report_path, push_to_hub, private: as for ``prepare_affectnet``.
        calibrate: measure how FER+ crops frame the inference ``detector``'s face box (``cage.data.framing``) on
            ``calibration_sample`` training faces (seeded with ``seed``), upscaled to
            ``framing.CALIBRATION_FACE_SIDE`` pixels first (48-pixel faces are below the detectors' minimum).
        detector, detector_model: the inference detector(s) calibrated for (``"auto"``: YuNet where its model
            file can be had, and dlib; see ``framing.calibrate_each``).
        crop_format: unused (FER+ faces are stored as distributed, lossless PNG); accepted so that every
            ``cage prepare`` takes the same options.

    Returns:
        ``(dataset_dict, stats, problems)``. The stats hold, per split, the examples kept by each FER+ label
        mode (``protocol``; on FER2013Valid the majority mode keeps 3,191 faces), the majority-label class
        counts, the image domain (48 x 48 gray: ``cage train`` makes the saved processor reproduce it) and the
        note that valence/arousal are derived.

    Raises:
        PrepareError: unknown or ambiguous layout, missing label files, bad options. Problems with single
            faces (unreadable images, bad rows, votes without consensus) are logged, never raised.
    """
    root = Path(root)
    out_dir = check_output_dir(out_dir, overwrite, root)
    if layout == "auto":
        layout = detect_ferplus_layout(root)
    elif layout not in LAYOUTS:
        raise PrepareError(f"layout must be 'auto' or one of {LAYOUTS}, got {layout!r}")
    log = ProblemLog()
    records = (_folder_records if layout == "folders" else _csv_records)(root, log)
    if not records["train"]:
        raise PrepareError(f"{root}: the FER+ training split (FER2013Train / Usage 'Training') has no rows")
    features = ferplus_features()
    builder = Builder(out_dir, num_proc)
    try:
        splits = datasets.DatasetDict(
            {
                split: builder.split(rows, split=split, features=features, make_example=_make_example, options={})
                for split, rows in records.items()
                if rows or split != "test"
            }
        )
        workers = ProblemLog()  # what the generator dropped so far (Builder.finish merges it into `log`)
        workers.merge(builder.problems_dir)
        stats = _ferplus_stats(splits, records, log.problems + workers.problems, layout)
        if calibrate:
            from .framing import CALIBRATION_FACE_SIDE, calibrate_each, calibrate_split

            stats["framing"].update(calibrate_each(
                lambda name, model: calibrate_split(
                    splits["train"], sample=calibration_sample, seed=seed, detector=name, detector_model=model,
                    upscale_to=CALIBRATION_FACE_SIDE,
                ),
                detector, detector_model,
            ))  # fmt: skip
        else:
            stats["framing"]["calibration"] = {"status": "skipped", "reason": "calibration was switched off"}
        builder.finish(splits, stats, log, report_path=report_path, push_to_hub=push_to_hub, private=private)
    finally:
        builder.cleanup()
    return datasets.load_from_disk(str(out_dir)), stats, log


def _ferplus_stats(splits: datasets.DatasetDict, records: dict, problems: list[Problem], layout: str) -> dict:
    from .build import class_counts

    protocol = {}
    for name, dataset in splits.items():
        labels = np.asarray(dataset.with_format("numpy", columns=["label"])["label"]) if len(dataset) else np.zeros(0)
        dropped = {kind: sum(p.split == name and p.kind == kind for p in problems) for kind in (NO_CONSENSUS, NOT_A_FACE)}
        protocol[name] = {
            "rows": len(records[name]),
            "kept": len(dataset),
            "majority_kept": int((labels >= 0).sum()),
            "soft_only": int((labels < 0).sum()),
            "dropped_no_consensus": dropped[NO_CONSENSUS],
            "dropped_not_a_face": dropped[NOT_A_FACE],
        }
    majority_counts = {}
    for name, dataset in splits.items():
        kept = dataset.filter(lambda label: label >= 0, input_columns="label") if len(dataset) else dataset
        majority_counts[name] = dict(zip(AFFECTNET8, class_counts(kept, len(AFFECTNET8))))
    return {
        "cage_stats_version": 1,
        "dataset": "ferplus",
        "layout": layout,
        "classes": len(AFFECTNET8),
        "label_names": list(AFFECTNET8),
        "ferplus_columns": list(FERPLUS_COLUMNS),
        "label_mapping": {name: AFFECTNET_NAME[name] for name in FERPLUS_EMOTIONS},
        "num_examples": {name: len(dataset) for name, dataset in splits.items()},
        "class_counts": majority_counts,
        "class_counts_note": "majority-mode labels only (faces whose label is -1 are not counted)",
        "class_weights": None,
        "protocol": protocol,
        "protocol_description": "Barsoum et al., ICMI 2016: single votes removed; `label` = majority mode (one "
        "emotion holds more than half of the remaining votes; accuracy is measured on these faces); "
        "`soft_label` = cross-entropy mode (top emotions, at most 3, until 75 % of the votes; faces where they "
        "hold 50 % or less, or where unknown/not-a-face leads, are dropped)",
        "regression_targets": {
            "source": "derived",
            "note": DERIVED_TARGETS_NOTE,
            "centroids": {name: list(AFFECTNET_CENTROIDS[name]) for name in AFFECTNET8},
            "centroids_source": "AffectNet class centroids (../shared/reference/cage.md): means over the 500 "
            "images per class of AffectNet's official validation set",
        },
        "image_domain": {"grayscale": True, "resolution": IMAGE_SIDE,
                         "description": "FER2013 faces: gray, scaled to 48 x 48 pixels"},  # fmt: skip
        "validation": {"source": "FER2013Valid (FER2013 PublicTest): every choice is made on it"},
        "test": {"source": "FER2013Test (FER2013 PrivateTest)" if "test" in splits else "not provided"},
        "image_encoding": {"images": "the distributed 48 x 48 gray PNG bytes (csv layout: encoded as gray PNG)"},
        "framing": {"crops": {"policy": "as distributed", "description": "FER2013's own 48 x 48 face crops"}},
        "terms": "FER2013 images: the FER2013 challenge set, distributed for research; FER+ labels: MIT licence",
        "files": {"stats": STATS_FILE, "report": REPORT_FILE},
    }
