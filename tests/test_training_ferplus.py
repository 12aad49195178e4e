"""Training on real FER+ data: soft labels, the FER+ protocol in the metrics, gray low-resolution faces at inference.

The data are real: a subset of the shared FER+ copy prepared by ``cage prepare ferplus`` (``ferplus_prepared``).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from cage.configuration_cage import AFFECTNET8_LABELS
from cage.evaluation.metrics import compute_metrics
from cage.presets import make_config, make_image_processor

SMALL_BACKBONE, SMALL_SIZE = "resnet10t", 48


def test_soft_label_cross_entropy_by_hand():
    from cage.modeling_cage import CageForExpressionInference

    config = make_config("affectnet8", objective="discrete", backbone=SMALL_BACKBONE, image_size=SMALL_SIZE)
    model = CageForExpressionInference(config)
    logits = torch.tensor([[2.0, 0.0, -1.0, 0.5, 0.0, 0.0, 1.0, 0.0], [0.0] * 8])
    soft = torch.zeros(2, 8)
    soft[0, 0], soft[0, 6] = 4 / 7, 3 / 7  # FER+ fer0000000: neutral 4/7, anger 3/7
    soft[1, 1] = 1.0
    loss = model.compute_loss(logits, torch.zeros(2, 2), soft, None)
    log_p = torch.log_softmax(logits, dim=1)
    expected = -(soft * log_p).sum(dim=1).mean()
    torch.testing.assert_close(loss, expected)
    # class weights: -sum_c w_c q_c log p_c, averaged over rows
    model.config.class_weights = [1.0, 2.0, 1.0, 1.0, 1.0, 1.0, 3.0, 1.0]
    weighted = model.compute_loss(logits, torch.zeros(2, 2), soft, None)
    w = torch.tensor(model.config.class_weights)
    torch.testing.assert_close(weighted, -(w * soft * log_p).sum(dim=1).mean())
    # hard labels with -1 (no class): those rows are left out
    hard = model.compute_loss(logits, None, torch.tensor([0, -1]), None, class_weighted=False)
    torch.testing.assert_close(hard, -log_p[0, 0])
    with pytest.raises(ValueError, match="soft `labels` must have shape"):
        model.compute_loss(logits, None, soft[:, :7], None)


def test_metrics_leave_faces_without_a_majority_out_of_the_expression_numbers():
    logits = np.eye(8)[[0, 1, 1, 3, 0]] * 5.0
    labels = np.array([0, 1, -1, 2, 0])  # the third face has no majority label
    regression = np.zeros((5, 2))
    targets = np.array([[0.1, 0.0], [0.6, 0.1], [0.2, 0.2], [-0.5, -0.2], [0.0, 0.0]])
    metrics = compute_metrics(split="validation", logits=logits, regression=regression, labels=labels,
                              regression_labels=targets, id2label=dict(enumerate(AFFECTNET8_LABELS)),
                              regression_targets=["valence", "arousal"], multi_label=False)  # fmt: skip
    expression = metrics["expression"]
    assert expression["num_examples"] == 4 and metrics["num_examples"] == 5
    assert expression["accuracy"] == 0.75  # 3 of the 4 labelled faces
    assert expression["per_class_recall"]["Sad"] == 0.0 and expression["per_class_recall"]["Neutral"] == 1.0
    assert expression["per_class_recall"]["Fear"] is None and expression["support"]["Fear"] == 0
    assert sum(map(sum, expression["confusion_matrix"])) == 4
    assert metrics["valence"]["rmse"] == pytest.approx(np.sqrt(np.mean(targets[:, 0] ** 2)))  # all 5 faces


def ferplus_processor():
    config = make_config("affectnet8", backbone=SMALL_BACKBONE, image_size=SMALL_SIZE)
    return make_image_processor(config, grayscale=True, source_resolution=48)


def test_gray_low_resolution_processor_equals_the_evaluation_transform_and_the_fast_start(tmp_path):
    from cage.data.transforms import eval_transform
    from cage.image_processing_cage import CageImageProcessor
    from cage.inference.fast_start import ArrayImageProcessor, _processor_settings

    processor = ferplus_processor()
    processor.save_pretrained(tmp_path)
    loaded = CageImageProcessor.from_pretrained(tmp_path)
    assert loaded.grayscale is True and loaded.source_resolution == 48
    rng = np.random.default_rng(0)
    crops = [Image.fromarray(rng.integers(0, 256, (173, 151, 3), dtype=np.uint8)),
             Image.fromarray(rng.integers(0, 256, (48, 48), dtype=np.uint8), mode="L"),
             Image.fromarray(rng.integers(0, 256, (30, 20, 3), dtype=np.uint8))]  # fmt: skip
    expected = loaded([c.convert("RGB") for c in crops], return_tensors="pt")["pixel_values"]
    assert expected.shape == (3, 3, 48, 48)
    # gray: the three channels are one gray image, normalised per channel
    mean, std = torch.tensor(loaded.image_mean)[:, None, None], torch.tensor(loaded.image_std)[:, None, None]
    unnormalised = expected * std + mean
    torch.testing.assert_close(unnormalised[:, 0], unnormalised[:, 1], rtol=0, atol=1e-6)
    # a colour crop becomes exactly its 48-pixel gray version
    gray48 = crops[0].convert("L").resize((48, 48), Image.Resampling.BILINEAR)
    torch.testing.assert_close(unnormalised[0, 0] * 255, torch.tensor(np.asarray(gray48), dtype=torch.float32),
                               rtol=0, atol=1e-3)  # fmt: skip
    transform = eval_transform(loaded)
    torch.testing.assert_close(torch.stack([transform(c.convert("RGB")) for c in crops]), expected, rtol=0, atol=2e-6)
    fast = ArrayImageProcessor(_processor_settings(loaded))(crops, return_tensors="np")["pixel_values"]
    np.testing.assert_array_equal(fast, expected.numpy())
    # numpy uint8 input gives the same as PIL
    arrays = loaded([np.asarray(c.convert("RGB")) for c in crops], return_tensors="pt")["pixel_values"]
    torch.testing.assert_close(arrays, expected, rtol=0, atol=0)


@pytest.mark.parametrize("settings", [{"size": {"height": 0, "width": 48}}, {"source_resolution": 0},
                                      {"source_resolution": "48"}, {"grayscale": "yes"}])  # fmt: skip
def test_impossible_processor_settings_are_refused(settings):
    from cage.image_processing_cage import CageImageProcessor

    with pytest.raises(ValueError):
        CageImageProcessor(**settings)


def train_args(data, output, **overrides):
    from cage.training.arguments import TrainingArguments

    options = dict(
        data=str(data), output_dir=str(output), backbone=SMALL_BACKBONE, image_size=SMALL_SIZE, random_init=True,
        epochs=4, batch_size=32, learning_rate=2e-3, weight_decay=0.05, warmup_steps=2, augmentation="ferplus",
        class_weighting="none", label_mode="soft", selection_metric="accuracy", num_workers=0, seed=0,
    )  # fmt: skip
    options.update(overrides)
    return TrainingArguments(**options)


@pytest.fixture(scope="module")
def trained_on_subset(ferplus_prepared, tmp_path_factory, one_torch_thread):
    from cage.training.loop import train

    output = tmp_path_factory.mktemp("ferplus-run") / "model"
    recipe = train(train_args(ferplus_prepared, output))
    return output, recipe


def test_a_short_run_on_real_faces_lowers_the_validation_loss(trained_on_subset):
    _, recipe = trained_on_subset
    losses = [entry["loss"] for entry in recipe["history"]]
    assert len(losses) == 4
    assert losses[-1] < losses[0] - 0.05, losses
    assert recipe["label_mode"] == "soft"
    assert all(entry["images_per_second"] > 0 for entry in recipe["history"])


def test_the_saved_model_sees_gray_48_pixel_faces_and_says_its_targets_are_derived(trained_on_subset):
    output, recipe = trained_on_subset
    config = json.loads((output / "config.json").read_text())
    processor = json.loads((output / "preprocessor_config.json").read_text())
    assert processor["grayscale"] is True and processor["source_resolution"] == 48
    assert config["regression_source"] == "derived" and "not human ratings" in config["regression_note"]
    assert config["class_weights"] is None and config["weights_status"] == "trained"
    metrics = json.loads((output / "metrics_validation.json").read_text())
    assert metrics["regression_targets"]["source"] == "derived"
    # the FER+ protocol: accuracy over the faces with a majority label of the 120-face validation subset
    assert metrics["expression"]["num_examples"] == 107 and metrics["num_examples"] == 119


def test_majority_label_mode_trains_on_labelled_faces_only(ferplus_prepared, tmp_path, one_torch_thread):
    from cage.training.loop import train

    recipe = train(train_args(ferplus_prepared, tmp_path / "m", label_mode="majority", epochs=1, max_steps=2))
    assert recipe["label_mode"] == "majority"
    assert recipe["data"]["splits"]["train"] < 240  # faces without a majority label (-1) are left out


def test_cli_evaluate_prints_the_protocol_metrics_and_plots(trained_on_subset, ferplus_prepared, tmp_path, cli):
    output, _ = trained_on_subset
    code, out, err = cli("evaluate", "--model", str(output), "--data", str(ferplus_prepared), "--split",
                         "validation", "--plots", str(tmp_path / "plots"))  # fmt: skip
    assert code == 0, err
    metrics = json.loads(out)
    assert set(metrics["expression"]["per_class_recall"]) == set(AFFECTNET8_LABELS)
    assert (tmp_path / "plots" / "confusion_matrix.png").is_file()
