"""From whole images to per-face predictions: detect, crop, batch, run the model, read the outputs.

Self-contained (imports only its flat siblings) so that it travels with every saved model as remote code:
``transformers.pipeline(model=folder_or_repo, trust_remote_code=True)`` builds [`FaceExpressionPipeline`]
(custom task ``facial-expression-inference``, recorded under ``custom_pipelines`` in ``config.json``).
The CLI, the Python API (``cage.ExpressionAnalyzer``) and the Space build on [`FaceExpressionAnalyzer`];
both classes locate faces with [`locate_faces`] and read outputs with [`face_records`], so they return the
same records.

Label names, output layout (categories first, then ``config.regression_targets``), single/multi-label
and the crop policy are read from the saved config and processor, never from literals here.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from transformers import AutoModel
from transformers.pipelines.base import ChunkPipeline
from transformers.pipelines import PIPELINE_REGISTRY

from .face_detection_cage import (
    FaceDetection,
    FaceDetector,
    WholeImageDetector,
    create_face_detector,
    parse_detect_size,
)
from .image_processing_cage import to_rgb

TASK = "facial-expression-inference"

ImageInput = Any  # PIL.Image.Image | str | os.PathLike | np.ndarray (RGB)


DEVICE_TYPES = ("cpu", "cuda", "mps", "xpu")


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """``"auto"``/``None`` -> CUDA if available, else Apple MPS if available, else CPU.

    Explicit devices: ``"cpu"``, ``"cuda"``, ``"cuda:N"``, ``"mps"``, ``"xpu"``/``"xpu:N"`` (Intel GPUs).

    Raises:
        ValueError: not a device name torch knows, a device type inference cannot run on (e.g. ``"meta"``),
            or a requested ``cuda``/``mps``/``xpu`` device (or device index) that is not available; the
            message says which devices exist.
    """
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
    """Open and fully decode an image file (lazy decoding would hide truncation until later).

    Raises:
        OSError: the file is missing, empty, not an image, or truncated; the message names the file.
    """
    path = Path(path)
    if not path.is_file():
        raise OSError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise OSError(f"{path}: empty file")
    try:
        with Image.open(path) as image:
            image.load()
            return image.copy()
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
        raise OSError(f"{path}: cannot read image ({error})") from error


def array_to_image(array: np.ndarray) -> Image.Image:
    """An RGB PIL image from a NumPy image in RGB order.

    Accepts ``(H, W)`` grayscale, ``(H, W, 3)`` RGB or ``(H, W, 4)`` RGBA (alpha dropped), of dtype uint8,
    uint16 (scaled from 0..65535) or float in [0, 1]. OpenCV frames are BGR: use [`bgr_to_rgb`] first
    (or ``FaceExpressionAnalyzer.predict_bgr``).

    Raises:
        ValueError: another shape or dtype.
    """
    array = np.asarray(array)
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)):
        raise ValueError(f"expected an image array of shape (H, W), (H, W, 3) or (H, W, 4); got {array.shape}")
    if array.dtype == np.uint16:
        array = np.round(array / 257.0).astype(np.uint8)
    elif np.issubdtype(array.dtype, np.floating):
        array = np.round(np.clip(array, 0.0, 1.0) * 255.0).astype(np.uint8)
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


def outputs_to_records(logits: torch.Tensor, regression: torch.Tensor, config: Any) -> list[dict[str, Any]]:
    """Turn model outputs into one dict per row.

    Args:
        logits: ``(N, num_labels)`` expression scores.
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
    logits = torch.as_tensor(logits).float().cpu()
    raw_regression = torch.as_tensor(regression).float().cpu()
    finite = torch.isfinite(logits).all(dim=-1) & torch.isfinite(raw_regression).all(dim=-1)
    regression = raw_regression.clamp(-1.0, 1.0)
    probabilities = logits.sigmoid() if config.multi_label else logits.softmax(dim=-1)
    labels = [config.id2label[i] for i in range(logits.shape[-1])]
    records = []
    for row_finite, row_probabilities, row_regression in zip(
        finite.tolist(), probabilities.tolist(), regression.tolist()
    ):
        if not row_finite:
            record: dict[str, Any] = {
                "expression": None,
                "probabilities": {label: None for label in labels},
            }
            if config.multi_label:
                record["categories"] = []
            record.update({name: None for name in config.regression_targets})
            record["error"] = NON_FINITE_ERROR
            records.append(record)
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
    """``"none"`` (whole image) for body (EMOTIC) crop policies, ``"dlib"`` for face models."""
    return "none" if getattr(image_processor, "crop_target", "face") == "body" else "dlib"


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
        detector's name.
    """
    if boxes is not None:
        detections = [FaceDetection(box=tuple(float(v) for v in box), score=1.0) for box in boxes]
        for detection in detections:
            if len(detection.box) != 4 or detection.box[2] <= 0 or detection.box[3] <= 0:
                raise ValueError(f"box {list(detection.box)} is not (x, y, w, h) with w, h > 0")
        return detections, [image_processor.crop(image, d.box) for d in detections], "user"
    detections = detector.detect(image)
    if isinstance(detector, WholeImageDetector):
        return detections, [image for _ in detections], "image"
    mismatch = getattr(image_processor, "detector_mismatch", lambda name: None)(detector.name)
    if mismatch:
        warnings.warn(mismatch, UserWarning, stacklevel=2)
    return detections, [image_processor.crop(image, d.box) for d in detections], detector.name


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
    ``box_source`` (detector name, ``"image"`` or ``"user"``), then the prediction fields (with ``error`` when
    the model output was not finite, see [`outputs_to_records`]).
    """
    width, height = image_size
    records = []
    for detection, prediction in zip(detections, predictions):
        record = {
            "box": list(detection.clipped_box(width, height)),
            "score": round(detection.score, 4),
            "crop": crop_target,
            "box_source": box_source,
        }
        record.update(prediction)
        records.append(record)
    return records


def run_model(
    model: Any, pixel_values: torch.Tensor, autocast_dtype: torch.dtype | None = None, channels_last: bool = False
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
    if channels_last:
        pixel_values = pixel_values.contiguous(memory_format=torch.channels_last)
    if autocast_dtype is None:
        return model(pixel_values=pixel_values)
    with torch.autocast(pixel_values.device.type, dtype=autocast_dtype):
        return model(pixel_values=pixel_values)


def _run_model(model: Any, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    outputs = run_model(model, pixel_values)
    return outputs.logits, outputs.regression


PRECISIONS = ("fp32", "bf16", "auto")
# The library's default (the Python API, the transformers pipeline, the Space): exact and reproducible. The
# `cage` command's default is "auto" (`cage.inference.cli`), where bf16 passed the agreement bar.
DEFAULT_PRECISION = "fp32"


def has_native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes bf16 matrix products in hardware: CUDA GPUs with bf16 support, CPUs with
    AVX512-BF16 or AMX. Elsewhere bf16 is emulated and slower than fp32."""
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        cpu = getattr(torch, "cpu", None)
        checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
        return any(bool(getattr(cpu, name, lambda: False)()) for name in checks)
    return False


def resolve_precision(precision: str, device: torch.device) -> str:
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
            and receive CPU tensors.
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
        device: str | torch.device | None = "auto",
        batch_size: int = 32,
        detector_model: str | os.PathLike | None = None,
        precision: str = DEFAULT_PRECISION,
        detect_size: str | int | None = None,
    ):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.device = resolve_device(device)
        self.is_torch = isinstance(model, torch.nn.Module)
        self.model = model.to(self.device).eval() if self.is_torch else model
        # other runners (ONNX Runtime, OpenVINO) run at their own precision and say which
        own = getattr(model, "precision", "fp32")
        self.precision = resolve_precision(precision, self.device) if self.is_torch else own
        self.autocast_bf16 = self.is_torch and self.precision == "bf16"
        if self.autocast_bf16:
            self.model = self.model.to(memory_format=torch.channels_last)
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

    @torch.inference_mode()
    def predict_crops(self, crops: Sequence[Image.Image]) -> list[dict[str, Any]]:
        """Predict on already-cropped RGB faces (or persons); one record per crop, in order (see
        [`outputs_to_records`]); ``batch_size`` crops per forward pass."""
        records: list[dict[str, Any]] = []
        for start in range(0, len(crops), self.batch_size):
            pixel_values = self.image_processor(list(crops[start : start + self.batch_size]), return_tensors="pt")[
                "pixel_values"
            ]
            if self.is_torch:
                pixel_values = pixel_values.to(self.device)
            bf16 = self.autocast_bf16
            outputs = run_model(self.model, pixel_values, torch.bfloat16 if bf16 else None, channels_last=bf16)
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
            crops.extend(image_crops)
        predictions = self.predict_crops(crops)
        results = []
        for image, (detections, start, source) in zip(rgb_images, located):
            rows = predictions[start : start + len(detections)]
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


class FaceExpressionPipeline(ChunkPipeline):
    """transformers pipeline for task ``facial-expression-inference``: image in, one record per face out.

    ``pipeline(model=folder_or_repo, trust_remote_code=True)`` builds it from the code saved with the model.
    Call it with a PIL image, a file path or an RGB NumPy array (or a list of them); it returns, per image,
    the same face records as ``cage predict`` and [`FaceExpressionAnalyzer`] (see [`face_records`]).

    Keyword arguments (at construction or per call):
        detector: ``"dlib"``, ``"yunet"``, ``"none"`` or a ``FaceDetector``; default by the crop policy.
        detector_model: the detector's model file (YuNet's ONNX file).
        boxes: per call, ``(x, y, w, h)`` boxes to use instead of detection (one image at a time).
        detect_size: ``"auto"`` (default) or a longer side in pixels (see [`FaceExpressionAnalyzer`]).
        batch_size: face crops per forward pass (transformers' own argument). Batching is per face (a
            ``ChunkPipeline``: ``preprocess`` yields one item per face, ``postprocess`` regroups an image's
            faces), so ``pipe(images, batch_size=k)`` returns, for every image, the records that
            ``batch_size=1`` returns (up to float rounding of batched matrix products, ~1e-6): all its faces,
            whatever batch they landed in. An image without a face yields one placeholder item whose forward
            pass is skipped, and returns ``[]``.

    Thread safety: transformers stores per-call keyword arguments on the pipeline object, so concurrent calls
    on one pipeline are safe only without per-call arguments; use one pipeline per thread, or the thread-safe
    [`FaceExpressionAnalyzer`].
    """

    _load_processor = False
    _load_image_processor = True
    _load_feature_extractor = False
    _load_tokenizer = False
    _load_video_processor = False

    def __init__(self, *args, **kwargs):
        self._detectors: dict[tuple[str, str | None], FaceDetector] = {}
        self._blank: torch.Tensor | None = None
        super().__init__(*args, **kwargs)

    def _get_detector(
        self, name: str, model_path: str | os.PathLike | None = None, detect_size: str | int = "auto"
    ) -> FaceDetector:
        key = (name, None if model_path is None else str(model_path), detect_size)
        if key not in self._detectors:  # built once per pipeline: dlib and YuNet take time to load
            options = {} if name == "none" else {"detect_size": detect_size}
            self._detectors[key] = create_face_detector(name, model_path=model_path, **options)
        return self._detectors[key]

    def _sanitize_parameters(self, detector=None, detector_model=None, boxes=None, detect_size=None, **kwargs):
        preprocess_params: dict[str, Any] = {} if boxes is None else {"boxes": boxes}
        if detect_size is not None:
            preprocess_params["detect_size"] = parse_detect_size(detect_size)
        if isinstance(detector, FaceDetector):
            preprocess_params["detector"] = detector
        elif detector is not None or detector_model is not None:
            size = preprocess_params.pop("detect_size", "auto")
            preprocess_params["detector"] = self._get_detector(detector or "yunet", detector_model, size)
        return preprocess_params, {}, {}

    def _blank_pixels(self) -> torch.Tensor:
        """A zero ``(1, 3, H, W)`` tensor shaped like one processed crop (the face-less placeholder)."""
        if self._blank is None:
            pixels = self.image_processor([Image.new("RGB", (8, 8))], return_tensors="pt")["pixel_values"]
            self._blank = torch.zeros_like(pixels)
        return self._blank

    def preprocess(self, image, boxes=None, detector=None, detect_size="auto"):
        if detector is None:
            detector = self._get_detector(default_detector_name(self.image_processor), None, detect_size)
        image = load_image(image)
        detections, crops, source = locate_faces(image, detector, self.image_processor, boxes)
        if not crops:
            yield {
                "pixel_values": self._blank_pixels(),
                "has_face": torch.zeros(1, dtype=torch.bool),
                "detection": None,
                "size": image.size,
                "box_source": source,
                "is_last": True,
            }
            return
        for index, (detection, crop) in enumerate(zip(detections, crops)):
            yield {
                "pixel_values": self.image_processor([crop], return_tensors="pt")["pixel_values"],
                "has_face": torch.ones(1, dtype=torch.bool),
                "detection": detection,
                "size": image.size,
                "box_source": source,
                "is_last": index == len(crops) - 1,
            }

    def _forward(self, model_inputs):
        pixel_values = model_inputs.pop("pixel_values")
        has_face = model_inputs["has_face"]
        rows = len(has_face)
        num_labels = len(self.model.config.id2label)
        logits = torch.full((rows, num_labels), float("nan"))
        regression = torch.full((rows, len(self.model.config.regression_targets)), float("nan"))
        if bool(has_face.any()):
            face_logits, face_regression = _run_model(self.model, pixel_values[has_face])
            logits[has_face.cpu()] = face_logits.float().cpu()
            regression[has_face.cpu()] = face_regression.float().cpu()
        # "logits" first: transformers reads the batch size from the first output.
        return {"logits": logits, "regression": regression, **model_inputs}

    def postprocess(self, model_outputs):
        faces = [item for item in model_outputs if bool(item["has_face"].reshape(-1)[0])]
        first = model_outputs[0]
        predictions = []
        if faces:
            logits = torch.cat([item["logits"].reshape(1, -1) for item in faces])
            regression = torch.cat([item["regression"].reshape(1, -1) for item in faces])
            predictions = outputs_to_records(logits, regression, self.model.config)
        crop_target = getattr(self.image_processor, "crop_target", "face")
        detections = [item["detection"] for item in faces]
        return face_records(detections, predictions, first["size"], crop_target, first["box_source"])


PIPELINE_REGISTRY.register_pipeline(TASK, pipeline_class=FaceExpressionPipeline, pt_model=AutoModel, type="image")


__all__ = [
    "DEFAULT_PRECISION",
    "NON_FINITE_ERROR",
    "TASK",
    "FaceExpressionAnalyzer",
    "FaceExpressionPipeline",
    "array_to_image",
    "bgr_to_rgb",
    "face_records",
    "load_image",
    "locate_faces",
    "outputs_to_records",
    "read_image",
    "resolve_device",
    "run_model",
]
