"""Where inputs come from: image files, folders (recursive, stable order), video files read as a stream."""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ..pipeline_cage import bgr_to_rgb

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".jpe", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pnm", ".jfif"}
)
VIDEO_EXTENSIONS = frozenset(
    {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".3gp", ".ts", ".mts", ".m2ts"}
    | {".ogv", ".vob", ".asf", ".mjpeg", ".mjpg"}
)


@dataclass(frozen=True)
class InputFile:
    """One input: ``path`` as the user will see it in the results, ``kind`` ``"image"`` or ``"video"``.

    ``error`` is set for inputs that do not exist (they are reported, not silently dropped); ``root`` is the
    folder given when the file was found in one.
    """

    path: str
    kind: str
    error: str | None = None
    root: str | None = None


def kind_of(path: str | os.PathLike) -> str:
    """``"video"`` for known video extensions, else ``"image"`` (unknown files are tried as images)."""
    return "video" if Path(path).suffix.lower() in VIDEO_EXTENSIONS else "image"


@dataclass(frozen=True)
class SkippedFile:
    """A file found in a folder that is not read, and why (reported by name and counted, never silent)."""

    path: str
    reason: str


def _identify_image(path: Path) -> bool:
    """Whether Pillow recognises ``path`` as an image (reads the header only)."""
    try:
        with Image.open(path):
            return True
    except Exception:  # noqa: BLE001 - any failure means "not an image Pillow can open"
        return False


def scan_folder(folder: str | os.PathLike) -> tuple[list[Path], list[SkippedFile]]:
    """Image and video files under ``folder``, recursively, in a stable order (sorted by relative path), and
    the files that are skipped, each with its reason.

    - Files with an image or video extension (see [`IMAGE_EXTENSIONS`], [`VIDEO_EXTENSIONS`], any case) are
      returned, even if broken (they are reported when read).
    - Files with another or no extension are returned when Pillow recognises them as an image (a JPEG saved
      as ``.img``, a ``.dng``...); otherwise they are skipped with the reason.
    - Hidden files and folders (names starting with ``.``) are skipped with the reason.
    - Symbolic links to folders are followed (each real folder is visited once, so link loops end);
      links to files are read like files; broken links are returned and reported when read.
    - Names that are not valid UTF-8 are kept as the operating system gives them (surrogate escapes).
    """
    root = Path(folder)
    found, skipped = [], []
    visited = {os.path.realpath(root)}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        keep = []
        for name in sorted(dirnames):
            path = Path(dirpath) / name
            if name.startswith("."):
                skipped.append(SkippedFile(str(path), "hidden folder"))
                continue
            real = os.path.realpath(path)
            if real in visited:
                skipped.append(SkippedFile(str(path), f"link to a folder already read ({real})"))
                continue
            visited.add(real)
            keep.append(name)
        dirnames[:] = keep
        for name in filenames:
            path = Path(dirpath) / name
            suffix = Path(name).suffix.lower()
            if name.startswith("."):
                skipped.append(SkippedFile(str(path), "hidden file"))
            elif suffix in IMAGE_EXTENSIONS or suffix in VIDEO_EXTENSIONS or _identify_image(path):
                found.append((path.relative_to(root).as_posix(), path))
            else:
                reason = f"not an image Pillow can open, nor a video extension ({', '.join(sorted(VIDEO_EXTENSIONS))})"
                skipped.append(SkippedFile(str(path), reason))
    return [path for _, path in sorted(found)], sorted(skipped, key=lambda item: item.path)


def iter_folder(folder: str | os.PathLike) -> Iterator[Path]:
    """The files [`scan_folder`] returns for reading (the skipped ones are left out)."""
    return iter(scan_folder(folder)[0])


def scan_inputs(inputs: Iterable[str | os.PathLike]) -> tuple[list[InputFile], list[SkippedFile]]:
    """Files given and files found in folders given, in order, and the files skipped in those folders.

    A leading ``~`` is expanded; missing paths become ``InputFile`` errors (reported, not dropped).
    """
    files: list[InputFile] = []
    skipped: list[SkippedFile] = []
    for item in inputs:
        path = Path(item).expanduser()
        if path.is_dir():
            found, left = scan_folder(path)
            files.extend(InputFile(str(p), kind_of(p), root=str(path)) for p in found)
            skipped.extend(left)
        elif path.exists():
            files.append(InputFile(str(path) if str(item).startswith("~") else str(item), kind_of(path)))
        else:
            files.append(InputFile(str(item), kind_of(path), error=f"{item}: no such file or folder"))
    return files, skipped


def expand_inputs(inputs: Iterable[str | os.PathLike]) -> list[InputFile]:
    """The files of [`scan_inputs`] (without the list of skipped files)."""
    return scan_inputs(inputs)[0]


@dataclass(frozen=True)
class VideoFrame:
    """A decoded frame: ``index`` (0-based, in the file), ``time_s`` (index / the video's frame rate) and
    ``image`` (RGB PIL)."""

    index: int
    time_s: float
    image: Image.Image


def open_video(path: str | os.PathLike):
    """An opened ``cv2.VideoCapture``.

    Raises:
        OSError: OpenCV cannot open or decode the file; the message names it.
    """
    import cv2

    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        capture.release()
        raise OSError(f"{path}: cannot open as a video (missing, unsupported codec or not a video)")
    return capture


def video_frame_rate(capture) -> float:
    import cv2

    fps = float(capture.get(cv2.CAP_PROP_FPS) or 0.0)
    return fps if math.isfinite(fps) and fps > 0 else 0.0


def sampled_frame_count(path: str | os.PathLike, every: int = 1, fps: float | None = None) -> int | None:
    """Approximate number of frames [`iter_video_frames`] yields (from the container's frame count), or None."""
    import cv2

    try:
        capture = open_video(path)
    except OSError:
        return None
    try:
        count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        native = video_frame_rate(capture)
    finally:
        capture.release()
    if count <= 0:
        return None
    if fps is not None and native > 0:
        return max(1, math.ceil(count * min(1.0, fps / native)))
    return math.ceil(count / max(1, every))


def iter_video_frames(path: str | os.PathLike, every: int = 1, fps: float | None = None) -> Iterator[VideoFrame]:
    """Stream the sampled frames of a video, one at a time (never the whole file in memory).

    Args:
        path: a video file OpenCV can decode.
        every: keep frames 0, every, 2*every, ... (ignored when ``fps`` is given).
        fps: keep about ``fps`` frames per second of video: the first frame at or after each multiple of
            ``1 / fps`` seconds. Needs the file to state its frame rate.

    Yields:
        [`VideoFrame`]s in order. Skipped frames are only grabbed (``VideoCapture.grab``), not converted.

    Raises:
        OSError: the file cannot be opened, or ``fps`` is given and the file has no frame rate.
        ValueError: ``every`` < 1 or ``fps`` <= 0.
    """
    if every < 1:
        raise ValueError(f"every must be >= 1, got {every}")
    if fps is not None and fps <= 0:
        raise ValueError(f"fps must be > 0, got {fps}")
    capture = open_video(path)
    try:
        native = video_frame_rate(capture)
        if fps is not None and native <= 0:
            raise OSError(f"{path}: the video does not state its frame rate; use --every instead of --fps")
        index, next_time = 0, 0.0
        while capture.grab():
            time_s = index / native if native > 0 else 0.0
            if fps is not None:
                keep = time_s + 1e-9 >= next_time
                if keep:
                    next_time += 1.0 / fps
            else:
                keep = index % every == 0
            if keep:
                ok, frame = capture.retrieve()
                if not ok:
                    break
                yield VideoFrame(index=index, time_s=round(time_s, 3), image=frame_to_image(frame))
            index += 1
    finally:
        capture.release()


def frame_to_image(frame: np.ndarray) -> Image.Image:
    """An OpenCV BGR (or gray) uint8 frame as an RGB PIL image."""
    rgb = bgr_to_rgb(frame)
    return Image.fromarray(rgb).convert("RGB")


__all__ = [
    "IMAGE_EXTENSIONS",
    "VIDEO_EXTENSIONS",
    "InputFile",
    "SkippedFile",
    "VideoFrame",
    "expand_inputs",
    "iter_folder",
    "iter_video_frames",
    "kind_of",
    "open_video",
    "sampled_frame_count",
    "scan_folder",
    "scan_inputs",
]
