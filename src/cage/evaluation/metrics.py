"""Metrics of CAGE models: expression classification, valence/arousal(/dominance) regression, EMOTIC
multi-label, and the paper's pooled valence+arousal numbers, in one JSON layout.

Classification and ranking metrics come from scikit-learn, PCC from scipy. CCC and SAGR have no library
implementation there and are written once here (also exposed as offline ``evaluate`` metrics, see
[`load_evaluate_metric`]).

The JSON layout of [`compute_metrics`] (read by the model card writer; keep its keys)::

    {"split", "num_examples",
     "expression": {"accuracy", "macro_precision", "macro_recall", "macro_f1",
                    "weighted_precision", "weighted_recall", "weighted_f1", "labels", "confusion_matrix"},
     "valence": {"rmse", "mae", "pcc", "ccc", "sagr"}, "arousal": {...}, "dominance": {...} (EMOTIC),
     "pooled_valence_arousal": {"rmse", "mse", "mae", "ccc"},
     "multilabel": {"mean_average_precision", "top3_accuracy"} (EMOTIC)}

Undefined values (e.g. PCC of a constant series) are ``None`` in JSON, NaN in Python.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

METRIC_SCRIPTS_DIR = Path(__file__).resolve().parent / "metric_scripts"


def _as_pair(prediction: Any, target: Any) -> tuple[np.ndarray, np.ndarray]:
    """Validate a (prediction, target) pair of 1-D series; raises ``ValueError`` naming the problem."""
    prediction = np.asarray(prediction, dtype=np.float64).reshape(-1) if np.ndim(prediction) <= 1 else None
    target = np.asarray(target, dtype=np.float64).reshape(-1) if np.ndim(target) <= 1 else None
    if prediction is None or target is None:
        raise ValueError("predictions and references must be 1-D sequences of numbers")
    if prediction.shape != target.shape:
        raise ValueError(f"predictions have {prediction.size} values but references have {target.size}")
    if prediction.size == 0:
        raise ValueError("predictions and references are empty")
    for name, values in (("predictions", prediction), ("references", target)):
        bad = np.flatnonzero(~np.isfinite(values))
        if bad.size:
            raise ValueError(f"{name} contain {bad.size} NaN/infinite value(s), first at index {int(bad[0])}")
    return prediction, target


def concordance_correlation_coefficient(prediction: Any, target: Any) -> float:
    """Lin's concordance correlation coefficient with consistent (population, 1/n) moments.

    ``CCC = 2 s_xy / (s_x^2 + s_y^2 + (mean_x - mean_y)^2)``, all moments with 1/n (Lin 1989, Biometrics
    45(1):255-268, eq. 2-3). The numpy twin of ``cage.modeling_cage.concordance_correlation_coefficient``
    (the training loss). The CAGE authors' evaluation mixed a 1/(n-1) covariance with 1/n variances, which
    inflates CCC by n/(n-1); we do not.

    Args:
        prediction, target: 1-D sequences of the same length n >= 1 (e.g. valence in [-1, 1]).

    Returns:
        A float in [-1, 1]; 0 for a constant prediction of a varying target; NaN when both series are
        constant and equal (0/0: undefined).

    Raises:
        ValueError: different lengths, empty input, or NaN/infinite values.
    """
    x, y = _as_pair(prediction, target)
    mean_x, mean_y = x.mean(), y.mean()
    covariance = np.mean((x - mean_x) * (y - mean_y))
    denominator = x.var() + y.var() + (mean_x - mean_y) ** 2
    if denominator == 0:
        return math.nan
    return float(2.0 * covariance / denominator)


def pearson_correlation(prediction: Any, target: Any) -> float:
    """Pearson's r (``scipy.stats.pearsonr``); NaN when n < 2 or either series is constant (undefined).

    Raises:
        ValueError: different lengths, empty input, or NaN/infinite values.
    """
    from scipy import stats

    x, y = _as_pair(prediction, target)
    if x.size < 2 or np.all(x == x[0]) or np.all(y == y[0]):
        return math.nan
    return float(stats.pearsonr(x, y).statistic)


def sign_agreement(prediction: Any, target: Any) -> float:
    """SAGR, the share of predictions whose sign equals the target's: ``mean(sign(x) == sign(y))``.

    Sign is -1, 0 or +1 (``numpy.sign``), so an exact 0 agrees only with 0. Definition as in Kossaifi et
    al., "AFEW-VA database for valence and arousal estimation in-the-wild", Image and Vision Computing 2017.

    Returns:
        A float in [0, 1].

    Raises:
        ValueError: different lengths, empty input, or NaN/infinite values.
    """
    x, y = _as_pair(prediction, target)
    return float(np.mean(np.sign(x) == np.sign(y)))


def root_mean_squared_error(prediction: Any, target: Any) -> float:
    """RMSE via ``sklearn.metrics.root_mean_squared_error`` (same units as the inputs)."""
    from sklearn.metrics import root_mean_squared_error as sk_rmse

    x, y = _as_pair(prediction, target)
    return float(sk_rmse(y, x))


def mean_absolute_error(prediction: Any, target: Any) -> float:
    """MAE via ``sklearn.metrics.mean_absolute_error``."""
    from sklearn.metrics import mean_absolute_error as sk_mae

    x, y = _as_pair(prediction, target)
    return float(sk_mae(y, x))


def regression_metrics(prediction: Any, target: Any) -> dict[str, float]:
    """Per-dimension metrics of one continuous target: ``{"rmse", "mae", "pcc", "ccc", "sagr"}``."""
    return {
        "rmse": root_mean_squared_error(prediction, target),
        "mae": mean_absolute_error(prediction, target),
        "pcc": pearson_correlation(prediction, target),
        "ccc": concordance_correlation_coefficient(prediction, target),
        "sagr": sign_agreement(prediction, target),
    }


def pooled_metrics(prediction: np.ndarray, target: np.ndarray) -> dict[str, float]:
    """The CAGE paper's table numbers: valence and arousal pooled into ONE series of 2n values.

    Args:
        prediction, target: ``(n, 2)`` arrays, columns valence and arousal.

    Returns:
        ``{"rmse", "mse", "mae", "ccc"}`` of the flattened series (CCC with consistent moments, unlike the
        authors' script). Not comparable to per-dimension values.
    """
    x = np.asarray(prediction, dtype=np.float64).reshape(-1)
    y = np.asarray(target, dtype=np.float64).reshape(-1)
    rmse = root_mean_squared_error(x, y)
    return {
        "rmse": rmse,
        "mse": rmse**2,
        "mae": mean_absolute_error(x, y),
        "ccc": concordance_correlation_coefficient(x, y),
    }


def classification_metrics(predicted: Any, target: Any, labels: Sequence[str]) -> dict[str, Any]:
    """Single-label expression metrics (scikit-learn): accuracy, macro and class-weighted P/R/F1, confusion.

    Args:
        predicted, target: class indices ``(n,)`` in ``labels`` order.
        labels: class names by index (``id2label`` order).

    Returns:
        ``{"accuracy", "macro_precision", "macro_recall", "macro_f1", "weighted_precision",
        "weighted_recall", "weighted_f1", "per_class_recall", "support", "labels", "confusion_matrix"}``; the
        confusion matrix is ``[true][predicted]`` counts over all ``labels`` (classes absent from both count as
        zero rows); ``per_class_recall`` and ``support`` map each label to its recall (``None`` without an
        example) and its number of examples. The paper's P/R/F1 are the weighted ones.
    """
    from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support

    predicted = np.asarray(predicted, dtype=np.int64).reshape(-1)
    target = np.asarray(target, dtype=np.int64).reshape(-1)
    if predicted.shape != target.shape or predicted.size == 0:
        raise ValueError(f"need equally long, non-empty class arrays, got {predicted.size} and {target.size}")
    indices = list(range(len(labels)))
    out: dict[str, Any] = {"accuracy": float(accuracy_score(target, predicted))}
    for average in ("macro", "weighted"):
        p, r, f, _ = precision_recall_fscore_support(
            target, predicted, labels=indices, average=average, zero_division=0
        )
        out.update({f"{average}_precision": float(p), f"{average}_recall": float(r), f"{average}_f1": float(f)})
    recall, support = precision_recall_fscore_support(
        target, predicted, labels=indices, average=None, zero_division=np.nan
    )[1::2]
    out["per_class_recall"] = {name: None if n == 0 else float(r) for name, r, n in zip(labels, recall, support)}
    out["support"] = {name: int(n) for name, n in zip(labels, support)}
    out["labels"] = list(labels)
    out["confusion_matrix"] = confusion_matrix(target, predicted, labels=indices).tolist()
    return out


def multilabel_metrics(scores: Any, target: Any) -> dict[str, float]:
    """EMOTIC multi-label metrics.

    Args:
        scores: ``(n, C)`` category scores (logits or probabilities; only their order matters).
        target: ``(n, C)`` multi-hot 0/1.

    Returns:
        ``mean_average_precision``: mean over categories with at least one positive of
        ``sklearn.metrics.average_precision_score``; ``top3_accuracy``: share of examples whose three
        highest-scoring categories contain at least one true category (examples with no true category count
        as misses).
    """
    from sklearn.metrics import average_precision_score

    scores = np.asarray(scores, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    if scores.shape != target.shape or scores.ndim != 2:
        raise ValueError(f"scores {scores.shape} and multi-hot targets {target.shape} must be equal (n, C) arrays")
    present = target.sum(axis=0) > 0
    mean_ap = (
        float(np.mean([average_precision_score(target[:, c], scores[:, c]) for c in np.flatnonzero(present)]))
        if present.any()
        else math.nan
    )
    top3 = np.argsort(-scores, axis=1, kind="stable")[:, :3]
    hits = np.take_along_axis(target, top3, axis=1).max(axis=1) > 0
    return {"mean_average_precision": mean_ap, "top3_accuracy": float(hits.mean())}


def compute_metrics(
    *,
    split: str,
    logits: np.ndarray,
    regression: np.ndarray,
    labels: np.ndarray,
    regression_labels: np.ndarray,
    id2label: dict[int, str],
    regression_targets: Sequence[str],
    multi_label: bool,
) -> dict[str, Any]:
    """All metrics of one split in the layout documented at the top of this module.

    Args:
        split: name recorded in the output.
        logits: ``(n, num_labels)`` expression scores.
        regression: ``(n, R)`` raw predictions in ``regression_targets`` order.
        labels: ``(n,)`` class indices, or ``(n, num_labels)`` multi-hot for multi-label models. -1 marks an
            example without a class (FER+ faces without a majority): the expression metrics are computed over
            the others (their number is ``expression.num_examples``), the regression metrics over all n.
        regression_labels: ``(n, R)`` targets in [-1, 1].
        id2label, regression_targets, multi_label: from the model's config.
    """
    logits = np.asarray(logits, dtype=np.float64)
    regression = np.asarray(regression, dtype=np.float64)
    labels = np.asarray(labels)
    regression_labels = np.asarray(regression_labels, dtype=np.float64)
    names = [id2label[i] for i in range(len(id2label))]
    result: dict[str, Any] = {"split": split, "num_examples": int(logits.shape[0])}
    if multi_label:
        result["multilabel"] = multilabel_metrics(logits, labels)
    else:
        labelled = labels.reshape(-1) >= 0
        if labelled.any():
            result["expression"] = classification_metrics(logits[labelled].argmax(axis=1), labels[labelled], names)
            result["expression"]["num_examples"] = int(labelled.sum())
    for column, name in enumerate(regression_targets):
        result[name] = regression_metrics(regression[:, column], regression_labels[:, column])
    if "valence" in regression_targets and "arousal" in regression_targets:
        columns = [list(regression_targets).index("valence"), list(regression_targets).index("arousal")]
        result["pooled_valence_arousal"] = pooled_metrics(regression[:, columns], regression_labels[:, columns])
    return result


def to_json_ready(value: Any) -> Any:
    """Replace NaN/inf floats by ``None`` (strict JSON), recursively."""
    if isinstance(value, dict):
        return {key: to_json_ready(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json_ready(item) for item in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def load_evaluate_metric(name: str):
    """Load the offline ``evaluate`` metric ``"ccc"`` or ``"sagr"`` from its local script (no Hub access).

    ``metric.compute(predictions=[...], references=[...])`` returns ``{"ccc": float}`` / ``{"sagr": float}``,
    computed by the functions of this module.
    """
    import evaluate

    script = METRIC_SCRIPTS_DIR / name / f"{name}.py"
    if not script.is_file():
        raise ValueError(f"unknown metric {name!r}; local metrics: ccc, sagr")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return evaluate.load(str(script))
