"""The trained model inside the package (issue 21): safe to load, trained, gray 48 px faces, derived
valence/arousal said everywhere, its stated FER2013Valid accuracy re-measured on the fixed 500-face slice, and
Happy for the smiling shared photos through the whole photo path with no --model."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import REPO_ROOT, face_photo, ferplus_dir

from cage.model_folder import BUNDLED_MODEL_DIR, BUNDLED_MODEL_NAME, default_model

YUNET_FILE = REPO_ROOT.parent / "shared" / "detectors" / "yunet_s_640_640.onnx"


@pytest.fixture(scope="module")
def evaluation() -> dict:
    return json.loads((BUNDLED_MODEL_DIR / "evaluation.json").read_text(encoding="utf-8"))


def test_the_bundled_folder_is_safe_trained_and_small():
    files = sorted(path.name for path in BUNDLED_MODEL_DIR.iterdir())
    assert files == ["README.md", "config.json", "evaluation.json", "model.safetensors", "preprocessor_config.json"]
    assert (BUNDLED_MODEL_DIR / "model.safetensors").stat().st_size <= 25_000_000
    config = json.loads((BUNDLED_MODEL_DIR / "config.json").read_text())
    assert config["weights_status"] == "trained" and config["model_type"] == "cage"
    assert "auto_map" not in config and "custom_pipelines" not in config  # the package's own classes load it
    assert config["regression_source"] == "derived" and "DERIVED" in config["regression_note"]
    assert config["training_recipe"]["data"]["dataset"] == "ferplus"
    assert [config["id2label"][str(i)] for i in range(8)] == [
        "Neutral", "Happy", "Sad", "Surprise", "Fear", "Disgust", "Anger", "Contempt"]  # fmt: skip
    processor = json.loads((BUNDLED_MODEL_DIR / "preprocessor_config.json").read_text())
    assert processor["grayscale"] is True and processor["source_resolution"] == 48
    assert processor["framing"]["detector"] == "yunet" and set(processor["framings"]) == {"dlib"}
    assert default_model() == str(BUNDLED_MODEL_DIR) and default_model("other") == "other"


def test_the_card_says_what_how_and_how_well(evaluation):
    card = (BUNDLED_MODEL_DIR / "README.md").read_text(encoding="utf-8")
    accuracy = evaluation["validation"]["expression"]["accuracy"]
    assert accuracy >= 0.80  # the bar, on FER2013Valid under the FER+ protocol
    assert evaluation["validation"]["expression"]["num_examples"] == 3191  # the protocol's majority faces
    assert f"{100 * accuracy:.2f} %" in card
    assert f"{100 * evaluation['check_slice']['metrics']['expression']['accuracy']:.2f} %" in card
    assert "cage prepare ferplus ../shared/datasets/ferplus --out data/ferplus" in card
    assert "cage train --data data/ferplus --output-dir runs/my-ferplus-model --backbone resnet10t" in card
    assert "DERIVED targets, not human ratings" in card and "FER2013" in card
    assert "weights_status" not in card or "untrained" not in card.split("## Training")[0]


def test_stated_accuracy_holds_on_the_fixed_500_face_slice(evaluation, tmp_path):
    """Re-measured here: the first 500 rows of FER2013Valid/label.csv, prepared and evaluated as a user would."""
    from cage.data.ferplus import copy_ferplus_subset, prepare_ferplus
    from cage.evaluation.runner import evaluate_model

    stated = evaluation["check_slice"]
    assert stated["count"] == 500
    root = copy_ferplus_subset(ferplus_dir(), tmp_path / "FERPlus", {"FER2013Train": 32, "FER2013Valid": 500})
    prepare_ferplus(root, tmp_path / "data", calibrate=False)
    metrics = evaluate_model(None, tmp_path / "data", split="validation")  # None: the bundled model
    expression = metrics["expression"]
    assert expression["num_examples"] == stated["metrics"]["expression"]["num_examples"]
    assert expression["accuracy"] == pytest.approx(stated["metrics"]["expression"]["accuracy"], abs=0.02)
    assert expression["accuracy"] == pytest.approx(evaluation["validation"]["expression"]["accuracy"], abs=0.03)


@pytest.mark.parametrize("detector", ["yunet", "dlib"])
def test_smiling_photos_are_happy_through_the_photo_path_without_model(detector, cli):
    args = []
    if detector == "yunet":
        if not YUNET_FILE.is_file():
            pytest.skip(f"YuNet's model file {YUNET_FILE} is absent (tests expect ../shared/detectors)")
        args = ["--detector-model", str(YUNET_FILE)]
    photos = [str(face_photo(name)) for name in ("obama.jpg", "obama_small.jpg")]
    code, out, err = cli("predict", *photos, "--detector", detector, "--format", "jsonl", *args)
    assert code == 0, err
    records = [json.loads(line) for line in out.splitlines()]
    assert [len(r["faces"]) for r in records] == [1, 1]
    for record in records:
        face = record["faces"][0]
        assert face["expression"] == "Happy", (record["file"], face["probabilities"])
        assert face["probabilities"]["Happy"] > 0.5
        assert face["valence"] > 0.3  # derived: Happy's AffectNet centroid is strongly positive
    assert "untrained" not in err and "DERIVED" in err


def test_cage_predict_without_model_in_a_fresh_process_prints_a_trained_prediction(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "HF_HUB_OFFLINE": "1", "CAGE_CACHE": str(tmp_path / "c")}
    done = subprocess.run([sys.executable, "-m", "cage", "predict", str(face_photo("obama.jpg")), "--format", "json"],
                          capture_output=True, text=True, env=env, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr
    (record,) = json.loads(done.stdout)
    assert record["faces"][0]["expression"] == "Happy"
    assert BUNDLED_MODEL_NAME in done.stderr and "untrained" not in done.stderr


def test_the_space_runs_the_bundled_model_by_default_and_says_its_valence_is_derived(monkeypatch):
    pytest.importorskip("gradio")
    from conftest import load_space_app

    monkeypatch.delenv("CAGE_MODEL", raising=False)
    app = load_space_app()
    state = app.load_model()
    assert state.error is None and state.name == str(BUNDLED_MODEL_DIR)
    assert f"{BUNDLED_MODEL_NAME} (bundled with cage)" in state.banner
    assert "DERIVED" in state.banner and "not trained" not in state.banner
    record = app.predict_records(state, str(face_photo("obama.jpg")))  # what the Space's /predict returns
    (face,) = record["faces"]
    assert face["expression"] == "Happy" and face["valence"] > 0.3
