"""Cost of the detection sizes on a group photo: 30 faces of ~90 px on a 4800 x 3200 canvas (as in
tests/test_field_faults.py), timed side by side in one run with the dlib detector.

    python scripts/bench_detect_size.py [--faces ../shared/faces] [--repeats 2]

Prints per mode: faces found, seconds per image (best of ``repeats``) and the ratio to the 1024-px pass.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from PIL import Image


def group_canvas(faces_dir: Path) -> Image.Image:
    import dlib

    detector = dlib.get_frontal_face_detector()
    sources = []
    for name in ("obama.jpg", "biden.jpg", "two_people.jpg"):
        photo = Image.open(faces_dir / name).convert("RGB")
        for rect in detector(np.asarray(photo), 1):
            x, y, w, h = rect.left(), rect.top(), rect.width(), rect.height()
            margin, scale = 0.6 * w, 90 / w
            crop = photo.crop((round(x - margin), round(y - margin), round(x + w + margin), round(y + h + margin)))
            sources.append(crop.resize((round(crop.width * scale), round(crop.height * scale)), Image.BILINEAR))
    rng = np.random.default_rng(0)
    canvas = Image.new("RGB", (4800, 3200), (128, 128, 128))
    for index in range(30):
        row, column = divmod(index, 6)
        left = 100 + column * 780 + int(rng.integers(0, 450))
        top = 100 + row * 620 + int(rng.integers(0, 300))
        canvas.paste(sources[index % len(sources)], (left, top))
    return canvas


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faces", default=str(Path(__file__).resolve().parents[1].parent / "shared" / "faces"))
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    from cage.face_detection_cage import create_face_detector

    canvas = group_canvas(Path(args.faces))
    results = {}
    for mode in (1024, "auto"):
        detector = create_face_detector("dlib", detect_size=mode)
        best, found = float("inf"), 0
        for _ in range(args.repeats):
            started = time.perf_counter()
            found = len(detector.detect(canvas))
            best = min(best, time.perf_counter() - started)
        results[mode] = (found, best)
    for mode, (found, seconds) in results.items():
        ratio = seconds / results[1024][1]
        print(f"detect_size={mode!s:>5}: {found:2d} of 30 faces, {seconds:6.2f} s per image, {ratio:5.1f}x")


if __name__ == "__main__":
    main()
