"""Training with Accelerate: two processes (gloo), a model that loads everywhere, evaluation parity,
bit-for-bit resume, and learning on a synthetic task."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import REPO_ROOT, TINY_BACKBONE, TINY_SIZE, free_port, without_timing
from fixtures_training import write_affectnet_fixture, write_emotic_fixture, write_synthetic_fixture
from safetensors.torch import load_file

SMALL_BACKBONE = "test_byobnet"  # timm's tiny test network: fast enough for hundreds of CPU steps


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT / "src"), env.get("PYTHONPATH", "")])
    env.update(HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
    return env


@pytest.fixture
def in_process(one_torch_thread):
    """One thread (conftest's `one_torch_thread`: the CI machine has 2 shared cores) and a fresh Accelerate
    state per training run."""
    from accelerate.state import AcceleratorState, GradientState

    yield
    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()


def _train(**overrides):
    from accelerate.state import AcceleratorState, GradientState

    from cage.training import TrainingArguments, train

    arguments = dict(backbone=TINY_BACKBONE, image_size=TINY_SIZE, batch_size=4, random_init=True, num_workers=0)
    arguments.update(overrides)
    try:
        return train(TrainingArguments(**arguments))
    finally:
        AcceleratorState._reset_state(reset_partial_state=True)
        GradientState._reset_state()


@pytest.fixture(scope="module")
def affectnet_data(tmp_path_factory) -> Path:
    # 20 training examples (one corrupt JPEG), 9 validation, 7 test: uneven batches on two processes.
    return write_affectnet_fixture(tmp_path_factory.mktemp("data") / "affectnet")


@pytest.fixture(scope="module")
def two_process_model(affectnet_data, tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """`accelerate launch` with two CPU processes (gloo).

    In accelerate 1.x `accelerate launch --cpu --num_processes 2` starts ONE process unless an MPI hostfile is
    configured; torchrun with ACCELERATE_USE_CPU=1 (`--multi_gpu` on a machine without GPUs) gives two gloo
    processes, which the log line "2 process(es)" below proves.
    """
    output = tmp_path_factory.mktemp("two_process") / "model"
    command = [
        sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
        "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(free_port()),
        str(REPO_ROOT / "scripts" / "train.py"), "--data", str(affectnet_data), "--output-dir", str(output),
        "--backbone", TINY_BACKBONE, "--image-size", str(TINY_SIZE), "--batch-size", "3", "--eval-batch-size", "2",
        "--max-steps", "4", "--random-init", "--num-workers", "0",
    ]  # fmt: skip
    result = subprocess.run(
        command, env=_env() | {"ACCELERATE_USE_CPU": "1"}, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return output, result


def test_two_processes_train_and_save_a_model_that_loads(two_process_model, affectnet_data, tmp_path):
    from PIL import Image
    from transformers import AutoModel

    import cage  # noqa: F401

    output, result = two_process_model
    assert "2 process(es)" in result.stdout
    config = json.loads((output / "config.json").read_text())
    assert config["weights_status"] == "trained"
    recipe = config["training_recipe"]
    assert recipe["num_processes"] == 2 and recipe["optimizer_steps"] == 4
    assert recipe["effective_batch_size"] == 6
    assert recipe["skipped_training_images"]["distinct"] == ["s0-3"]  # the corrupt JPEG, reported by id
    assert recipe["data"]["splits"] == {"train": 20, "validation": 9, "test": 7}
    # counts 3,3,3,3,2,2,2,2 -> w = (1/n_c) / sum_k (1/n_k) = 0.1 and 0.15
    assert config["class_weights"] == pytest.approx([0.1] * 4 + [0.15] * 4)
    test_metrics = json.loads((output / "metrics_test.json").read_text())
    assert test_metrics["split"] == "test" and test_metrics["num_examples"] == 7  # no duplicates, none dropped
    assert recipe["metrics"]["test"]["num_examples"] == 7
    assert json.loads((output / "metrics_validation.json").read_text())["num_examples"] == 9

    model = AutoModel.from_pretrained(output)
    assert model.config.weights_status == "trained"
    image_path = tmp_path / "face.png"
    Image.new("RGB", (50, 60), (120, 90, 80)).save(image_path)
    predicted = subprocess.run(
        [sys.executable, "-m", "cage", "predict", str(image_path), "--model", str(output), "--detector", "none"],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert predicted.returncode == 0, predicted.stderr
    faces = json.loads(predicted.stdout)[0]["faces"]
    assert len(faces) == 1 and faces[0]["expression"] in config["id2label"].values()


def test_cage_evaluate_single_process_equals_the_two_process_evaluation(
    two_process_model, affectnet_data, tmp_path, in_process
):
    from cage.cli import main

    output, _ = two_process_model
    metrics_path = tmp_path / "metrics.json"
    code = main(["evaluate", "--model", str(output), "--data", str(affectnet_data), "--split", "test",
                 "--output", str(metrics_path), "--plots", str(tmp_path / "plots"), "--batch-size", "3"])  # fmt: skip
    assert code == 0
    single = json.loads(metrics_path.read_text())
    two = json.loads((output / "metrics_test.json").read_text())
    assert single["num_examples"] == two["num_examples"] == 7
    assert single["expression"]["confusion_matrix"] == two["expression"]["confusion_matrix"]
    for group in ("expression", "valence", "arousal", "pooled_valence_arousal"):
        for key, value in two[group].items():
            if isinstance(value, float):
                assert single[group][key] == pytest.approx(value, abs=1e-5), (group, key)
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == [
        "circumplex.png",
        "confusion_matrix.png",
        "error_cdf.png",
    ]


def test_resume_is_bit_for_bit(affectnet_data, tmp_path, in_process):
    # 5 batches per epoch: the checkpoint at step 3 is mid-epoch, the run crosses an epoch end (validation,
    # save_state) after resuming. The paper's augmentations are on; warm-up + cosine make the LR step-dependent.
    common = dict(
        data=str(affectnet_data),
        max_steps=6,
        checkpointing_steps=3,
        warmup_steps=2,
        learning_rate=1e-3,
        evaluate_test=False,
    )
    _train(output_dir=str(tmp_path / "one_go"), **common)
    _train(
        output_dir=str(tmp_path / "resumed"),
        resume_from_checkpoint=str(tmp_path / "one_go" / "checkpoints" / "step_3"),
        **common,
    )
    one_go = load_file(str(tmp_path / "one_go" / "checkpoints" / "step_6" / "model.safetensors"))
    resumed = load_file(str(tmp_path / "resumed" / "checkpoints" / "step_6" / "model.safetensors"))
    start = load_file(str(tmp_path / "one_go" / "checkpoints" / "step_3" / "model.safetensors"))
    assert one_go.keys() == resumed.keys()
    assert all(torch.equal(one_go[k], resumed[k]) for k in one_go)
    assert not all(torch.equal(one_go[k], start[k]) for k in one_go)  # it did train after step 3
    history = json.loads((tmp_path / "resumed" / "config.json").read_text())["training_recipe"]["history"]
    reference = json.loads((tmp_path / "one_go" / "config.json").read_text())["training_recipe"]["history"]
    assert without_timing(history) == without_timing(reference)
    assert any({"images_per_second", "train_seconds"} <= entry.keys() for entry in history)  # measured, too


def test_learns_a_synthetic_task(tmp_path, in_process):
    # Brightness sets valence, a red-blue tint arousal, the stripe/check pattern one of 8 classes.
    data = write_synthetic_fixture(tmp_path / "synthetic", train=512, validation=96, test=96, size=32)
    recipe = _train(
        data=str(data),
        output_dir=str(tmp_path / "model"),
        backbone=SMALL_BACKBONE,
        image_size=32,
        batch_size=16,
        max_steps=250,
        learning_rate=2e-3,
        warmup_steps=20,
        augmentation="none",
        seed=0,
    )
    test = recipe["metrics"]["test"]
    assert test["valence"]["ccc"] > 0.8 and test["arousal"]["ccc"] > 0.8
    assert test["expression"]["accuracy"] > 0.6  # chance is 1/8


def test_emotic_and_init_from_and_refusing_random_weights(tmp_path, two_process_model, affectnet_data, in_process):
    data = write_emotic_fixture(tmp_path / "emotic")
    recipe = _train(
        data=str(data),
        output_dir=str(tmp_path / "emotic_model"),
        backbone=SMALL_BACKBONE,
        image_size=32,
        max_steps=2,
        report_to="tensorboard",
    )
    assert list((tmp_path / "emotic_model" / "runs").rglob("events.out.tfevents.*"))  # Accelerate's TensorBoard tracker
    test = recipe["metrics"]["test"]
    assert set(test["multilabel"]) == {"mean_average_precision", "top3_accuracy"} and "dominance" in test
    config = json.loads((tmp_path / "emotic_model" / "config.json").read_text())
    assert config["multi_label"] and len(config["pos_weight"]) == 26 and config["regression_targets"][-1] == "dominance"

    # The paper's valence-arousal stage: from the combined model, class-balanced sampling.
    output, _ = two_process_model
    recipe = _train(
        data=str(affectnet_data),
        output_dir=str(tmp_path / "va"),
        init_from=str(output),
        objective="valence_arousal",
        balanced=True,
        max_steps=2,
        random_init=False,
    )
    assert recipe["selection_metric"] == "mean_ccc"
    assert json.loads((tmp_path / "va" / "config.json").read_text())["objective"] == "valence_arousal"

    with pytest.raises(ValueError, match="no trunk weights"):
        _train(data=str(affectnet_data), output_dir=str(tmp_path / "refused"), random_init=False, max_steps=1)


def test_default_trunk_offline_without_weights_file_is_one_clear_line(affectnet_data, tmp_path, monkeypatch, capsys):
    from accelerate.state import AcceleratorState, GradientState

    from cage.cli import main

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # nothing cached
    argv = ["train", "--data", str(affectnet_data), "--output-dir", str(tmp_path / "out"), "--num-workers", "0"]
    try:
        code = main([*argv, "--backbone-weights", "download"])
    finally:
        AcceleratorState._reset_state(reset_partial_state=True)
        GradientState._reset_state()
    assert code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "cage train: --backbone-weights download: could not load torchvision's maxvit_t ImageNet weights IMAGENET1K_V1 "
        f"(maxvit_t-bc5ab103.pth): offline (HF_HUB_OFFLINE=1) and not in {tmp_path / 'torch' / 'hub' / 'checkpoints'}; "
        "pass the file maxvit_t-bc5ab103.pth (https://download.pytorch.org/models/maxvit_t-bc5ab103.pth) as the "
        "backbone checkpoint (`--backbone-weights`)"
    )
