"""Class statistics of a prepared dataset: per-class counts, CE class weights, BCE positive weights.

The statistics are stored as JSON in every split's ``info.description`` (the copy that travels with the
dataset through ``save_to_disk``/``load_from_disk``) and, for people, in ``cage_stats.json`` beside it;
[`load_stats`] reads them back.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

STATS_FILE = "cage_stats.json"
REPORT_FILE = "cage_report.jsonl"


def class_weights_from_counts(counts: Sequence[int] | Mapping[str, int]) -> list[float]:
    """Normalised inverse-frequency class weights, the CE weights of the CAGE paper.

    ``w_c = (1 / n_c) / sum_k (1 / n_k)``: rarer classes weigh more and the weights sum to 1 (Wagner et al.
    2024, Section 3.3 and its class-weight table; fed AffectNet's published training counts this gives the
    paper's AffectNet-7 column to 4 significant digits and its AffectNet-8 column within 1.5 %).

    Args:
        counts: number of training examples per class, in label order (a sequence, or a mapping whose
            insertion order is the label order).

    Returns:
        One weight per class, in the same order, each in (0, 1], summing to 1.

    Raises:
        ValueError: if ``counts`` is empty or a count is not a positive finite number (a class without
            examples has no inverse frequency; drop it from the label set instead).
    """
    values = list(counts.values()) if isinstance(counts, Mapping) else list(counts)
    if not values:
        raise ValueError("class_weights_from_counts needs at least one class count")
    for index, value in enumerate(values):
        if not (isinstance(value, (int, float, np.integer, np.floating)) and math.isfinite(value) and value > 0):
            raise ValueError(f"class count #{index} is {value!r}; every class needs a positive count")
    inverse = [1.0 / float(value) for value in values]
    total = sum(inverse)
    return [value / total for value in inverse]


def pos_weights_from_counts(positives: Sequence[int], num_examples: int) -> list[float]:
    """Per-category positive weights for a multi-label BCE (EMOTIC), from category frequencies.

    ``pos_weight_c = (N - n_c) / n_c``: the number of negatives per positive of category ``c``, the
    inverse-frequency weighting PyTorch documents for ``BCEWithLogitsLoss(pos_weight=...)``. A category
    with no positive example gets weight 1.0 (no information to reweight by); it is listed in the stats.

    Args:
        positives: number of examples with category ``c`` present, in label order.
        num_examples: ``N``, the number of examples.

    Returns:
        One non-negative weight per category.

    Raises:
        ValueError: if ``num_examples`` is not positive or a count is negative or above ``num_examples``.
    """
    if num_examples <= 0:
        raise ValueError(f"num_examples must be positive, got {num_examples}")
    weights = []
    for index, count in enumerate(positives):
        if not 0 <= count <= num_examples:
            raise ValueError(f"category #{index} has {count} positives out of {num_examples} examples")
        weights.append(1.0 if count == 0 else (num_examples - count) / count)
    return weights


def load_stats(source) -> dict:
    """The class statistics of a prepared dataset.

    Args:
        source: a ``datasets.Dataset`` or ``DatasetDict`` from ``load_from_disk``, or the folder it was
            saved to (then ``cage_stats.json`` there is read).

    Returns:
        The statistics dict (see the README's "Datasets" section for its keys).

    Raises:
        ValueError: if the dataset carries no CAGE statistics.
    """
    if isinstance(source, (str, Path)):
        path = Path(source) / STATS_FILE
        if not path.is_file():
            raise ValueError(f"{path} does not exist; was {source} written by `cage prepare`?")
        return json.loads(path.read_text(encoding="utf-8"))
    dataset = source
    if hasattr(source, "values") and not hasattr(source, "info"):
        dataset = next(iter(source.values()))
    description = dataset.info.description or ""
    try:
        stats = json.loads(description)
    except json.JSONDecodeError as error:
        raise ValueError("the dataset's info.description holds no CAGE statistics (not JSON)") from error
    if not isinstance(stats, dict) or "cage_stats_version" not in stats:
        raise ValueError("the dataset's info.description holds no CAGE statistics")
    return stats
