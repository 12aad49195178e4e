"""Throughput and size of `cage prepare affectnet` on a synthetic copy built from ../shared/faces.

    python scripts/benchmark_prepare.py [--images 2000] [--num-proc 1] [--layout cropped|release2017]

Writes a temporary AffectNet copy (224 x 224 crops, or ~640 x 720 full images with face boxes for the 2017
release), prepares it with PNG and with JPEG crops, and prints images per second and bytes per stored image.
"""

from __future__ import annotations

import argparse
import csv
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

FACES = Path(__file__).resolve().parents[1].parent / "shared" / "faces"


def write_copy(root: Path, n: int, layout: str) -> None:
    photos = [Image.open(FACES / name).convert("RGB") for name in ("obama.jpg", "biden.jpg", "two_people.jpg")]
    rng = np.random.default_rng(0)
    if layout == "cropped":
        for folder, count in (("train_set", n), ("val_set", max(8, n // 20))):
            (root / folder / "annotations").mkdir(parents=True)
            (root / folder / "images").mkdir(parents=True)
            for i in range(count):
                photos[i % 3].resize((224, 224)).save(root / folder / "images" / f"{i}.jpg", quality=90)
                for suffix, value in (("exp", i % 8), ("val", rng.uniform(-1, 1)), ("aro", rng.uniform(-1, 1))):
                    np.save(root / folder / "annotations" / f"{i}_{suffix}.npy", np.array(str(value)))
        return
    lists = root / "Manually_Annotated_file_lists"
    lists.mkdir(parents=True)
    for name, count in (("training", n), ("validation", max(8, n // 20))):
        rows = []
        for i in range(count):
            relative = f"{i % 50}/{name}_{i}.jpg"
            path = root / "Manually_Annotated_Images" / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            photos[i % 3].resize((640, 720)).save(path, quality=90)
            rows.append([relative, 120, 100, 400, 400, "", i % 8, rng.uniform(-1, 1), rng.uniform(-1, 1)])
        with open(lists / f"{name}.csv", "w", newline="") as handle:
            csv.writer(handle).writerows(rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--num-proc", type=int, default=1)
    parser.add_argument("--layout", default="release2017", choices=["cropped", "release2017"])
    args = parser.parse_args()
    from cage.data import prepare_affectnet

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "affectnet"
        write_copy(root, args.images, args.layout)
        for crop_format in ("png", "jpeg"):
            out = Path(tmp) / f"out-{crop_format}"
            started = time.perf_counter()
            loaded, _, _ = prepare_affectnet(root, out, num_proc=args.num_proc, crop_format=crop_format)
            elapsed = time.perf_counter() - started
            total = sum(len(split) for split in loaded.values())
            size = sum(f.stat().st_size for f in out.rglob("*.arrow"))
            print(
                f"{args.layout} {crop_format}: {total} images in {elapsed:.1f} s = {total / elapsed:.0f} images/s "
                f"(num_proc {args.num_proc}), {size / total / 1024:.1f} KiB per image"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
