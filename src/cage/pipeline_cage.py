"""From whole images to per-face predictions: detect, crop, batch, run the model, read the outputs.

Self-contained (imports only its flat siblings) so that it travels with every saved model as remote code:
``transformers.pipeline(model=folder_or_repo, trust_remote_code=True)`` builds [`FaceExpressionPipeline`]
(custom task ``facial-expression-inference``, recorded under ``custom_pipelines`` in ``config.json``).
The CLI, the Python API (``cage.ExpressionAnalyzer``) and the Space build on [`FaceExpressionAnalyzer`]
(defined in ``face_analysis_cage``, which needs neither torch nor transformers, and re-exported here); both
classes locate faces with [`locate_faces`] and read outputs with [`face_records`], so they return the same
records.

Label names, output layout (categories first, then ``config.regression_targets``), single/multi-label
and the crop policy are read from the saved config and processor, never from literals here.
"""

from __future__ import annotations

import os
from typing import Any

import torch
from PIL import Image
from transformers import AutoModel
from transformers.pipelines.base import ChunkPipeline
from transformers.pipelines import PIPELINE_REGISTRY

from .face_analysis_cage import (  # re-exported: the names every entry point has imported from here
    DEFAULT_PRECISION,
    DEVICE_TYPES,
    NON_FINITE_ERROR,
    PRECISIONS,
    FaceExpressionAnalyzer,
    ImageInput,
    _run_model,
    array_to_image,
    bgr_to_rgb,
    default_detector_name,
    face_records,
    has_native_bf16,
    load_image,
    locate_faces,
    no_prediction,
    outputs_to_records,
    read_image,
    resolve_device,
    resolve_precision,
    run_model,
)
from .face_detection_cage import FaceDetector, create_face_detector, parse_detect_size

TASK = "facial-expression-inference"


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
                "failed": False,
                "detection": None,
                "size": image.size,
                "box_source": source,
                "is_last": True,
            }
            return
        for index, (detection, crop) in enumerate(zip(detections, crops)):
            yield {
                "pixel_values": self._blank_pixels() if crop is None else self.image_processor([crop], return_tensors="pt")["pixel_values"],
                "has_face": torch.tensor([crop is not None]),
                "failed": detection.error is not None,
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
        # every face: predicted, or a given box that could not be cropped ("failed": its record says why)
        faces = [item for item in model_outputs if bool(item["has_face"].reshape(-1)[0]) or item.get("failed")]
        first = model_outputs[0]
        predictions = []
        if faces:
            logits = torch.cat([item["logits"].reshape(1, -1) for item in faces])
            regression = torch.cat([item["regression"].reshape(1, -1) for item in faces])
            predictions = outputs_to_records(logits, regression, self.model.config)
        crop_target = getattr(self.image_processor, "crop_target", "face")
        detections = [item["detection"] for item in faces]
        predictions = [
            no_prediction(self.model.config, d.error) if d.error else p for d, p in zip(detections, predictions)
        ]
        return face_records(detections, predictions, first["size"], crop_target, first["box_source"])


PIPELINE_REGISTRY.register_pipeline(TASK, pipeline_class=FaceExpressionPipeline, pt_model=AutoModel, type="image")


__all__ = [
    "DEFAULT_PRECISION",
    "DEVICE_TYPES",
    "NON_FINITE_ERROR",
    "PRECISIONS",
    "TASK",
    "FaceExpressionAnalyzer",
    "FaceExpressionPipeline",
    "ImageInput",
    "array_to_image",
    "bgr_to_rgb",
    "default_detector_name",
    "face_records",
    "has_native_bf16",
    "load_image",
    "locate_faces",
    "outputs_to_records",
    "read_image",
    "resolve_device",
    "resolve_precision",
    "run_model",
]
