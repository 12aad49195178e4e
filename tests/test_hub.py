"""``cage push``: the staged folder, its model card, loading it through the Hub client, and Hub errors.

The round trip stages the dry-run folder into a Hugging Face cache laid out as a download of
``cage/maxvit-va`` would leave it, then loads ``"cage/maxvit-va"`` by repo id (offline) in a process that
cannot import ``cage``: the same client code path as a user's ``from_pretrained``, minus the HTTP transfer.
"""

from __future__ import annotations

import http.server
import json
import shutil
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from huggingface_hub import ModelCard, ModelCardData
from safetensors.numpy import load_file

from cage.cli import main
from cage.hub import HubPushError, push_model_folder, stage_model_folder
from conftest import BLOCK_CAGE_IMPORTS, TINY_BACKBONE, TINY_SIZE, face_crops, face_photo

REPO_ID = "cage/maxvit-va"
# A metrics JSON in the layout `cage evaluate` writes; distinct values so that each can be found in the card.
METRICS = {
    "split": "validation",
    "num_examples": 3999,
    "expression": {
        "accuracy": 0.1311, "macro_precision": 0.1312, "macro_recall": 0.1313, "macro_f1": 0.1314,
        "weighted_precision": 0.1315, "weighted_recall": 0.1316, "weighted_f1": 0.1317,
        "labels": ["Neutral", "Happy", "Sad", "Surprise", "Fear", "Disgust", "Anger", "Contempt"],
        "confusion_matrix": [[500 - 7 * i if j == i else i + j for j in range(8)] for i in range(8)],
    },
    "valence": {"rmse": 0.5521, "mae": 0.4522, "pcc": 0.0523, "ccc": 0.0124, "sagr": 0.5125},
    "arousal": {"rmse": 0.5531, "mae": 0.4532, "pcc": -0.0533, "ccc": -0.0134, "sagr": 0.5135},
    "pooled_valence_arousal": {"rmse": 0.5541, "mse": 0.3070, "mae": 0.4543, "ccc": 0.0144},
}  # fmt: skip


def _numeric_metrics(metrics: dict) -> dict[tuple[str, str], float]:
    return {
        (section, name): value
        for section, values in metrics.items() if isinstance(values, dict)
        for name, value in values.items() if isinstance(value, (int, float))
    }  # fmt: skip


@pytest.fixture(scope="module")
def metrics_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("metrics") / "metrics.json"
    path.write_text(json.dumps(METRICS))
    return path


@pytest.fixture(scope="module")
def staged(tmp_path_factory, tiny_model_dir, metrics_file) -> Path:
    stage = tmp_path_factory.mktemp("push") / "stage"
    code = main(["push", str(tiny_model_dir), "--repo-id", REPO_ID, "--dry-run", str(stage), "--metrics", str(metrics_file)])
    assert code == 0
    return stage


def test_dry_run_writes_exactly_the_upload(staged, tiny_model_dir):
    files = {p.name for p in staged.iterdir()}
    model_files = {p.name for p in Path(tiny_model_dir).iterdir()}
    assert files == model_files | {"README.md", "metrics.json"}
    assert {"model.safetensors", "config.json", "preprocessor_config.json", "modeling_cage.py"} <= files
    assert not [f for f in files if f.endswith((".bin", ".pt", ".pth", ".pkl", ".ckpt"))]
    for name in model_files:  # byte-for-byte copies: what was tested locally is what gets uploaded
        assert (staged / name).read_bytes() == (Path(tiny_model_dir) / name).read_bytes(), name
    assert json.loads((staged / "metrics.json").read_text()) == METRICS


def test_card_metadata_parses_and_holds_every_metric(staged):
    card = ModelCard.load(staged / "README.md", ignore_metadata_errors=False)
    data = card.data
    assert data.library_name == "transformers" and data.pipeline_tag == "image-classification"
    assert data.license == "apache-2.0" and data.base_model is None and data.datasets is None  # untrained
    assert {"cage", "untrained", "affectnet", "custom_code"} <= set(data.tags)
    # model-index: one entry per number of the metrics JSON, with its value and split.
    reported = {(r.metric_type, r.dataset_split): r.metric_value for r in data.eval_results}
    expected = {
        (name if section == "expression" else f"{section}_{name}", "validation"): value
        for (section, name), value in _numeric_metrics(METRICS).items()
        if name != "confusion_matrix"
    }
    assert reported == expected and len(data.eval_results) == 21
    assert {r.dataset_name for r in data.eval_results} == {"AffectNet-8"}
    # The metadata survives a round trip through huggingface_hub's own validation of card data.
    again = ModelCardData(**data.to_dict())
    assert {(r.metric_type, r.metric_value) for r in again.eval_results} == {(r.metric_type, r.metric_value) for r in data.eval_results}


def test_card_text(staged, tiny_model_dir):
    text = ModelCard.load(staged / "README.md").text
    assert text.lstrip().startswith("# maxvit-va")
    assert text.index("This model is untrained") < text.index("## Outputs")  # the warning comes first
    config = json.loads((Path(tiny_model_dir) / "config.json").read_text())
    rows = [f"| {i} | {config['id2label'][str(i)]} |" for i in range(8)]
    positions = [text.index(row) for row in rows]
    assert positions == sorted(positions)  # label order = id2label order
    for (section, name), value in _numeric_metrics(METRICS).items():
        assert f"| {value:.4f} |" in text, (section, name)
    assert "| Pooled valence+arousal RMSE | 0.5541 | 0.3701 | 0.3196 |" in text  # ours beside the paper's
    assert "| Valence CCC | 0.0124 | 0.7160 | 0.7100 |" in text  # per dimension vs the paper's comparison
    assert "| Neutral | 500 | 1 | 2 |" in text  # the confusion matrix
    for section in ("## How to use", "## Training", "## Evaluation", "## Limitations and bias", "## Citation"):
        assert section in text
    assert f'pipeline(model="{REPO_ID}", trust_remote_code=True)' in text and "@inproceedings{wagner2024cage" in text


def test_card_of_a_valence_arousal_only_model(tmp_path):
    from cage.model_folder import save_model_folder
    from cage.modeling_cage import CageForExpressionInference
    from cage.presets import make_config, make_image_processor
    from cage.hub.card import render_model_card

    config = make_config("affectnet7", objective="valence_arousal", backbone=TINY_BACKBONE, image_size=TINY_SIZE,
                         id2label={}, training_recipe={"dataset": "AffectNet-7", "epochs": 7})  # fmt: skip
    folder = save_model_folder(CageForExpressionInference(config), make_image_processor(config), tmp_path / "va")
    metrics = {"split": "test", "num_examples": 10, "valence": {"rmse": 0.25}, "arousal": {"rmse": 0.35},
               "pooled_valence_arousal": {"rmse": 0.3, "ccc": 0.5}}  # fmt: skip
    card = render_model_card(folder, "someone/va", metrics)
    assert "predicts no expression classes" in card.text and "| epochs | 7 |" in card.text
    assert {r.metric_type for r in card.data.eval_results} == {"valence_rmse", "arousal_rmse", "pooled_valence_arousal_rmse", "pooled_valence_arousal_ccc"}
    assert "| Pooled valence+arousal CCC | 0.5000 | 0.8196 | 0.7640 |" in card.text  # AffectNet-7: VA row first


REMOTE_SCRIPT = BLOCK_CAGE_IMPORTS + textwrap.dedent(
    """
    import sys

    import torch
    from PIL import Image
    from safetensors.numpy import save_file
    import json
    from transformers import AutoImageProcessor, AutoModel, pipeline

    repo, crops_dir, out, count, photo = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
    model = AutoModel.from_pretrained(repo, trust_remote_code=True).eval()
    processor = AutoImageProcessor.from_pretrained(repo, trust_remote_code=True)
    assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
    faces = pipeline(model=repo, trust_remote_code=True, device="cpu")(photo)
    open(out + ".json", "w").write(json.dumps(faces))
    crops = [Image.open(f"{crops_dir}/{i}.png") for i in range(count)]
    with torch.no_grad():
        output = model(**processor(crops, return_tensors="pt"))
    save_file({"logits": output.logits.contiguous().numpy(), "regression": output.regression.contiguous().numpy()}, out)
    """
)


def _as_hub_download(stage: Path, cache: Path, repo_id: str) -> None:
    """Lay ``stage`` out in ``cache`` as huggingface_hub leaves a downloaded snapshot (refs/main -> commit)."""
    commit = "0" * 40
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    shutil.copytree(stage, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)


def test_staged_repo_loads_by_repo_id_without_cage(staged, tiny_model_dir, tmp_path):
    from transformers import AutoImageProcessor, AutoModel

    import cage  # noqa: F401

    model = AutoModel.from_pretrained(tiny_model_dir).eval()
    processor = AutoImageProcessor.from_pretrained(tiny_model_dir)
    crops = face_crops(processor, ["obama.jpg", "two_people.jpg"])
    for i, crop in enumerate(crops):
        crop.save(tmp_path / f"{i}.png")  # lossless: both processes see the same pixels
    with torch.no_grad():
        original = model(**processor(crops, return_tensors="pt"))

    _as_hub_download(staged, tmp_path / "hub", REPO_ID)
    env = {"HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "hub"), "HF_HOME": str(tmp_path / "home"),
           "HF_MODULES_CACHE": str(tmp_path / "modules"), "PATH": "/usr/bin:/bin"}  # fmt: skip
    out = tmp_path / "remote.safetensors"
    completed = subprocess.run(
        [sys.executable, "-c", REMOTE_SCRIPT, REPO_ID, str(tmp_path), str(out), str(len(crops)),
         str(face_photo("two_people.jpg"))],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr[-3000:]
    remote = load_file(str(out))
    np.testing.assert_allclose(remote["logits"], original.logits.numpy(), rtol=0, atol=1e-5)
    np.testing.assert_allclose(remote["regression"], original.regression.numpy(), rtol=0, atol=1e-5)
    assert not np.allclose(remote["logits"][0], remote["logits"][1])  # different faces, different outputs
    # The transformers pipeline, loaded by repo id as remote code, gives the records of `cage predict`.
    from cage import ExpressionAnalyzer

    piped = json.loads(Path(str(out) + ".json").read_text())
    expected = ExpressionAnalyzer.from_pretrained(tiny_model_dir).predict(face_photo("two_people.jpg"))
    assert len(piped) == len(expected) == 2
    for got, want in zip(piped, expected):
        assert got["box"] == want["box"] and got["expression"] == want["expression"]
        assert got["valence"] == pytest.approx(want["valence"], abs=1e-5)
        assert got["arousal"] == pytest.approx(want["arousal"], abs=1e-5)


def test_offline_push_fails_fast_and_writes_nothing(tiny_model_dir, tmp_path, monkeypatch, capsys):
    import tempfile

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    before = sorted(p.name for p in Path(tiny_model_dir).iterdir())
    assert main(["push", str(tiny_model_dir), "--repo-id", REPO_ID]) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == ["cage push: HF_HUB_OFFLINE=1 is set: pushing needs the network (unset it, or use --dry-run DIR)"]
    assert not list((tmp_path / "tmp").iterdir())
    assert sorted(p.name for p in Path(tiny_model_dir).iterdir()) == before


class _HubStub(http.server.BaseHTTPRequestHandler):
    """Answers every request with 401, as the Hub does for an invalid token."""

    def do_GET(self):  # noqa: N802
        body = json.dumps({"error": "Invalid credentials in Authorization header"}).encode()
        self.send_response(401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_POST = do_GET

    def log_message(self, *args):
        pass


@pytest.fixture
def online(monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    return constants


def test_hub_errors_are_one_clear_line(tiny_model_dir, online, monkeypatch):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _HubStub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setattr(online, "ENDPOINT", f"http://127.0.0.1:{server.server_port}")
        with pytest.raises(HubPushError) as rejected:
            push_model_folder(tiny_model_dir, REPO_ID, token="hf_invalid")
    finally:
        server.shutdown()
        server.server_close()
    assert str(rejected.value).startswith("the Hub rejected your token (401)")
    # Nothing listens there any more: a network error.
    with pytest.raises(HubPushError, match=r"^cannot reach the Hub at http://127\.0\.0\.1:\d+: ") as unreachable:
        push_model_folder(tiny_model_dir, REPO_ID, token="hf_invalid")
    for error in (rejected.value, unreachable.value):
        assert "\n" not in str(error)


def test_bad_inputs_are_refused(tiny_model_dir, tmp_path, metrics_file):
    with pytest.raises(HubPushError, match="invalid --repo-id"):
        stage_model_folder(tiny_model_dir, tmp_path / "a", "no spaces allowed")
    pickled = tmp_path / "pickled"
    shutil.copytree(tiny_model_dir, pickled)
    torch.save({"w": torch.zeros(1)}, pickled / "pytorch_model.bin")
    with pytest.raises(HubPushError, match=r"pickle files \(pytorch_model.bin\)"):
        stage_model_folder(pickled, tmp_path / "b", REPO_ID)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(HubPushError, match="not an empty folder"):
        stage_model_folder(tiny_model_dir, tmp_path / "full", REPO_ID)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({**METRICS, "valence": {"rmse": "low"}}))
    with pytest.raises(HubPushError, match=r"bad.json: 'valence.rmse' must be a number"):
        stage_model_folder(tiny_model_dir, tmp_path / "c", REPO_ID, metrics=bad)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists() and not (tmp_path / "c").exists()
