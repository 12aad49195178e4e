"""Where inputs come from: image files, folders (recursive, stable order), video files read as a stream."""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ..face_analysis_cage import bgr_to_rgb

logger = logging.getLogger(__name__)

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


def special_file_kind(path: str | os.PathLike) -> str | None:
    """``"a FIFO"``, ``"a socket"``, ``"a device"`` (or ``"not a regular file"``) for an existing path that is
    neither a regular file nor a folder (links followed); ``None`` for regular files, folders and missing or
    broken paths (those are reported when read)."""
    import stat

    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return None
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "not a regular file"


def scan_folder(folder: str | os.PathLike) -> tuple[list[Path], list[SkippedFile]]:
    """Image and video files under ``folder``, recursively, in a stable order (sorted by relative path), and
    the files that are skipped, each with its reason.

    - Files with an image or video extension (see [`IMAGE_EXTENSIONS`], [`VIDEO_EXTENSIONS`], any case) are
      returned, even if broken (they are reported when read).
    - Files with another or no extension are returned when Pillow recognises them as an image (a JPEG saved
      as ``.img``, a ``.dng``...); otherwise they are skipped with the reason.
    - Hidden files and folders (names starting with ``.``) are skipped with the reason, and so are files that
      are not regular files (FIFOs, sockets, devices: reading a FIFO would block the run forever).
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
            special = special_file_kind(path)
            if name.startswith("."):
                skipped.append(SkippedFile(str(path), "hidden file"))
            elif special:  # reading a FIFO would wait forever; devices and sockets are no images either
                skipped.append(SkippedFile(str(path), f"not a regular file ({special})"))
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
        elif special_file_kind(path):
            files.append(InputFile(str(item), kind_of(path), error=f"{item}: {special_file_kind(path)}, not a regular file"))
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
    """A decoded frame, or a frame that could not be decoded.

    Attributes:
        index: 0-based position of the frame in the file (frames that failed to decode count too).
        time_s: the frame's own presentation time in seconds (the container's timestamp, so variable
            frame rates are right), rounded to ms; ``None`` for a frame that could not be decoded.
        image: the RGB PIL frame; ``None`` when ``error`` is set.
        error: ``None``, or why this frame (``index`` set) or the rest of the video (``index`` is ``None``:
            fewer frames were decoded than the container states, or none at all) was lost.
    """

    index: int | None
    time_s: float | None
    image: Image.Image | None
    error: str | None = None


# A failed read is retried (the next frame usually decodes); this many failures in a row end the video.
MAX_CONSECUTIVE_FAILURES = 25


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


class FrameSampler:
    """Which frames of a stream to keep (video files and the webcam alike).

    Args:
        every: keep frames 0, every, 2*every, ... (ignored when ``fps`` is given).
        fps: keep about ``fps`` frames per second of stream time: the first frame whose time is at or after each
            multiple of ``1 / fps`` seconds.

    Raises:
        ValueError: ``every`` < 1 or ``fps`` <= 0.
    """

    def __init__(self, every: int = 1, fps: float | None = None):
        if every < 1:
            raise ValueError(f"every must be >= 1, got {every}")
        if fps is not None and fps <= 0:
            raise ValueError(f"fps must be > 0, got {fps}")
        self.every, self.fps, self.next_time = every, fps, 0.0

    def keep(self, index: int, time_s: float | None) -> bool:
        """Whether frame ``index`` (0-based) at ``time_s`` seconds is kept; call once per frame, in order.
        With ``fps`` and an unknown time (``None``), every frame is kept."""
        if self.fps is None:
            return index % self.every == 0
        if time_s is None:
            return True
        keep = time_s + 1e-9 >= self.next_time
        while self.next_time <= time_s + 1e-9:
            self.next_time += 1.0 / self.fps
        return keep


def iter_video_frames(path: str | os.PathLike, every: int = 1, fps: float | None = None) -> Iterator[VideoFrame]:
    """Stream the sampled frames of a video, one at a time (never the whole file in memory).

    Args:
        path: a video file OpenCV can decode.
        every, fps: which frames to keep (see [`FrameSampler`]); ``fps`` counts on the container's clock (right
            for variable frame rates).

    Yields:
        [`VideoFrame`]s in order. ``time_s`` is each frame's presentation timestamp (OpenCV's
        ``CAP_PROP_POS_MSEC`` after ``grab``, which the FFmpeg back-end takes from the packet's PTS); where the
        container gives none (the value does not increase), ``index / average frame rate`` is used. Skipped
        frames are only grabbed, not converted.

        Bad frames never end the video: a frame that cannot be decoded is yielded with ``error`` set (and no
        image), and reading goes on with the next frame (OpenCV's ``grab`` is retried; up to
        ``MAX_CONSECUTIVE_FAILURES`` failures in a row). When fewer frames were read than the container states
        (``CAP_PROP_FRAME_COUNT``), or none at all (an empty video), a last ``VideoFrame`` with ``index=None``
        and ``error`` says so, and a warning is logged.

    Raises:
        OSError: the file cannot be opened.
        ValueError: ``every`` < 1 or ``fps`` <= 0.
    """
    import cv2

    sampler = FrameSampler(every, fps)
    capture = open_video(path)
    try:
        native = video_frame_rate(capture)
        stated = int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        index, decoded, reported, last_time = 0, 0, 0, -math.inf
        failed: list[int] = []  # failed reads since the last good one (lost frames, or the end of the file)
        while True:
            if not capture.grab():
                if (stated > 0 and index >= stated) or len(failed) >= MAX_CONSECUTIVE_FAILURES:
                    break
                failed.append(index)
                index += 1
                continue
            for lost in failed:  # a later frame decoded: the failed ones were bad frames, not the end
                yield VideoFrame(index=lost, time_s=None, image=None, error=f"{path}: frame {lost} cannot be decoded")
            reported += len(failed)
            failed.clear()
            position = capture.get(cv2.CAP_PROP_POS_MSEC)
            if math.isfinite(position) and position / 1000.0 > last_time:
                time_s = position / 1000.0
            else:  # no usable timestamp: the average frame rate
                time_s = index / native if native > 0 else max(0.0, last_time)
            last_time = time_s
            if sampler.keep(index, time_s):
                ok, frame = capture.retrieve()
                if not ok or frame is None:
                    error = f"{path}: frame {index} cannot be decoded"
                    yield VideoFrame(index=index, time_s=round(time_s, 3), image=None, error=error)
                    reported += 1
                    index += 1
                    continue
                yield VideoFrame(index=index, time_s=round(time_s, 3), image=frame_to_image(frame))
            decoded += 1
            index += 1
        if decoded == 0:
            message = f"{path}: no frame could be decoded (the container states {stated} frames)"
        elif stated > 0 and decoded + reported < stated:
            message = f"{path}: read {decoded} of the {stated} frames the container states; the rest are lost"
        else:
            message = None
        if message is not None:
            logger.warning(message)
            yield VideoFrame(index=None, time_s=None, image=None, error=message)
    finally:
        capture.release()


def frame_to_image(frame: np.ndarray) -> Image.Image:
    """An OpenCV BGR (or gray) uint8 frame as an RGB PIL image."""
    rgb = bgr_to_rgb(frame)
    return Image.fromarray(rgb).convert("RGB")


__all__ = [
    "IMAGE_EXTENSIONS",
    "VIDEO_EXTENSIONS",
    "FrameSampler",
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
