"""Preprocessing of CAGE inputs: image decoding to RGB, the crop policy, resize and ImageNet normalisation.

Saved as ``preprocessor_config.json`` next to the weights and imported as remote code by
``AutoImageProcessor.from_pretrained(..., trust_remote_code=True)``: it imports nothing from ``cage``.
Training, evaluation, the CLI and the pipeline all crop with [`CageImageProcessor.crop`], so the crops a
model sees at inference match the ones it was trained on.
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


class CageImageProcessorKwargs(ImagesKwargs, total=False):
    crop_target: str
    crop_margin: float
    crop_square: bool


class CageImageProcessor(PilBackend):
    r"""Image processor of CAGE models.

    ``__call__(images)`` turns RGB crops into ``pixel_values`` of shape ``(B, 3, size, size)``, float32: resize
    (bilinear) to the model's square input, scale to [0, 1], normalise with ``image_mean``/``image_std``
    (ImageNet by default, as the paper). PIL inputs of any mode are first made upright and RGB with
    [`to_rgb`]; NumPy/torch inputs must already be RGB (H, W, 3) or (3, H, W) — never OpenCV BGR.

    The crop policy, saved with the model so that training and inference agree:
        crop_target (`str`, defaults to `"face"`): ``"face"`` for AffectNet-style face crops, ``"body"`` for
            EMOTIC-style person crops (inference then uses the whole image or user-supplied person boxes).
        crop_margin (`float`, defaults to 0.15): fraction of the detected box side added on each side.
        crop_square (`bool`, defaults to `True`): make crops square around the box centre before resizing.
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

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        if self.crop_target not in CROP_TARGETS:
            raise ValueError(f"crop_target must be one of {CROP_TARGETS}, got {self.crop_target!r}")
        if not 0.0 <= float(self.crop_margin) <= 2.0:
            raise ValueError(f"crop_margin must be in [0, 2], got {self.crop_margin}")

    def process_image(self, image, *args, **kwargs):
        if isinstance(image, Image.Image):
            image = to_rgb(image)
        return super().process_image(image, *args, **kwargs)

    def crop_box(self, box: Sequence[float]) -> tuple[int, int, int, int]:
        """The region ``(x, y, w, h)`` (pixels, may leave the image) cropped for a detection ``box``."""
        if self.crop_square:
            return square_box(box, float(self.crop_margin))
        x, y, w, h = (float(v) for v in box)
        m = float(self.crop_margin)
        return (int(round(x - m * w)), int(round(y - m * h)), int(round(w * (1 + 2 * m))), int(round(h * (1 + 2 * m))))

    def crop(self, image: Image.Image, box: Sequence[float]) -> Image.Image:
        """Crop a face (or person) for the model from an RGB ``image``, per the saved crop policy.

        Args:
            image: the full image, RGB (see [`to_rgb`]).
            box: ``(x, y, w, h)`` of the detection in pixels of ``image``.

        Returns:
            The crop, zero-padded where it leaves the image; resizing happens in ``__call__``.
        """
        return crop_with_padding(image, self.crop_box(box))


__all__ = ["CageImageProcessor", "to_rgb", "square_box", "crop_with_padding"]
