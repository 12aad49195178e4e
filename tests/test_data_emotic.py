"""`cage prepare emotic`: the .mat (written with scipy.io.savemat) and CSV layouts, exact labels and crops."""

from __future__ import annotations

import datasets
import numpy as np
import pytest
from data_fixtures import EMOTIC_IMAGE_SIZE, write_emotic_csv, write_emotic_mat
from test_data_affectnet import assert_pixels

from cage.configuration_cage import EMOTIC_LABELS
from cage.data import (
    detect_emotic_layout,
    load_stats,
    pos_weights_from_counts,
    prepare_emotic,
    read_report,
    scale_emotic,
)


def check_prepared(out_dir, expected, tolerance=0.0):
    loaded = datasets.load_from_disk(str(out_dir))
    assert set(loaded) == {"train", "validation", "test"}
    features = loaded["train"].features
    assert features["labels"].length == 26 and features["labels"].feature.dtype == "float32"
    for name in ("valence", "arousal", "dominance", "valence_raw", "arousal_raw", "dominance_raw"):
        assert features[name].dtype == "float32"
    seen = set()
    for split_name, split in loaded.items():
        for row in split:
            image_id, person = row["source_id"].split("#person")
            key = (image_id, int(person))
            assert key not in seen
            seen.add(key)
            want = expected[key]
            assert want["split"] == split_name
            assert row["labels"] == want["labels"]
            for name, raw in zip(("valence", "arousal", "dominance"), want["raw"]):
                assert row[f"{name}_raw"] == np.float32(raw)
                assert row[name] == np.float32((raw - 5.5) / 4.5)
                assert -1.0 <= row[name] <= 1.0
            assert_pixels(row["image"], want["pixels"], tolerance)
    assert seen == set(expected)
    return loaded


def test_mat_layout(tmp_path):
    root = tmp_path / "emotic"
    expected = write_emotic_mat(root)
    assert detect_emotic_layout(root) == "mat"
    loaded, stats, problems = prepare_emotic(root, tmp_path / "out", crop_format="png")
    assert problems.problems == []
    check_prepared(tmp_path / "out", expected)
    assert {name: len(split) for name, split in loaded.items()} == {"train": 5, "validation": 3, "test": 3}
    train_counts = [0] * 26
    for want in expected.values():
        if want["split"] == "train":
            train_counts = [c + int(v) for c, v in zip(train_counts, want["labels"])]
    assert list(stats["category_counts"]["train"].values()) == train_counts
    assert stats["pos_weight"] == pytest.approx(pos_weights_from_counts(train_counts, 5))
    assert load_stats(loaded)["pos_weight"] == stats["pos_weight"]


def test_csv_layout(tmp_path):
    root = tmp_path / "emotic"
    expected = write_emotic_csv(root)
    assert detect_emotic_layout(root) == "csv"
    _, _, problems = prepare_emotic(root, tmp_path / "out", crop_format="png")
    assert problems.problems == []
    check_prepared(tmp_path / "out", expected)


@pytest.mark.parametrize("writer", [write_emotic_mat, write_emotic_csv], ids=["mat", "csv"])
def test_planted_faults_are_reported(tmp_path, writer):
    root = tmp_path / "emotic"
    expected = writer(root, faults=True)
    _, stats, _ = prepare_emotic(root, tmp_path / "out", crop_format="png")
    check_prepared(tmp_path / "out", expected)  # the clamped person is kept, with the clamped crop
    report = read_report(tmp_path / "out" / "cage_report.jsonl")
    annotation = str(
        root / "Annotations" / "Annotations.mat" if writer is write_emotic_mat else root / "emotic_pre" / "train.csv"
    )
    found = {(r["file"], r["kind"], r["action"]) for r in report}
    assert found == {
        (str(root / "emotic/framesdb/images/img_001.jpg"), "box_outside_image", "clamped"),
        (annotation, "nan_label", "dropped"),
        (str(root / "emotic/ade20k/images/missing.jpg"), "missing_image", "dropped"),
        (str(root / "emotic/framesdb/images/img_003.jpg"), "empty_box", "dropped"),
    }
    nan = next(r for r in report if r["kind"] == "nan_label")
    assert "dominance is NaN" in nan["detail"]
    clamped = next(r for r in report if r["kind"] == "box_outside_image")
    assert f"{EMOTIC_IMAGE_SIZE[0]}x{EMOTIC_IMAGE_SIZE[1]}" in clamped["detail"]
    assert "(50, 10, 80, 60)" in clamped["detail"]
    assert stats["problems"]["dropped_examples"] == 3


def test_scaling_and_pos_weights():
    assert [scale_emotic(x) for x in (1, 5.5, 10)] == [-1.0, 0.0, 1.0]
    assert pos_weights_from_counts([1, 4, 0], 4) == [3.0, 0.0, 1.0]
    assert len(EMOTIC_LABELS) == 26


def test_cli_prepare_emotic_and_push_private_by_default(tmp_path, monkeypatch, capsys):
    from huggingface_hub import HfApi

    from cage.cli import main

    pushed, uploaded = [], []
    monkeypatch.setattr(datasets.DatasetDict, "push_to_hub", lambda self, repo, **kw: pushed.append((repo, kw)))
    monkeypatch.setattr(HfApi, "upload_file", lambda self, **kw: uploaded.append(kw))
    root = tmp_path / "emotic"
    expected = write_emotic_mat(root)
    out = tmp_path / "out"
    assert main(["prepare", "emotic", str(root), "--out", str(out), "--push-to-hub", "me/emotic-prepared"]) == 0
    check_prepared(out, expected, tolerance=2.0)  # default: crops stored as JPEG quality 95
    assert datasets.load_from_disk(str(out))["train"][0]["image"].format == "JPEG"
    assert pushed == [("me/emotic-prepared", {"private": True})]
    assert uploaded[0]["path_in_repo"] == "cage_stats.json" and uploaded[0]["repo_type"] == "dataset"
    assert "problems: none" in capsys.readouterr().err
    # a second run refuses to overwrite unless asked
    assert main(["prepare", "emotic", str(root), "--out", str(out)]) == 2
    assert "not empty" in capsys.readouterr().err
    assert main(["prepare", "emotic", str(root), "--out", str(out), "--overwrite", "--crop-format", "png"]) == 0
    check_prepared(out, expected)


def test_cli_prepare_reports_a_bad_root(tmp_path, capsys):
    from cage.cli import main

    assert main(["prepare", "emotic", str(tmp_path), "--out", str(tmp_path / "out")]) == 2
    assert "holds no EMOTIC layout" in capsys.readouterr().err
