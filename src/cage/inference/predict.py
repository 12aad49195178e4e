"""Predict on image files: one result per file, unreadable files reported by name, never fatal."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image, UnidentifiedImageError

from ..pipeline_cage import FaceExpressionAnalyzer


@dataclass
class ImageResult:
    """Predictions for one input file.

    Attributes:
        file: the path as given.
        faces: one record per face (see ``FaceExpressionAnalyzer.analyze``); empty when no face was found.
        error: ``None``, or why the file could not be processed (missing, not an image, truncated...).
    """

    file: str
    faces: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        record: dict[str, Any] = {"file": self.file, "faces": self.faces}
        if self.error is not None:
            record["error"] = self.error
        return record


def read_image(path: str | Path) -> Image.Image:
    """Open and fully decode an image file.

    Raises:
        OSError: the file is missing, unreadable, not an image, or truncated; the message names the file.
    """
    path = Path(path)
    if not path.is_file():
        raise OSError(f"{path}: no such file")
    try:
        with Image.open(path) as image:
            image.load()
            return image.copy()
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as error:
        raise OSError(f"{path}: cannot read image ({error})") from error


def predict_paths(
    analyzer: FaceExpressionAnalyzer, paths: Iterable[str | Path], images_per_batch: int = 8
) -> Iterator[ImageResult]:
    """Yield an [`ImageResult`] per path, in order; unreadable files yield a result with ``error`` set.

    Images are read ``images_per_batch`` at a time and their faces predicted together.
    """
    pending: list[tuple[str, Image.Image]] = []

    def flush() -> Iterator[ImageResult]:
        if not pending:
            return
        faces = analyzer.analyze([image for _, image in pending])
        for (name, _), image_faces in zip(pending, faces):
            yield ImageResult(file=name, faces=image_faces)
        pending.clear()

    for path in paths:
        name = str(path)
        try:
            image = read_image(path)
        except OSError as error:
            yield from flush()
            yield ImageResult(file=name, error=str(error))
            continue
        pending.append((name, image))
        if len(pending) >= images_per_batch:
            yield from flush()
    yield from flush()
