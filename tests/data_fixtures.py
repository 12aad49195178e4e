"""Writers of small AffectNet and EMOTIC copies in their exact on-disk layouts, for tests/test_data_*.py.

Images are small resized crops of the real photos in ../shared/faces (via ``face_photo``), so the tests are
fast and the pixels are real.
"""

from __future__ import annotations

import csv
import math
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
    for _ in range(per_class):
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
            image = small_photo(counter, (32, 32))
            if counter == 5:
                image = image.convert("L")  # a grayscale JPEG: stored as RGB (PNG, lossless)
            path = save_jpeg(image, root / folder / "images" / f"{identifier}.jpg")
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


# ----------------------------------------------------------------------------------------------------- EMOTIC

EMOTIC_SPLITS = {"train": "train", "val": "validation", "test": "test"}
EMOTIC_IMAGE_SIZE = (80, 60)  # width, height: deliberately not square


def _struct_array(entries: list[dict]) -> np.ndarray:
    """A 1xN MATLAB struct array for scipy.io.savemat."""
    fields = list(entries[0])
    array = np.zeros((1, len(entries)), dtype=[(name, object) for name in fields])
    for index, entry in enumerate(entries):
        for name in fields:
            array[0, index][name] = entry[name]
    return array


def _cell(strings: list[str]) -> np.ndarray:
    cell = np.empty((1, len(strings)), dtype=object)
    for index, value in enumerate(strings):
        cell[0, index] = value
    return cell


def emotic_people(faults: bool = False) -> dict[str, list[dict]]:
    """Per EMOTIC split, images with their persons: box (x1, y1, x2, y2), categories, (v, a, d) raw.

    Val/test persons also carry several annotators' labels, which must NOT be used (combined ones are).
    """
    from cage.configuration_cage import EMOTIC_LABELS

    people = {}
    counter = 0
    for source in EMOTIC_SPLITS:
        images = []
        for _ in range(3 if source == "train" else 2):
            counter += 1
            persons = []
            for k in range(1 + (counter % 2)):
                c = counter * 3 + k
                categories = [EMOTIC_LABELS[(c * 5) % 26], EMOTIC_LABELS[(c * 7 + 1) % 26]]
                if k == 1:
                    categories = categories[:1]  # a 1-element cell (squeezed by loadmat)
                continuous = (1 + c % 10, 1 + (c * 3) % 10, 1 + (c * 7) % 10)
                if source != "train":
                    continuous = (continuous[0] + 1 / 3, continuous[1] - 0.5, 2.25)
                persons.append(
                    {"box": (4 + k * 30, 3 + k, 40 + k * 30, 55), "categories": categories, "vad": continuous}
                )
            images.append(
                {
                    "folder": ["mscoco/images", "framesdb/images"][counter % 2],
                    "filename": f"img_{counter:03d}.jpg",
                    "persons": persons,
                }
            )
        people[source] = images
    if faults:
        train = people["train"]
        train[0]["persons"].append(
            {"box": (50, 10, 95, 70), "categories": ["Peace"], "vad": (5, 6, 7), "fault": "box_outside_image"}
        )
        train[2]["persons"].append(
            {"box": (30, 30, 30, 50), "categories": ["Fear"], "vad": (5, 6, 7), "fault": "empty_box"}
        )
        train[1]["persons"].append(
            {"box": (5, 5, 30, 30), "categories": ["Fear"], "vad": (5, 6, math.nan), "fault": "nan_label"}
        )
        train.append({"folder": "ade20k/images", "filename": "missing.jpg", "persons": [
            {"box": (1, 1, 20, 20), "categories": ["Fear"], "vad": (5, 6, 7), "fault": "missing_image"}]})  # fmt: skip
    return people


def _write_emotic_images(root: Path, people) -> dict:
    """Write the images under root/emotic/<folder>/<filename>; return expected examples by source_id."""
    from cage.configuration_cage import EMOTIC_LABELS

    expected = {}
    index = 0
    for source, images in people.items():
        for image in images:
            index += 1
            path = root / "emotic" / image["folder"] / image["filename"]
            if image["filename"] != "missing.jpg":
                save_jpeg(small_photo(index + 40, EMOTIC_IMAGE_SIZE), path)
            for k, person in enumerate(image["persons"]):
                if person.get("fault") in ("nan_label", "missing_image", "empty_box"):
                    continue
                x1, y1, x2, y2 = person["box"]
                width, height = EMOTIC_IMAGE_SIZE
                pixels = decoded(path)[max(y1, 0) : min(y2, height), max(x1, 0) : min(x2, width)]
                expected[(f"{image['folder']}/{image['filename']}", k)] = {
                    "split": EMOTIC_SPLITS[source],
                    "labels": [float(name in person["categories"]) for name in EMOTIC_LABELS],
                    "raw": person["vad"],
                    "pixels": pixels,
                }
    return expected


def write_emotic_mat(root: Path, faults: bool = False) -> dict:
    """The original release: emotic/<folder>/<file> + Annotations/Annotations.mat, written with
    scipy.io.savemat as struct arrays in the release's layout. Expected keys: (folder/file, person index)."""
    from scipy.io import savemat

    people = emotic_people(faults)
    expected = _write_emotic_images(root, people)
    width, height = EMOTIC_IMAGE_SIZE
    mat = {}
    for source, images in people.items():
        entries = []
        for image in images:
            persons = []
            for person in image["persons"]:
                v, a, d = person["vad"]
                record = {"body_bbox": np.array(person["box"], dtype=np.float64)}
                if source == "train":
                    record["annotations_categories"] = {"categories": _cell(person["categories"])}
                    record["annotations_continuous"] = {"valence": v, "arousal": a, "dominance": d}
                else:
                    # three annotators whose own labels differ from the combined ones
                    record["annotations_categories"] = _struct_array([{"categories": _cell(["Pain"])}] * 3)
                    record["combined_categories"] = _cell(person["categories"])
                    record["annotations_continuous"] = _struct_array(
                        [{"valence": 9.0, "arousal": 9.0, "dominance": 9.0}] * 3
                    )
                    record["combined_continuous"] = {"valence": v, "arousal": a, "dominance": d}
                record["annotations_gender"] = {"gender": "Female"}
                record["annotations_age"] = {"age": "Adult"}
                persons.append(record)
            entries.append(
                {
                    "filename": image["filename"],
                    "folder": image["folder"],
                    "image_size": {"n_col": float(width), "n_row": float(height)},
                    "original_database": {"name": image["folder"].split("/")[0]},
                    "person": _struct_array(persons),
                }
            )
        mat[source] = _struct_array(entries)
    (root / "Annotations").mkdir(parents=True, exist_ok=True)
    savemat(root / "Annotations" / "Annotations.mat", mat)
    return expected


def write_emotic_csv(root: Path, faults: bool = False) -> dict:
    """The common preprocessed CSVs (emotic_pre/{train,val,test}.csv) + emotic/<folder>/<file>.
    Expected keys: (folder/file, person index); the CSV Index column numbers the rows of each file."""
    people = emotic_people(faults)
    expected = _write_emotic_images(root, people)
    (root / "emotic_pre").mkdir(parents=True)
    for source, images in people.items():
        with open(root / "emotic_pre" / f"{source}.csv", "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(
                ["Index", "Folder", "Filename", "Image Size", "BBox", "Categorical_Labels", "Continuous_Labels",
                 "Gender", "Age"]
            )  # fmt: skip
            row = 0
            for image in images:
                for person in image["persons"]:
                    vad = "[" + ", ".join("nan" if math.isnan(v) else repr(v) for v in person["vad"]) + "]"
                    writer.writerow(
                        [row, image["folder"], image["filename"], str(list(EMOTIC_IMAGE_SIZE)),
                         str(list(person["box"])), str(person["categories"]), vad, "Female", "Adult"]
                    )  # fmt: skip
                    row += 1
    return expected
