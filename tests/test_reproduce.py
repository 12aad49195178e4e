"""``cage reproduce affectnet``: a rehearsal of the whole path on a small AffectNet copy cut from the real photos
in ../shared/faces, with a tiny random trunk on CPU: both stages, test metrics, the card, the staged upload
loaded by repo id where ``cage`` cannot be imported, a rerun that skips everything, and an interrupted
stage 2 that resumes to the same weights as the uninterrupted run.

One run directory serves every assertion of the uninterrupted run (the module-scoped ``run_dir``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import BLOCK_CAGE_IMPORTS, REPO_ROOT, TINY_BACKBONE, TINY_SIZE, face_photo, without_timing
from data_fixtures import affectnet_labels, write_affectnet_cropped
from safetensors.torch import load_file

REPO_ID = "someone/cage-rehearsal"
STAGE1_STEPS, STAGE2_STEPS = 2, 4
OPTIONS = [
    "--random-init", "--backbone", TINY_BACKBONE, "--image-size", str(TINY_SIZE), "--batch-size", "4",
    "--max-steps", str(STAGE1_STEPS), "--stage2-max-steps", str(STAGE2_STEPS), "--checkpointing-steps", "1",
    "--num-workers", "0", "--val-fraction", "0.34", "--estimate-steps", "1", "--repo-id", REPO_ID,
]  # fmt: skip
STAGES = ("data", "stage1", "stage2", "evaluate", "card", "hub")


def _reproduce_in_process(root: Path, out: Path) -> int:
    """``cage reproduce`` in this process on one thread, with a fresh Accelerate state afterwards."""
    from accelerate.state import AcceleratorState, GradientState

    from cage.cli import main

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return main(["reproduce", "affectnet", str(root), "--out", str(out), *OPTIONS])
    finally:
        AcceleratorState._reset_state(reset_partial_state=True)
        GradientState._reset_state()
        torch.set_num_threads(threads)


def _record(out: Path) -> dict:
    return json.loads((out / "reproduce.json").read_text())


@pytest.fixture(scope="module")
def affectnet_root(tmp_path_factory) -> Path:
    # The cropped release: 3 training faces per class (a third held out for validation), 1 test face per class.
    face_photo("obama.jpg")  # skips without ../shared/faces
    root = tmp_path_factory.mktemp("affectnet") / "AffectNet"
    write_affectnet_cropped(root, affectnet_labels(3), affectnet_labels(1, offset=100))
    return root


@pytest.fixture(scope="module")
def run_dir(affectnet_root, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("reproduce") / "run"
    assert _reproduce_in_process(affectnet_root, out) == 0
    return out


def test_both_stages_trained_and_evaluated_on_test(run_dir):
    record = _record(run_dir)
    assert [record["stages"][s]["status"] for s in STAGES] == ["done"] * len(STAGES)
    assert record["stages"]["data"]["splits"] == {"train": 15, "validation": 9, "test": 8}
    for stage in STAGES:
        assert record["stages"][stage]["started"] <= record["stages"][stage]["finished"]
    stage1, stage2 = record["stages"]["stage1"], record["stages"]["stage2"]
    assert (stage1["objective"], stage1["optimizer_steps"]) == ("combined", STAGE1_STEPS)
    assert (stage2["objective"], stage2["optimizer_steps"]) == ("valence_arousal", STAGE2_STEPS)
    # Stage 2 started from stage 1's weights (recorded by hash) with class-balanced sampling.
    import hashlib

    stage1_sha = hashlib.sha256((run_dir / "stage1" / "model.safetensors").read_bytes()).hexdigest()
    assert stage2["init_from"] == {"folder": str(run_dir / "stage1"), "model_sha256": stage1_sha}
    config = json.loads((run_dir / "stage2" / "config.json").read_text())
    arguments = config["training_recipe"]["arguments"]
    assert arguments["init_from"] == str(run_dir / "stage1") and arguments["balanced"] is True
    assert config["objective"] == "valence_arousal" and config["expression_loss_weight"] == 0.1
    assert config["class_weights"] is None  # balanced sampling: unweighted CE
    # Selection on validation only; both stages evaluated on test, with the expression measured in stage 2.
    assert stage2["validation"]["split"] == "validation"
    for stage in (1, 2):
        metrics = json.loads((run_dir / "eval" / f"stage{stage}_test.json").read_text())
        assert metrics["split"] == "test" and metrics["num_examples"] == 8
        assert record["stages"]["evaluate"][f"stage{stage}"]["test"]["pooled_valence_arousal"] == pytest.approx(
            metrics["pooled_valence_arousal"]
        )
        assert 0 <= metrics["expression"]["accuracy"] <= 1 and "weighted_f1" in metrics["expression"]
    # The estimate was printed from a measured throughput and recorded.
    estimate = record["estimate"]
    assert estimate["measured"]["images_per_s"] > 0 and estimate["stage2"]["optimizer_steps"] == STAGE2_STEPS


def test_card_holds_this_runs_numbers_beside_the_papers(run_dir):
    from huggingface_hub import ModelCard

    metrics = json.loads((run_dir / "eval" / "stage2_test.json").read_text())
    card = ModelCard.load(run_dir / "hub" / "README.md", ignore_metadata_errors=False)
    assert (run_dir / "card" / "README.md").read_text() == (run_dir / "hub" / "README.md").read_text()
    reported = {(r.metric_type, r.dataset_split): r.metric_value for r in card.data.eval_results}
    for section in ("valence", "arousal", "pooled_valence_arousal"):
        for name, value in metrics[section].items():
            assert reported[(f"{section}_{name}", "test")] == pytest.approx(value)
    assert reported[("weighted_f1", "test")] == pytest.approx(metrics["expression"]["weighted_f1"])
    text = card.text
    assert "## Reproduction (`cage reproduce`)" in text and "![Stage 2 predictions" in text
    stage1 = json.loads((run_dir / "eval" / "stage1_test.json").read_text())
    section = text[text.index("## Reproduction") :]
    row = next(line for line in section.splitlines() if line.startswith("| Pooled valence+arousal CCC |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1:5] == [f"{stage1['pooled_valence_arousal']['ccc']:.4f}", "0.6592",
                          f"{metrics['pooled_valence_arousal']['ccc']:.4f}", "0.7840"]  # fmt: skip
    assert '"random_init": true' in text and "Seeds: data split 0, training 42" in text
    # A rehearsal from a random trunk names no ImageNet base model, also through stage 2's --init-from.
    assert card.data.base_model is None
    stage2_config = json.loads((run_dir / "hub" / "config.json").read_text())
    assert stage2_config["training_recipe"]["trunk_start"] == "random"
    staged = {p.name for p in (run_dir / "hub").iterdir()}
    assert {"model.safetensors", "config.json", "preprocessor_config.json", "modeling_cage.py", "metrics.json",
            "circumplex.png", "reproduce.json"} <= staged  # fmt: skip
    published = (run_dir / "hub" / "model.safetensors").read_bytes()
    assert published == (run_dir / "stage2" / "model.safetensors").read_bytes()


REMOTE_SCRIPT = BLOCK_CAGE_IMPORTS + textwrap.dedent(
    """
    import sys

    import torch
    from PIL import Image
    from safetensors.numpy import save_file
    from transformers import AutoImageProcessor, AutoModel

    repo, image, out = sys.argv[1:4]
    model = AutoModel.from_pretrained(repo, trust_remote_code=True).eval()
    processor = AutoImageProcessor.from_pretrained(repo, trust_remote_code=True)
    assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
    with torch.no_grad():
        output = model(**processor([Image.open(image)], return_tensors="pt"))
    save_file({"logits": output.logits.numpy(), "regression": output.regression.numpy()}, out)
    """
)


def test_staged_upload_loads_by_repo_id_without_cage(run_dir, tmp_path):
    from PIL import Image
    from test_hub import _as_hub_download
    from transformers import AutoImageProcessor, AutoModel

    import cage  # noqa: F401

    crop = tmp_path / "face.png"
    Image.open(face_photo("obama.jpg")).convert("RGB").crop((349, 142, 618, 410)).save(crop)
    model = AutoModel.from_pretrained(run_dir / "stage2").eval()
    processor = AutoImageProcessor.from_pretrained(run_dir / "stage2")
    with torch.no_grad():
        expected = model(**processor([Image.open(crop)], return_tensors="pt"))
    _as_hub_download(run_dir / "hub", tmp_path / "hub", REPO_ID)
    env = {"HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "hub"), "HF_HOME": str(tmp_path / "home"),
           "HF_MODULES_CACHE": str(tmp_path / "modules"), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"}  # fmt: skip
    out = tmp_path / "remote.safetensors"
    completed = subprocess.run([sys.executable, "-c", REMOTE_SCRIPT, REPO_ID, str(crop), str(out)],
                               capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)  # fmt: skip
    assert completed.returncode == 0, completed.stderr[-3000:]
    remote = load_file(str(out))
    np.testing.assert_allclose(remote["logits"].numpy(), expected.logits.numpy(), rtol=0, atol=1e-5)
    np.testing.assert_allclose(remote["regression"].numpy(), expected.regression.numpy(), rtol=0, atol=1e-5)
    assert remote["logits"].shape == (1, 8) and remote["regression"].shape == (1, 2)


def test_rerun_skips_every_finished_stage(run_dir, affectnet_root, capsys):
    before = _record(run_dir)
    weights = {s: (run_dir / s / "model.safetensors").stat().st_mtime_ns for s in ("stage1", "stage2")}
    capsys.readouterr()
    assert _reproduce_in_process(affectnet_root, run_dir) == 0
    printed = capsys.readouterr().out
    after = _record(run_dir)
    for stage in STAGES:
        assert f"[cage reproduce] {stage}: complete, skipped" in printed
        assert after["stages"][stage]["skipped_runs"] == 1
        assert after["stages"][stage]["finished"] == before["stages"][stage]["finished"]
    assert "[cage train]" not in printed and "ESTIMATE" not in printed
    assert weights == {s: (run_dir / s / "model.safetensors").stat().st_mtime_ns for s in ("stage1", "stage2")}
    assert len(after["runs"]) == 2


def test_other_options_on_the_same_run_dir_are_refused(run_dir, affectnet_root, capsys):
    from cage.cli import main

    argv = ["reproduce", "affectnet", str(affectnet_root), "--out", str(run_dir), *OPTIONS, "--learning-rate", "1e-3"]
    assert main(argv) == 2
    assert "learning_rate: 5e-05 -> 0.001" in capsys.readouterr().err


def test_interrupted_stage2_resumes_to_the_same_result(run_dir, affectnet_root, tmp_path):
    out = tmp_path / "interrupted"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO_ROOT / "src"), os.environ.get("PYTHONPATH", "")]),
               HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")  # fmt: skip
    command = [sys.executable, "-m", "cage", "reproduce", "affectnet", str(affectnet_root), "--out", str(out), *OPTIONS]
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    try:
        while not list((out / "stage2" / "checkpoints").glob("*/cage_training_state.json")):
            assert process.poll() is None, process.stderr.read()[-3000:]
            assert time.monotonic() < deadline, "no stage-2 checkpoint within 300 s"
            time.sleep(0.05)
    finally:
        process.kill()  # SIGKILL: no clean-up of any kind
        process.wait()
    killed = _record(out)
    assert killed["stages"]["stage1"]["status"] == "done" and killed["stages"]["stage2"]["status"] == "running"

    assert _reproduce_in_process(affectnet_root, out) == 0
    record = _record(out)
    assert record["stages"]["stage1"]["skipped_runs"] == 1
    stage2 = record["stages"]["stage2"]
    assert stage2["status"] == "done" and stage2["attempts"] == 2
    assert Path(stage2["resumed_from"]).parent == out / "stage2" / "checkpoints"
    assert stage2["optimizer_steps"] == STAGE2_STEPS
    for stage in ("stage1", "stage2"):
        resumed = load_file(str(out / stage / "model.safetensors"))
        reference = load_file(str(run_dir / stage / "model.safetensors"))
        assert resumed.keys() == reference.keys()
        assert all(torch.equal(resumed[k], reference[k]) for k in reference), stage
    for stage in (1, 2):
        resumed, reference = (json.loads((d / "eval" / f"stage{stage}_test.json").read_text()) for d in (out, run_dir))
        resumed.pop("model"), reference.pop("model")
        assert resumed == reference
    history = json.loads((out / "stage2" / "config.json").read_text())["training_recipe"]["history"]
    reference = json.loads((run_dir / "stage2" / "config.json").read_text())["training_recipe"]["history"]
    assert without_timing(history) == without_timing(reference)

    # Stage 1's output lost: stage 1 is made again (from its last checkpoint) and every later stage is redone
    # from scratch (stage 2's old checkpoints are removed, not resumed), to the same weights.
    (out / "stage1" / "model.safetensors").unlink()
    assert _reproduce_in_process(affectnet_root, out) == 0
    record = _record(out)
    assert record["stages"]["data"]["skipped_runs"] == 2
    assert [record["stages"][s]["attempts"] for s in STAGES[1:]] == [2, 3, 2, 2, 2]
    assert "resumed_from" in record["stages"]["stage1"] and "resumed_from" not in record["stages"]["stage2"]
    redone = load_file(str(out / "stage2" / "model.safetensors"))
    reference = load_file(str(run_dir / "stage2" / "model.safetensors"))
    assert all(torch.equal(redone[k], reference[k]) for k in reference)


def test_emotic_rehearsal(tmp_path):
    # EMOTIC: 26 categories + valence/arousal/dominance, body crops; stage 2 keeps the BCE at 0.1, no class balancing.
    from data_fixtures import write_emotic_mat
    from huggingface_hub import ModelCard

    from cage.cli import main

    face_photo("obama.jpg")
    write_emotic_mat(tmp_path / "EMOTIC")
    options = ["--random-init", "--backbone", TINY_BACKBONE, "--image-size", str(TINY_SIZE), "--batch-size", "2",
               "--max-steps", "1", "--checkpointing-steps", "1", "--num-workers", "0", "--estimate-steps", "1",
               "--repo-id", "someone/cage-emotic"]  # fmt: skip
    from accelerate.state import AcceleratorState, GradientState

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main(["reproduce", "emotic", str(tmp_path / "EMOTIC"), "--out", str(tmp_path / "run"), *options]) == 0
    finally:
        AcceleratorState._reset_state(reset_partial_state=True)
        GradientState._reset_state()
        torch.set_num_threads(threads)
    record = _record(tmp_path / "run")
    assert [record["stages"][s]["status"] for s in STAGES] == ["done"] * len(STAGES)
    assert record["stages"]["data"]["splits"] == {"train": 5, "validation": 3, "test": 3}
    config = json.loads((tmp_path / "run" / "stage2" / "config.json").read_text())
    assert config["objective"] == "valence_arousal" and config["multi_label"]
    assert config["expression_loss_weight"] == 0.1
    assert config["training_recipe"]["arguments"]["balanced"] is False and len(config["pos_weight"]) == 26
    metrics = json.loads((tmp_path / "run" / "eval" / "stage2_test.json").read_text())
    card = ModelCard.load(tmp_path / "run" / "hub" / "README.md")
    reported = {r.metric_type: r.metric_value for r in card.data.eval_results}
    assert reported["dominance_rmse"] == pytest.approx(metrics["dominance"]["rmse"])
    assert reported["top3_accuracy"] == pytest.approx(metrics["multilabel"]["top3_accuracy"])
    assert "| Dominance RMSE |" in card.text[card.text.index("## Reproduction") :]


def test_two_processes_under_accelerate_launch(affectnet_root, tmp_path):
    # `accelerate launch -m cage reproduce` with two gloo CPU processes (see tests/test_training.py for why
    # --multi_gpu with ACCELERATE_USE_CPU=1): the main process alone prepares and writes; both train and evaluate.
    from conftest import free_port

    out = tmp_path / "run"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO_ROOT / "src"), os.environ.get("PYTHONPATH", "")]),
               HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", ACCELERATE_USE_CPU="1")  # fmt: skip
    command = [
        sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--num_machines",
        "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(free_port()),
        "-m", "cage", "reproduce", "affectnet", str(affectnet_root), "--out", str(out), *OPTIONS,
        "--max-steps", "1", "--stage2-max-steps", "1", "--batch-size", "2",
    ]  # fmt: skip
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    record = _record(out)
    assert [record["stages"][s]["status"] for s in STAGES] == ["done"] * len(STAGES)
    assert record["runs"][-1]["processes"] == 2
    assert record["stages"]["stage1"]["num_processes"] == record["stages"]["stage2"]["num_processes"] == 2
    assert record["stages"]["stage2"]["effective_batch_size"] == 4
    assert result.stdout.count("[cage reproduce] data: done") == 1  # printed (and prepared) by the main process only
    for stage in (1, 2):
        metrics = json.loads((out / "eval" / f"stage{stage}_test.json").read_text())
        assert metrics["num_examples"] == 8  # gathered without duplicates


def test_expression_loss_weight_adds_the_weighted_ce_to_the_valence_arousal_loss():
    import torch.nn.functional as F

    from cage.modeling_cage import CageForExpressionInference
    from cage.presets import make_config

    torch.manual_seed(0)
    weights = [0.05, 0.1, 0.1, 0.1, 0.15, 0.2, 0.1, 0.2]
    pixels, labels = torch.randn(6, 3, TINY_SIZE, TINY_SIZE), torch.tensor([0, 1, 2, 3, 4, 7])
    targets = torch.rand(6, 2) * 2 - 1
    losses = {}
    for weight in (0.0, 0.25):
        config = make_config("affectnet8", objective="valence_arousal", backbone=TINY_BACKBONE, image_size=TINY_SIZE,
                             class_weights=weights, expression_loss_weight=weight)  # fmt: skip
        torch.manual_seed(1)
        model = CageForExpressionInference(config).eval()
        with torch.no_grad():
            output = model(pixel_values=pixels, labels=labels, regression_labels=targets)
        losses[weight] = (output.loss.item(), output)
    output = losses[0.25][1]
    ce = F.cross_entropy(output.logits, labels, weight=torch.tensor(weights)).item()
    assert torch.equal(losses[0.0][1].regression, output.regression)  # the same (seeded) network
    assert losses[0.25][0] == pytest.approx(losses[0.0][0] + 0.25 * ce, rel=1e-5)
    with pytest.raises(ValueError, match="expression_loss_weight must be >= 0"):
        make_config("affectnet8", objective="valence_arousal", expression_loss_weight=-1.0)


def test_estimate_only_and_refusals(affectnet_root, tmp_path, capsys, monkeypatch):
    from cage.cli import main

    out = tmp_path / "estimate"
    from accelerate.state import AcceleratorState, GradientState

    try:
        assert main(["reproduce", "affectnet", str(affectnet_root), "--out", str(out), *OPTIONS, "--estimate-only"]) == 0
    finally:
        AcceleratorState._reset_state(reset_partial_state=True)
        GradientState._reset_state()
    printed = capsys.readouterr().out
    assert "ESTIMATE (not a measurement of the run)" in printed and "stage2: 4 optimizer steps" in printed
    record = _record(out)
    assert record["estimate"]["sizes_from"].startswith("published dataset size") and record["stages"] == {}
    assert not (out / "data").exists()  # nothing prepared or trained
    # Refused before anything is written: an offline push, missing trunk weights, a missing dataset folder.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for extra, message in (
        (["--push"], "--push needs the network but HF_HUB_OFFLINE=1 is set"),
        (["--backbone-weights", str(tmp_path / "missing.safetensors")], "missing.safetensors does not exist"),
    ):
        argv = ["reproduce", "affectnet", str(affectnet_root), "--out", str(tmp_path / "refused"), *OPTIONS, *extra]
        if extra[0] == "--backbone-weights":
            argv.remove("--random-init")
        assert main(argv) == 2
        assert message in capsys.readouterr().err
    assert main(["reproduce", "affectnet", str(tmp_path / "nowhere"), "--out", str(tmp_path / "refused"), *OPTIONS]) == 2
    assert "nowhere is not a folder (the affectnet copy)" in capsys.readouterr().err
    assert not (tmp_path / "refused").exists()
