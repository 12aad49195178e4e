"""From whole images to per-face predictions: detect, crop, batch, run the model, read the outputs.

Self-contained (imports only its flat siblings) so that it can travel with a saved model as remote code;
the CLI, the Python API and the Space all build on [`FaceExpressionAnalyzer`].

Label names, output layout (categories first, then ``config.regression_targets``), single/multi-label
and the crop policy are read from the saved config and processor, never from literals here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from PIL import Image

from .face_detection_cage import FaceDetection, FaceDetector, WholeImageDetector, create_face_detector
from .image_processing_cage import to_rgb


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """``"auto"``/``None`` -> CUDA if available, else Apple MPS if available, else CPU.

    Raises:
        ValueError: an explicitly requested ``cuda``/``mps`` device is not available.
    """
    if device is None or str(device) == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was requested but no CUDA GPU is available")
    if device.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ValueError("device 'mps' was requested but Apple MPS is not available")
    return device


def outputs_to_records(logits: torch.Tensor, regression: torch.Tensor, config: Any) -> list[dict[str, Any]]:
    """Turn model outputs into one dict per row.

    Args:
        logits: ``(N, num_labels)`` expression scores.
        regression: ``(N, len(config.regression_targets))`` raw continuous outputs.
        config: the model's ``CageConfig`` (``id2label``, ``multi_label``, ``regression_targets``).

    Returns:
        Per row: ``expression`` (top label), ``probabilities`` (label -> probability: softmax for single-label
        models, independent sigmoids for multi-label models), and one float per regression target
        (``valence``, ``arousal``[, ``dominance``]) clamped to [-1, 1]; multi-label models also give
        ``categories``, the labels with probability >= 0.5.
    """
    logits = logits.float().cpu()
    regression = regression.float().cpu().clamp(-1.0, 1.0)
    probabilities = logits.sigmoid() if config.multi_label else logits.softmax(dim=-1)
    labels = [config.id2label[i] for i in range(logits.shape[-1])]
    records = []
    for row_probabilities, row_regression in zip(probabilities.tolist(), regression.tolist()):
        best = max(range(len(labels)), key=row_probabilities.__getitem__)
        record: dict[str, Any] = {
            "expression": labels[best],
            "probabilities": {label: round(p, 6) for label, p in zip(labels, row_probabilities)},
        }
        if config.multi_label:
            record["categories"] = [label for label, p in zip(labels, row_probabilities) if p >= 0.5]
        for name, value in zip(config.regression_targets, row_regression):
            record[name] = round(value, 6)
        records.append(record)
    return records


class FaceExpressionAnalyzer:
    """Detect faces (or take given boxes), crop them by the saved crop policy, and predict in batches.

    Args:
        model: a ``CageForExpressionInference`` (local class or remote code).
        image_processor: its ``CageImageProcessor``.
        detector: a face detector, a detector name (``"dlib"``, ``"none"``) or ``None`` for the default:
            ``"dlib"`` for face models, whole images for body (EMOTIC) models.
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"mps"`` or a ``torch.device``.
        batch_size: number of crops per forward pass, across faces and images.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        image_processor: Any,
        detector: FaceDetector | str | None = None,
        device: str | torch.device | None = "auto",
        batch_size: int = 32,
    ):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.device = resolve_device(device)
        self.model = model.to(self.device).eval()
        self.image_processor = image_processor
        self.crop_target = getattr(image_processor, "crop_target", "face")
        if detector is None:
            detector = "none" if self.crop_target == "body" else "dlib"
        self.detector = create_face_detector(detector) if isinstance(detector, str) else detector
        self.batch_size = int(batch_size)

    @property
    def config(self) -> Any:
        return self.model.config

    def detect(self, image: Image.Image) -> list[FaceDetection]:
        """Faces of an RGB image, left to right; see the detector for box conventions."""
        return self.detector.detect(image)

    @torch.inference_mode()
    def predict_crops(self, crops: Sequence[Image.Image]) -> list[dict[str, Any]]:
        """Predict on already-cropped RGB faces (or persons); one record per crop, in order."""
        records: list[dict[str, Any]] = []
        for start in range(0, len(crops), self.batch_size):
            batch = self.image_processor(list(crops[start : start + self.batch_size]), return_tensors="pt")
            outputs = self.model(pixel_values=batch["pixel_values"].to(self.device))
            records.extend(outputs_to_records(outputs.logits, outputs.regression, self.config))
        return records

    def analyze(
        self,
        images: Sequence[Image.Image],
        boxes: Sequence[Sequence[Sequence[float]] | None] | None = None,
    ) -> list[list[dict[str, Any]]]:
        """Predict every face of every image, batching crops across images.

        Args:
            images: PIL images of any mode; EXIF orientation is applied and they are converted to RGB.
            boxes: optional per-image lists of ``(x, y, w, h)`` boxes (pixels of the upright image) to use
                instead of detection (e.g. EMOTIC person boxes); ``None`` entries fall back to detection.

        Returns:
            Per image, a list of face records, left to right: ``box`` ``[x, y, w, h]`` (integer pixels of the
            upright original image, clipped to it), ``score`` (detector confidence), ``crop`` (``"face"`` or
            ``"body"``), then the fields of [`outputs_to_records`]. An image without a face gives ``[]``.
        """
        rgb_images = [to_rgb(image) for image in images]
        located: list[tuple[int, FaceDetection]] = []
        crops: list[Image.Image] = []
        for index, image in enumerate(rgb_images):
            given = boxes[index] if boxes is not None else None
            if given is not None:
                detections = [FaceDetection(box=tuple(float(v) for v in box), score=1.0) for box in given]
            else:
                detections = self.detect(image)
            for detection in detections:
                located.append((index, detection))
                if isinstance(self.detector, WholeImageDetector) and given is None:
                    crops.append(image)  # already a crop: no margin, no padding
                else:
                    crops.append(self.image_processor.crop(image, detection.box))
        predictions = self.predict_crops(crops)
        results: list[list[dict[str, Any]]] = [[] for _ in rgb_images]
        for (index, detection), prediction in zip(located, predictions):
            image = rgb_images[index]
            record = {
                "box": list(detection.clipped_box(image.width, image.height)),
                "score": round(detection.score, 4),
                "crop": self.crop_target,
            }
            record.update(prediction)
            results[index].append(record)
        return results


__all__ = ["FaceExpressionAnalyzer", "outputs_to_records", "resolve_device"]
