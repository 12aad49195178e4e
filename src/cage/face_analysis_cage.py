"""Face analysis without torch or transformers: read images, locate faces, crop them by the saved framing
policy, run any network on batches of crops, and turn its outputs into face records.

Flat and self-contained (it imports only ``face_detection_cage``) so that it travels with every saved model
as remote code, and imports neither torch nor transformers at module level: a network given as a PyTorch
module loads torch when it runs, while ``cage predict``'s fast start (``cage.inference.fast_start``) runs
a cached OpenVINO graph on NumPy arrays and never loads either. ``pipeline_cage`` (the transformers pipeline)
and ``image_processing_cage`` (the transformers image processor) build on these functions, so every entry
point frames, batches and reads outputs the same way.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .face_detection_cage import (
    FaceDetection,
    FaceDetector,
    WholeImageDetector,
    create_face_detector,
    parse_detect_size,
)

CROP_TARGETS = ("face", "body")


def to_rgb(image: Image.Image) -> Image.Image:
    """Return ``image`` upright (EXIF orientation applied) and in 8-bit RGB.

    Handles grayscale (``L``), palette, ``RGBA``/``LA`` (alpha dropped, colour channels kept), ``CMYK``,
    ``YCbCr``, and 16/32-bit integer (``I;16``, ``I``) and float (``F``) images; 16-bit images are scaled
    from 0..65535 to 0..255.
    """
    image = ImageOps.exif_transpose(image)
    if image.mode == "RGB":
        return image
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        array = np.asarray(image, dtype=np.float64)
        if image.mode.startswith("I;16"):
            array = array / 65535.0
        elif image.mode == "I":
            array = array / max(float(array.max()), 65535.0) if array.max() > 255 else array / 255.0
        else:
            array = np.clip(array, 0.0, 1.0) if array.max() <= 1.0 else array / max(float(array.max()), 1.0)
        gray = Image.fromarray(np.round(array * 255).clip(0, 255).astype(np.uint8), mode="L")
        return gray.convert("RGB")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    return image.convert("RGB")


def square_box(box: Sequence[float], margin: float) -> tuple[int, int, int, int]:
    """Square crop box around a detection, enlarged by ``margin`` of its side on every side.

    Args:
        box: ``(x, y, w, h)`` in pixels of the original image.
        margin: fraction of the box side added on each side (0.15 -> the side grows by 30 %).

    Returns:
        ``(x, y, side, side)`` in integer pixels, centred on ``box``; may extend past the image border.
    """
    x, y, w, h = (float(v) for v in box)
    side = max(w, h) * (1.0 + 2.0 * margin)
    cx, cy = x + w / 2.0, y + h / 2.0
    side_px = max(1, int(round(side)))
    left = int(math.floor(cx - side_px / 2.0 + 0.5))
    top = int(math.floor(cy - side_px / 2.0 + 0.5))
    return left, top, side_px, side_px


def clamp_box(box: Sequence[float], width: int, height: int) -> tuple[tuple[int, int, int, int], bool] | None:
    """Round an annotation box to whole pixels and clamp it to a ``width`` x ``height`` image.

    Args:
        box: ``(x, y, w, h)`` in pixels of the image (x to the right, y down).
        width, height: the image size in pixels.

    Returns:
        ``((x, y, w, h), clamped)``: the integer box inside the image (corners ``x, y, x + w, y + h`` rounded
        to the nearest pixel, then clamped) and whether clamping changed it; ``None`` when the box has no area
        or no area inside the image.
    """
    x, y, w, h = (float(v) for v in box)
    x1, y1, x2, y2 = (int(round(v)) for v in (x, y, x + w, y + h))
    if x2 <= x1 or y2 <= y1:
        return None
    cx1, cy1, cx2, cy2 = max(x1, 0), max(y1, 0), min(x2, width), min(y2, height)
    if cx2 <= cx1 or cy2 <= cy1:
        return None
    return (cx1, cy1, cx2 - cx1, cy2 - cy1), (cx1, cy1, cx2, cy2) != (x1, y1, x2, y2)


def framed_box(box: Sequence[float], framing: dict) -> tuple[int, int, int, int]:
    """The crop region for a detector ``box`` under a measured ``framing`` (see [`CageImageProcessor`]).

    ``w' = side_ratio[0] * w``, ``h' = side_ratio[1] * h``, centre ``(cx + center_offset[0] * w,
    cy + center_offset[1] * h)`` where ``(cx, cy)`` is the box centre: the offsets are fractions of the
    detector box's width and height (negative y: above the box centre).

    Args:
        box: ``(x, y, w, h)`` of the detection in pixels of the original image.
        framing: a dict with ``side_ratio`` ``[rx, ry]`` and ``center_offset`` ``[ox, oy]``.

    Returns:
        ``(x, y, w, h)`` in integer pixels; may extend past the image border.
    """
    x, y, w, h = (float(v) for v in box)
    rx, ry = (float(v) for v in framing["side_ratio"])
    ox, oy = (float(v) for v in framing["center_offset"])
    cx, cy = x + w / 2.0 + ox * w, y + h / 2.0 + oy * h
    width_px, height_px = max(1, int(round(rx * w))), max(1, int(round(ry * h)))
    left = int(math.floor(cx - width_px / 2.0 + 0.5))
    top = int(math.floor(cy - height_px / 2.0 + 0.5))
    return left, top, width_px, height_px


def crop_with_padding(image: Image.Image, box: Sequence[int], fill: tuple[int, int, int] = (0, 0, 0)) -> Image.Image:
    """Crop ``box`` = ``(x, y, w, h)`` (integer pixels) from ``image``; parts outside the image are ``fill``."""
    x, y, w, h = (int(v) for v in box)
    if w <= 0 or h <= 0:
        raise ValueError(f"crop box {tuple(box)} is empty")
    if x >= 0 and y >= 0 and x + w <= image.width and y + h <= image.height:
        return image.crop((x, y, x + w, y + h))
    canvas = Image.new(image.mode, (w, h), fill if image.mode == "RGB" else 0)
    left, top = max(x, 0), max(y, 0)
    right, bottom = min(x + w, image.width), min(y + h, image.height)
    if right > left and bottom > top:
        canvas.paste(image.crop((left, top, right, bottom)), (left - x, top - y))
    return canvas


def check_framing(framing) -> None:
    """Raise ``ValueError`` unless ``framing`` is None or a dict with two positive finite ``side_ratio`` values
    and two finite ``center_offset`` values."""
    if framing is None:
        return
    if not isinstance(framing, dict):
        raise ValueError(f"framing must be a dict with side_ratio and center_offset, got {type(framing).__name__}")
    try:
        ratio = [float(v) for v in framing["side_ratio"]]
        offset = [float(v) for v in framing["center_offset"]]
    except (KeyError, TypeError, ValueError) as error:
        raise ValueError(f"framing needs side_ratio [rx, ry] and center_offset [ox, oy] numbers: {error}") from error
    if len(ratio) != 2 or len(offset) != 2:
        raise ValueError(f"framing side_ratio and center_offset need two values each, got {ratio} and {offset}")
    if not all(math.isfinite(v) and v > 0 for v in ratio) or not all(math.isfinite(v) for v in offset):
        raise ValueError(f"framing side_ratio {ratio} must be positive and center_offset {offset} finite")



# Smallest and largest ``source_resolution`` a processor accepts (pixels).
SOURCE_RESOLUTION_RANGE = (8, 4096)


def match_training_faces(image: Image.Image, grayscale: bool = False, source_resolution: int | None = None) -> Image.Image:
    """Make a face crop look like the model's training faces before it is resized to the model's input.

    Args:
        image: an upright RGB crop (see [`to_rgb`]).
        grayscale: convert to gray (PIL's ITU-R 601-2 luma, ``L = 0.299 R + 0.587 G + 0.114 B``) and back to
            three equal channels: for models trained on gray faces (FER+/FER2013).
        source_resolution: scale the crop to ``source_resolution`` x ``source_resolution`` pixels (PIL bilinear,
            antialiased when shrinking) as the training faces were (FER2013: 48 px), so that a face cut from a
            large photo carries the same detail as a training face; ``None``: unchanged.

    Returns:
        An RGB image; ``image`` itself when neither option applies.
    """
    if grayscale and image.mode != "L":
        image = image.convert("L")
    if source_resolution and image.size != (source_resolution, source_resolution):
        image = image.resize((source_resolution, source_resolution), Image.Resampling.BILINEAR)
    return image.convert("RGB") if image.mode != "RGB" else image


class FramingPolicy:
    """The framing (crop) policy of a CAGE image processor, read from its attributes ``framing``,
    ``crop_exact``, ``crop_square``, ``crop_margin`` and ``crop_target``, and how a crop is made to look like
    the training faces (``grayscale``, ``source_resolution``; see [`match_training_faces`]); their meaning is
    documented in ``image_processing_cage.CageImageProcessor``. Mixed into ``CageImageProcessor`` and into the
    fast start's NumPy processor (``cage.inference.fast_start``), so that both crop alike."""

    framing: dict | None = None
    framings: dict | None = None
    crop_exact: bool = False
    crop_square: bool = True
    crop_margin: float = 0.15
    crop_target: str = "face"
    grayscale: bool = False
    source_resolution: int | None = None

    def check_policy(self) -> None:
        """Raise ``ValueError`` for an unknown ``crop_target``, a ``crop_margin`` outside [0, 2], a malformed
        ``framing`` (see [`check_framing`]), a non-boolean ``grayscale`` or a ``source_resolution`` that is
        not ``None`` or an integer in ``SOURCE_RESOLUTION_RANGE``."""
        if self.crop_target not in CROP_TARGETS:
            raise ValueError(f"crop_target must be one of {CROP_TARGETS}, got {self.crop_target!r}")
        if not 0.0 <= float(self.crop_margin) <= 2.0:
            raise ValueError(f"crop_margin must be in [0, 2], got {self.crop_margin}")
        check_framing(self.framing)
        if self.framings is not None:
            if not isinstance(self.framings, dict):
                raise ValueError(f"framings must map detector names to framings, got {type(self.framings).__name__}")
            for name, framing in self.framings.items():
                check_framing(framing)
                if framing.get("detector", name) != name:
                    raise ValueError(f"framings[{name!r}] was measured with {framing.get('detector')!r}")
        if not isinstance(self.grayscale, bool):
            raise ValueError(f"grayscale must be true or false, got {self.grayscale!r}")
        low, high = SOURCE_RESOLUTION_RANGE
        resolution = self.source_resolution
        if resolution is not None and (isinstance(resolution, bool) or not isinstance(resolution, int) or not low <= resolution <= high):
            raise ValueError(f"source_resolution must be null or an integer in [{low}, {high}], got {resolution!r}")

    @property
    def matches_training_faces(self) -> bool:
        """Whether crops are changed to look like the training faces (``grayscale`` or ``source_resolution``)."""
        return bool(self.grayscale or self.source_resolution)

    def match_training_faces(self, image: Image.Image) -> Image.Image:
        """[`match_training_faces`] with this policy's ``grayscale`` and ``source_resolution``."""
        return match_training_faces(image, self.grayscale, self.source_resolution)

    @property
    def crop_policy(self) -> str:
        """``"framing"`` (calibrated), ``"exact"`` (the box, clamped) or ``"square_margin"`` (the default)."""
        if self.framing is not None:
            return "framing"
        return "exact" if self.crop_exact else "square_margin"

    def set_framing(self, framing: dict | None, others: dict | None = None) -> None:
        """Store a measured framing (None removes it) and, in ``framings``, those measured with other detectors
        (``{detector name: framing}``; None removes them). Raises ``ValueError`` if one lacks two positive
        ``side_ratio`` and two finite ``center_offset`` values."""
        check_framing(framing)
        for other in (others or {}).values():
            check_framing(other)
        self.framing = None if framing is None else dict(framing)
        self.framings = {name: dict(other) for name, other in others.items()} if others else None

    def framing_for(self, detector_name: str | None) -> dict | None:
        """The framing measured with ``detector_name``: ``framing`` when it was measured with that detector
        (or says with none), else the one in ``framings``; ``framing`` itself when there is no measurement for
        that detector (then [`detector_mismatch`] warns); ``None`` without any framing."""
        if self.framing is None:
            return None
        if detector_name is None or self.framing.get("detector") in (None, detector_name):
            return self.framing
        return (self.framings or {}).get(detector_name, self.framing)

    def detector_mismatch(self, detector_name: str) -> str | None:
        """A warning when there is a framing but none measured with ``detector_name`` (another detector's boxes
        frame faces differently, so the crops would differ from the training crops); else None."""
        measured = (self.framing or {}).get("detector")
        if measured is None or self.framing_for(detector_name) is not self.framing or measured == detector_name:
            return None
        known = sorted({measured, *(self.framings or {})})
        return (
            f"this model's framing was measured with the {' and '.join(repr(k) for k in known)} face detector(s), "
            f"but {detector_name!r} is used: its boxes frame faces differently, so the crops differ from the "
            f"training crops (use --detector {measured})"
        )

    def crop_box(self, box: Sequence[float], detector: str | None = None) -> tuple[int, int, int, int]:
        """The region ``(x, y, w, h)`` (integer pixels, may leave the image) cropped for a detection ``box``
        found by ``detector`` (its framing, see [`framing_for`]; ``None``: ``framing``).

        Under ``crop_exact`` the region is the rounded box, not yet clamped (see [`crop`]).
        """
        if self.framing is not None:
            return framed_box(box, self.framing_for(detector))
        if self.crop_exact:
            x, y, w, h = (float(v) for v in box)
            x1, y1, x2, y2 = (int(round(v)) for v in (x, y, x + w, y + h))
            return x1, y1, max(1, x2 - x1), max(1, y2 - y1)
        if self.crop_square:
            return square_box(box, float(self.crop_margin))
        x, y, w, h = (float(v) for v in box)
        m = float(self.crop_margin)
        return (int(round(x - m * w)), int(round(y - m * h)), int(round(w * (1 + 2 * m))), int(round(h * (1 + 2 * m))))

    def crop(self, image: Image.Image, box: Sequence[float], detector: str | None = None) -> Image.Image:
        """Crop a face (or person) for the model from an RGB ``image``, per the saved crop policy.

        Args:
            image: the full image, RGB (see [`to_rgb`]).
            box: ``(x, y, w, h)`` of the detection in pixels of ``image`` (boxes given by hand are framed like
                detections; cut an annotation box the way ``cage prepare`` does with [`crop_annotation`]).
            detector: the name of the detector that found ``box``: the framing measured with it is used.

        Returns:
            The crop, zero-padded where it leaves the image; under ``crop_exact`` (without ``framing``),
            clamped to the image instead (as [`crop_annotation`]). Resizing happens in the processor's call.

        Raises:
            ValueError: under ``crop_exact``, the box has no area inside the image.
        """
        if self.framing is None and self.crop_exact:
            return self.crop_annotation(image, box)
        return crop_with_padding(image, self.crop_box(box, detector))

    def crop_annotation(self, image: Image.Image, box: Sequence[float]) -> Image.Image:
        """Cut an annotation box exactly: rounded to whole pixels, clamped to the image, not squared, no margin.

        This is how ``cage prepare`` makes training crops from annotated boxes (the 2017 AffectNet release's
        face boxes, EMOTIC's body boxes), whatever the processor's inference policy.

        Args:
            image: the full image, upright RGB.
            box: ``(x, y, w, h)`` in pixels of ``image``.

        Returns:
            The crop, of size ``(w, h)`` after rounding and clamping (see [`clamp_box`]).

        Raises:
            ValueError: the box has no area, or none inside the image.
        """
        clamped = clamp_box(box, image.width, image.height)
        if clamped is None:
            size = f"{image.width}x{image.height}"
            raise ValueError(f"box (x, y, w, h) = {tuple(box)} has no area inside the {size} image")
        return crop_with_padding(image, clamped[0])


ImageInput = Any  # PIL.Image.Image | str | os.PathLike | np.ndarray (RGB)


DEVICE_TYPES = ("cpu", "cuda", "mps", "xpu")


def resolve_device(device: str | Any | None = "auto") -> Any:
    """``"auto"``/``None`` -> CUDA if available, else Apple MPS if available, else CPU.

    Explicit devices: ``"cpu"``, ``"cuda"``, ``"cuda:N"``, ``"mps"``, ``"xpu"``/``"xpu:N"`` (Intel GPUs).

    Raises:
        ValueError: not a device name torch knows, a device type inference cannot run on (e.g. ``"meta"``),
            or a requested ``cuda``/``mps``/``xpu`` device (or device index) that is not available; the
            message says which devices exist.
    """
    import torch

    if device is None or str(device) == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError, ValueError) as error:
        message = f"device {str(device)!r} is not a device name; use auto, cpu, cuda, cuda:N, mps or xpu"
        raise ValueError(message) from error
    if device.type not in DEVICE_TYPES:
        raise ValueError(f"device {str(device)!r} cannot run inference; use auto, cpu, cuda, cuda:N, mps or xpu")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {str(device)!r} was requested but no CUDA GPU is available")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"device {str(device)!r}: only {torch.cuda.device_count()} CUDA GPU(s) are available")
    if device.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ValueError("device 'mps' was requested but Apple MPS is not available")
    if device.type == "xpu":
        xpu = getattr(torch, "xpu", None)
        if xpu is None or not xpu.is_available():
            raise ValueError(f"device {str(device)!r} was requested but no Intel XPU is available")
        if device.index is not None and device.index >= xpu.device_count():
            raise ValueError(f"device {str(device)!r}: only {xpu.device_count()} XPU(s) are available")
    return device


def read_image(path: str | os.PathLike) -> Image.Image:
    """Open and fully decode an image file (lazy decoding would hide truncation until later). Of an animated or
    multi-page file, the first frame is read and a warning (logger ``cage``) says so.

    Raises:
        OSError: the file is missing, empty, not an image, or truncated; the message names the file.
    """
    path = Path(path)
    if not path.is_file():
        raise OSError(f"{path}: " + ("not a regular file" if path.exists() else "no such file"))
    if path.stat().st_size == 0:
        raise OSError(f"{path}: empty file")
    try:
        with Image.open(path) as image:
            image.load()
            frames = getattr(image, "n_frames", 1)
            if frames > 1:  # an animated GIF/PNG/WebP or a multi-page TIFF: said, not silent
                logging.getLogger("cage").warning(
                    "%s has %d frames (animated or multi-page); only the first is read (for every frame, convert "
                    "it to a video)", path, frames,
                )  # fmt: skip
            return image.copy()
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
        raise OSError(f"{path}: cannot read image ({error})") from error


def array_to_image(array: np.ndarray) -> Image.Image:
    """An RGB PIL image from a NumPy image in RGB order.

    Accepts ``(H, W)`` grayscale, ``(H, W, 3)`` RGB or ``(H, W, 4)`` RGBA (alpha dropped), of dtype uint8,
    uint16 (scaled from 0..65535) or float in [0, 1]. OpenCV frames are BGR: use [`bgr_to_rgb`] first
    (or ``FaceExpressionAnalyzer.predict_bgr``).

    Raises:
        ValueError: another shape or dtype; a float array with values outside [0, 1] (0..255 floats or -1..1
            values would otherwise be clipped to a white or black image: convert them first, e.g.
            ``array.astype(np.uint8)`` for 0..255) or with NaN/infinite values.
    """
    array = np.asarray(array)
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)):
        raise ValueError(f"expected an image array of shape (H, W), (H, W, 3) or (H, W, 4); got {array.shape}")
    if array.dtype == np.uint16:
        array = np.round(array / 257.0).astype(np.uint8)
    elif np.issubdtype(array.dtype, np.floating):
        if not np.isfinite(array).all():
            raise ValueError("float image arrays must hold finite values in [0, 1]; this one has NaN or infinity")
        low, high = float(array.min(initial=0.0)), float(array.max(initial=0.0))
        if low < 0.0 or high > 1.0:
            raise ValueError(
                f"float image arrays must be in [0, 1]; this one spans [{low:g}, {high:g}] (for 0..255 values pass "
                "array.astype(np.uint8); for -1..1 values pass (array + 1) / 2)"
            )
        array = np.round(array * 255.0).astype(np.uint8)
    elif array.dtype != np.uint8:
        raise ValueError(f"expected a uint8, uint16 or float image array; got dtype {array.dtype}")
    if array.ndim == 3 and array.shape[2] == 4:
        array = array[:, :, :3]
    image = Image.fromarray(np.ascontiguousarray(array))
    return image.convert("RGB")


def bgr_to_rgb(frame: np.ndarray) -> np.ndarray:
    """Reorder an OpenCV ``(H, W, 3)`` BGR or ``(H, W, 4)`` BGRA frame to RGB; ``(H, W)`` gray is returned as is."""
    frame = np.asarray(frame)
    if frame.ndim == 3 and frame.shape[2] in (3, 4):
        return np.ascontiguousarray(frame[:, :, 2::-1])
    return frame


def load_image(image: ImageInput) -> Image.Image:
    """Any supported input as an upright (EXIF applied) 8-bit RGB PIL image.

    Args:
        image: a PIL image of any mode, a file path, or a NumPy array in RGB order (see [`array_to_image`]).

    Raises:
        OSError: unreadable file (named in the message). ValueError: unsupported array. TypeError: other types.
    """
    if isinstance(image, Image.Image):
        return to_rgb(image)
    if isinstance(image, (str, os.PathLike)):
        return to_rgb(read_image(image))
    if isinstance(image, np.ndarray):
        return array_to_image(image)
    raise TypeError(f"expected a PIL image, a file path or an RGB NumPy array; got {type(image).__name__}")


NON_FINITE_ERROR = "the model output is not finite (NaN or infinity): no prediction for this face"


def _as_float_array(values: Any) -> np.ndarray:
    """A float32 NumPy array from a NumPy array or a torch tensor on any device, in any dtype (bf16 too)."""
    if hasattr(values, "detach"):
        values = values.detach().float().cpu().numpy()
    return np.asarray(values, dtype=np.float32)


def no_prediction(config: Any, error: str) -> dict[str, Any]:
    """The prediction fields of a face that has no prediction, and why: ``expression``, every probability and
    every regression target ``None`` (``categories`` ``[]`` for multi-label models), and ``error``."""
    record: dict[str, Any] = {
        "expression": None,
        "probabilities": {config.id2label[i]: None for i in range(len(config.id2label))},
    }
    if config.multi_label:
        record["categories"] = []
    record.update({name: None for name in config.regression_targets})
    record["error"] = error
    return record


def box_problem(box: Sequence[float], width: int, height: int) -> str | None:
    """Why a user-given box ``(x, y, w, h)`` cannot be cropped from a ``width`` x ``height`` image, or ``None``.

    A box must be 4 finite numbers with ``w, h > 0``, overlap the image, and be at most
    [`MAX_BOX_TO_IMAGE`] times the image's longer side on each side (its crop is padded where it leaves the image,
    so a box of 1e9 pixels would allocate that much memory).
    """
    try:
        x, y, w, h = (float(v) for v in box)
    except (TypeError, ValueError):
        return "is not four numbers (x, y, w, h)"
    if not all(math.isfinite(v) for v in (x, y, w, h)):
        return "holds a value that is not a finite number"
    if w <= 0 or h <= 0:
        return "has no area (w and h must be > 0)"
    limit = MAX_BOX_TO_IMAGE * max(width, height)
    if w > limit or h > limit:
        return f"is larger than {MAX_BOX_TO_IMAGE} times the {width}x{height} image"
    if x >= width or y >= height or x + w <= 0 or y + h <= 0:
        return f"lies outside the {width}x{height} image"
    return None


# The largest user box side accepted, in multiples of the image's longer side (see `box_problem`).
MAX_BOX_TO_IMAGE = 4


def outputs_to_records(logits: Any, regression: Any, config: Any) -> list[dict[str, Any]]:
    """Turn model outputs into one dict per row.

    Args:
        logits: ``(N, num_labels)`` expression scores (a NumPy array or a torch tensor).
        regression: ``(N, len(config.regression_targets))`` raw continuous outputs.
        config: the model's ``CageConfig`` (``id2label``, ``multi_label``, ``regression_targets``).

    Returns:
        Per row: ``expression`` (top label), ``probabilities`` (label -> probability: softmax for single-label
        models, independent sigmoids for multi-label models), and one float per regression target
        (``valence``, ``arousal``[, ``dominance``]) clamped to [-1, 1] (the model output keeps the raw values);
        multi-label models also give ``categories``, the labels with probability >= 0.5. Models without
        categories (the authors' valence-arousal-only checkpoints, ``num_labels == 0``) give
        ``expression: None`` and empty ``probabilities``.

        A row whose logits or regression outputs hold a NaN or an infinity (e.g. a diverged fp16 run) gets no
        prediction: ``expression``, every probability and every target are ``None`` (``categories`` is
        ``[]``) and ``error`` is [`NON_FINITE_ERROR`]. Values are never NaN, so the records are strict JSON.
    """
    logits = _as_float_array(logits)
    raw_regression = _as_float_array(regression)
    finite = np.isfinite(logits).all(axis=-1) & np.isfinite(raw_regression).all(axis=-1)
    regression = np.clip(raw_regression, -1.0, 1.0)
    with np.errstate(all="ignore"):  # non-finite rows are reported below, not computed
        if config.multi_label:
            probabilities = 1.0 / (1.0 + np.exp(-logits))
        else:
            shifted = np.exp(logits - logits.max(axis=-1, keepdims=True, initial=-np.inf))
            probabilities = shifted / shifted.sum(axis=-1, keepdims=True)
    labels = [config.id2label[i] for i in range(logits.shape[-1])]
    records = []
    for row_finite, row_probabilities, row_regression in zip(
        finite.tolist(), probabilities.tolist(), regression.tolist()
    ):
        if not row_finite:
            records.append(no_prediction(config, NON_FINITE_ERROR))
            continue
        best = max(range(len(labels)), key=row_probabilities.__getitem__) if labels else None
        record = {
            "expression": None if best is None else labels[best],
            "probabilities": {label: round(p, 6) for label, p in zip(labels, row_probabilities)},
        }
        if config.multi_label:
            record["categories"] = [label for label, p in zip(labels, row_probabilities) if p >= 0.5]
        for name, value in zip(config.regression_targets, row_regression):
            record[name] = round(value, 6)
        records.append(record)
    return records


def default_detector_name(image_processor: Any) -> str:
    """``"none"`` (whole image) for body (EMOTIC) crop policies, ``"auto"`` (YuNet where its model file can be
    had, else dlib; ``face_detection_cage.create_face_detector``) for face models."""
    return "none" if getattr(image_processor, "crop_target", "face") == "body" else "auto"


def locate_faces(
    image: Image.Image,
    detector: FaceDetector,
    image_processor: Any,
    boxes: Sequence[Sequence[float]] | None = None,
) -> tuple[list[FaceDetection], list[Image.Image], str]:
    """Faces (or persons) of an RGB image and their crops, per the processor's saved crop policy.

    Args:
        image: upright RGB PIL image.
        detector: used unless ``boxes`` is given.
        image_processor: a ``CageImageProcessor``; its ``crop`` applies the saved framing policy (measured
            framing, exact box, or square + margin). A detector other than the one the framing was measured
            with gives a ``UserWarning``.
        boxes: optional ``(x, y, w, h)`` boxes in pixels of ``image`` (e.g. EMOTIC person boxes), cropped by
            the same policy as detector boxes.

    Returns:
        ``(detections, crops, box_source)``: ``box_source`` is ``"user"`` for given boxes, ``"image"`` when
        the whole image is the crop (``detector`` none: taken as is, no margin or padding), else the
        detector's name. A given box that cannot be cropped ([`box_problem`]: not finite, no area, outside the
        image, absurdly large) has crop ``None`` and a detection whose ``error`` names the box and the problem.
    """
    if boxes is not None:
        detections, crops = [], []
        for box in boxes:
            problem = box_problem(box, image.width, image.height)
            if problem:  # this box gets an error record; the others are still predicted
                text = json.dumps([str(v) for v in box]) if isinstance(box, (list, tuple)) else repr(box)
                detections.append(FaceDetection(box=(0.0, 0.0, 0.0, 0.0), score=1.0, error=f"box {text} {problem}"))
                crops.append(None)
            else:
                detections.append(FaceDetection(box=tuple(float(v) for v in box), score=1.0))
                crops.append(image_processor.crop(image, detections[-1].box))
        return detections, crops, "user"
    detections = detector.detect(image)
    if isinstance(detector, WholeImageDetector):
        return detections, [image for _ in detections], "image"
    mismatch = getattr(image_processor, "detector_mismatch", lambda name: None)(detector.name)
    if mismatch:
        warnings.warn(mismatch, UserWarning, stacklevel=2)
    framing_boxes = [d.box for d in detections]
    framing_for = getattr(image_processor, "framing_for", None)
    canonical = ((framing_for(detector.name) if framing_for else None) or {}).get("canonical_face_side")
    if canonical:  # the framing was measured on boxes found at this face size: measure these the same way
        framing_boxes = [detector.refine(image, d, side=canonical).box for d in detections]
    if framing_for is None:  # a processor without per-detector framings
        return detections, [image_processor.crop(image, box) for box in framing_boxes], detector.name
    crops = [image_processor.crop(image, box, detector=detector.name) for box in framing_boxes]
    return detections, crops, detector.name


def face_records(
    detections: Sequence[FaceDetection],
    predictions: Sequence[dict[str, Any]],
    image_size: tuple[int, int],
    crop_target: str,
    box_source: str,
) -> list[dict[str, Any]]:
    """Merge detections with [`outputs_to_records`] rows into the face records every entry point returns.

    Each record: ``box`` ``[x, y, w, h]`` (integer pixels of the upright original image, clipped to it),
    ``score`` (detector confidence), ``crop`` (``"face"`` or ``"body"``: what the model was trained on),
    ``box_source`` (detector name, ``"image"`` or ``"user"``), ``landmarks`` for detectors that give them
    (YuNet: ``[[x, y] x 5]`` in pixels of the upright original image, 0.1 px, in
    ``face_detection_cage.LANDMARK_NAMES`` order: right eye, left eye, nose tip, right and left mouth corner),
    then the prediction fields (with ``error`` when the model output was not finite, see [`outputs_to_records`]).
    """
    width, height = image_size
    records = []
    for detection, prediction in zip(detections, predictions):
        if detection.error:  # a given box that could not be cropped: named, no prediction
            records.append({"box": None, "score": None, "crop": crop_target, "box_source": box_source, **prediction})
            continue
        record = {
            "box": list(detection.clipped_box(width, height)),
            "score": round(detection.score, 4),
            "crop": crop_target,
            "box_source": box_source,
        }
        if detection.landmarks is not None:
            record["landmarks"] = [[round(x, 1), round(y, 1)] for x, y in detection.landmarks]
        record.update(prediction)
        records.append(record)
    return records


def run_model(
    model: Any, pixel_values: Any, autocast_dtype: Any = None, channels_last: bool = False
) -> Any:
    """One forward pass, the one place where reduced precision is applied (the analyzer's ``bf16`` and the
    ``cage.runtimes`` PyTorch variants both call it).

    Args:
        model: called as ``model(pixel_values=...)``; with ``channels_last`` its weights should already be
            channels-last (``model.to(memory_format=torch.channels_last)``).
        pixel_values: ``(B, 3, S, S)`` float32 on the model's device.
        autocast_dtype: ``torch.bfloat16``/``torch.float16`` to run under ``torch.autocast`` on the input's
            device type, or ``None`` for plain fp32.
        channels_last: make the input NHWC in memory first (oneDNN/cuDNN convolutions prefer it).

    Returns:
        The model's output (``logits`` ``(B, num_labels)``, ``regression`` ``(B, R)``), in the dtype the model
        computed them in (bf16 under bf16 autocast).
    """
    if autocast_dtype is None and not channels_last:
        return model(pixel_values=pixel_values)
    import torch

    if channels_last:
        pixel_values = pixel_values.contiguous(memory_format=torch.channels_last)
    if autocast_dtype is None:
        return model(pixel_values=pixel_values)
    with torch.autocast(pixel_values.device.type, dtype=autocast_dtype):
        return model(pixel_values=pixel_values)


def _run_model(model: Any, pixel_values: Any) -> tuple[Any, Any]:
    outputs = run_model(model, pixel_values)
    return outputs.logits, outputs.regression


PRECISIONS = ("fp32", "bf16", "auto")
# The library's default (the Python API, the transformers pipeline, the Space): exact and reproducible. The
# `cage` command's default is "auto" (`cage.inference.cli`), where bf16 passed the agreement bar.
DEFAULT_PRECISION = "fp32"


def has_native_bf16(device: Any) -> bool:
    """Whether ``device`` computes bf16 matrix products in hardware: CUDA GPUs with bf16 support, CPUs with
    AVX512-BF16 or AMX. Elsewhere bf16 is emulated and slower than fp32."""
    import torch

    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        cpu = getattr(torch, "cpu", None)
        checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
        return any(bool(getattr(cpu, name, lambda: False)()) for name in checks)
    return False


def resolve_precision(precision: str, device: Any) -> str:
    """``"auto"`` -> ``"bf16"`` where the device has native bf16, else ``"fp32"``.

    ``bf16`` means bf16 autocast with channels-last memory format: the fastest variant that passed the
    agreement bar in ``cage bench`` on an AVX512-BF16 CPU (argmax agreement 100 % on the shared face crops,
    max |delta valence/arousal| 0.004 <= 0.02; README, "Speed").

    Raises:
        ValueError: unknown precision.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "auto":
        return "bf16" if has_native_bf16(device) else "fp32"
    return precision


class FaceExpressionAnalyzer:
    """Detect faces (or take given boxes), crop them by the saved crop policy, and predict in batches.

    Args:
        model: a ``CageForExpressionInference`` (local class or remote code), or any object with a
            ``config`` (``id2label``, ``multi_label``, ``regression_targets``) that, called as
            ``model(pixel_values=...)`` with a float32 ``(B, 3, H, W)`` tensor, returns an object with
            ``logits`` ``(B, num_labels)`` and ``regression`` ``(B, R)`` (e.g. an ONNX Runtime runner).
            Torch modules are moved to ``device`` and put in eval mode; other objects are used as given
            and receive CPU tensors, or float32 NumPy arrays if they set ``accepts_numpy = True`` (as
            ``cage.runtimes.openvino.OpenVinoModel`` does).
        image_processor: its ``CageImageProcessor``.
        detector: a face detector, a detector name (``"dlib"``, ``"yunet"``, ``"none"``) or ``None`` for the
            default: ``"dlib"`` for face models, whole images for body (EMOTIC) models.
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"``, ``"mps"`` or a ``torch.device``.
        batch_size: number of crops per forward pass, across faces and images.
        detector_model: model file of the detector (YuNet's ONNX file), when ``detector`` is a name.
        precision: ``"fp32"`` (default: exact, reproducible), ``"bf16"`` (bf16 autocast + channels-last; torch
            models only) or ``"auto"`` (bf16 where the device has native bf16, see [`resolve_precision`]).
        detect_size: how large images are searched for faces: ``"auto"`` (default: images over 1024 px are
            also searched in native-resolution tiles, so small faces in group photos are found) or a longer
            side in pixels to downscale to (one fast pass; 1024 was the only choice before). See
            ``face_detection_cage``. ``None`` keeps the detector's own setting.

    Thread safety: one analyzer may be shared by several threads (the Space does): ``predict``, ``analyze``,
    ``predict_bgr`` and ``predict_crops`` keep no per-call state on the object; the face detector runs one
    image at a time under its own lock (dlib and OpenCV detectors are not thread-safe) and the model's forward
    pass in inference mode is safe to call concurrently. Concurrent calls give the same records as
    sequential calls. Changing attributes (``detector``, ``batch_size``...) while other threads predict is
    not safe.

    Raises:
        ValueError: ``batch_size`` < 1, unknown detector or unavailable device.
        ImportError, FileNotFoundError: the detector's package or model file is missing (see
            ``create_face_detector``).
    """

    def __init__(
        self,
        model: Any,
        image_processor: Any,
        detector: FaceDetector | str | None = None,
        device: str | Any | None = "auto",
        batch_size: int = 32,
        detector_model: str | os.PathLike | None = None,
        precision: str = DEFAULT_PRECISION,
        detect_size: str | int | None = None,
    ):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        torch = sys.modules.get("torch")  # a PyTorch module can only exist once torch is imported
        self.is_torch = torch is not None and isinstance(model, torch.nn.Module)
        # other runners run on the CPU; their device is resolved (and checked) only when one is named
        cpu = not self.is_torch and (device is None or str(device) in ("auto", "cpu"))
        self.device = "cpu" if cpu else resolve_device(device)
        self.model = model.to(self.device).eval() if self.is_torch else model
        # other runners (ONNX Runtime, OpenVINO) run at their own precision and say which
        own = getattr(model, "precision", "fp32")
        self.precision = resolve_precision(precision, self.device) if self.is_torch else own
        self.autocast_bf16 = self.is_torch and self.precision == "bf16"
        if self.autocast_bf16:
            self.model = self.model.to(memory_format=sys.modules["torch"].channels_last)
        self.image_processor = image_processor
        self.crop_target = getattr(image_processor, "crop_target", "face")
        if detector is None:
            detector = default_detector_name(image_processor)
        if detect_size is not None:
            detect_size = parse_detect_size(detect_size)
        if isinstance(detector, str):
            options = {} if detect_size is None or detector == "none" else {"detect_size": detect_size}
            detector = create_face_detector(detector, model_path=detector_model, **options)
        elif detect_size is not None and not isinstance(detector, WholeImageDetector):
            detector.detect_size = detect_size
        self.detector = detector
        self.batch_size = int(batch_size)

    @property
    def config(self) -> Any:
        return self.model.config

    @property
    def engine(self) -> str:
        """How the network runs, for messages: ``"torch fp32 on cpu"``, ``"torch bf16 on cuda"``, ``"openvino
        bf16"``, ``"onnx fp32"``...; ``", fast start"`` is added for a runner the fast start replayed
        (``cage.inference.fast_start``)."""
        if self.is_torch:
            return f"torch {self.precision} on {self.device}"
        runtime = getattr(self.model, "runtime", type(self.model).__name__)
        fast = ", fast start" if getattr(self.model, "fast_start", False) else ""
        return f"{runtime} {self.precision}{fast}"

    def predict_crops(self, crops: Sequence[Image.Image]) -> list[dict[str, Any]]:
        """Predict on already-cropped RGB faces (or persons); one record per crop, in order (see
        [`outputs_to_records`]); ``batch_size`` crops per forward pass. Runners that declare
        ``accepts_numpy = True`` get float32 NumPy arrays and never need torch; everything else gets torch
        tensors (on ``device``, in inference mode)."""
        arrays = not self.is_torch and bool(getattr(self.model, "accepts_numpy", False))
        torch = None if arrays else __import__("torch")
        records: list[dict[str, Any]] = []
        with contextlib.nullcontext() if arrays else torch.inference_mode():
            for start in range(0, len(crops), self.batch_size):
                batch = list(crops[start : start + self.batch_size])
                pixel_values = self.image_processor(batch, return_tensors="np" if arrays else "pt")["pixel_values"]
                if arrays:
                    outputs = self.model(pixel_values=pixel_values)
                elif not self.is_torch:
                    outputs = self.model(pixel_values=pixel_values)  # a runner given CPU tensors
                else:
                    bf16 = self.autocast_bf16
                    dtype = torch.bfloat16 if bf16 else None
                    outputs = run_model(self.model, pixel_values.to(self.device), dtype, channels_last=bf16)
                records.extend(outputs_to_records(outputs.logits, outputs.regression, self.config))
        return records

    def analyze(
        self,
        images: Sequence[ImageInput],
        boxes: Sequence[Sequence[Sequence[float]] | None] | None = None,
        detector: FaceDetector | None = None,
    ) -> list[list[dict[str, Any]]]:
        """Predict every face of every image, batching crops across images.

        Args:
            images: PIL images of any mode (EXIF orientation applied, converted to RGB), file paths, or RGB
                NumPy arrays (see [`load_image`]).
            boxes: optional per-image lists of ``(x, y, w, h)`` boxes (pixels of the upright image) to use
                instead of detection (e.g. EMOTIC person boxes); ``None`` entries fall back to detection.
            detector: for this call only, a detector to use instead of ``self.detector`` (e.g. another
                ``detect_size``); thread-safe, unlike assigning ``self.detector``.

        Returns:
            Per image, a list of face records, left to right (see [`face_records`]); ``[]`` without a face.

        Raises:
            OSError: a path cannot be read (the message names it); ValueError/TypeError: unsupported input.
        """
        rgb_images = [load_image(image) for image in images]
        located = []
        crops: list[Image.Image] = []
        for index, image in enumerate(rgb_images):
            given = boxes[index] if boxes is not None else None
            detections, image_crops, source = locate_faces(
                image, detector or self.detector, self.image_processor, given
            )
            located.append((detections, len(crops), source))
            crops.extend(crop for crop in image_crops if crop is not None)
        predictions = iter(self.predict_crops(crops))
        results = []
        for image, (detections, _, source) in zip(rgb_images, located):
            rows = [no_prediction(self.config, d.error) if d.error else next(predictions) for d in detections]
            results.append(face_records(detections, rows, image.size, self.crop_target, source))
        return results

    def predict(self, image: ImageInput | list[ImageInput], boxes: Sequence[Sequence[float]] | None = None) -> Any:
        """Face records for one image (a list, left to right) or for a list of images (a list of such lists).

        Args:
            image: a PIL image, a file path or an RGB NumPy array ``(H, W, 3)`` uint8 — or a list of them.
                For OpenCV (BGR) frames use [`predict_bgr`].
            boxes: for a single image, optional ``(x, y, w, h)`` boxes to use instead of detection.
        """
        if isinstance(image, list):
            return self.analyze(image)
        return self.analyze([image], None if boxes is None else [boxes])[0]

    def predict_bgr(self, frame: np.ndarray, boxes: Sequence[Sequence[float]] | None = None) -> list[dict[str, Any]]:
        """Face records for an OpenCV frame: ``(H, W, 3)`` BGR (or BGRA, or gray) uint8, as ``cv2.imread`` and
        ``cv2.VideoCapture.read`` return it. The channels are reordered to RGB before anything else."""
        return self.predict(bgr_to_rgb(frame), boxes=boxes)


