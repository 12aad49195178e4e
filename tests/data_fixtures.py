"""Writers of small AffectNet and EMOTIC copies in their exact on-disk layouts, for tests/test_data_*.py.

Images are small resized crops of the real photos in ../shared/faces (via ``face_photo``), so the tests are
fast and the pixels are real.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from PIL import Image

from conftest import face_photo

PHOTOS = ("obama.jpg", "biden.jpg", "two_people.jpg", "obama_small.jpg", "obama_partial_face.jpg")
_CACHE: dict[tuple, Image.Image] = {}


def small_photo(index: int, size: tuple[int, int]) -> Image.Image:
    """A distinct small RGB image (``size`` = (width, height)) cut from the shared photos."""
    key = (index, size)
    if key not in _CACHE:
        name = PHOTOS[index % len(PHOTOS)]
        source = Image.open(face_photo(name)).convert("RGB")
        shift = (index // len(PHOTOS)) * 0.04
        width, height = source.size
        box = (int(width * shift), int(height * shift), int(width * (0.8 + shift)), int(height * (0.8 + shift)))
        _CACHE[key] = source.crop(box).resize(size, Image.Resampling.BILINEAR)
    return _CACHE[key].copy()


def save_jpeg(image: Image.Image, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format="JPEG", quality=90)
    return path


def decoded(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def affectnet_labels(per_class: int, classes: int = 8, offset: int = 0) -> list[tuple[int, float, float]]:
    """(expression, valence, arousal) rows, ``per_class`` for each class, with float32-exact values."""
    rows = []
    for k in range(per_class):
        for expression in range(classes):
            i = len(rows) + offset
            rows.append((expression, ((i * 37) % 129 - 64) / 64.0, ((i * 53) % 129 - 64) / 64.0))
    return rows


def write_affectnet_release2017(root: Path, train, test, faults: bool = False) -> dict:
    """The 2017 release: full images + file lists with face boxes. Returns expected examples by source_id.

    training.csv gets a header line, validation.csv none (both occur in real copies).
    """
    expected = {}
    images = root / "Manually_Annotated_Images"
    lists = root / "Manually_Annotated_file_lists"
    lists.mkdir(parents=True)
    counter = 0
    for name, rows, header in (("training", train, True), ("validation", test, False)):
        split = "train" if name == "training" else "test"
        lines = []
        for expression, valence, arousal in rows:
            counter += 1
            relative = f"{counter % 3 + 1}/img_{counter:04d}.jpg"
            path = save_jpeg(small_photo(counter, (64, 72)), images / relative)
            x, y, w, h = 8 + counter % 5, 6 + counter % 7, 40, 48
            landmarks = ";".join(f"{v:.1f}" for v in range(136))
            lines.append([relative, x, y, w, h, landmarks, expression, valence, arousal])
            expected[relative] = {
                "split": split,
                "label": expression,
                "valence": valence,
                "arousal": arousal,
                "pixels": decoded(path)[y : y + h, x : x + w],
            }
        if faults and split == "train":
            counter += 1
            # a box that leaves the image on the right: clamped, kept
            relative = "9/box_outside.jpg"
            path = save_jpeg(small_photo(counter, (64, 72)), images / relative)
            lines.append([relative, 30, 10, 50, 40, "", 1, 0.5, 0.25])
            expected[relative] = {
                "split": split, "label": 1, "valence": 0.5, "arousal": 0.25,
                "pixels": decoded(path)[10:50, 30:64],
            }  # fmt: skip
            lines.append(["9/missing.jpg", 1, 1, 20, 20, "", 0, 0.0, 0.0])
            corrupt = images / "9/corrupt.jpg"
            data = (images / relative).read_bytes()
            corrupt.write_bytes(data[: len(data) // 3])
            lines.append(["9/corrupt.jpg", 1, 1, 20, 20, "", 2, -0.5, 0.5])
            save_jpeg(small_photo(counter + 1, (64, 72)), images / "9/uncertain.jpg")
            lines.append(["9/uncertain.jpg", 1, 1, 20, 20, "", 9, -2, -2])
            save_jpeg(small_photo(counter + 2, (64, 72)), images / "9/no_valence.jpg")
            lines.append(["9/no_valence.jpg", 1, 1, 20, 20, "", 3, -2, 0.5])
        with open(lists / f"{name}.csv", "w", newline="") as handle:
            writer = csv.writer(handle)
            if header:
                writer.writerow(
                    ["subDirectory_filePath", "face_x", "face_y", "face_width", "face_height",
                     "facial_landmarks", "expression", "valence", "arousal"]
                )  # fmt: skip
            writer.writerows(lines)
    return expected


def write_affectnet_cropped(root: Path, train, test) -> dict:
    """The cropped release: <set>/images/<id>.jpg + annotations/<id>_{exp,val,aro,lnd}.npy.

    Every second example stores its values as strings (as many copies of the release do).
    """
    expected = {}
    counter = 0
    for folder, split, rows in (("train_set", "train", train), ("val_set", "test", test)):
        (root / folder / "annotations").mkdir(parents=True)
        for expression, valence, arousal in rows:
            counter += 1
            identifier = str(counter * 7)
            path = save_jpeg(small_photo(counter, (32, 32)), root / folder / "images" / f"{identifier}.jpg")
            values = {"exp": expression, "val": valence, "aro": arousal}
            for suffix, value in values.items():
                array = np.array(repr(value) if counter % 2 else value)
                np.save(root / folder / "annotations" / f"{identifier}_{suffix}.npy", array)
            np.save(root / folder / "annotations" / f"{identifier}_lnd.npy", np.arange(136, dtype=np.float64))
            expected[f"{folder}/{identifier}"] = {
                "split": split, "label": expression, "valence": valence, "arousal": arousal,
                "pixels": decoded(path),
            }  # fmt: skip
    return expected


def write_affectnet_flat(root: Path, train, test) -> dict:
    """The flat layout the CAGE scripts read: <set>_annotation_without_lnd.csv (number,exp,val,aro) and
    <set>/images/<number>.jpg."""
    expected = {}
    counter = 0
    for folder, split, rows in (("train_set", "train", train), ("val_set", "test", test)):
        lines = []
        for expression, valence, arousal in rows:
            counter += 1
            number = str(1000 + counter)
            path = save_jpeg(small_photo(counter, (32, 32)), root / folder / "images" / f"{number}.jpg")
            lines.append([number, expression, valence, arousal])
            expected[number] = {
                "split": split, "label": expression, "valence": valence, "arousal": arousal,
                "pixels": decoded(path),
            }  # fmt: skip
        with open(root / f"{folder}_annotation_without_lnd.csv", "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["number", "exp", "val", "aro"])
            writer.writerows(lines)
    return expected
