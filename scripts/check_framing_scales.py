"""Does the calibrated crop equal the training crop at every face size? (README, "Framing"; issue 23.)

A synthetic check on the shared photos (../shared/faces), for one detector:

1. Training crops: for each face, a square of 1.6 x its reference box side (the detector's box at the photo's
   native size, measured as inference measures it: at the canonical face size unless ``--no-refine``), centred
   0.1 side above the box centre, cut from the native photo and stored at ``--store`` pixels (224: an
   AffectNet-like crop; 48: a FER+-like gray crop).
2. Calibration: ``cage.data.framing.measure_framing`` on those stored crops, as ``cage prepare`` runs it.
3. Inference: each photo scaled so that the face is 40 ... 800 pixels; the detector finds it (``detect_size``
   auto, as ``cage predict``), the calibrated framing turns its box into a crop; IoU with the training crop
   scaled alike.

``--no-refine`` measures the boxes as the detector returns them (before cage 0.2: no canonical-scale
re-detection), to show why it is needed. Prints one row per face size and the overall median IoU.

    python scripts/check_framing_scales.py --detector dlib --store 224
    python scripts/check_framing_scales.py --detector yunet --detector-model ../shared/detectors/yunet_s_640_640.onnx --store 48
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from PIL import Image, ImageOps

from cage.data.framing import padded, pick_detection
from cage.face_analysis_cage import crop_with_padding, framed_box, to_rgb
from cage.face_detection_cage import FaceDetection, create_face_detector

FACES_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "faces"
# (photo, index of the face left to right): every face of the shared photos that dlib finds at native size.
FACES = (("obama.jpg", 0), ("biden.jpg", 0), ("two_people.jpg", 0), ("two_people.jpg", 1), ("32bit.png", 0))
FACE_SIZES = (40, 60, 80, 120, 160, 240, 320, 480, 640, 800)
CROP_SIDE, CROP_LIFT = 1.6, 0.1  # training crop: side x reference box, centre this many sides above its centre


def iou(a, b) -> float:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    w = max(0.0, min(ax + aw, bx + bw) - max(ax, bx))
    h = max(0.0, min(ay + ah, by + bh) - max(ay, by))
    return w * h / (aw * ah + bw * bh - w * h)


def training_crop(box) -> tuple[float, float, float, float]:
    x, y, w, h = box
    side = CROP_SIDE * max(w, h)
    cx, cy = x + w / 2, y + h / 2 - CROP_LIFT * max(w, h)
    return cx - side / 2, cy - side / 2, side, side


def load_faces(reference, refine: bool, faces_dir: Path = FACES_DIR) -> list[tuple[str, Image.Image, tuple]]:
    """``(name, upright RGB photo, reference box)`` of each face in [`FACES`]: the ``reference`` detector's box
    at the photo's native size (with ``refine``: measured at the canonical face size, ``FaceDetector.refine``)."""
    faces = []
    for name, index in FACES:
        photo = to_rgb(Image.open(faces_dir / name))
        found = reference.detect(photo)
        if index < len(found):
            detection = reference.refine(photo, found[index]) if refine else found[index]
            faces.append((f"{name}#{index}", photo, detection.box))
    return faces


def calibrate(faces, detector, store: int, refine: bool) -> dict:
    """Framing measured on the stored training crops (and their mirror images), as ``cage prepare`` does."""
    from cage.data.framing import CALIBRATION_FACE_SIDE, DEFAULT_PAD, measure_framing

    def pairs():
        for name, photo, box in faces:
            crop_box = tuple(round(v) for v in training_crop(box))
            crop = crop_with_padding(photo, crop_box).resize((store, store), Image.Resampling.BICUBIC)
            if store <= 64:  # FER+-like: gray, then upscaled for detection as cage prepare ferplus does
                crop = crop.convert("L").convert("RGB")
            for image in (crop, ImageOps.mirror(crop)):
                if max(image.size) < CALIBRATION_FACE_SIDE:
                    image = image.resize((CALIBRATION_FACE_SIDE,) * 2, Image.Resampling.BICUBIC)
                canvas, placed = padded(image, DEFAULT_PAD)
                yield canvas, placed, name

    if not refine:
        detector.refine = lambda image, detection, side=None: detection
    calibration = measure_framing(pairs(), detector)
    if not refine:
        del detector.refine
    return calibration


def agreement(faces, detector, framing: dict, refine: bool, sizes=FACE_SIZES) -> list[dict]:
    """One row per (face, size): IoU of the calibrated inference crop with the training crop, or a miss."""
    rows = []
    for name, full_photo, full_box in faces:
        # the part of the photo within 2 box sides of the face (clamped to the photo): the same face and
        # surroundings at a fraction of the detection time of the whole photo scaled to an 800-pixel face
        x, y, w, h = full_box
        side = max(w, h)
        left, top = max(0, round(x + w / 2 - 2 * side)), max(0, round(y + h / 2 - 2 * side))
        right = min(full_photo.width, round(x + w / 2 + 2 * side))
        bottom = min(full_photo.height, round(y + h / 2 + 2 * side))
        photo = full_photo.crop((left, top, right, bottom))
        box = (x - left, y - top, w, h)
        for size in sizes:
            scale = size / max(box[2], box[3])
            scaled = photo.resize((max(1, round(photo.width * scale)), max(1, round(photo.height * scale))),
                                  Image.Resampling.BICUBIC if scale > 1 else Image.Resampling.LANCZOS)  # fmt: skip
            truth_box = tuple(v * scale for v in box)
            truth_crop = tuple(v * scale for v in training_crop(box))
            found = [d for d in detector.detect(scaled) if iou(d.box, truth_box) >= 0.3]
            if not found:
                rows.append({"face": name, "size": size, "iou": None})
                continue
            detection = max(found, key=lambda d: iou(d.box, truth_box))
            if refine:
                detection = detector.refine(scaled, detection, side=framing.get("canonical_face_side"))
            rows.append({"face": name, "size": size, "iou": iou(framed_box(detection.box, framing), truth_crop)})
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--detector", default="dlib", choices=["dlib", "yunet"])
    parser.add_argument("--detector-model", default=None)
    parser.add_argument("--store", type=int, default=224, help="side of the stored training crops (48: FER+-like)")
    parser.add_argument("--no-refine", dest="refine", action="store_false")
    parser.add_argument("--json", default=None, help="also write the rows here")
    args = parser.parse_args(argv)
    detector = create_face_detector(args.detector, model_path=args.detector_model)
    faces = load_faces(detector, args.refine)
    calibration = calibrate(faces, detector, args.store, args.refine)
    rows = agreement(faces, detector, calibration, args.refine)
    print(f"{args.detector}, training crops stored at {args.store} px, refine={args.refine}: calibrated side "
          f"{calibration['side_ratio'][0]:.3f} x {calibration['side_ratio'][1]:.3f}, offset "
          f"({calibration['center_offset'][0]:+.3f}, {calibration['center_offset'][1]:+.3f})")  # fmt: skip
    print("face px | median IoU | min IoU | found")
    for size in FACE_SIZES:
        values = [r["iou"] for r in rows if r["size"] == size and r["iou"] is not None]
        found = sum(r["size"] == size and r["iou"] is not None for r in rows)
        total = sum(r["size"] == size for r in rows)
        med = f"{statistics.median(values):.3f}" if values else "-"
        low = f"{min(values):.3f}" if values else "-"
        print(f"{size:7d} | {med:>10} | {low:>7} | {found}/{total}")
    values = [r["iou"] for r in rows if r["iou"] is not None]
    print(f"all     | {statistics.median(values):10.3f} | {min(values):7.3f} | {len(values)}/{len(rows)}")
    if args.json:
        Path(args.json).write_text(json.dumps({"calibration": calibration, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
