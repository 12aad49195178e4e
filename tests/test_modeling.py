"""The CAGE network: head layout, objectives against hand computations, trunk weights."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from cage import CageConfig, CageForExpressionInference
from cage.modeling_cage import concordance_correlation_coefficient
from cage.presets import make_config
from conftest import TINY_BACKBONE, TINY_SIZE


@pytest.fixture(scope="module")
def maxvit_t() -> CageForExpressionInference:
    torch.manual_seed(0)
    # eval(): the default trunk (torchvision's maxvit_t) has stochastic depth 0.2 in training mode.
    return CageForExpressionInference(CageConfig()).eval()


def test_head_layout_of_maxvit_t(maxvit_t):
    head = {name: tuple(p.shape) for name, p in maxvit_t.named_parameters() if name.startswith("head.")}
    assert head == {
        "head.norm.weight": (512,),
        "head.norm.bias": (512,),
        "head.hidden.weight": (512, 512),
        "head.hidden.bias": (512,),
        "head.output.weight": (10, 512),  # 8 AffectNet logits + valence + arousal, no bias
    }
    assert isinstance(maxvit_t.head.activation, torch.nn.Tanh)
    # The trunk's own ImageNet classifier is gone: no parameter outside trunk.* and head.*
    assert not [n for n, _ in maxvit_t.named_parameters() if not n.startswith(("trunk.", "head."))]
    assert not [n for n, _ in maxvit_t.named_parameters() if n.startswith("trunk.head.")]
    trunk_params = sum(p.numel() for n, p in maxvit_t.named_parameters() if n.startswith("trunk."))
    assert 30.0e6 < trunk_params + sum(p.numel() for n, p in maxvit_t.named_parameters() if n.startswith("head.")) < 31.0e6


def test_forward_shapes_and_split(maxvit_t):
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        out = maxvit_t(pixel_values=x)
        features = maxvit_t.trunk.forward_features(x)
        raw = maxvit_t.head(maxvit_t.pool_features(features))
    assert out.logits.shape == (2, 8) and out.regression.shape == (2, 2) and out.loss is None
    torch.testing.assert_close(out.logits, raw[:, :8])
    torch.testing.assert_close(out.regression, raw[:, 8:])


def _tiny(objective: str, labels: str = "affectnet8", **overrides) -> CageForExpressionInference:
    torch.manual_seed(0)
    config = make_config(labels, objective=objective, backbone=TINY_BACKBONE, image_size=TINY_SIZE, **overrides)
    return CageForExpressionInference(config)


LOGITS = torch.tensor([[2.0, 0.5, -1.0, 0.0, 0.1, 0.2, -0.3, 1.0], [0.0, 3.0, 0.0, -2.0, 0.5, 0.0, 0.0, 0.0]])
LABELS = torch.tensor([0, 3])
VA = torch.tensor([[0.2, -0.4], [0.9, 0.1]])
VA_TRUE = torch.tensor([[0.0, -0.5], [0.6, 0.3]])
WEIGHTS = [0.015605, 0.008709, 0.046078, 0.083078, 0.185434, 0.305953, 0.046934, 0.308210]  # paper, AffectNet-8


def _weighted_ce(logits: np.ndarray, labels: np.ndarray, weights: np.ndarray) -> float:
    log_p = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    w = weights[labels]
    return float(-(w * log_p[np.arange(len(labels)), labels]).sum() / w.sum())


def test_combined_loss_by_hand():
    model = _tiny("combined", class_weights=WEIGHTS)
    loss = model.compute_loss(LOGITS, VA, LABELS, VA_TRUE)
    ce = _weighted_ce(LOGITS.numpy(), LABELS.numpy(), np.array(WEIGHTS))
    mse = float(((VA.numpy() - VA_TRUE.numpy()) ** 2).mean())
    assert loss.item() == pytest.approx(ce + 5.0 * mse, rel=1e-6)


def test_discrete_loss_unweighted_by_hand():
    model = _tiny("discrete")
    loss = model.compute_loss(LOGITS, VA, LABELS, None)
    assert loss.item() == pytest.approx(_weighted_ce(LOGITS.numpy(), LABELS.numpy(), np.ones(8)), rel=1e-6)


def test_valence_arousal_loss_by_hand():
    model = _tiny("valence_arousal")
    pred = torch.tensor([[0.2, -0.4], [0.9, 0.1], [-0.3, 0.5]])
    true = torch.tensor([[0.0, -0.5], [0.6, 0.3], [-0.5, 0.2]])
    p, t = pred.numpy().astype(np.float64), true.numpy().astype(np.float64)
    cccs = []
    for d in range(2):
        x, y = p[:, d], t[:, d]
        cov = ((x - x.mean()) * (y - y.mean())).mean()
        cccs.append(2 * cov / (x.var() + y.var() + (x.mean() - y.mean()) ** 2))
    expected = float(np.mean([1 - c for c in cccs]) + 3.0 * ((p - t) ** 2).mean())
    assert model.compute_loss(LOGITS[:1].repeat(3, 1), pred, None, true).item() == pytest.approx(expected, rel=1e-5)


def test_multilabel_bce_with_pos_weight_by_hand():
    pos_weight = [float(i + 1) for i in range(26)]
    model = _tiny("combined", labels="emotic", pos_weight=pos_weight)
    torch.manual_seed(1)
    logits = torch.randn(2, 26)
    targets = (torch.rand(2, 26) > 0.7).float()
    vad, vad_true = torch.rand(2, 3) * 2 - 1, torch.rand(2, 3) * 2 - 1
    x, y, pw = logits.double().numpy(), targets.double().numpy(), np.array(pos_weight)
    sig = 1 / (1 + np.exp(-x))
    bce = float((-(pw * y * np.log(sig) + (1 - y) * np.log(1 - sig))).mean())
    mse = float(((vad.double() - vad_true.double()) ** 2).mean())
    loss = model.compute_loss(logits, vad, targets, vad_true)
    assert loss.item() == pytest.approx(bce + 5.0 * mse, rel=1e-5)


def test_forward_returns_objective_loss():
    model = _tiny("combined", class_weights=WEIGHTS).eval()
    x = torch.randn(2, 3, TINY_SIZE, TINY_SIZE)
    with torch.no_grad():
        out = model(pixel_values=x, labels=LABELS, regression_labels=VA_TRUE)
        assert out.loss.item() == pytest.approx(model.compute_loss(out.logits, out.regression, LABELS, VA_TRUE).item())


def test_missing_labels_raise():
    model = _tiny("combined")
    with pytest.raises(ValueError, match="regression_labels"):
        model.compute_loss(LOGITS, VA, LABELS, None)
    with pytest.raises(ValueError, match="needs `labels`"):
        model.compute_loss(LOGITS, VA, None, VA_TRUE)


def test_ccc_matches_lin_formula_and_edge_cases():
    rng = np.random.default_rng(0)
    x = rng.normal(size=50)
    y = 0.5 * x + rng.normal(scale=0.3, size=50) + 0.2
    cov = np.mean((x - x.mean()) * (y - y.mean()))
    expected = 2 * cov / (x.var() + y.var() + (x.mean() - y.mean()) ** 2)
    got = concordance_correlation_coefficient(torch.tensor(x), torch.tensor(y)).item()
    assert got == pytest.approx(expected, rel=1e-6)
    assert concordance_correlation_coefficient(torch.tensor(x), torch.tensor(x)).item() == pytest.approx(1.0)
    centred = torch.tensor(x - x.mean())
    assert concordance_correlation_coefficient(centred, -centred).item() == pytest.approx(-1.0)


def test_config_validation():
    with pytest.raises(ValueError, match="objective"):
        CageConfig(objective="regression")
    with pytest.raises(ValueError, match="regression_targets"):
        CageConfig(regression_targets=["valence", "happiness"])
    with pytest.raises(ValueError, match="class_weights has 3 entries"):
        CageConfig(class_weights=[1.0, 2.0, 3.0])
    config = CageConfig()
    assert [config.id2label[i] for i in range(8)] == [
        "Neutral", "Happy", "Sad", "Surprise", "Fear", "Disgust", "Anger", "Contempt"
    ]  # fmt: skip
    assert config.label2id["Contempt"] == 7 and config.num_outputs == 10
    assert make_config("affectnet7").num_outputs == 9
    emotic = make_config("emotic")
    assert emotic.multi_label and emotic.num_outputs == 29 and emotic.id2label[9] == "Doubt/Confusion"


def test_backbone_weights_from_local_timm_checkpoint(tmp_path):
    import timm
    from safetensors.torch import save_file

    torch.manual_seed(123)
    reference = timm.create_model(TINY_BACKBONE, pretrained=False, img_size=TINY_SIZE)
    checkpoint = tmp_path / "imagenet.safetensors"
    save_file({k: v.contiguous() for k, v in reference.state_dict().items()}, str(checkpoint))

    model = _tiny("combined")
    head_before = model.head.output.weight.clone()
    model.load_backbone_weights(checkpoint)
    trunk = model.trunk.state_dict()
    for name, value in reference.state_dict().items():
        if not name.startswith("head."):
            torch.testing.assert_close(trunk[name], value, rtol=0, atol=0, msg=name)
    torch.testing.assert_close(model.head.output.weight, head_before)
    assert model.config.weights_status == "imagenet_backbone"


def test_backbone_weights_offline_errors_clearly(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model = _tiny("combined")
    with pytest.raises(FileNotFoundError, match="does-not-exist"):
        model.load_backbone_weights(tmp_path / "does-not-exist.safetensors")
    with pytest.raises(RuntimeError, match="could not load ImageNet weights"):
        model.load_backbone_weights()
    assert model.config.weights_status == "untrained"
    assert not math.isnan(model.head.output.weight.sum().item())


def test_validation_loss_is_compute_loss_unweighted():
    # One formula: validation uses compute_loss with class_weighted=False (the authors validated unweighted).
    from cage.evaluation.runner import validation_loss

    model = _tiny("combined", class_weights=WEIGHTS)
    predictions = {"logits": LOGITS.numpy(), "regression": VA.numpy(), "labels": LABELS.numpy(),
                   "regression_labels": VA_TRUE.numpy()}  # fmt: skip
    unweighted = _weighted_ce(LOGITS.numpy(), LABELS.numpy(), np.ones(8)) + 5.0 * float(((VA - VA_TRUE) ** 2).mean())
    assert validation_loss(model, predictions) == pytest.approx(unweighted, rel=1e-6)
    weighted = model.compute_loss(LOGITS, VA, LABELS, VA_TRUE).item()
    assert weighted != pytest.approx(unweighted, rel=1e-3)  # the training loss is class-weighted
    unweighted_direct = model.compute_loss(LOGITS, VA, LABELS, VA_TRUE, class_weighted=False).item()
    assert unweighted_direct == pytest.approx(unweighted, rel=1e-6)
