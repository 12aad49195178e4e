"""Shared machinery of ``cage prepare``: image reading and cropping, streaming generation with ``datasets``,
saving, the statistics and the problem report.

Preparation runs in two passes. The first reads only the annotation files and lists one small record
(paths and raw label strings) per example. The second is ``datasets.Dataset.from_generator`` over shards
of those records, optionally in ``num_proc`` processes: each example's labels are checked, its image is
decoded (and cropped), and it is written straight to Arrow files on disk. No list of decoded images is ever
held in memory.
"""

from __future__ import annotations

import io
import json
import math
import shutil
import tempfile
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path

import datasets
import numpy as np
from PIL import Image, UnidentifiedImageError

from ..image_processing_cage import CageImageProcessor, clamp_box, to_rgb
from .problems import (
    BOX_OUTSIDE_IMAGE,
    CLAMPED,
    DROPPED,
    EMPTY_BOX,
    MISSING_IMAGE,
    UNREADABLE_IMAGE,
    Problem,
    ProblemLog,
)
from .stats import REPORT_FILE, STATS_FILE

CROP_FORMATS = ("png", "jpeg")
JPEG_QUALITY = 95
# zlib level 1: about 4x faster than PIL's default 6 for about 10 % larger files (lossless either way).
PNG_COMPRESS_LEVEL = 1
_EXIF_ORIENTATION = 0x0112
# The policy every annotation-box crop of `cage prepare` follows, recorded in the dataset's stats. The pixels
# come from CageImageProcessor.crop_annotation, the method inference uses for exact (body) crops.
ANNOTATION_CROP_POLICY = {
    "policy": "exact",
    "method": "CageImageProcessor.crop_annotation",
    "description": "the annotation box (x, y, w, h), corners rounded to whole pixels and clamped to the image; "
    "not squared, no margin, no padding",
}
_ANNOTATION_PROCESSOR = CageImageProcessor(crop_exact=True)


class PrepareError(ValueError):
    """The dataset root cannot be prepared at all (unknown layout, missing annotation files, bad options)."""


def check_output_dir(out_dir: str | Path, overwrite: bool, root: str | Path) -> Path:
    """Check that ``out_dir`` may be written, and return it as a path.

    Raises:
        PrepareError: if ``out_dir`` is the source ``root`` or a folder above it; if it holds files and
            ``overwrite`` is off; or if it holds files that are not an earlier ``cage prepare`` output (so that
            ``overwrite`` never deletes anything else).
    """
    out_dir = Path(out_dir)
    resolved, source = out_dir.resolve(), Path(root).resolve()
    if resolved == source or resolved in source.parents:
        raise PrepareError(f"output folder {out_dir} would contain the source {root}; write somewhere else")
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        if not overwrite:
            raise PrepareError(f"output folder {out_dir} exists and is not empty (pass overwrite to replace it)")
        if not (out_dir / STATS_FILE).is_file():
            raise PrepareError(
                f"output folder {out_dir} is not empty and was not written by cage prepare; not replacing it"
            )
    return out_dir


def read_source_image(path: str, split: str, source_id: str, log: ProblemLog) -> tuple[bytes, Image.Image] | None:
    """Read and fully decode a dataset's image file; on failure log ``missing_image``/``unreadable_image`` and
    return None (one bad file never stops ``cage prepare``). Inference reads images with
    ``cage.face_analysis_cage.read_image`` instead, which raises ``OSError``.

    Returns:
        ``(file bytes, decoded PIL image)``; the image is decoded completely, so a truncated JPEG fails here.
    """
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except FileNotFoundError:
        log.add(Problem(split, path, MISSING_IMAGE, "the image file does not exist", source_id=source_id))
        return None
    except OSError as error:
        log.add(Problem(split, path, UNREADABLE_IMAGE, f"cannot read the file: {error}", source_id=source_id))
        return None
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
        detail = f"cannot decode the image: {type(error).__name__}: {error}"
        log.add(Problem(split, path, UNREADABLE_IMAGE, detail, source_id=source_id))
        return None
    return data, image


def stored_image(data: bytes, image: Image.Image) -> dict:
    """The ``datasets.Image`` value for a whole (uncropped) image file.

    The original bytes are kept when the file is already an upright RGB JPEG or PNG (no re-encoding, no
    loss); anything else (grayscale, CMYK, alpha, an EXIF rotation, other formats) is made upright RGB with
    [`to_rgb`] and stored as lossless PNG (such images are rare; no second lossy encoding).
    """
    upright = image.getexif().get(_EXIF_ORIENTATION, 1) == 1
    if image.format in ("JPEG", "PNG") and image.mode == "RGB" and upright:
        return {"bytes": data, "path": None}
    return encode_image(to_rgb(image), "png")


def encode_image(image: Image.Image, fmt: str) -> dict:
    """Encode an RGB image as PNG (lossless, zlib level 1) or JPEG (quality 95, 4:4:4) for ``datasets.Image``."""
    buffer = io.BytesIO()
    if fmt == "png":
        image.save(buffer, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
    elif fmt == "jpeg":
        image.save(buffer, format="JPEG", quality=JPEG_QUALITY, subsampling=0)  # 4:4:4, no chroma loss
    else:
        raise PrepareError(f"crop format must be one of {CROP_FORMATS}, got {fmt!r}")
    return {"bytes": buffer.getvalue(), "path": None}


def crop_box(
    image: Image.Image,
    box_xyxy: Sequence[float],
    *,
    split: str,
    path: str,
    source_id: str,
    log: ProblemLog,
) -> Image.Image | None:
    """Crop ``box_xyxy`` = ``(x1, y1, x2, y2)`` (pixels, x to the right, y down) from an upright RGB image.

    The pixels come from [`CageImageProcessor.crop_annotation`] (the one framing code path; policy
    [`ANNOTATION_CROP_POLICY`]): the box is rounded to whole pixels and clamped to the image's ``width`` (x)
    and ``height`` (y). A box that leaves the image is logged as ``box_outside_image`` (action ``clamped``);
    one with no area left is logged as ``empty_box`` and None is returned (the example is dropped).
    """
    width, height = image.size
    x1, y1, x2, y2 = (float(v) for v in box_xyxy)
    box = (x1, y1, x2 - x1, y2 - y1)
    rounded = tuple(int(round(v)) for v in box_xyxy)
    if rounded[2] <= rounded[0] or rounded[3] <= rounded[1]:
        detail = f"box (x1, y1, x2, y2) = {tuple(box_xyxy)} has no area"
        log.add(Problem(split, path, EMPTY_BOX, detail, source_id=source_id))
        return None
    clamped = clamp_box(box, width, height)
    if clamped is None:
        detail = f"box (x1, y1, x2, y2) = {rounded} lies outside the {width}x{height} image"
        log.add(Problem(split, path, EMPTY_BOX, detail, source_id=source_id))
        return None
    (cx, cy, cw, ch), was_clamped = clamped
    if was_clamped:
        detail = (
            f"box (x1, y1, x2, y2) = {rounded} leaves the {width}x{height} (width x height) image; "
            f"clamped to {(cx, cy, cx + cw, cy + ch)}"
        )
        log.add(Problem(split, path, BOX_OUTSIDE_IMAGE, detail, action=CLAMPED, source_id=source_id))
    return _ANNOTATION_PROCESSOR.crop_annotation(image, box)


def parse_float(value) -> float:
    """``float(value)`` for numbers, numeric strings (``"0.25"``, ``" -2 "``) and 0-d/1-element arrays.

    Raises:
        ValueError: if the value is not a single number.
    """
    if hasattr(value, "shape"):
        if getattr(value, "size", 1) != 1:
            raise ValueError(f"expected one value, got an array of shape {value.shape}")
        value = value.reshape(()).item() if hasattr(value, "reshape") else value
    if isinstance(value, bytes):
        value = value.decode()
    if isinstance(value, str):
        value = value.strip()
    return float(value)


def is_nan(value: float) -> bool:
    return isinstance(value, float) and math.isnan(value)


ExampleFunction = Callable[[dict, str, dict, ProblemLog], "dict | None"]


def generate_examples(shards: list[list[dict]], split: str, options: dict, problems_dir: str, make_example):
    """Generator run by ``Dataset.from_generator`` (possibly in a worker process).

    Each record becomes one example via ``make_example(record, split, options, log)``, which returns the
    example or None (the record is dropped, and it has logged why).
    """
    log = ProblemLog.for_worker(problems_dir)
    try:
        for shard in shards:
            for record in shard:
                example = make_example(record, split, options, log)
                if example is not None:
                    yield example
    finally:
        log.close()


class Builder:
    """Writes the splits of one prepared dataset through a scratch folder beside the output folder."""

    def __init__(self, out_dir: Path, num_proc: int | None):
        self.out_dir = Path(out_dir)
        self.num_proc = num_proc if num_proc and num_proc > 1 else None
        self.out_dir.parent.mkdir(parents=True, exist_ok=True)
        self.scratch = Path(tempfile.mkdtemp(prefix=".cage-prepare-", dir=self.out_dir.parent))
        self.problems_dir = self.scratch / "problems"
        self.problems_dir.mkdir()

    def split(
        self,
        records: list[dict],
        *,
        split: str,
        features: datasets.Features,
        make_example: ExampleFunction,
        options: dict,
    ) -> datasets.Dataset:
        """Generate one split from ``records`` (streamed to disk, ``num_proc`` processes)."""
        if not records:
            return datasets.Dataset.from_dict({name: [] for name in features}, features=features, split=split)
        n_shards = min(len(records), max(1, (self.num_proc or 1) * 4))
        size = math.ceil(len(records) / n_shards)
        shards = [records[start : start + size] for start in range(0, len(records), size)]
        try:
            return datasets.Dataset.from_generator(
                generate_examples,
                features=features,
                gen_kwargs={
                    "shards": shards,
                    "split": split,
                    "options": options,
                    "problems_dir": str(self.problems_dir),
                    "make_example": make_example,
                },
                num_proc=self.num_proc if len(shards) > 1 else None,
                cache_dir=str(self.scratch / "cache"),
                fingerprint=uuid.uuid4().hex,
                split=datasets.NamedSplit(split),
            )
        except ValueError:
            # ``datasets`` cannot read back a split with no example; that is only fine when every record
            # was dropped (and logged) by the generator.
            workers = ProblemLog()
            workers.merge(self.problems_dir)
            dropped = sum(p.split == split and p.action == DROPPED for p in workers.problems)
            if dropped < len(records):
                raise
            return datasets.Dataset.from_dict({name: [] for name in features}, features=features, split=split)

    def finish(
        self,
        splits: datasets.DatasetDict,
        stats: dict,
        log: ProblemLog,
        *,
        report_path: str | Path | None = None,
        push_to_hub: str | None = None,
        private: bool = True,
    ) -> Path:
        """Merge the workers' problems, put ``stats`` in every split's info, save, write stats and report."""
        log.merge(self.problems_dir)
        stats["problems"] = {"counts": log.counts(), "dropped_examples": log.dropped(), "report": REPORT_FILE}
        description = json.dumps(stats, sort_keys=False)
        for dataset in splits.values():
            dataset.info.description = description
        if self.out_dir.exists():
            shutil.rmtree(self.out_dir)
        splits.save_to_disk(str(self.out_dir), num_proc=self.num_proc)
        (self.out_dir / STATS_FILE).write_text(json.dumps(stats, indent=2) + "\n", encoding="utf-8")
        log.write(self.out_dir / REPORT_FILE)
        if report_path is not None:
            log.write(report_path)
        if push_to_hub:
            splits.push_to_hub(push_to_hub, private=private)
            from huggingface_hub import HfApi

            HfApi().upload_file(
                path_or_fileobj=str(self.out_dir / STATS_FILE),
                path_in_repo=STATS_FILE,
                repo_id=push_to_hub,
                repo_type="dataset",
            )
        return self.out_dir

    def cleanup(self) -> None:
        shutil.rmtree(self.scratch, ignore_errors=True)


def class_counts(dataset: datasets.Dataset, num_classes: int, column: str = "label") -> list[int]:
    """Examples per class of a ``ClassLabel`` column (only that column is read; no image is decoded)."""
    if len(dataset) == 0:
        return [0] * num_classes
    values = np.asarray(dataset.with_format("numpy", columns=[column])[column], dtype=np.int64)
    return np.bincount(values, minlength=num_classes).tolist()


def multi_hot_counts(dataset: datasets.Dataset, num_classes: int, column: str = "labels") -> list[int]:
    """Positive examples per category of a multi-hot column (only that column is read)."""
    if len(dataset) == 0:
        return [0] * num_classes
    values = np.asarray(dataset.with_format("numpy", columns=[column])[column], dtype=np.float32)
    return (values.reshape(len(dataset), num_classes) > 0.5).sum(axis=0).astype(int).tolist()
