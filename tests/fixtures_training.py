"""Tiny prepared datasets in the `cage prepare` schema, written by the tests (no real data needed)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from cage.configuration_cage import AFFECTNET8_LABELS, EMOTIC_LABELS

CORRUPT_JPEG = b"\xff\xd8\xff\xe0 this is not really a JPEG"


def png_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array.astype(np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def _affectnet_features():
    import datasets

    return datasets.Features(
        {
            "image": datasets.Image(),
            "label": datasets.ClassLabel(names=list(AFFECTNET8_LABELS)),
            "valence": datasets.Value("float32"),
            "arousal": datasets.Value("float32"),
            "source_id": datasets.Value("string"),
        }
    )


def random_affectnet_split(count: int, seed: int, size: int = 40, corrupt: tuple[int, ...] = ()):
    """``count`` random-noise images with labels cycling over the 8 classes; ``corrupt`` indices get broken
    JPEG bytes."""
    import datasets

    rng = np.random.default_rng(seed)
    rows = {"image": [], "label": [], "valence": [], "arousal": [], "source_id": []}
    for i in range(count):
        data = CORRUPT_JPEG if i in corrupt else png_bytes(rng.integers(0, 256, (size + i % 3, size, 3)))
        rows["image"].append({"bytes": data, "path": None})
        rows["label"].append(i % len(AFFECTNET8_LABELS))
        rows["valence"].append(float(rng.uniform(-1, 1)))
        rows["arousal"].append(float(rng.uniform(-1, 1)))
        rows["source_id"].append(f"s{seed}-{i}")
    return datasets.Dataset.from_dict(rows, features=_affectnet_features())


def write_affectnet_fixture(
    path: Path, train: int = 20, validation: int = 9, test: int = 7, corrupt_train=(3,)
) -> Path:
    import datasets

    datasets.DatasetDict(
        {
            "train": random_affectnet_split(train, 0, corrupt=corrupt_train),
            "validation": random_affectnet_split(validation, 1),
            "test": random_affectnet_split(test, 2),
        }
    ).save_to_disk(str(path))
    return path


PATTERNS = 8


def synthetic_image(label: int, valence: float, arousal: float, size: int, rng: np.random.Generator) -> np.ndarray:
    """A learnable image: brightness encodes valence, a red-blue tint encodes arousal, the pattern the class."""
    yy, xx = np.mgrid[0:size, 0:size]
    patterns = [
        np.zeros((size, size)),
        (yy // 2) % 2,
        (xx // 2) % 2,
        ((yy // 4) + (xx // 4)) % 2,
        (yy // 4) % 2,
        (xx // 4) % 2,
        ((yy + xx) // 3) % 2,
        (np.hypot(yy - size / 2, xx - size / 2) < size / 4).astype(float),
    ]
    base = 128 + 80 * valence + 30 * (patterns[label] - 0.5)
    image = np.stack([base + 40 * arousal, base, base - 40 * arousal], axis=-1)
    image = image + rng.normal(0, 4, image.shape)
    return np.clip(image, 0, 255)


def write_synthetic_fixture(path: Path, train: int = 512, validation: int = 96, test: int = 96, size: int = 32) -> Path:
    import datasets

    def split(count: int, seed: int):
        rng = np.random.default_rng(seed)
        rows = {"image": [], "label": [], "valence": [], "arousal": [], "source_id": []}
        for i in range(count):
            label, valence, arousal = i % PATTERNS, float(rng.uniform(-1, 1)), float(rng.uniform(-1, 1))
            rows["image"].append(
                {"bytes": png_bytes(synthetic_image(label, valence, arousal, size, rng)), "path": None}
            )
            rows["label"].append(label)
            rows["valence"].append(valence)
            rows["arousal"].append(arousal)
            rows["source_id"].append(f"syn{seed}-{i}")
        return datasets.Dataset.from_dict(rows, features=_affectnet_features())

    datasets.DatasetDict(
        {"train": split(train, 0), "validation": split(validation, 1), "test": split(test, 2)}
    ).save_to_disk(str(path))
    return path


def write_emotic_fixture(path: Path, train: int = 12, validation: int = 6, test: int = 5) -> Path:
    import datasets

    features = datasets.Features(
        {
            "image": datasets.Image(),
            "labels": datasets.Sequence(datasets.Value("float32"), length=len(EMOTIC_LABELS)),
            "valence": datasets.Value("float32"),
            "arousal": datasets.Value("float32"),
            "dominance": datasets.Value("float32"),
            "valence_raw": datasets.Value("float32"),
            "arousal_raw": datasets.Value("float32"),
            "dominance_raw": datasets.Value("float32"),
            "source_id": datasets.Value("string"),
        }
    )

    def split(count: int, seed: int):
        rng = np.random.default_rng(seed)
        rows = {name: [] for name in features}
        for i in range(count):
            rows["image"].append({"bytes": png_bytes(rng.integers(0, 256, (48, 32, 3))), "path": None})
            hot = np.zeros(len(EMOTIC_LABELS), dtype=np.float32)
            hot[rng.choice(len(EMOTIC_LABELS), size=2, replace=False)] = 1
            rows["labels"].append(hot.tolist())
            for name in ("valence", "arousal", "dominance"):
                raw = float(rng.integers(1, 11))
                rows[f"{name}_raw"].append(raw)
                rows[name].append((raw - 5.5) / 4.5)
            rows["source_id"].append(f"e{seed}-{i}")
        return datasets.Dataset.from_dict(rows, features=features)

    datasets.DatasetDict(
        {"train": split(train, 0), "validation": split(validation, 1), "test": split(test, 2)}
    ).save_to_disk(str(path))
    return path
