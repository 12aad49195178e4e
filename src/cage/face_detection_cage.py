"""Face detection behind one small interface, for the CLI, the Python API, the Space and the pipeline.

Self-contained (no imports from ``cage``) so that it can travel with a saved model as remote code.

Back-ends:
    ``dlib``: dlib's HOG + linear SVM frontal face detector (``dlib-bin`` wheel). Needs no model file,
        works offline as installed. Misses strongly turned faces and faces under ~40 px.
    ``none``: no detection; each image is taken as one already-cropped face (AffectNet-style crops) or,
        for body models, one person.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

DETECTOR_NAMES = ("dlib", "none")


@dataclass(frozen=True)
class FaceDetection:
    """One detected face.

    Attributes:
        box: ``(x, y, w, h)`` in pixels of the original image as the detector reported it; may extend past
            the image border (a face cut by the border). Crops are taken around this box.
        score: detector confidence (dlib: SVM margin, > 0 for a detection; ``none``: 1.0).
    """

    box: tuple[float, float, float, float]
    score: float

    def clipped_box(self, width: int, height: int) -> tuple[int, int, int, int]:
        """``box`` clipped to a ``width`` x ``height`` image, as integer ``(x, y, w, h)`` pixels."""
        x, y, w, h = self.box
        left, top = max(0, int(round(x))), max(0, int(round(y)))
        right, bottom = min(width, int(round(x + w))), min(height, int(round(y + h)))
        return left, top, max(0, right - left), max(0, bottom - top)


class FaceDetector:
    """Interface: ``detect(image)`` returns the faces of an RGB PIL image, left to right."""

    name = "base"

    def detect(self, image: Image.Image) -> list[FaceDetection]:
        raise NotImplementedError


class WholeImageDetector(FaceDetector):
    """``--detector none``: the whole image is one face (or person) crop."""

    name = "none"

    def detect(self, image: Image.Image) -> list[FaceDetection]:
        return [FaceDetection(box=(0.0, 0.0, float(image.width), float(image.height)), score=1.0)]


class DlibHogDetector(FaceDetector):
    """dlib's HOG frontal face detector, run at a bounded working resolution.

    Args:
        max_side: images whose longer side exceeds this many pixels are downscaled for detection; boxes are
            mapped back to original pixels exactly (divided by the same scale).
        upsample: dlib's pyramid upsampling count; 1 finds faces down to ~40 px at some cost in speed.
        min_score: detections with a lower SVM score are dropped.

    Raises:
        ImportError: ``dlib`` is not installed (``pip install dlib-bin``).
    """

    name = "dlib"

    def __init__(self, max_side: int = 1024, upsample: int = 1, min_score: float = 0.0):
        try:
            import dlib
        except ImportError as error:  # pragma: no cover - dlib-bin is a dependency
            raise ImportError("the 'dlib' face detector needs dlib: pip install dlib-bin") from error
        self._detector = dlib.get_frontal_face_detector()
        self.max_side = int(max_side)
        self.upsample = int(upsample)
        self.min_score = float(min_score)

    def detect(self, image: Image.Image) -> list[FaceDetection]:
        scale = min(1.0, self.max_side / max(image.width, image.height))
        work = image
        if scale < 1.0:
            work = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))), Image.BILINEAR)
        # Width and height may round differently: map back per axis.
        sx, sy = image.width / work.width, image.height / work.height
        rects, scores, _ = self._detector.run(np.asarray(work.convert("RGB")), self.upsample, self.min_score)
        detections = [
            FaceDetection(
                box=(r.left() * sx, r.top() * sy, (r.right() - r.left() + 1) * sx, (r.bottom() - r.top() + 1) * sy),
                score=float(score),
            )
            for r, score in zip(rects, scores)
        ]
        return sorted(detections, key=lambda d: (d.box[0], d.box[1]))


def create_face_detector(name: str = "dlib", **kwargs) -> FaceDetector:
    """Build the face detector called ``name`` (one of ``DETECTOR_NAMES``).

    Raises:
        ValueError: unknown name; the message lists the available ones.
        ImportError: the back-end's package is missing; the message says what to install.
    """
    if name == "dlib":
        return DlibHogDetector(**kwargs)
    if name == "none":
        return WholeImageDetector()
    raise ValueError(f"unknown face detector {name!r}; choose one of {', '.join(DETECTOR_NAMES)}")


__all__ = ["FaceDetection", "FaceDetector", "DlibHogDetector", "WholeImageDetector", "create_face_detector"]
