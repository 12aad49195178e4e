"""Predict on files, folders and videos: one result per image or sampled frame, failures reported, never fatal."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from ..face_analysis_cage import FaceExpressionAnalyzer, read_image, to_rgb
from .sources import InputFile, iter_video_frames

__all__ = ["ImageResult", "load_boxes", "predict_paths", "predict_video", "read_image"]

Boxes = Mapping[str, Sequence[Sequence[float]]]


@dataclass
class ImageResult:
    """Predictions for one image file or one sampled video frame.

    Attributes:
        file: the path as given (or as found in a folder given).
        faces: one record per face, left to right (see ``face_analysis_cage.face_records``); ``[]`` without a face.
        error: ``None``, or why the input could not be processed (missing, empty, not an image, truncated...).
        frame: for videos, the 0-based frame index in the file.
        time_s: for videos, the frame's presentation time in seconds (the container's timestamp; ``None`` for a
            frame that could not be decoded).
    """

    file: str
    faces: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    frame: int | None = None
    time_s: float | None = None

    def to_dict(self) -> dict[str, Any]:
        record: dict[str, Any] = {"file": self.file}
        if self.frame is not None:
            record["frame"] = self.frame
            record["time_s"] = self.time_s
        record["faces"] = self.faces
        if self.error is not None:
            record["error"] = self.error
        return record

    @property
    def failed(self) -> bool:
        """Whether something was lost: the input could not be processed, or a face has no prediction (its
        record has ``error``, e.g. a non-finite model output)."""
        return self.error is not None or any(face.get("error") for face in self.faces)


def load_boxes(path: str | os.PathLike) -> dict[str, list[list[float]]]:
    """Read user boxes (e.g. EMOTIC person boxes): ``{"image path or file name": [[x, y, w, h], ...], ...}``.

    Boxes are in pixels of the upright (EXIF-applied) image. An image matches a key equal to its path as
    given, or to its file name.

    Raises:
        ValueError: the file is not such a JSON object; the message names the file and the bad entry.
        OSError: the file cannot be read.
    """
    path = Path(path).expanduser()
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not valid JSON ({error})") from error
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object mapping image paths to lists of [x, y, w, h] boxes")
    boxes: dict[str, list[list[float]]] = {}
    for key, value in data.items():
        ok = isinstance(value, list) and all(
            isinstance(b, list)
            and len(b) == 4
            and all(isinstance(v, (int, float)) for v in b)
            and b[2] > 0
            and b[3] > 0
            for b in value
        )
        if not ok:
            raise ValueError(f"{path}: entry {key!r} must be a list of [x, y, w, h] boxes with w, h > 0")
        boxes[key] = [[float(v) for v in b] for b in value]
    return boxes


def _boxes_for(boxes: Boxes | None, name: str) -> Sequence[Sequence[float]] | None:
    if not boxes:
        return None
    if name in boxes:
        return boxes[name]
    return boxes.get(Path(name).name)


def _iter_with_images(
    analyzer: FaceExpressionAnalyzer,
    items: Iterable[tuple[str, Image.Image | None, str | None, dict[str, Any]]],
    images_per_batch: int,
    boxes: Boxes | None = None,
) -> Iterator[tuple[ImageResult, Image.Image | None]]:
    """Batch ``(name, image or None, error, extra fields)`` items through the analyzer, preserving order.

    An analyzer failure on one batch (e.g. a malformed user box) is retried image by image so that only the
    bad image is reported.
    """
    pending: list[tuple[str, Image.Image, dict[str, Any]]] = []

    def run(batch):
        faces = analyzer.analyze([image for _, image, _ in batch], [_boxes_for(boxes, n) for n, _, _ in batch])
        return [(ImageResult(file=n, faces=f, **extra), image) for (n, image, extra), f in zip(batch, faces)]

    def flush() -> Iterator[tuple[ImageResult, Image.Image | None]]:
        if not pending:
            return
        try:
            done = run(pending)
        except (ValueError, OSError) as error:
            if len(pending) == 1:
                name, image, extra = pending[0]
                done = [(ImageResult(file=name, error=f"{name}: {error}", **extra), image)]
            else:
                done = []
                for one in pending:
                    pending_one = [one]
                    try:
                        done.extend(run(pending_one))
                    except (ValueError, OSError) as one_error:
                        done.append((ImageResult(file=one[0], error=f"{one[0]}: {one_error}", **one[2]), one[1]))
        pending.clear()
        yield from done

    for item in items:
        if item is FLUSH:  # a batch boundary the caller asks for
            yield from flush()
            continue
        name, image, error, extra = item
        if error is not None:
            yield from flush()
            yield ImageResult(file=name, error=error, **extra), None
            continue
        pending.append((name, image, extra))
        if len(pending) >= images_per_batch:
            yield from flush()
    yield from flush()


FLUSH = object()  # an item of _iter_with_images: predict what is pending before the next item


def _image_items(paths: Iterable[str | os.PathLike]) -> Iterator[tuple[str, Image.Image | None, str | None, dict]]:
    for path in paths:
        name = str(path)
        try:
            yield name, to_rgb(read_image(path)), None, {}
        except OSError as error:
            yield name, None, str(error), {}


def predict_paths(
    analyzer: FaceExpressionAnalyzer,
    paths: Iterable[str | os.PathLike],
    images_per_batch: int = 8,
    boxes: Boxes | None = None,
) -> Iterator[ImageResult]:
    """Yield an [`ImageResult`] per image path, in order; unreadable files yield a result with ``error`` set.

    Images are read ``images_per_batch`` at a time and their faces predicted together (``analyzer.batch_size``
    crops per forward pass). ``boxes`` (see [`load_boxes`]) replace detection for the images they name.
    """
    for result, _ in _iter_with_images(analyzer, _image_items(paths), images_per_batch, boxes):
        yield result


def _frame_items(path: str, every: int, fps: float | None):
    """Items for [`_iter_with_images`]: decoded frames, and the lost ones (bad frames, a short or empty video)
    as errors, so that each is reported and counted while the rest of the video goes on."""
    try:
        for frame in iter_video_frames(path, every=every, fps=fps):
            extra = {} if frame.index is None else {"frame": frame.index, "time_s": frame.time_s}
            yield path, frame.image, frame.error, extra
    except (OSError, ValueError) as error:
        yield path, None, str(error), {}


def predict_video(
    analyzer: FaceExpressionAnalyzer,
    path: str | os.PathLike,
    every: int = 1,
    fps: float | None = None,
    images_per_batch: int = 8,
) -> Iterator[ImageResult]:
    """Yield an [`ImageResult`] (with ``frame`` and ``time_s``) per sampled frame of a video, streaming.

    At most ``images_per_batch`` decoded frames are held at a time, whatever the video's length. A video
    that cannot be opened, or has no decodable frame, yields one result with ``error`` set; a frame that cannot
    be decoded yields a result with ``frame`` and ``error`` and the video goes on; a video that ends before the
    frame count its container states yields a last result with ``error``. See ``sources.iter_video_frames``
    for ``every``/``fps`` and timestamps.
    """
    for result, _ in _iter_with_images(analyzer, _frame_items(str(path), every, fps), images_per_batch):
        yield result


def iter_input_results(
    analyzer: FaceExpressionAnalyzer,
    files: Sequence[InputFile],
    every: int = 1,
    fps: float | None = None,
    images_per_batch: int = 8,
    boxes: Boxes | None = None,
) -> Iterator[tuple[ImageResult, Image.Image | None]]:
    """Results with their decoded RGB images (``None`` on error), for writers that annotate.

    Batches never straddle a video's start or end or a multiple of ``images_per_batch`` in ``files``, so each
    input's batch depends only on its position: several processes given blocks of ``images_per_batch`` inputs
    (``distributed.py``) compute exactly the batches of one process.
    """

    def items():
        for position, item in enumerate(files):
            if position % images_per_batch == 0 or item.kind == "video":
                yield FLUSH
            if item.error is not None:
                yield item.path, None, item.error, {}
            elif item.kind == "video":
                yield from _frame_items(item.path, every, fps)
                yield FLUSH
            else:
                yield from _image_items([item.path])

    yield from _iter_with_images(analyzer, items(), images_per_batch, boxes)
