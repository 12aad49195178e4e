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

Detection size (``detect_size``, the same for every back-end; CLI ``--detect-size``):
    ``"auto"`` (default): images whose longer side is at most ``max_side`` (1024 px) are searched as they
        are. Larger images are searched twice: once downscaled to ``max_side`` (finds the large faces) and
        once at native resolution in ``max_side``-pixel tiles overlapping by a quarter tile (finds small
        faces: a 90-pixel face in a 4800 x 3200 group photo would be 19 pixels after downscaling, below
        every detector's minimum). Tile detections touching an inner tile edge are dropped (the face lies
        whole in the neighbouring tile) and duplicates are merged by non-maximum suppression. Images above
        ``MAX_TILED_PIXELS`` (50 MP) are tiled at the scale that brings them to 50 MP. Cost: about one
        detector run per tile, ~24 runs for a 4800 x 3200 photo instead of one (README, "Detection size").
    an integer ``N``: one pass on the image downscaled so that its longer side is at most ``N`` pixels
        (``N = 1024`` is what cage <= 0.1 did); boxes are mapped back to original pixels (multiplied by the
        per-axis scale). Fast; faces smaller than ~40 px after downscaling are lost.
"""

from __future__ import annotations

import math
import os
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

DETECTOR_NAMES = ("auto", "yunet", "dlib", "none")
# The environment variable naming a local YuNet model file (the `auto` and `yunet` detectors use it).
YUNET_ENV = "CAGE_YUNET_MODEL"

# The OpenCV Zoo's YuNet model (MIT licence), as mirrored on the Hugging Face Hub.
YUNET_HUB_REPO = "opencv/face_detection_yunet"
YUNET_FILENAME = "face_detection_yunet_2023mar.onnx"
YUNET_HELP = (
    f"download {YUNET_FILENAME} from https://huggingface.co/{YUNET_HUB_REPO} (or the OpenCV Zoo, "
    "https://github.com/opencv/opencv_zoo/tree/main/models/face_detection_yunet) and pass its path "
    f"(--detector-model PATH, detector_model=PATH, or {YUNET_ENV}=PATH), or run once online to cache it; or use "
    "the 'dlib' detector, which needs no model file"
)


# YuNet's five landmarks, in the order OpenCV's FaceDetectorYN returns them.
LANDMARK_NAMES = ("right_eye", "left_eye", "nose_tip", "right_mouth_corner", "left_mouth_corner")


@dataclass(frozen=True)
class FaceDetection:
    """One detected face.

    Attributes:
        box: ``(x, y, w, h)`` in pixels of the original image as the detector reported it; may extend past
            the image border (a face cut by the border). Crops are taken around this box.
        score: detector confidence (dlib: SVM margin, > 0 for a detection; YuNet: probability in [0, 1];
            ``none`` and user-given boxes: 1.0).
        landmarks: YuNet's five points ``((x, y), ...)`` in pixels of the original image, in
            [`LANDMARK_NAMES`] order (the subject's right eye first, as OpenCV orders them); ``None`` for
            detectors without landmarks (dlib).
        error: for a user-given box that cannot be cropped, why (then ``box`` is all zeros); else ``None``.
    """

    box: tuple[float, float, float, float]
    score: float
    landmarks: tuple[tuple[float, float], ...] | None = None
    error: str | None = None

    def clipped_box(self, width: int, height: int) -> tuple[int, int, int, int]:
        """``box`` clipped to a ``width`` x ``height`` image, as integer ``(x, y, w, h)`` pixels."""
        x, y, w, h = self.box
        left, top = max(0, int(round(x))), max(0, int(round(y)))
        right, bottom = min(width, int(round(x + w))), min(height, int(round(y + h)))
        return left, top, max(0, right - left), max(0, bottom - top)


_LOCK_GUARD = threading.Lock()


class FaceDetector:
    """Interface: ``detect(image)`` returns the faces of an RGB PIL image, left to right.

    Subclasses implement ``_detect_boxes(work)`` on a working image (the image downscaled, or one tile of it,
    per ``detect_size``); ``detect`` maps its boxes back to the original image's pixels.

    Thread safety: ``detect`` may be called from several threads on the same detector. dlib's and OpenCV's
    detectors keep per-call state in the detector object (dlib's scanner buffers, YuNet's input size), so
    each detector instance runs one ``_detect_boxes`` at a time under its own lock; concurrent calls wait
    for each other and return exactly what sequential calls return. For parallel detection, give each
    thread its own detector (``create_face_detector``).
    """

    name = "base"
    max_side: int | None = None
    # Set by create_face_detector("auto") when it fell back to dlib: why YuNet was not used.
    fallback_reason: str | None = None

    @property
    def lock(self) -> threading.Lock:
        """This detector's lock, held while the back-end runs (created on first use)."""
        lock = self.__dict__.get("_detect_lock")
        if lock is None:
            with _LOCK_GUARD:
                lock = self.__dict__.setdefault("_detect_lock", threading.Lock())
        return lock

    def _locked_boxes(self, work: Image.Image) -> list[RawDetection]:
        with self.lock:
            return self._detect_boxes(work)

    def detect(self, image: Image.Image) -> list[FaceDetection]:
        """Faces of ``image`` (RGB PIL), sorted left to right (then top to bottom); boxes in its pixels.

        The search follows ``detect_size`` (see the module docstring): ``"auto"`` tiles large images at native
        resolution, an integer downscales to that longer side.
        """
        size = getattr(self, "detect_size", "auto")
        longest = max(image.width, image.height)
        if self.max_side is None or (size == "auto" and longest <= self.max_side):
            return _sorted(self._pass(image, None))
        if size != "auto":
            return _sorted(self._pass(image, int(size)))
        # Faces the downscaled pass finds keep its boxes (the same boxes as a single pass at ``max_side``,
        # which framing calibration and earlier versions measured); tiles only add the faces it missed.
        found = self._pass(image, self.max_side)
        return _sorted(non_maximum_suppression(self._tiled_pass(image, self.max_side), keep=found))

    def _pass(self, image: Image.Image, longer_side: int | None) -> list[FaceDetection]:
        """One detector run on ``image`` downscaled to ``longer_side`` (``None``: as is), boxes in its pixels."""
        work = image
        if longer_side is not None and max(image.width, image.height) > longer_side:
            scale = longer_side / max(image.width, image.height)
            size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
            work = image.resize(size, Image.BILINEAR)
        # Width and height may round differently: map back per axis.
        sx, sy = image.width / work.width, image.height / work.height
        return [_mapped(raw, 0.0, 0.0, sx, sy) for raw in self._locked_boxes(work)]

    def _tiled_pass(self, image: Image.Image, tile: int) -> list[FaceDetection]:
        """Detections in overlapping ``tile``-pixel tiles at native resolution (or at ``MAX_TILED_PIXELS``)."""
        work, scale = image, 1.0
        if image.width * image.height > MAX_TILED_PIXELS:
            scale = (MAX_TILED_PIXELS / (image.width * image.height)) ** 0.5
            work = image.resize((round(image.width * scale), round(image.height * scale)), Image.BILINEAR)
        sx, sy = image.width / work.width, image.height / work.height
        overlap = tile // 4
        found = []
        for left in tile_starts(work.width, tile, overlap):
            for top in tile_starts(work.height, tile, overlap):
                right, bottom = min(work.width, left + tile), min(work.height, top + tile)
                for raw in self._locked_boxes(work.crop((left, top, right, bottom))):
                    x, y, w, h = raw[0]
                    inner_edges = (
                        (left > 0 and x <= 1),
                        (top > 0 and y <= 1),
                        (right < work.width and x + w >= right - left - 1),
                        (bottom < work.height and y + h >= bottom - top - 1),
                    )
                    if any(inner_edges):  # cut by the tile: whole in the neighbouring tile
                        continue
                    found.append(_mapped(raw, left, top, sx, sy))
        return found

    # Sub-scales of `refine`, as fractions of one pyramid step: dlib snaps its boxes to a pyramid with steps of
    # 6/5, so four offsets within one step average the snapping out; a regressing detector needs one.
    refine_steps: int = 1
    refine_step_ratio: float = 1.2

    def refine(self, image: Image.Image, detection: FaceDetection, side: int | None = None) -> FaceDetection:
        """The face of ``detection`` measured again at the canonical scale, for framing.

        The region of [`REFINE_CONTEXT`] times the box side around the box is cut from ``image`` (black outside
        it) and resized (antialiased) so that the box side is ``side`` pixels (default
        [`CANONICAL_FACE_SIDE`]), at ``refine_steps`` sizes spread over one ``refine_step_ratio``; the detector
        runs on each, and the boxes it finds there (mapped back to ``image``) are averaged.

        Why: a detector's box frames a face differently at different pixel sizes. dlib scans a fixed 80-pixel
        window over an image pyramid, so its box side snaps to steps of 6/5 (up to +-10 % of the face), and
        every detector sees less detail in a small face than in a large one. Measured at one small canonical
        size, from several offsets, a box frames a face the same way whether the face had 40 or 800 pixels in
        the photo; framing calibration measures the training crops the same way, so the calibrated crop equals
        the training crop at every face size (README, "Framing"; ``scripts/check_framing_scales.py``).

        Returns:
            The averaged box (pixels of ``image``) with the original score and landmarks, or ``detection``
            itself when the face is not found again at any of the sizes.
        """
        canonical = float(side or CANONICAL_FACE_SIDE)
        x, y, w, h = detection.box
        box_side = max(w, h)
        if box_side <= 0:
            return detection
        cx, cy = x + w / 2.0, y + h / 2.0
        half = REFINE_CONTEXT * box_side / 2.0
        left, top = int(math.floor(cx - half)), int(math.floor(cy - half))
        size = max(1, int(math.ceil(cx + half)) - left, int(math.ceil(cy + half)) - top)
        region = _cut(image, left, top, size)
        boxes = []
        for step in range(self.refine_steps):
            target = canonical * self.refine_step_ratio ** (step / self.refine_steps)
            out = max(8, round(size * target / box_side))
            scale = out / size  # exact: output pixels per image pixel
            best, best_distance = None, None
            for raw in self._locked_boxes(region.resize((out, out), Image.Resampling.BILINEAR, reducing_gap=None)):
                bx, by, bw, bh = raw[0]
                distance = max(abs(bx + bw / 2 - out / 2), abs(by + bh / 2 - out / 2))
                if distance < 0.25 * target and (best_distance is None or distance < best_distance):
                    best, best_distance = raw, distance
            if best is not None:
                bx, by, bw, bh = best[0]
                boxes.append((left + bx / scale, top + by / scale, bw / scale, bh / scale))
        if not boxes:
            return detection
        mean = tuple(sum(box[i] for box in boxes) / len(boxes) for i in range(4))
        return FaceDetection(box=mean, score=detection.score, landmarks=detection.landmarks)

    def _detect_boxes(self, work: Image.Image) -> list[RawDetection]:
        """``[((x, y, w, h), score, landmarks or None), ...]`` in pixels of the working image ``work`` (RGB); a
        back-end without landmarks may return ``((x, y, w, h), score)`` pairs."""
        raise NotImplementedError


# One detection in a detector's working image: box (x, y, w, h), score, and five (x, y) landmarks or None.
RawDetection = tuple[tuple[float, float, float, float], float, "tuple[tuple[float, float], ...] | None"]
# The face size (box side, pixels) at which `FaceDetector.refine` measures a face again (small, so that faces
# of every size are reduced to the same detail; dlib's smallest face with one upsampling is 40), and the side of
# the region around the box it looks at, in box sides.
CANONICAL_FACE_SIDE = 64
REFINE_CONTEXT = 2.0


def _cut(image: Image.Image, left: int, top: int, size: int) -> Image.Image:
    """The ``size`` x ``size`` square at ``(left, top)`` of ``image``; black where it leaves the image."""
    if left >= 0 and top >= 0 and left + size <= image.width and top + size <= image.height:
        return image.crop((left, top, left + size, top + size))
    canvas = Image.new(image.mode, (size, size))
    canvas.paste(image.crop((max(left, 0), max(top, 0), min(left + size, image.width), min(top + size, image.height))),
                 (max(left, 0) - left, max(top, 0) - top))  # fmt: skip
    return canvas


def _mapped(raw: RawDetection, left: float, top: float, sx: float, sy: float) -> FaceDetection:
    """A working-image detection as a ``FaceDetection`` in original pixels: ``(left + x) * sx``, ``(top + y) * sy``."""
    (x, y, w, h), score, *rest = raw  # (box, score) from back-ends without landmarks
    landmarks = rest[0] if rest else None
    points = None if landmarks is None else tuple(((left + px) * sx, (top + py) * sy) for px, py in landmarks)
    return FaceDetection(box=((left + x) * sx, (top + y) * sy, w * sx, h * sy), score=float(score), landmarks=points)


MAX_TILED_PIXELS = 50_000_000
DETECT_SIZE_HELP = "'auto' (native-resolution tiles for images over 1024 px) or a longer side in pixels (e.g. 1024)"


def parse_detect_size(value: str | int | None) -> str | int:
    """``"auto"`` or a positive integer from a user value (``None`` -> ``"auto"``).

    Raises:
        ValueError: anything else; the message says what is accepted.
    """
    if value is None or value == "auto":
        return "auto"
    try:
        number = int(value)
    except (TypeError, ValueError):
        number = 0
    if number < 32 or str(number) != str(value).strip():
        raise ValueError(f"detect size {value!r} is not valid; use {DETECT_SIZE_HELP}, at least 32")
    return number


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Left (or top) offsets of ``tile``-pixel tiles covering ``length`` pixels, overlapping by at least
    ``overlap``; the last tile ends at the border."""
    if length <= tile:
        return [0]
    stride = tile - overlap
    count = -(-(length - tile) // stride) + 1  # ceil division
    step = (length - tile) / (count - 1)
    return [round(index * step) for index in range(count)]


def _iou_and_containment(a: tuple, b: tuple) -> tuple[float, float]:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    iw = max(0.0, min(ax + aw, bx + bw) - max(ax, bx))
    ih = max(0.0, min(ay + ah, by + bh) - max(ay, by))
    inter = iw * ih
    union = aw * ah + bw * bh - inter
    smaller = min(aw * ah, bw * bh)
    return (inter / union if union > 0 else 0.0), (inter / smaller if smaller > 0 else 0.0)


def non_maximum_suppression(
    detections: list[FaceDetection],
    iou: float = 0.3,
    containment: float = 0.7,
    keep: list[FaceDetection] | None = None,
) -> list[FaceDetection]:
    """Greedy non-maximum suppression: keep the highest-scoring detection, drop those overlapping a kept one
    by IoU > ``iou`` or covering more than ``containment`` of the smaller box (a face found at two scales).

    ``keep``: detections kept first, whatever their scores (e.g. those of the downscaled pass); the result
    holds all of them plus the ``detections`` that overlap none of them.
    """
    kept: list[FaceDetection] = list(keep or [])
    for detection in sorted(detections, key=lambda d: -d.score):
        if all(
            (lambda o: o[0] <= iou and o[1] <= containment)(_iou_and_containment(detection.box, other.box))
            for other in kept
        ):
            kept.append(detection)
    return kept


def _sorted(detections: list[FaceDetection]) -> list[FaceDetection]:
    return sorted(detections, key=lambda d: (d.box[0], d.box[1]))


class WholeImageDetector(FaceDetector):
    """``--detector none``: the whole image is one face (or person) crop."""

    name = "none"

    def detect(self, image: Image.Image) -> list[FaceDetection]:
        return [FaceDetection(box=(0.0, 0.0, float(image.width), float(image.height)), score=1.0)]


class DlibHogDetector(FaceDetector):
    """dlib's HOG frontal face detector, run at a bounded working resolution.

    Args:
        max_side: the working size: the downscaled pass and the tiles of ``detect_size="auto"`` have this
            longer side in pixels.
        detect_size: ``"auto"`` or a longer side in pixels (see the module docstring).
        upsample: dlib's pyramid upsampling count; 1 finds faces down to ~40 px at some cost in speed.
        min_score: detections with a lower SVM score are dropped.

    Raises:
        ImportError: ``dlib`` is not installed (``pip install dlib-bin``).
    """

    name = "dlib"
    refine_steps = 4  # its boxes snap to pyramid steps of 6/5: average four offsets (see FaceDetector.refine)

    def __init__(self, max_side: int = 1024, upsample: int = 1, min_score: float = 0.0, detect_size="auto"):
        try:
            import dlib
        except ImportError as error:  # pragma: no cover - dlib-bin is a dependency
            raise ImportError("the 'dlib' face detector needs dlib: pip install dlib-bin") from error
        self._detector = dlib.get_frontal_face_detector()
        self.max_side = int(max_side)
        self.detect_size = parse_detect_size(detect_size)
        self.upsample = int(upsample)
        self.min_score = float(min_score)

    def _detect_boxes(self, work: Image.Image) -> list[RawDetection]:
        rects, scores, _ = self._detector.run(np.asarray(work.convert("RGB")), self.upsample, self.min_score)
        return [
            ((r.left(), r.top(), r.right() - r.left() + 1, r.bottom() - r.top() + 1), float(score), None)
            for r, score in zip(rects, scores)
        ]


def resolve_yunet_model(model_path: str | os.PathLike | None = None) -> Path:
    """Path of the YuNet ONNX file, looked for in this order:

    1. ``model_path`` (``--detector-model``), if given;
    2. the file named by the environment variable [`YUNET_ENV`] (``CAGE_YUNET_MODEL``), if set;
    3. the Hugging Face cache (``opencv/face_detection_yunet``, downloaded earlier), without network;
    4. a download from the Hub into that cache, unless offline (``HF_HUB_OFFLINE=1``).

    Raises:
        FileNotFoundError: the given path or the variable's file does not exist, or nothing was found and the
            Hub cannot be reached; the message says where the file comes from and how to point cage at it.
    """
    if model_path is not None:
        path = Path(model_path).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"YuNet model file {path} does not exist; {YUNET_HELP}")
        return path
    named = os.environ.get(YUNET_ENV)
    if named:
        path = Path(named).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"{YUNET_ENV}={named}: no such file; {YUNET_HELP}")
        return path
    from huggingface_hub import hf_hub_download, is_offline_mode

    try:
        return Path(hf_hub_download(repo_id=YUNET_HUB_REPO, filename=YUNET_FILENAME, local_files_only=True))
    except Exception:  # not in the cache (LocalEntryNotFoundError) or an unusable cache: try the network
        pass
    if is_offline_mode():
        raise FileNotFoundError(
            f"YuNet's model file is not in the Hugging Face cache and HF_HUB_OFFLINE=1 forbids downloading it; {YUNET_HELP}"
        )
    if not hub_reachable():  # a quick check: huggingface_hub would retry for about 20 s, warning each time
        raise FileNotFoundError(f"YuNet's model file is not in the Hugging Face cache and the Hub cannot be reached; {YUNET_HELP}")
    try:
        return Path(hf_hub_download(repo_id=YUNET_HUB_REPO, filename=YUNET_FILENAME))
    except Exception as error:  # network errors, missing repo/file: all end in the same advice
        raise FileNotFoundError(
            f"cannot download {YUNET_FILENAME} from the Hub ({type(error).__name__}); {YUNET_HELP}"
        ) from error


def hub_reachable(timeout: float = 2.0) -> bool:
    """Whether a TCP connection to the Hugging Face Hub's host (``huggingface_hub.constants.ENDPOINT``) opens
    within ``timeout`` seconds."""
    import socket
    from urllib.parse import urlparse

    from huggingface_hub import constants

    url = urlparse(constants.ENDPOINT)
    try:
        with socket.create_connection((url.hostname, url.port or (443 if url.scheme == "https" else 80)), timeout):
            return True
    except OSError:
        return False


class YuNetDetector(FaceDetector):
    """OpenCV's YuNet face detector (``cv2.FaceDetectorYN``), run at a bounded working resolution.

    YuNet takes BGR 8-bit images of any size (the input size is set per image) and returns, per face,
    ``x, y, w, h``, five landmarks and a score in [0, 1] (OpenCV's ``FaceDetectorYN`` documentation).

    Args:
        model_path: local ``face_detection_yunet_2023mar.onnx``; ``None`` downloads it from the Hub when
            online (see [`resolve_yunet_model`]).
        max_side: the working size: the downscaled pass and the tiles of ``detect_size="auto"`` have this
            longer side in pixels.
        detect_size: ``"auto"`` or a longer side in pixels (see the module docstring).
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
        detect_size="auto",
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
        self.detect_size = parse_detect_size(detect_size)
        self.score_threshold = float(score_threshold)
        # OpenCV 5 logs "setPreferableTarget ... new graph engine" each time a detector is created: not the
        # user's business; errors still show.
        level = cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR) if hasattr(cv2, "utils") else None
        try:
            self._net = cv2.FaceDetectorYN.create(
                str(self.model_path), "", (320, 320), self.score_threshold, float(nms_threshold), 5000
            )
        except cv2.error as error:
            raise ValueError(f"{self.model_path}: OpenCV cannot load it as a YuNet ONNX model ({error})") from error
        finally:
            if level is not None:
                cv2.utils.logging.setLogLevel(level)

    def _detect_boxes(self, work: Image.Image) -> list[RawDetection]:
        bgr = np.ascontiguousarray(np.asarray(work.convert("RGB"))[:, :, ::-1])
        self._net.setInputSize((work.width, work.height))
        _, faces = self._net.detect(bgr)
        if faces is None:
            return []
        return [
            (
                (float(f[0]), float(f[1]), float(f[2]), float(f[3])),
                float(f[-1]),
                tuple((float(f[4 + 2 * i]), float(f[5 + 2 * i])) for i in range(5)),
            )
            for f in np.asarray(faces)
        ]


def create_face_detector(name: str = "auto", model_path: str | os.PathLike | None = None, **kwargs) -> FaceDetector:
    """Build the face detector called ``name`` (one of ``DETECTOR_NAMES``).

    Args:
        name: ``"auto"`` (default): YuNet when its model file can be had (see [`resolve_yunet_model`]), else
            dlib, with one logged warning that says why and how to get YuNet (the detector's ``fallback_reason``
            keeps it); ``"yunet"``, ``"dlib"`` or ``"none"``.
        model_path: the detector's model file (YuNet's ONNX file); ignored by ``dlib`` and ``none``.
        kwargs: passed to the detector class (e.g. ``max_side``, ``detect_size``; ``none`` ignores them).

    Raises:
        ValueError: unknown name; the message lists the available ones.
        ImportError: the back-end's package is missing; the message says what to install.
        FileNotFoundError: the back-end's model file is missing; the message says where to download it
            (``auto`` falls back to dlib instead, unless ``model_path`` names a missing file).
    """
    if name == "auto":
        if model_path is not None:  # an explicit file: YuNet or a clear error, never a silent fallback
            return YuNetDetector(model_path=model_path, **kwargs)
        try:
            return YuNetDetector(**kwargs)
        except (FileNotFoundError, ImportError) as error:
            detector = DlibHogDetector(**{k: v for k, v in kwargs.items() if k in ("max_side", "detect_size")})
            detector.fallback_reason = str(error).split("; ", 1)[0]
            import logging

            logging.getLogger("cage").warning(
                "face detector: dlib, because YuNet is not available (%s); for YuNet pass --detector-model FILE or "
                "set %s=FILE (%s from https://huggingface.co/%s)",
                str(error).split("; ", 1)[0], YUNET_ENV, YUNET_FILENAME, YUNET_HUB_REPO,
            )  # fmt: skip
            return detector
    if name == "dlib":
        return DlibHogDetector(**kwargs)
    if name == "yunet":
        return YuNetDetector(model_path=model_path, **kwargs)
    if name == "none":
        return WholeImageDetector()
    raise ValueError(f"unknown face detector {name!r}; choose one of {', '.join(DETECTOR_NAMES)}")


__all__ = [
    "DETECTOR_NAMES",
    "LANDMARK_NAMES",
    "YUNET_ENV",
    "MAX_TILED_PIXELS",
    "FaceDetection",
    "FaceDetector",
    "DlibHogDetector",
    "YuNetDetector",
    "WholeImageDetector",
    "create_face_detector",
    "non_maximum_suppression",
    "parse_detect_size",
    "resolve_yunet_model",
    "tile_starts",
]
