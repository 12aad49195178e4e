"""Prepared datasets (the ``cage prepare`` schema) for training and evaluation: loading, the label set,
loss weights, lazy transforms and data loaders.

The schema (a ``DatasetDict`` with ``train``, ``validation``, ``test``):
- AffectNet: ``image`` (Image), ``label`` (ClassLabel, AffectNet names and order), ``valence``,
  ``arousal`` (float32, [-1, 1]), ``source_id``.
- EMOTIC: ``image``, ``labels`` (26 float32 multi-hot, EMOTIC order), ``valence``, ``arousal``,
  ``dominance`` (float32, [-1, 1]), ``*_raw`` (1..10), ``source_id``.
- FER+: the AffectNet columns (``label`` -1 where the FER+ protocol gives no majority; ``valence``/``arousal``
  derived from the votes) plus ``soft_label`` (8 float32 class probabilities) and ``votes`` (10 int32).
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler

from ..configuration_cage import LABEL_SETS
from ..hub_ids import looks_like_repo_id
from .stats import class_weights_from_counts, pos_weights_from_counts
from .transforms import BatchTransform, collate_examples

# The column of soft labels (class probabilities per face, AffectNet-8 order) in prepared FER+ data.
SOFT_LABEL_COLUMN = "soft_label"


def load_prepared_dataset(data: str | Path) -> datasets.DatasetDict:
    """Load a prepared dataset: a folder written by ``save_to_disk`` (``cage prepare``) or a Hub dataset id.

    Raises:
        FileNotFoundError: ``data`` looks like a path but does not exist.
        ValueError: the dataset lacks the ``image`` column or the label columns of the schema.
    """
    path = Path(data)
    if path.exists():
        dataset = datasets.load_from_disk(str(path))
    elif not looks_like_repo_id(data):
        raise FileNotFoundError(f"{data}: no such dataset folder (and not a Hub dataset id 'owner/name')")
    else:
        dataset = datasets.load_dataset(str(data))
    if not isinstance(dataset, datasets.DatasetDict):
        raise ValueError(
            f"{data}: expected a DatasetDict with train/validation/test splits, got {type(dataset).__name__}"
        )
    for name, split in dataset.items():
        missing = [c for c in ("image", "valence", "arousal") if c not in split.column_names]
        if missing or not ({"label", "labels"} & set(split.column_names)):
            raise ValueError(
                f"{data}: split {name!r} lacks columns {missing or ['label' or 'labels']} of the cage schema"
            )
    return dataset


def label_set_of(split: datasets.Dataset) -> str:
    """The name in ``configuration_cage.LABEL_SETS`` of the split's label set (``"affectnet8"``, ``"affectnet7"``
    or ``"emotic"``), from its features: a ``label`` ClassLabel is matched by its names (single-label sets), a
    ``labels`` multi-hot by its width (multi-label sets).

    Raises:
        ValueError: the class names are not AffectNet's (in AffectNet order) or EMOTIC's 26 categories.
    """
    features = split.features
    if "label" in features:
        names = tuple(features["label"].names) if isinstance(features["label"], datasets.ClassLabel) else None
        for label_set in LABEL_SETS.values():
            if not label_set.multi_label and names == label_set.labels:
                return label_set.name
        raise ValueError(f"the `label` ClassLabel names {names} are not AffectNet-8/-7 in AffectNet's order")
    emotic = LABEL_SETS["emotic"]
    width = len(split[0]["labels"]) if len(split) else None
    if width != len(emotic.labels):
        raise ValueError(f"`labels` must be EMOTIC's {len(emotic.labels)}-category multi-hot, got width {width}")
    return emotic.name


def loss_weights(train: datasets.Dataset, label_set: str, weighting: str = "inverse_frequency") -> dict[str, list[float] | None]:
    """``{"class_weights": [...]}`` (AffectNet, FER+) or ``{"pos_weight": [...]}`` (EMOTIC) from the training split.

    Args:
        train: the training split.
        label_set: its name in ``LABEL_SETS``.
        weighting: ``"inverse_frequency"`` (the paper's, see ``stats.class_weights_from_counts``; counted over
            the ``label`` column, rows labelled -1 left out) or ``"none"`` (``{"class_weights": None}`` or
            ``{"pos_weight": None}``: unweighted).

    Raises:
        ValueError: unknown ``weighting``, or a class without a labelled training example.
    """
    multi_label = LABEL_SETS[label_set].multi_label
    if weighting == "none":
        return {"pos_weight": None} if multi_label else {"class_weights": None}
    if weighting != "inverse_frequency":
        raise ValueError(f"class weighting must be 'inverse_frequency' or 'none', got {weighting!r}")
    if multi_label:
        multi_hot = np.asarray(train.with_format("numpy")["labels"], dtype=np.float64)
        return {"pos_weight": pos_weights_from_counts(multi_hot.sum(axis=0).astype(int).tolist(), len(multi_hot))}
    num_classes = len(train.features["label"].names)
    labels = np.asarray(train.with_format("numpy", columns=["label"])["label"], dtype=np.int64)
    counts = np.bincount(labels[labels >= 0], minlength=num_classes)
    return {"class_weights": class_weights_from_counts(counts.tolist())}


class ClassBalancedSampler(Sampler[int]):
    """Samples ``len(labels)`` indices per epoch with replacement, each class equally likely (the paper's
    class-balanced valence-arousal stage). Seeded by ``seed + epoch`` (``set_epoch``), so every process and
    every resumed run draws the same order."""

    def __init__(self, labels: Sequence[int], seed: int):
        labels = np.asarray(labels, dtype=np.int64)
        counts = np.bincount(labels)
        self.weights = torch.as_tensor(1.0 / counts[labels], dtype=torch.double)
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.weights)

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        yield from torch.multinomial(self.weights, len(self.weights), replacement=True, generator=generator).tolist()


def with_cage_transform(
    split: datasets.Dataset, transform, regression_targets: Sequence[str], seed: int | None = None
) -> tuple[datasets.Dataset, BatchTransform]:
    """``split`` with lazy decoding + ``transform`` (see ``transforms.BatchTransform``), and the batch
    transform itself (set its ``epoch`` each epoch when ``seed`` is given). Images are decoded by us
    (``decode=False``) so that corrupt ones are skipped and counted; an ``_index`` column seeds augmentation."""
    label_column = "label" if "label" in split.column_names else "labels"
    split = split.cast_column("image", datasets.Image(decode=False))
    if seed is not None and "_index" not in split.column_names:
        split = split.add_column("_index", list(range(len(split))))
    soft_column = SOFT_LABEL_COLUMN if SOFT_LABEL_COLUMN in split.column_names else None
    batch_transform = BatchTransform(transform, label_column, regression_targets, seed=seed, soft_label_column=soft_column)
    return split.with_transform(batch_transform), batch_transform


def make_loader(
    split: datasets.Dataset,
    batch_size: int,
    multi_label: bool,
    shuffle: bool = False,
    sampler: Sampler | None = None,
    num_workers: int = 0,
    seed: int = 0,
) -> DataLoader:
    """A ``DataLoader`` over a transformed split; collation drops undecodable images (see ``collate_examples``).

    The loader has its own generator, so creating an iterator never draws from torch's global generator
    (the augmentations' source): a resumed run continues the same random stream.
    """
    return DataLoader(
        split,
        batch_size=batch_size,
        shuffle=shuffle if sampler is None else False,
        sampler=sampler,
        num_workers=num_workers,
        collate_fn=functools.partial(collate_examples, multi_label=multi_label),
        generator=torch.Generator().manual_seed(seed),
        persistent_workers=False,
    )


def describe(dataset: datasets.DatasetDict) -> dict[str, Any]:
    """Split sizes, for the training recipe."""
    return {name: len(split) for name, split in dataset.items()}
