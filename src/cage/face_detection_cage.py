"""Face detection behind one small interface, for the CLI, the Python API, the Space and the pipeline.

Self-contained (no imports from ``cage``) so that it can travel with a saved model as remote code; the
optional back-ends (``dlib``, ``cv2``, ``huggingface_hub``) are imported only when a detector is built.

Back-ends:
    ``dlib``: dlib's HOG + linear SVM frontal face detector (``dlib-bin`` wheel). Needs no model file,
        works offline as installed. Misses strongly turned faces and faces under ~40 px.
    ``yunet``: OpenCV's YuNet CNN detector (``cv2.FaceDetectorYN``, OpenCV >= 4.8), stronger on turned,
        small and partly hidden faces. Needs its ONNX model file (``face_detection_yunet_2023mar.onnx``
        from the OpenCV Zoo): a local path, or, when online, downloaded once from the Hugging Face Hub.
    ``none``: no detection; each image is taken as one already-cropped face (AffectNet-style crops) or,
        for body models, one person.

Every back-end runs at a bounded working resolution: images whose longer side exceeds ``max_side`` are
downscaled for detection and the boxes are mapped back to original pixels (multiplied by the per-axis scale).
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

DETECTOR_NAMES = ("dlib", "yunet", "none")

# The OpenCV Zoo's YuNet model (MIT licence), as mirrored on the Hugging Face Hub.
YUNET_HUB_REPO = "opencv/face_detection_yunet"
YUNET_FILENAME = "face_detection_yunet_2023mar.onnx"
YUNET_HELP = (
    f"download {YUNET_FILENAME} from https://huggingface.co/{YUNET_HUB_REPO} (or the OpenCV Zoo, "
    "https://github.com/opencv/opencv_zoo/tree/main/models/face_detection_yunet) and pass its path "
    "(--detector-model PATH, or detector_model=PATH); or use the 'dlib' detector, which needs no model file"
)


@dataclass(frozen=True)
class FaceDetection:
    """One detected face.

    Attributes:
        box: ``(x, y, w, h)`` in pixels of the original image as the detector reported it; may extend past
            the image border (a face cut by the border). Crops are taken around this box.
        score: detector confidence (dlib: SVM margin, > 0 for a detection; YuNet: probability in [0, 1];
            ``none`` and user-given boxes: 1.0).
    """

    box: tuple[float, float, float, float]
    score: float

    def clipped_box(self, width: int, height: int) -> tuple[int, int, int, int]:
        """``box`` clipped to a ``width`` x ``height`` image, as integer ``(x, y, w, h)`` pixels."""
        x, y, w, h = self.box
        left, top = max(0, int(round(x))), max(0, int(round(y)))
        right, bottom = min(width, int(round(x + w))), min(height, int(round(y + h)))
        return left, top, max(0, right - left), max(0, bottom - top)


_LOCK_GUARD = threading.Lock()


class FaceDetector:
    """Interface: ``detect(image)`` returns the faces of an RGB PIL image, left to right.

    Subclasses implement ``_detect_boxes(work)`` on the downscaled working image (longer side at most
    ``max_side`` pixels); ``detect`` maps its boxes back to the original image's pixels.

    Thread safety: ``detect`` may be called from several threads on the same detector. dlib's and OpenCV's
    detectors keep per-call state in the detector object (dlib's scanner buffers, YuNet's input size), so
    each detector instance runs one ``_detect_boxes`` at a time under its own lock; concurrent calls wait
    for each other and return exactly what sequential calls return. For parallel detection, give each
    thread its own detector (``create_face_detector``).
    """

    name = "base"
    max_side: int | None = None

    @property
    def lock(self) -> threading.Lock:
        """This detector's lock, held while the back-end runs (created on first use)."""
        lock = self.__dict__.get("_detect_lock")
        if lock is None:
            with _LOCK_GUARD:
                lock = self.__dict__.setdefault("_detect_lock", threading.Lock())
        return lock

    def _locked_boxes(self, work: Image.Image) -> list[tuple[tuple[float, float, float, float], float]]:
        with self.lock:
            return self._detect_boxes(work)

    def detect(self, image: Image.Image) -> list[FaceDetection]:
        """Faces of ``image`` (RGB PIL), sorted left to right (then top to bottom); boxes in its pixels."""
        work = image
        if self.max_side is not None and max(image.width, image.height) > self.max_side:
            scale = self.max_side / max(image.width, image.height)
            size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
            work = image.resize(size, Image.BILINEAR)
        # Width and height may round differently: map back per axis.
        sx, sy = image.width / work.width, image.height / work.height
        detections = [
            FaceDetection(box=(x * sx, y * sy, w * sx, h * sy), score=float(score))
            for (x, y, w, h), score in self._locked_boxes(work)
        ]
        return sorted(detections, key=lambda d: (d.box[0], d.box[1]))

    def _detect_boxes(self, work: Image.Image) -> list[tuple[tuple[float, float, float, float], float]]:
        """``[((x, y, w, h), score), ...]`` in pixels of the working image ``work`` (RGB)."""
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
            mapped back to original pixels exactly (multiplied by the same per-axis scale).
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

    def _detect_boxes(self, work: Image.Image) -> list[tuple[tuple[float, float, float, float], float]]:
        rects, scores, _ = self._detector.run(np.asarray(work.convert("RGB")), self.upsample, self.min_score)
        return [
            ((r.left(), r.top(), r.right() - r.left() + 1, r.bottom() - r.top() + 1), float(score))
            for r, score in zip(rects, scores)
        ]


def _hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes", "on")


def resolve_yunet_model(model_path: str | os.PathLike | None = None) -> Path:
    """Path of the YuNet ONNX file: ``model_path`` if given, else the Hub copy (downloaded once, cached).

    Raises:
        FileNotFoundError: ``model_path`` does not exist, or none was given and the Hub cannot be reached
            (``HF_HUB_OFFLINE=1`` or no network); the message says where to download the file.
    """
    if model_path is not None:
        path = Path(model_path).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"YuNet model file {path} does not exist; {YUNET_HELP}")
        return path
    if _hub_offline():
        raise FileNotFoundError(f"the 'yunet' detector needs its ONNX model file and HF_HUB_OFFLINE=1; {YUNET_HELP}")
    try:
        from huggingface_hub import hf_hub_download

        return Path(hf_hub_download(repo_id=YUNET_HUB_REPO, filename=YUNET_FILENAME))
    except Exception as error:  # network errors, missing repo/file: all end in the same advice
        raise FileNotFoundError(
            f"cannot download {YUNET_FILENAME} from the Hub ({type(error).__name__}: {error}); {YUNET_HELP}"
        ) from error


class YuNetDetector(FaceDetector):
    """OpenCV's YuNet face detector (``cv2.FaceDetectorYN``), run at a bounded working resolution.

    YuNet takes BGR 8-bit images of any size (the input size is set per image) and returns, per face,
    ``x, y, w, h``, five landmarks and a score in [0, 1] (OpenCV's ``FaceDetectorYN`` documentation).

    Args:
        model_path: local ``face_detection_yunet_2023mar.onnx``; ``None`` downloads it from the Hub when
            online (see [`resolve_yunet_model`]).
        max_side: longer side of the working image in pixels; larger images are downscaled for detection
            and boxes are mapped back to original pixels.
        score_threshold: detections scoring lower are dropped (OpenCV's sample uses 0.9; 0.7 keeps more
            turned and partly hidden faces).
        nms_threshold: IoU above which overlapping detections are merged (non-maximum suppression).

    Raises:
        ImportError: OpenCV is missing or too old to have ``FaceDetectorYN``.
        FileNotFoundError: no model file (see [`resolve_yunet_model`]).
        ValueError: the file is not a YuNet ONNX model OpenCV can load; the message names it.
    """

    name = "yunet"

    def __init__(
        self,
        model_path: str | os.PathLike | None = None,
        max_side: int = 1024,
        score_threshold: float = 0.7,
        nms_threshold: float = 0.3,
    ):
        try:
            import cv2
        except ImportError as error:
            raise ImportError("the 'yunet' face detector needs OpenCV: pip install opencv-python-headless") from error
        if not hasattr(cv2, "FaceDetectorYN"):
            raise ImportError(
                f"the 'yunet' face detector needs OpenCV >= 4.8 (cv2.FaceDetectorYN); found {cv2.__version__}: "
                "pip install -U opencv-python-headless"
            )
        self.model_path = resolve_yunet_model(model_path)
        self.max_side = int(max_side)
        self.score_threshold = float(score_threshold)
        try:
            self._net = cv2.FaceDetectorYN.create(
                str(self.model_path), "", (320, 320), self.score_threshold, float(nms_threshold), 5000
            )
        except cv2.error as error:
            raise ValueError(f"{self.model_path}: OpenCV cannot load it as a YuNet ONNX model ({error})") from error

    def _detect_boxes(self, work: Image.Image) -> list[tuple[tuple[float, float, float, float], float]]:
        bgr = np.ascontiguousarray(np.asarray(work.convert("RGB"))[:, :, ::-1])
        self._net.setInputSize((work.width, work.height))
        _, faces = self._net.detect(bgr)
        if faces is None:
            return []
        return [((float(f[0]), float(f[1]), float(f[2]), float(f[3])), float(f[-1])) for f in np.asarray(faces)]


def create_face_detector(name: str = "dlib", model_path: str | os.PathLike | None = None, **kwargs) -> FaceDetector:
    """Build the face detector called ``name`` (one of ``DETECTOR_NAMES``).

    Args:
        name: ``"dlib"``, ``"yunet"`` or ``"none"``.
        model_path: the detector's model file (YuNet's ONNX file); ignored by ``dlib`` and ``none``.
        kwargs: passed to the detector class (e.g. ``max_side``).

    Raises:
        ValueError: unknown name; the message lists the available ones.
        ImportError: the back-end's package is missing; the message says what to install.
        FileNotFoundError: the back-end's model file is missing; the message says where to download it.
    """
    if name == "dlib":
        return DlibHogDetector(**kwargs)
    if name == "yunet":
        return YuNetDetector(model_path=model_path, **kwargs)
    if name == "none":
        return WholeImageDetector()
    raise ValueError(f"unknown face detector {name!r}; choose one of {', '.join(DETECTOR_NAMES)}")


__all__ = [
    "DETECTOR_NAMES",
    "FaceDetection",
    "FaceDetector",
    "DlibHogDetector",
    "YuNetDetector",
    "WholeImageDetector",
    "create_face_detector",
    "resolve_yunet_model",
]
