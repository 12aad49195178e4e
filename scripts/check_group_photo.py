"""Face detection recall on a composed group photo (README, "Detectors"; issue 23).

The shared photos' faces (../shared/faces; found by YuNet at native size, cut with context around them) are
pasted onto one canvas at face sizes from 24 to 320 pixels, upright, mirrored and turned by up to 15 degrees.
Each detector (``detect_size`` auto, as ``cage predict``) runs on the canvas and on a mirrored copy of it turned
by 15 degrees; a face counts as found when a detection's centre lies in its box and the detection's side is 0.5 to
2 times the face's. Prints recall per detector and face size, and the time of one detection pass.

    python scripts/check_group_photo.py --detector-model ../shared/detectors/yunet_s_640_640.onnx
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

from PIL import Image, ImageOps

from cage.face_analysis_cage import crop_with_padding, to_rgb
from cage.face_detection_cage import create_face_detector

FACES_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "faces"
PHOTOS = ("obama.jpg", "biden.jpg", "two_people.jpg", "32bit.png")
FACE_SIZES = (24, 32, 40, 56, 80, 120, 180, 260)
ANGLES = (0, 15, -15)
CONTEXT = 1.8  # pasted region: this many face sides around the face


def source_faces(detector_model: str | None) -> list[tuple[Image.Image, float]]:
    """``(region around a face, face side in that region)``: each face YuNet finds in the shared photos, with
    ``CONTEXT`` face sides of surroundings (YuNet's box defines the face: it finds every face here)."""
    reference = create_face_detector("yunet", model_path=detector_model)
    faces = []
    for name in PHOTOS:
        photo = to_rgb(Image.open(FACES_DIR / name))
        for detection in reference.detect(photo):
            x, y, w, h = detection.box
            side = max(w, h)
            region = round(CONTEXT * side)
            left, top = round(x + w / 2 - region / 2), round(y + h / 2 - region / 2)
            faces.append((crop_with_padding(photo, (left, top, region, region)), side))
    return faces


def compose(faces, sizes=FACE_SIZES, angles=ANGLES, gap: int = 12) -> tuple[Image.Image, list[dict]]:
    """A canvas with every (face, size, angle) combination, mirrored on odd positions, in rows; and the truth:
    ``{"box": (x, y, w, h), "size": face side px, "angle": degrees}`` per pasted face."""
    items = []
    for size in sizes:
        for angle in angles:
            for index, (region, side) in enumerate(faces):
                scale = size / side
                tile = region.resize((max(1, round(region.width * scale)),) * 2, Image.Resampling.LANCZOS)
                if (index + len(items)) % 2:
                    tile = ImageOps.mirror(tile)
                mask = Image.new("L", tile.size, 255)
                if angle:
                    tile = tile.rotate(angle, resample=Image.Resampling.BICUBIC, expand=True)
                    mask = mask.rotate(angle, expand=True)
                items.append((tile, mask, size, angle))
    width = 2600
    x = y = row_height = 0
    placed = []
    for tile, mask, size, angle in items:
        if x + tile.width > width:
            x, y, row_height = 0, y + row_height + gap, 0
        placed.append((tile, mask, x, y, size, angle))
        x += tile.width + gap
        row_height = max(row_height, tile.height)
    canvas = Image.new("RGB", (width, y + row_height), (118, 112, 104))
    truth = []
    for tile, mask, left, top, size, angle in placed:
        canvas.paste(tile, (left, top), mask)
        cx, cy = left + tile.width / 2, top + tile.height / 2
        truth.append({"box": (cx - size / 2, cy - size / 2, size, size), "size": size, "angle": angle})
    return canvas, truth


def turned_copy(canvas: Image.Image, truth: list[dict], angle: float = 15.0) -> tuple[Image.Image, list[dict]]:
    """The canvas mirrored and turned by ``angle`` degrees (expanded), and the truth moved with it."""
    mirrored = ImageOps.mirror(canvas)
    turned = mirrored.rotate(angle, resample=Image.Resampling.BICUBIC, expand=True, fillcolor=(118, 112, 104))
    a = math.radians(angle)
    cx0, cy0 = mirrored.width / 2, mirrored.height / 2
    cx1, cy1 = turned.width / 2, turned.height / 2
    moved = []
    for face in truth:
        x, y, w, h = face["box"]
        fx, fy = canvas.width - (x + w / 2), y + h / 2  # mirrored centre
        dx, dy = fx - cx0, fy - cy0
        # PIL rotates counter-clockwise on screen (y down): x' = x cos + y sin, y' = -x sin + y cos
        nx, ny = cx1 + dx * math.cos(a) + dy * math.sin(a), cy1 - dx * math.sin(a) + dy * math.cos(a)
        moved.append(dict(face, box=(nx - w / 2, ny - h / 2, w, h)))
    return turned, moved


def recall(detections, truth) -> list[bool]:
    """Per truth face, whether a detection's centre lies in its box with a side 0.5 to 2 times its size."""
    found = []
    for face in truth:
        x, y, w, h = face["box"]
        hit = False
        for detection in detections:
            dx, dy, dw, dh = detection.box
            cx, cy = dx + dw / 2, dy + dh / 2
            if x <= cx <= x + w and y <= cy <= y + h and 0.5 * w <= max(dw, dh) <= 2.0 * w:
                hit = True
                break
        found.append(hit)
    return found


def measure(detector_name: str, detector_model: str | None, canvas, truth) -> dict:
    detector = create_face_detector(detector_name, model_path=detector_model if detector_name == "yunet" else None)
    started = time.perf_counter()
    detections = detector.detect(canvas)
    seconds = time.perf_counter() - started
    hits = recall(detections, truth)
    by_size = {size: [h for h, f in zip(hits, truth) if f["size"] == size] for size in sorted({f["size"] for f in truth})}
    return {"detector": detector_name, "seconds": seconds, "found": sum(hits), "faces": len(truth),
            "by_size": {size: (sum(v), len(v)) for size, v in by_size.items()},
            "false_positives": max(0, len(detections) - sum(hits))}  # fmt: skip


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--detector-model", required=True, help="YuNet's ONNX file")
    args = parser.parse_args(argv)
    faces = source_faces(args.detector_model)
    canvas, truth = compose(faces)
    views = {"composed": (canvas, truth), "mirrored, turned 15 degrees": turned_copy(canvas, truth)}
    for view, (image, view_truth) in views.items():
        print(f"{view}: {image.width} x {image.height} px, {len(view_truth)} faces")
        for name in ("yunet", "dlib"):
            result = measure(name, args.detector_model, image, view_truth)
            sizes = ", ".join(f"{s}px {a}/{b}" for s, (a, b) in result["by_size"].items())
            print(f"  {name}: {result['found']}/{result['faces']} found in {result['seconds']:.1f} s ({sizes})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
