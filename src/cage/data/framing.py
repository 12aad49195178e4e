"""Framing calibration: how the training crops of a dataset frame the face the inference detector finds.

A detector's box and the box a dataset was cropped with frame a face differently (dlib's HOG box is tight,
eyebrows to chin; AffectNet's crops carry forehead, hair and some background). A model trained on one framing
and fed another loses accuracy without any error. Calibration runs the inference detector on a seeded sample
of training crops and measures, per crop with a detection:

- ``side_ratio`` ``[rx, ry]``: crop width / detector-box width, crop height / detector-box height;
- ``center_offset`` ``[ox, oy]``: (crop centre - detector-box centre) / detector-box width (x) and height (y);
  negative ``oy``: the crop centre lies above the box centre.

It stores their medians, 25th/75th percentiles (``*_iqr``), the sample size, the number and share of crops in
which the detector found the face, and the detector's name and settings in the dataset's stats
(``cage_stats.json`` and every split's ``info.description``, key ``framing``). ``cage train`` writes the
measurement into the saved ``CageImageProcessor`` (``framing``), whose ``crop`` then turns a detector box into
the crop the model was trained on (see ``cage.image_processing_cage.framed_box``).

Where the crop is a whole stored image (AffectNet's cropped release, or a prepared dataset), the detector runs
on the crop placed in a black border of ``pad`` times its size on every side (context for faces that fill the
crop); the 2017 release's full images are used as they are, with their annotation box as the crop.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from ..face_detection_cage import CANONICAL_FACE_SIDE, FaceDetection, FaceDetector, create_face_detector
from ..image_processing_cage import to_rgb
from .stats import STATS_FILE

logger = logging.getLogger(__name__)

# 2: boxes are measured at the canonical face size (FaceDetector.refine), for calibration and inference alike.
CALIBRATION_VERSION = 2
DEFAULT_SAMPLE = 500
DEFAULT_PAD = 0.25
# Stored crops smaller than this (FER+'s 48-pixel faces) are upscaled to it before detection: the detectors'
# smallest face is about 40 pixels, and a photo's face is usually larger than a thumbnail's.
CALIBRATION_FACE_SIDE = 192
# Fewer detections than this give no usable median: the calibration is stored as failed, not applied.
MIN_DETECTED = 5
# A detection counts as the crop's face only if at least this share of its box lies inside the crop.
MIN_INSIDE = 0.5


class CalibrationError(ValueError):
    """The dataset cannot be calibrated (no such split, no images, not a prepared face dataset)."""


def crop_geometry(crop_box: Sequence[float], detection_box: Sequence[float]) -> tuple[float, float, float, float]:
    """``(rx, ry, ox, oy)`` of a crop relative to a detector box (both ``(x, y, w, h)`` in the same pixels).

    ``rx = W / w``, ``ry = H / h``, ``ox = (X + W/2 - x - w/2) / w``, ``oy = (Y + H/2 - y - h/2) / h``, where
    ``(X, Y, W, H)`` is the crop and ``(x, y, w, h)`` the detection: the inverse of ``framed_box``.
    """
    cx, cy, cw, ch = (float(v) for v in crop_box)
    dx, dy, dw, dh = (float(v) for v in detection_box)
    return cw / dw, ch / dh, (cx + cw / 2 - dx - dw / 2) / dw, (cy + ch / 2 - dy - dh / 2) / dh


def pick_detection(detections: Sequence[FaceDetection], crop_box: Sequence[float]) -> FaceDetection | None:
    """The detection that is the crop's face: the one with the largest share of its box inside the crop (at
    least [`MIN_INSIDE`]), the larger box on ties; None if there is none."""
    cx, cy, cw, ch = (float(v) for v in crop_box)
    best, best_key = None, None
    for detection in detections:
        x, y, w, h = detection.box
        if w <= 0 or h <= 0:
            continue
        overlap_w = max(0.0, min(x + w, cx + cw) - max(x, cx))
        overlap_h = max(0.0, min(y + h, cy + ch) - max(y, cy))
        inside = overlap_w * overlap_h / (w * h)
        key = (round(inside, 6), w * h)
        if inside >= MIN_INSIDE and (best_key is None or key > best_key):
            best, best_key = detection, key
    return best


def padded(image: Image.Image, pad: float) -> tuple[Image.Image, tuple[int, int, int, int]]:
    """``image`` centred on a black canvas with ``pad`` x its width (height) added left and right (top and
    bottom), and the image's box ``(x, y, w, h)`` on that canvas."""
    px, py = int(round(pad * image.width)), int(round(pad * image.height))
    if px == 0 and py == 0:
        return image, (0, 0, image.width, image.height)
    canvas = Image.new("RGB", (image.width + 2 * px, image.height + 2 * py))
    canvas.paste(image, (px, py))
    return canvas, (px, py, image.width, image.height)


def _quartiles(values: np.ndarray) -> list[float]:
    return [float(np.percentile(values, 25)), float(np.percentile(values, 75))]


def measure_framing(
    pairs: Iterable[tuple[Image.Image | None, Sequence[float] | None, str]],
    detector: FaceDetector,
    detector_settings: dict | None = None,
) -> dict:
    """Measure how crops frame the detected face.

    Args:
        pairs: ``(image, crop_box, source_id)``: an upright RGB image, the training crop's ``(x, y, w, h)`` in
            its pixels, and an id for messages; ``image`` None marks an unreadable example (counted in
            ``unreadable``, left out of the sample size).
        detector: the inference detector (``create_face_detector``).
        detector_settings: recorded with the result (e.g. ``{"max_side": 1024, "upsample": 1}``).

    Returns:
        The calibration dict: ``status`` (``"measured"``, or ``"too_few_detections"`` with fewer than
        [`MIN_DETECTED`] detections; then no ``side_ratio``/``center_offset``), ``detector``,
        ``detector_settings``, ``sample_size``, ``detected``, ``detection_share`` (detected / sample_size),
        ``unreadable``, ``side_ratio`` and ``center_offset`` (medians, ``[x, y]``), ``side_ratio_iqr`` and
        ``center_offset_iqr`` (``[[p25, p75] x, [p25, p75] y]``), ``definition``.
    """
    rows, sampled, unreadable = [], 0, 0
    for image, crop_box, source_id in pairs:
        if image is None:
            unreadable += 1
            continue
        sampled += 1
        detection = pick_detection(detector.detect(image), crop_box)
        if detection is None:
            logger.debug("framing calibration: no face found in %s", source_id)
            continue
        detection = detector.refine(image, detection)  # at the canonical face size, as inference measures it
        rows.append(crop_geometry(crop_box, detection.box))
    result = {
        "calibration_version": CALIBRATION_VERSION,
        # boxes measured after FaceDetector.refine: the face detected again at this side (pixels)
        "canonical_face_side": CANONICAL_FACE_SIDE,
        "status": "measured" if len(rows) >= MIN_DETECTED else "too_few_detections",
        "detector": detector.name,
        "detector_settings": dict(detector_settings or {}),
        "sample_size": sampled,
        "detected": len(rows),
        "detection_share": len(rows) / sampled if sampled else 0.0,
        "unreadable": unreadable,
        "definition": "side_ratio = training-crop side / detector-box side per axis; center_offset = (crop centre "
        "- detector-box centre) / detector-box side per axis (y down); medians over the crops with a detection",
    }
    if len(rows) >= MIN_DETECTED:
        values = np.asarray(rows, dtype=np.float64)
        result["side_ratio"] = [float(np.median(values[:, 0])), float(np.median(values[:, 1]))]
        result["center_offset"] = [float(np.median(values[:, 2])), float(np.median(values[:, 3]))]
        result["side_ratio_iqr"] = [_quartiles(values[:, 0]), _quartiles(values[:, 1])]
        result["center_offset_iqr"] = [_quartiles(values[:, 2]), _quartiles(values[:, 3])]
    return result


def make_detector(name: str = "dlib", model_path: str | None = None) -> tuple[FaceDetector, dict]:
    """The inference detector ``name`` with its default settings, and those settings (for the record)."""
    detector = create_face_detector(name, model_path=model_path)
    settings = {key: getattr(detector, key, None) for key in ("max_side", "upsample", "min_score", "score_threshold")}
    return detector, {key: value for key, value in settings.items() if value is not None}


def sample_indices(count: int, sample: int, seed: int) -> list[int]:
    """``min(sample, count)`` distinct indices of ``range(count)``, drawn with ``seed``, in ascending order."""
    if sample <= 0:
        raise CalibrationError(f"the calibration sample must be positive, got {sample}")
    rng = np.random.default_rng(seed)
    return sorted(int(i) for i in rng.choice(count, size=min(sample, count), replace=False))


def stored_crop_pairs(split, indices: Sequence[int], pad: float, upscale_to: int | None = None):
    """``(padded image, crop box, source_id)`` for stored crops (a ``datasets.Dataset`` with an ``image``
    column); an undecodable image yields ``(None, None, source_id)``. With ``upscale_to``, a crop whose longer
    side is shorter is first resized (bicubic) so that its longer side is ``upscale_to`` pixels."""
    import datasets

    raw = split.cast_column("image", datasets.Image(decode=False)).select(indices)
    has_ids = "source_id" in raw.column_names
    for index, row in zip(indices, raw):
        source_id = row["source_id"] if has_ids else f"#{index}"
        cell = row["image"]
        try:
            image = Image.open(io.BytesIO(cell["bytes"])) if cell.get("bytes") is not None else Image.open(cell["path"])
            image.load()
        except Exception as error:  # PIL raises OSError, ValueError, SyntaxError...: counted, never fatal
            logger.warning("framing calibration: cannot decode %s (%s)", source_id, error)
            yield None, None, source_id
            continue
        image = to_rgb(image)
        if upscale_to and max(image.size) < upscale_to:
            scale = upscale_to / max(image.size)
            image = image.resize((round(image.width * scale), round(image.height * scale)), Image.BICUBIC)
        canvas, box = padded(image, pad)
        yield canvas, box, source_id


def calibrate_split(
    split,
    *,
    sample: int = DEFAULT_SAMPLE,
    seed: int = 0,
    detector: str = "dlib",
    detector_model: str | None = None,
    pad: float = DEFAULT_PAD,
    split_name: str = "train",
    upscale_to: int | None = None,
) -> dict:
    """Framing calibration on the stored crops of a prepared split (each crop is the whole stored image).

    Args:
        split: a ``datasets.Dataset`` of the cage schema (face crops in ``image``).
        sample: number of crops measured (seeded draw without replacement; all if fewer).
        seed: seed of the draw.
        detector, detector_model: the inference detector (``dlib`` by default).
        pad: black border added around each crop before detection, as a fraction of its size per side.
        split_name: recorded with the result.
        upscale_to: crops smaller than this many pixels (longer side) are upscaled to it before detection
            (e.g. [`CALIBRATION_FACE_SIDE`] for FER+'s 48-pixel faces); ``None``: as stored.

    Returns:
        The calibration dict of [`measure_framing`] plus ``source``, ``split``, ``seed``, ``pad`` and
        ``upscale_to``.

    Raises:
        CalibrationError: the split is empty or the sample is not positive.
    """
    if len(split) == 0:
        raise CalibrationError(f"split {split_name!r} has no examples to calibrate on")
    indices = sample_indices(len(split), sample, seed)
    found, settings = make_detector(detector, detector_model)
    result = measure_framing(stored_crop_pairs(split, indices, pad, upscale_to), found, settings)
    result.update({"source": "stored crops (each crop is the whole image)", "split": split_name, "seed": seed})
    result["pad"] = pad
    result["upscale_to"] = upscale_to
    return result


def calibration_detectors(detector: str = "auto", detector_model: str | None = None) -> list[str]:
    """The detectors a calibration measures with: ``"auto"`` -> ``["yunet", "dlib"]`` where YuNet's model file
    can be had (``face_detection_cage.resolve_yunet_model``), else ``["dlib"]``; a name -> that detector."""
    if detector != "auto":
        return [detector]
    from ..face_detection_cage import resolve_yunet_model

    try:
        resolve_yunet_model(detector_model)
    except (FileNotFoundError, ImportError) as error:
        logger.warning("framing calibration: dlib only, YuNet is not available (%s)", str(error).split("; ", 1)[0])
        return ["dlib"]
    return ["yunet", "dlib"]


def calibrate_each(measure, detector: str = "auto", detector_model: str | None = None) -> dict:
    """Run ``measure(name, model_path) -> calibration`` for each of [`calibration_detectors`].

    Returns:
        ``{"calibration": the first detector's (the inference default), "calibrations": {name: calibration}}``,
        the ``framing`` entries of a dataset's stats.
    """
    results = {}
    for name in calibration_detectors(detector, detector_model):
        results[name] = measure(name, detector_model if name == "yunet" else None)
    return {"calibration": next(iter(results.values())), "calibrations": results}


def framing_for_processor(stats: dict) -> dict | None:
    """The processor's ``framing`` from a dataset's stats, or None when the stats hold no usable measurement
    (no calibration, a failed one, or a body dataset)."""
    return _framing_of((stats.get("framing") or {}).get("calibration"))


def framings_for_processor(stats: dict) -> dict[str, dict]:
    """The processor's ``framings`` from a dataset's stats: the usable measurements of other detectors than
    the primary one ([`framing_for_processor`]), by detector name; empty when there are none."""
    primary = framing_for_processor(stats)
    calibrations = (stats.get("framing") or {}).get("calibrations") or {}
    others = {name: _framing_of(c) for name, c in calibrations.items()}
    return {n: f for n, f in others.items() if f is not None and (primary is None or n != primary.get("detector"))}


def _framing_of(calibration) -> dict | None:
    if not isinstance(calibration, dict) or calibration.get("status") != "measured":
        return None
    keys = (
        "side_ratio",
        "center_offset",
        "side_ratio_iqr",
        "center_offset_iqr",
        "detector",
        "detector_settings",
        "canonical_face_side",
        "sample_size",
        "detected",
        "detection_share",
    )
    framing = {key: calibration[key] for key in keys if key in calibration}
    framing["source"] = f"framing calibration of the training data ({calibration.get('source', 'unknown')})"
    return framing


def store_calibration(dataset_dir: str | Path, calibration: dict, calibrations: dict | None = None) -> dict:
    """Write ``calibration`` (the primary one) and ``calibrations`` (by detector name, the primary included;
    default ``{its detector: calibration}``) into a prepared dataset folder: ``cage_stats.json`` and every
    split's ``dataset_info.json`` description (``framing.calibration``, ``framing.calibrations``). Returns the
    updated stats.

    Raises:
        CalibrationError: the folder has no ``cage_stats.json``.
    """
    folder = Path(dataset_dir)
    stats_path = folder / STATS_FILE
    if not stats_path.is_file():
        raise CalibrationError(f"{stats_path} does not exist; was {folder} written by `cage prepare`?")
    stats = json.loads(stats_path.read_text(encoding="utf-8"))
    stats.setdefault("framing", {})["calibration"] = calibration
    stats["framing"]["calibrations"] = calibrations or {calibration.get("detector", "unknown"): calibration}
    stats_path.write_text(json.dumps(stats, indent=2) + "\n", encoding="utf-8")
    description = json.dumps(stats, sort_keys=False)
    for info_path in sorted(folder.glob("*/dataset_info.json")):
        info = json.loads(info_path.read_text(encoding="utf-8"))
        info["description"] = description
        info_path.write_text(json.dumps(info, indent=2, sort_keys=True), encoding="utf-8")
    return stats


def describe(calibration: dict) -> str:
    """One line for people: the medians, spread and detection share, or why nothing was measured."""
    share = f"{calibration['detected']}/{calibration['sample_size']} crops with a detection"
    if calibration.get("status") != "measured":
        return f"framing calibration ({calibration['detector']}): too few detections ({share}); not applied"
    rx, ry = calibration["side_ratio"]
    ox, oy = calibration["center_offset"]
    return (
        f"framing calibration ({calibration['detector']}, {share}): crop side = {rx:.3f} x {ry:.3f} detector box "
        f"(w x h), centre offset ({ox:+.3f}, {oy:+.3f}) box sides"
    )
