"""Preprocessing of CAGE inputs: image decoding to RGB, the framing (crop) policy, resize and normalisation.

Saved as ``preprocessor_config.json`` next to the weights and imported as remote code by
``AutoImageProcessor.from_pretrained(..., trust_remote_code=True)``: it imports nothing from ``cage``.

The processor is the one owner of framing: ``cage prepare`` cuts annotation boxes with
[`CageImageProcessor.crop_annotation`], training and evaluation resize and normalise with its size, resampling
and mean/std, and inference turns a detector box into a crop with [`CageImageProcessor.crop`], following the
framing measured on the training crops (``framing``) when the model was trained on calibrated data.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageOps
from transformers.image_processing_backends import PilBackend
from transformers.image_utils import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, PILImageResampling
from transformers.processing_utils import ImagesKwargs

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


class CageImageProcessorKwargs(ImagesKwargs, total=False):
    crop_target: str
    crop_margin: float
    crop_square: bool
    crop_exact: bool
    framing: dict | None


class CageImageProcessor(PilBackend):
    r"""Image processor of CAGE models.

    ``__call__(images)`` turns RGB crops into ``pixel_values`` of shape ``(B, 3, size, size)``, float32: resize
    (bilinear) to the model's square input, scale to [0, 1], normalise with ``image_mean``/``image_std``
    (ImageNet by default, as the paper). PIL inputs of any mode are first made upright and RGB with
    [`to_rgb`]; NumPy/torch inputs must already be RGB (H, W, 3) or (3, H, W) — never OpenCV BGR.

    The framing (crop) policy, saved with the model so that training and inference agree. [`crop`] turns a box
    into the model's crop by the first rule that applies:

    1. ``framing`` (`dict`, defaults to `None`): how the training crops frame a detected face, measured on the
       training data by framing calibration (``cage prepare`` / ``cage calibrate-framing``) and written here by
       ``cage train``. ``side_ratio`` ``[rx, ry]``: training-crop width / detector-box width and height /
       height (medians); ``center_offset`` ``[ox, oy]``: (crop centre - detector-box centre) as fractions of
       the detector box's width and height. Also kept: ``detector`` (the detector it was measured with;
       inference should use the same one), ``sample_size``, ``detected``, ``detection_share`` and the spread
       (``side_ratio_iqr``, ``center_offset_iqr``: 25th and 75th percentiles). See [`framed_box`]. Crops
       are zero-padded where they leave the image.
    2. ``crop_exact`` (`bool`, defaults to `False`): the box itself, rounded and clamped to the image (no
       squaring, no margin) — how ``cage prepare`` cuts annotation boxes (EMOTIC body boxes, the 2017
       AffectNet release's face boxes). New body (EMOTIC) processors set it.
    3. Otherwise (the policy of every folder saved before framing calibration): a square of the box's longer
       side, enlarged by ``crop_margin`` (`float`, defaults to 0.15) on each side (``crop_square`` `True`,
       the default; else per axis), zero-padded at the border.

    ``crop_target`` (`str`, defaults to `"face"`): ``"face"`` for AffectNet-style face crops, ``"body"`` for
    EMOTIC-style person crops (inference then uses the whole image or user-supplied person boxes).
    """

    valid_kwargs = CageImageProcessorKwargs
    model_input_names = ["pixel_values"]
    resample = PILImageResampling.BILINEAR
    image_mean = IMAGENET_DEFAULT_MEAN
    image_std = IMAGENET_DEFAULT_STD
    size = {"height": 224, "width": 224}
    do_resize = True
    do_rescale = True
    do_normalize = True
    do_convert_rgb = True
    crop_target = "face"
    crop_margin = 0.15
    crop_square = True
    crop_exact = False
    framing = None

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        if self.crop_target not in CROP_TARGETS:
            raise ValueError(f"crop_target must be one of {CROP_TARGETS}, got {self.crop_target!r}")
        if not 0.0 <= float(self.crop_margin) <= 2.0:
            raise ValueError(f"crop_margin must be in [0, 2], got {self.crop_margin}")
        check_framing(self.framing)

    @property
    def crop_policy(self) -> str:
        """``"framing"`` (calibrated), ``"exact"`` (the box, clamped) or ``"square_margin"`` (the default)."""
        if self.framing is not None:
            return "framing"
        return "exact" if self.crop_exact else "square_margin"

    def set_framing(self, framing: dict | None) -> None:
        """Store a measured framing (see the class docstring; None removes it). Raises ``ValueError`` if it
        lacks two positive ``side_ratio`` and two finite ``center_offset`` values."""
        check_framing(framing)
        self.framing = None if framing is None else dict(framing)

    def process_image(self, image, *args, **kwargs):
        if isinstance(image, Image.Image):
            image = to_rgb(image)
        return super().process_image(image, *args, **kwargs)

    def detector_mismatch(self, detector_name: str) -> str | None:
        """A warning when the saved ``framing`` was measured with another detector than ``detector_name``
        (its boxes frame faces differently, so the crops would differ from the training crops); else None."""
        measured = (self.framing or {}).get("detector")
        if measured is None or measured == detector_name:
            return None
        return (
            f"this model's framing was measured with the {measured!r} face detector, but {detector_name!r} is used: "
            "its boxes frame faces differently, so the crops differ from the training crops "
            f"(use --detector {measured})"
        )

    def crop_box(self, box: Sequence[float]) -> tuple[int, int, int, int]:
        """The region ``(x, y, w, h)`` (integer pixels, may leave the image) cropped for a detection ``box``.

        Under ``crop_exact`` the region is the rounded box, not yet clamped (see [`crop`]).
        """
        if self.framing is not None:
            return framed_box(box, self.framing)
        if self.crop_exact:
            x, y, w, h = (float(v) for v in box)
            x1, y1, x2, y2 = (int(round(v)) for v in (x, y, x + w, y + h))
            return x1, y1, max(1, x2 - x1), max(1, y2 - y1)
        if self.crop_square:
            return square_box(box, float(self.crop_margin))
        x, y, w, h = (float(v) for v in box)
        m = float(self.crop_margin)
        return (int(round(x - m * w)), int(round(y - m * h)), int(round(w * (1 + 2 * m))), int(round(h * (1 + 2 * m))))

    def crop(self, image: Image.Image, box: Sequence[float]) -> Image.Image:
        """Crop a face (or person) for the model from an RGB ``image``, per the saved crop policy.

        Args:
            image: the full image, RGB (see [`to_rgb`]).
            box: ``(x, y, w, h)`` of the detection in pixels of ``image`` (boxes given by hand are framed like
                detections; cut an annotation box the way ``cage prepare`` does with [`crop_annotation`]).

        Returns:
            The crop (see the class docstring for the policy), zero-padded where it leaves the image; under
            ``crop_exact``, clamped to the image instead (as [`crop_annotation`]). Resizing happens in
            ``__call__``.

        Raises:
            ValueError: under ``crop_exact``, the box has no area inside the image.
        """
        if self.framing is None and self.crop_exact:
            return self.crop_annotation(image, box)
        return crop_with_padding(image, self.crop_box(box))

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


__all__ = [
    "CageImageProcessor",
    "to_rgb",
    "square_box",
    "framed_box",
    "clamp_box",
    "check_framing",
    "crop_with_padding",
]
