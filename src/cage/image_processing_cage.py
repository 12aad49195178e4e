"""Preprocessing of CAGE inputs: image decoding to RGB, the framing (crop) policy, resize and normalisation.

Saved as ``preprocessor_config.json`` next to the weights and imported as remote code by
``AutoImageProcessor.from_pretrained(..., trust_remote_code=True)``: it imports only its flat sibling
``face_analysis_cage``, where the framing policy ([`FramingPolicy`]) and the image helpers live without
transformers (the fast start of ``cage predict`` uses them too).

The processor is the one owner of framing: ``cage prepare`` cuts annotation boxes with
[`CageImageProcessor.crop_annotation`], training and evaluation resize and normalise with its size, resampling
and mean/std, and inference turns a detector box into a crop with [`CageImageProcessor.crop`], following the
framing measured on the training crops (``framing``) when the model was trained on calibrated data.
"""

from __future__ import annotations

import numpy as np
from PIL import Image
from transformers.image_processing_backends import PilBackend
from transformers.image_utils import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, PILImageResampling
from transformers.processing_utils import ImagesKwargs

from .face_analysis_cage import (
    CROP_TARGETS,
    FramingPolicy,
    check_framing,
    clamp_box,
    crop_with_padding,
    framed_box,
    match_training_faces,
    square_box,
    to_rgb,
)


class CageImageProcessorKwargs(ImagesKwargs, total=False):
    crop_target: str
    crop_margin: float
    crop_square: bool
    crop_exact: bool
    framing: dict | None
    framings: dict | None
    grayscale: bool
    source_resolution: int | None


class CageImageProcessor(FramingPolicy, PilBackend):
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
       (``side_ratio_iqr``, ``center_offset_iqr``: 25th and 75th percentiles) and ``canonical_face_side``
       (boxes were measured at that face size, ``FaceDetector.refine``; inference measures its boxes the same
       way). See [`framed_box`]. Crops are zero-padded where they leave the image.
       ``framings`` (`dict`, *optional*): framings measured with other detectors, by detector name (e.g.
       ``{"dlib": {...}}`` beside a YuNet ``framing``): a box from a detector is framed by that detector's
       measurement; a detector without one uses ``framing``, with a warning.
    2. ``crop_exact`` (`bool`, defaults to `False`): the box itself, rounded and clamped to the image (no
       squaring, no margin) — how ``cage prepare`` cuts annotation boxes (EMOTIC body boxes, the 2017
       AffectNet release's face boxes). New body (EMOTIC) processors set it.
    3. Otherwise (the policy of every folder saved before framing calibration): a square of the box's longer
       side, enlarged by ``crop_margin`` (`float`, defaults to 0.15) on each side (``crop_square`` `True`,
       the default; else per axis), zero-padded at the border.

    ``crop_target`` (`str`, defaults to `"face"`): ``"face"`` for AffectNet-style face crops, ``"body"`` for
    EMOTIC-style person crops (inference then uses the whole image or user-supplied person boxes).

    How a crop is made to look like the training faces, before the resize to ``size`` (see
    [`match_training_faces`]; ``cage train`` sets both from the training data, e.g. FER+):

    - ``grayscale`` (`bool`, defaults to `False`): convert every input to gray (three equal channels): the
      model was trained on gray faces.
    - ``source_resolution`` (`int`, *optional*): first scale every input to this square side in pixels (FER+:
      48), the resolution of the training faces, so that a face cut from a large photo carries no more detail
      than the model ever saw.

    Raises:
        ValueError: (at construction and load) an impossible setting: unknown ``crop_target``, ``crop_margin``
            outside [0, 2], malformed ``framing``, bad ``grayscale``/``source_resolution``, or a ``size`` that is
            not two positive integers.
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
    framings = None
    grayscale = False
    source_resolution = None

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.check_policy()
        size = self.size
        sides = (size.get("height"), size.get("width")) if isinstance(size, dict) else (size.height, size.width)
        if not all(isinstance(side, int) and not isinstance(side, bool) and side > 0 for side in sides):
            raise ValueError(f"size must give a positive integer height and width, got {dict(size)}")

    def process_image(self, image, *args, **kwargs):
        if isinstance(image, Image.Image):
            return super().process_image(self.match_training_faces(to_rgb(image)), *args, **kwargs)
        array = super().process_image(image, *args, **kwargs)  # (C, H, W), as transformers reads it
        if not self.matches_training_faces:
            return array
        if array.dtype != np.uint8 or array.shape[0] not in (1, 3):
            raise ValueError(
                "this processor makes inputs gray and/or rescales them like its training faces: give PIL images or "
                f"uint8 arrays with 1 or 3 channels, not {array.dtype} of shape {array.shape}"
            )
        pil = Image.fromarray(array[0] if array.shape[0] == 1 else np.moveaxis(array, 0, -1))
        return np.moveaxis(np.asarray(self.match_training_faces(pil.convert("RGB"))), -1, 0)


__all__ = [
    "CROP_TARGETS",
    "CageImageProcessor",
    "to_rgb",
    "square_box",
    "framed_box",
    "clamp_box",
    "check_framing",
    "crop_with_padding",
    "match_training_faces",
]
