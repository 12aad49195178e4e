"""Metric functions against hand-computed values and scipy/scikit-learn, including edge cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats
from sklearn import metrics as skm

from cage.evaluation import metrics as M
from cage.modeling_cage import concordance_correlation_coefficient as torch_ccc

X = [1.0, 2.0, 3.0]
Y = [1.0, 2.0, 4.0]


def test_ccc_hand_computed():
    # means 2 and 7/3; population variances 2/3 and 14/9; covariance 1; (mean diff)^2 = 1/9
    # CCC = 2 * 1 / (2/3 + 14/9 + 1/9) = 6/7
    assert M.concordance_correlation_coefficient(X, Y) == pytest.approx(6 / 7, abs=1e-12)


def test_ccc_matches_pearson_form_and_the_torch_loss_twin():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=50), rng.normal(size=50) * 0.5 + 0.2
    r = stats.pearsonr(x, y).statistic
    reference = 2 * r * x.std() * y.std() / (x.var() + y.var() + (x.mean() - y.mean()) ** 2)
    assert M.concordance_correlation_coefficient(x, y) == pytest.approx(reference, abs=1e-12)
    assert float(torch_ccc(torch.tensor(x), torch.tensor(y))) == pytest.approx(reference, abs=1e-6)


def test_ccc_differs_from_the_authors_mixed_ddof_by_n_over_n_minus_1():
    n = len(X)
    cov_ddof1 = np.cov(X, Y, ddof=1)[0, 1]
    authors = 2 * cov_ddof1 / (np.var(X) + np.var(Y) + (np.mean(X) - np.mean(Y)) ** 2)
    assert authors == pytest.approx(M.concordance_correlation_coefficient(X, Y) * n / (n - 1))
    assert authors > 1  # the mixed moments can even leave [-1, 1] on tiny sets


def test_perfect_and_constant_and_single_element():
    assert M.concordance_correlation_coefficient(Y, Y) == pytest.approx(1.0)
    assert M.concordance_correlation_coefficient([-1.0, 0.0, 1.0], [1.0, 0.0, -1.0]) == pytest.approx(-1.0)
    # constant prediction of a varying target: covariance 0 -> CCC 0, PCC undefined
    assert M.concordance_correlation_coefficient([0.5, 0.5, 0.5], Y) == 0.0
    assert math.isnan(M.pearson_correlation([0.5, 0.5, 0.5], Y))
    # one element: CCC 0 when it differs, undefined (0/0) when equal; PCC undefined
    assert M.concordance_correlation_coefficient([0.3], [0.5]) == 0.0
    assert math.isnan(M.concordance_correlation_coefficient([0.3], [0.3]))
    assert math.isnan(M.pearson_correlation([0.3], [0.5]))
    assert M.root_mean_squared_error([0.3], [0.5]) == pytest.approx(0.2)
    assert M.sign_agreement([0.3], [-0.5]) == 0.0


@pytest.mark.parametrize(
    "function",
    [
        M.concordance_correlation_coefficient,
        M.pearson_correlation,
        M.sign_agreement,
        M.root_mean_squared_error,
        M.mean_absolute_error,
    ],
)
def test_bad_input_gives_clear_errors(function):
    with pytest.raises(ValueError, match=r"predictions contain 1 NaN/infinite value\(s\), first at index 1"):
        function([0.1, float("nan"), 0.2], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="references contain"):
        function([0.1, 0.2], [0.1, float("inf")])
    with pytest.raises(ValueError, match="3 values but references have 2"):
        function([0.1, 0.2, 0.3], [0.1, 0.2])
    with pytest.raises(ValueError, match="empty"):
        function([], [])


def test_pcc_rmse_mae_match_scipy_and_sklearn():
    rng = np.random.default_rng(1)
    x, y = rng.uniform(-1, 1, 40), rng.uniform(-1, 1, 40)
    assert M.pearson_correlation(x, y) == pytest.approx(stats.pearsonr(x, y).statistic, abs=1e-12)
    assert M.root_mean_squared_error(x, y) == pytest.approx(math.sqrt(np.mean((x - y) ** 2)), abs=1e-12)
    assert M.mean_absolute_error(x, y) == pytest.approx(np.mean(np.abs(x - y)), abs=1e-12)
    assert M.root_mean_squared_error([0, 1, 2], [0, 0, 0]) == pytest.approx(math.sqrt(5 / 3))
    assert M.mean_absolute_error([0, 1, 2], [0, 0, 0]) == pytest.approx(1.0)


def test_sagr_hand_computed():
    # signs: (+,+) agree, (-,+) no, (0,0) agree, (+,-) no
    assert M.sign_agreement([0.5, -0.2, 0.0, 0.3], [0.1, 0.4, 0.0, -0.3]) == 0.5


def test_pooled_metrics_flatten_valence_and_arousal():
    prediction = np.array([[0.1, 0.2], [0.3, -0.4], [0.0, 0.5]])
    target = np.array([[0.0, 0.2], [0.5, -0.1], [0.1, 0.6]])
    pooled = M.pooled_metrics(prediction, target)
    errors = (prediction - target).ravel()
    assert pooled["mse"] == pytest.approx(np.mean(errors**2))
    assert pooled["rmse"] == pytest.approx(math.sqrt(np.mean(errors**2)))
    assert pooled["mae"] == pytest.approx(np.mean(np.abs(errors)))
    assert pooled["ccc"] == pytest.approx(M.concordance_correlation_coefficient(prediction.ravel(), target.ravel()))


def test_classification_metrics_hand_and_sklearn():
    out = M.classification_metrics([0, 0, 1, 1], [0, 1, 1, 1], ["a", "b", "c"])
    # class a: P 1/2 R 1 F1 2/3; class b: P 1 R 2/3 F1 0.8; class c absent (zero_division=0)
    assert out["accuracy"] == 0.75
    assert out["macro_f1"] == pytest.approx((2 / 3 + 0.8 + 0) / 3)
    assert out["weighted_f1"] == pytest.approx((1 * 2 / 3 + 3 * 0.8) / 4)
    assert out["weighted_precision"] == pytest.approx((0.5 + 3 * 1) / 4)
    assert out["confusion_matrix"] == [[1, 0, 0], [1, 2, 0], [0, 0, 0]]
    assert out["labels"] == ["a", "b", "c"]
    rng = np.random.default_rng(2)
    predicted, target = rng.integers(0, 8, 200), rng.integers(0, 8, 200)
    out = M.classification_metrics(predicted, target, [str(i) for i in range(8)])
    assert out["macro_recall"] == pytest.approx(skm.recall_score(target, predicted, average="macro"))
    assert out["weighted_precision"] == pytest.approx(skm.precision_score(target, predicted, average="weighted"))


def test_multilabel_metrics():
    scores = np.array([[0.9, 0.1, 0.5, 0.2, 0.0], [0.1, 0.2, 0.3, 0.4, 0.8], [0.3, 0.9, 0.1, 0.0, 0.2]])
    target = np.array([[1, 0, 0, 0, 0], [1, 0, 0, 0, 0], [0, 1, 0, 0, 1]])
    out = M.multilabel_metrics(scores, target)
    # top-3: row0 {0,2,3} hits 0; row1 {4,3,2} misses; row2 {1,0,4} hits
    assert out["top3_accuracy"] == pytest.approx(2 / 3)
    present = [0, 1, 4]
    expected = np.mean([skm.average_precision_score(target[:, c], scores[:, c]) for c in present])
    assert out["mean_average_precision"] == pytest.approx(expected)


def test_compute_metrics_layout():
    rng = np.random.default_rng(3)
    n = 12
    common = dict(split="test", regression=rng.uniform(-1, 1, (n, 2)), regression_labels=rng.uniform(-1, 1, (n, 2)))
    out = M.compute_metrics(
        logits=rng.normal(size=(n, 8)),
        labels=rng.integers(0, 8, n),
        id2label=dict(enumerate("abcdefgh")),
        regression_targets=["valence", "arousal"],
        multi_label=False,
        **common,
    )
    assert set(out) == {"split", "num_examples", "expression", "valence", "arousal", "pooled_valence_arousal"}
    assert set(out["expression"]) == {
        "accuracy",
        "macro_precision",
        "macro_recall",
        "macro_f1",
        "weighted_precision",
        "weighted_recall",
        "weighted_f1",
        "labels",
        "confusion_matrix",
        "per_class_recall",
        "support",
        "num_examples",
    }
    assert out["expression"]["num_examples"] == n and sum(out["expression"]["support"].values()) == n
    recall = out["expression"]["per_class_recall"]
    matrix = out["expression"]["confusion_matrix"]
    for index, label in enumerate(out["expression"]["labels"]):  # recall = diagonal / row sum
        row = sum(matrix[index])
        assert recall[label] == (pytest.approx(matrix[index][index] / row) if row else None)
    assert set(out["valence"]) == {"rmse", "mae", "pcc", "ccc", "sagr"}
    assert set(out["pooled_valence_arousal"]) == {"rmse", "mse", "mae", "ccc"}
    assert out["num_examples"] == n
    out = M.compute_metrics(
        split="test",
        logits=rng.normal(size=(n, 26)),
        labels=rng.integers(0, 2, (n, 26)),
        regression=rng.uniform(-1, 1, (n, 3)),
        regression_labels=rng.uniform(-1, 1, (n, 3)),
        id2label=dict(enumerate(map(str, range(26)))),
        regression_targets=["valence", "arousal", "dominance"],
        multi_label=True,
    )
    assert set(out) == {
        "split",
        "num_examples",
        "multilabel",
        "valence",
        "arousal",
        "dominance",
        "pooled_valence_arousal",
    }
    assert M.to_json_ready({"a": [math.nan, 1.0]}) == {"a": [None, 1.0]}


def test_offline_evaluate_metrics_use_the_same_functions():
    x, y = [0.1, 0.5, -0.3, 0.2], [0.2, 0.4, -0.5, -0.1]
    ccc = M.load_evaluate_metric("ccc").compute(predictions=x, references=y)
    sagr = M.load_evaluate_metric("sagr").compute(predictions=x, references=y)
    assert ccc == {"ccc": pytest.approx(M.concordance_correlation_coefficient(x, y))}
    assert sagr == {"sagr": 0.75}
    with pytest.raises(ValueError, match="unknown metric"):
        M.load_evaluate_metric("rmse")
