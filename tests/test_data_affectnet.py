"""`cage prepare affectnet`: the three on-disk layouts, exact labels and crops back, splits, faults, weights."""

from __future__ import annotations

import json

import datasets
import numpy as np
import pytest
from data_fixtures import (
    affectnet_labels,
    write_affectnet_cropped,
    write_affectnet_flat,
    write_affectnet_release2017,
)

from cage.configuration_cage import AFFECTNET7_LABELS, AFFECTNET8_LABELS, affectnet_label_set
from cage.data import (
    PrepareError,
    class_weights_from_counts,
    detect_affectnet_layout,
    load_stats,
    prepare_affectnet,
    read_report,
)

TRAIN = affectnet_labels(per_class=4)  # 32 rows, 4 per class
TEST = affectnet_labels(per_class=1, offset=100)  # 8 rows, 1 per class

# Published AffectNet training counts (manually annotated) and the paper's class-weight table.
PUBLISHED_COUNTS = [74874, 134415, 25459, 14090, 6378, 3803, 24882, 3750]
PAPER_WEIGHTS_8 = [0.015605, 0.008709, 0.046078, 0.083078, 0.185434, 0.305953, 0.046934, 0.308210]
PAPER_WEIGHTS_7 = [0.022600, 0.012589, 0.066464, 0.120094, 0.265305, 0.444943, 0.068006]


def assert_pixels(image, want, tolerance=0.0):
    """Exact pixels (lossless storage), or within ``tolerance`` mean absolute error (JPEG quality 95)."""
    got = np.asarray(image)
    if tolerance == 0.0:
        np.testing.assert_array_equal(got, want)
    else:
        assert got.shape == want.shape
        assert np.abs(got.astype(float) - want).mean() <= tolerance


def check_prepared(out_dir, expected, *, classes=8, val_fraction=0.25, tolerance=0.0):
    """Every written example comes back once, in the right split, with exact labels and pixels."""
    loaded = datasets.load_from_disk(str(out_dir))
    assert set(loaded) == {"train", "validation", "test"}
    names = list(affectnet_label_set(classes).labels)
    features = loaded["train"].features
    assert features["label"].names == names
    assert features["valence"].dtype == features["arousal"].dtype == "float32"
    assert isinstance(features["image"], datasets.Image)
    seen = {}
    for split_name, split in loaded.items():
        for row in split:
            source_id = row["source_id"]
            assert source_id not in seen, f"{source_id} twice"
            seen[source_id] = split_name
            want = expected[source_id]
            assert want["split"] == ("test" if split_name == "test" else "train")
            assert row["label"] == want["label"]
            assert row["valence"] == np.float32(want["valence"])
            assert row["arousal"] == np.float32(want["arousal"])
            assert row["image"].mode == "RGB"
            assert_pixels(row["image"], want["pixels"], tolerance)
    assert set(seen) == set(expected)
    n_train = sum(1 for want in expected.values() if want["split"] == "train")
    n_val = int(np.ceil(val_fraction * n_train))
    assert len(loaded["validation"]) == n_val
    assert len(loaded["train"]) == n_train - n_val
    assert len(loaded["test"]) == sum(1 for want in expected.values() if want["split"] == "test")
    return loaded


def test_release2017_crops_face_boxes_and_reads_labels(tmp_path):
    root = tmp_path / "affectnet"
    expected = write_affectnet_release2017(root, TRAIN, TEST)
    assert detect_affectnet_layout(root) == "release2017"
    _, stats, problems = prepare_affectnet(root, tmp_path / "out", val_fraction=0.25, seed=3, crop_format="png")
    assert problems.problems == []
    loaded = check_prepared(tmp_path / "out", expected)
    assert loaded["train"][0]["image"].format == "PNG"
    # stratified hold-out: one example of each class (8 of 32)
    assert sorted(loaded["validation"]["label"]) == list(range(8))
    assert stats["class_counts"]["train"] == {name: 3 for name in AFFECTNET8_LABELS}
    assert stats["class_counts"]["test"] == {name: 1 for name in AFFECTNET8_LABELS}
    assert stats["class_weights"] == pytest.approx([1 / 8] * 8)
    assert load_stats(loaded) == stats == load_stats(tmp_path / "out")


def test_cropped_release_with_string_npy_values(tmp_path):
    root = tmp_path / "affectnet"
    expected = write_affectnet_cropped(root, TRAIN, TEST)
    assert detect_affectnet_layout(root) == "cropped"
    _, stats, problems = prepare_affectnet(root, tmp_path / "out", val_fraction=0.25)
    assert problems.problems == []
    loaded = check_prepared(tmp_path / "out", expected)
    assert stats["layout"] == "cropped"
    formats = {row["source_id"]: row["image"].format for split in loaded.values() for row in split}
    assert formats.pop("train_set/35") == "PNG"  # the grayscale JPEG, made RGB losslessly
    assert set(formats.values()) == {"JPEG"}
    raw = loaded["test"].cast_column("image", datasets.Image(decode=False))
    for row in raw:  # the others keep their original bytes
        assert (
            row["image"]["bytes"]
            == (root / "val_set" / "images" / f"{row['source_id'].split('/')[1]}.jpg").read_bytes()
        )


def test_flat_csv_layout_with_two_processes(tmp_path):
    root = tmp_path / "affectnet"
    expected = write_affectnet_flat(root, TRAIN, TEST)
    assert detect_affectnet_layout(root) == "flat-csv"
    prepare_affectnet(root, tmp_path / "out", val_fraction=0.25, num_proc=2)
    check_prepared(tmp_path / "out", expected)


def test_affectnet7_leaves_out_contempt_and_counts_it(tmp_path):
    root = tmp_path / "affectnet"
    expected = write_affectnet_cropped(root, TRAIN, TEST)
    _, stats, problems = prepare_affectnet(root, tmp_path / "out", classes=7, val_fraction=0.25)
    contempt = {k for k, v in expected.items() if v["label"] == 7}
    assert {p.source_id for p in problems.problems} == contempt
    assert {p.kind for p in problems.problems} == {"excluded_class"}
    kept = {k: v for k, v in expected.items() if v["label"] != 7}
    check_prepared(tmp_path / "out", kept, classes=7)
    assert stats["label_names"] == list(AFFECTNET7_LABELS)


def test_split_is_seeded(tmp_path):
    root = tmp_path / "affectnet"
    write_affectnet_flat(root, TRAIN, TEST)
    runs = [
        prepare_affectnet(root, tmp_path / f"out{i}", val_fraction=0.25, seed=s)[0] for i, s in enumerate((1, 1, 2))
    ]
    ids = [sorted(run["validation"]["source_id"]) for run in runs]
    assert ids[0] == ids[1] != ids[2]


def test_planted_faults_are_reported_by_file_and_kind(tmp_path, capsys):
    from cage.cli import main

    root = tmp_path / "affectnet"
    expected = write_affectnet_release2017(root, TRAIN, TEST, faults=True)
    out = tmp_path / "out"
    assert main(["prepare", "affectnet", str(root), "--out", str(out), "--val-fraction", "0.25"]) == 0
    check_prepared(out, expected, tolerance=2.0)  # default: crops stored as JPEG quality 95
    report = read_report(out / "cage_report.jsonl")
    images = root / "Manually_Annotated_Images"
    training_csv = str(root / "Manually_Annotated_file_lists" / "training.csv")
    found = {(r["file"], r["kind"], r["action"]) for r in report}
    assert found == {
        (str(images / "9/missing.jpg"), "missing_image", "dropped"),
        (str(images / "9/corrupt.jpg"), "unreadable_image", "dropped"),
        (training_csv, "label_out_of_range", "dropped"),  # expression 9 (Uncertain)
        (str(images / "9/box_outside.jpg"), "box_outside_image", "clamped"),
    }
    by_id = {r["source_id"]: r for r in report}
    assert "expression 9 (Uncertain)" in by_id["9/uncertain.jpg"]["detail"]
    assert "valence is -2" in by_id["9/no_valence.jpg"]["detail"]
    assert by_id["9/no_valence.jpg"]["kind"] == "label_out_of_range"
    stats = json.loads((out / "cage_stats.json").read_text())
    assert stats["problems"]["counts"] == {
        "missing_image": 1, "unreadable_image": 1, "label_out_of_range": 2, "box_outside_image": 1,
    }  # fmt: skip
    assert stats["problems"]["dropped_examples"] == 4
    err = capsys.readouterr().err
    assert "missing_image: 1" in err and "cage_report.jsonl" in err


def test_class_weights_reproduce_the_paper():
    weights7 = class_weights_from_counts(PUBLISHED_COUNTS[:7])
    for got, want in zip(weights7, PAPER_WEIGHTS_7):
        assert f"{got:.4g}" == f"{want:.4g}"
    weights8 = class_weights_from_counts(PUBLISHED_COUNTS)
    for got, want in zip(weights8, PAPER_WEIGHTS_8):
        assert abs(got - want) / want < 0.015
    assert sum(weights8) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="#2"):
        class_weights_from_counts([3, 1, 0])


def test_layout_errors_are_clear(tmp_path):
    with pytest.raises(PrepareError, match="holds no AffectNet layout"):
        detect_affectnet_layout(tmp_path)
    root = tmp_path / "both"
    write_affectnet_cropped(root, TRAIN[:8], TEST)
    write_affectnet_flat(root / "x", TRAIN[:8], TEST)
    (root / "x" / "train_set_annotation_without_lnd.csv").rename(root / "train_set_annotation_without_lnd.csv")
    with pytest.raises(PrepareError, match="several AffectNet layouts"):
        detect_affectnet_layout(root)
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "file").write_text("x")
    with pytest.raises(PrepareError, match="not empty"):
        prepare_affectnet(root, tmp_path / "busy", layout="cropped")
    with pytest.raises(PrepareError, match="not written by cage prepare"):
        prepare_affectnet(root, tmp_path / "busy", layout="cropped", overwrite=True)
    for out in (root, tmp_path):  # never write over (or, with overwrite, delete) the source
        with pytest.raises(PrepareError, match="would contain the source"):
            prepare_affectnet(root, out, layout="cropped", overwrite=True)
    assert (tmp_path / "busy" / "file").is_file() and (root / "train_set").is_dir()


def test_a_split_whose_every_image_is_broken_fails_clearly(tmp_path):
    root = tmp_path / "affectnet"
    write_affectnet_cropped(root, TRAIN, TEST)
    for image in (root / "train_set" / "images").iterdir():
        image.write_bytes(b"not a jpeg")
    with pytest.raises(PrepareError, match="cannot hold out"):
        prepare_affectnet(root, tmp_path / "out", val_fraction=0.25)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("raw", "classes", "want"),
    [
        (("3", "0.25", "-0.5"), 8, (3, 0.25, -0.5, "")),
        ((np.array("7"), np.array("1"), np.array("-1.0")), 8, (7, 1.0, -1.0, "")),
        ((7, 0.1, 0.1), 7, (None, "excluded_class")),
        ((10, -2, -2), 8, (None, "label_out_of_range")),
        ((3.5, 0.1, 0.1), 8, (None, "label_out_of_range")),
        (("inf", 0.1, 0.1), 8, (None, "label_out_of_range")),
        ((1, 1.5, 0.1), 8, (None, "label_out_of_range")),
        ((1, 0.1, "nan"), 8, (None, "nan_label")),
        (("happy", 0.1, 0.1), 8, (None, "bad_annotation")),
    ],
)
def test_check_affectnet_labels(raw, classes, want):
    from cage.data import check_affectnet_labels

    label, valence, arousal, kind, _ = check_affectnet_labels(*raw, classes)
    if want[0] is None:
        assert (label, kind) == want
    else:
        assert (label, valence, arousal, kind) == want
