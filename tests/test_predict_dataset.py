"""``cage predict --dataset``: prediction columns added to every row, original columns and row order kept,
undecodable rows kept with an error."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from cage.cli import main

datasets = pytest.importorskip("datasets")

N_ROWS, BAD_ROW = 13, 5


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # conftest: one intra-op thread


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def crops(faces_dir) -> list[Image.Image]:
    photos = [Image.open(faces_dir / n).convert("RGB") for n in ("obama.jpg", "biden.jpg", "two_people.jpg")]
    out = []
    for k in range(N_ROWS):
        photo = photos[k % 3]
        side = min(photo.size) // 2
        x, y = (k * 41) % (photo.width - side), (k * 29) % (photo.height - side)
        out.append(photo.crop((x, y, x + side, y + side)).resize((72, 72)))
    return out


@pytest.fixture(scope="module")
def saved_dataset(tmp_path_factory, crops):
    """13 rows, ids in a shuffled order, an ``Image`` column and a text column; row 5 holds bytes that are not
    an image."""
    ids = list(np.random.default_rng(0).permutation(N_ROWS) * 10)
    cells = [{"bytes": _png(c), "path": None} for c in crops]
    cells[BAD_ROW] = {"bytes": b"this is not a PNG", "path": None}
    features = datasets.Features(
        {"id": datasets.Value("int64"), "image": datasets.Image(), "note": datasets.Value("string")}
    )
    data = datasets.Dataset.from_dict(
        {"id": ids, "image": cells, "note": [f"row {i}" for i in range(N_ROWS)]}, features=features
    )
    path = tmp_path_factory.mktemp("ds") / "in"
    data.save_to_disk(str(path))
    return path


def test_dataset_gains_columns_keeps_rows_order_and_columns(tiny_model_dir, saved_dataset, crops, tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["predict", "--dataset", str(saved_dataset), "--model", str(tiny_model_dir), "--detector", "none",
                 "--precision", "fp32", "--output-dataset", str(out)])
    err = capsys.readouterr().err
    assert code == 1, err  # one row failed; it is reported and kept
    assert f"{N_ROWS} rows, {N_ROWS - 1} faces, 1 failed" in err and f"row {BAD_ROW}:" in err
    original, annotated = datasets.load_from_disk(str(saved_dataset)), datasets.load_from_disk(str(out))
    assert annotated.num_rows == N_ROWS
    assert annotated.column_names == [
        "id", "image", "note", "expression", "probabilities", "valence", "arousal", "box", "num_faces", "error"
    ]
    assert annotated.features["image"] == original.features["image"]  # still a decoded Image column
    assert annotated["id"] == original["id"] and annotated["note"] == original["note"]
    assert annotated.cast_column("image", datasets.Image(decode=False))["image"] == original.cast_column(
        "image", datasets.Image(decode=False)
    )["image"]
    predictions = annotated.remove_columns("image")  # row 5's image cannot be decoded (that is the point)
    bad = predictions[BAD_ROW]
    assert bad["error"].startswith(f"row {BAD_ROW}: ") and bad["expression"] is None and bad["valence"] is None
    assert bad["num_faces"] == 0 and bad["box"] is None

    from cage import ExpressionAnalyzer

    analyzer = ExpressionAnalyzer.from_pretrained(tiny_model_dir, detector="none", device="cpu")
    good = [i for i in range(N_ROWS) if i != BAD_ROW]
    expected = analyzer.predict([crops[i] for i in good])
    for i, faces in zip(good, expected):
        row = predictions[i]
        assert row["error"] is None and row["num_faces"] == 1
        assert row["box"] == [0, 0, 72, 72]
        assert row["expression"] == faces[0]["expression"]
        np.testing.assert_allclose([row["valence"], row["arousal"]], [faces[0]["valence"], faces[0]["arousal"]],
                                   atol=2e-6)
        np.testing.assert_allclose(list(row["probabilities"].values()), list(faces[0]["probabilities"].values()),
                                   atol=2e-6)
        assert list(row["probabilities"]) == list(faces[0]["probabilities"])


def test_dataset_with_label_columns_gets_prefixed_columns(tiny_model_dir, crops, tmp_path, capsys):
    data = datasets.Dataset.from_dict(
        {"image": [{"bytes": _png(c), "path": None} for c in crops[:3]], "valence": [0.1, -0.2, 0.3]},
        features=datasets.Features({"image": datasets.Image(), "valence": datasets.Value("float32")}),
    )
    data.save_to_disk(str(tmp_path / "in"))
    code = main(["predict", "--dataset", str(tmp_path / "in"), "--model", str(tiny_model_dir), "--detector", "none",
                 "--output-dataset", str(tmp_path / "out")])
    assert code == 0, capsys.readouterr().err
    annotated = datasets.load_from_disk(str(tmp_path / "out"))
    assert annotated["valence"] == pytest.approx([0.1, -0.2, 0.3])  # the labels are untouched
    assert "predicted_valence" in annotated.column_names and "predicted_expression" in annotated.column_names


def test_dataset_usage_errors(tiny_model_dir, saved_dataset, tmp_path, capsys):
    base = ["predict", "--dataset", str(saved_dataset), "--model", str(tiny_model_dir)]
    assert main([*base, "--output-dataset", str(tmp_path / "o"), "--image-column", "photo"]) == 2
    assert "no column 'photo'" in capsys.readouterr().err
    assert main([*base, "--output-dataset", str(tmp_path / "o"), "--split", "test"]) == 2
    assert "no split 'test'" in capsys.readouterr().err
    assert main(base) == 2
    assert "--output-dataset" in capsys.readouterr().err


def test_dataset_splits_with_workers_and_two_gloo_processes_agree(tiny_model_dir, crops, tmp_path, capsys):
    """Every split annotated; ``--num-proc 2`` workers and two accelerate processes give the one-process rows."""
    from test_predict_scale import run

    cells = [{"bytes": _png(c), "path": None} for c in crops[:8]]
    cells[6] = {"bytes": b"junk", "path": None}
    features = datasets.Features({"image": datasets.Image(), "k": datasets.Value("int64")})
    train = datasets.Dataset.from_dict({"image": cells, "k": list(range(8))}, features=features)
    datasets.DatasetDict({"train": train, "test": train.select([6, 0, 2])}).save_to_disk(str(tmp_path / "in"))
    base = ["predict", "--dataset", str(tmp_path / "in"), "--model", str(tiny_model_dir), "--detector", "none",
            "--precision", "fp32"]
    assert main([*base, "--output-dataset", str(tmp_path / "one")]) == 1
    assert "in[train]: row 6: its 4 bytes are not an image" in capsys.readouterr().err
    assert main([*base, "--output-dataset", str(tmp_path / "workers"), "--num-proc", "2"]) == 1
    done = run(*base, "--output-dataset", str(tmp_path / "gloo"), processes=2)
    assert "11 rows, 9 faces, 2 failed" in done.stderr and "2 processes" in done.stderr, done.stderr[-3000:]
    results = {}
    for name in ("one", "workers", "gloo"):
        annotated = datasets.load_from_disk(str(tmp_path / name))
        results[name] = {split: annotated[split].remove_columns("image").to_list() for split in ("train", "test")}
    assert [r["k"] for r in results["one"]["train"]] == list(range(8))
    assert [r["k"] for r in results["one"]["test"]] == [6, 0, 2]
    assert results["one"]["test"][0]["error"] == "row 0: its 4 bytes are not an image format PIL can read"
    for name in ("workers", "gloo"):
        for split in ("train", "test"):
            for a, b in zip(results[name][split], results["one"][split], strict=True):
                assert a["k"] == b["k"] and a["error"] == b["error"] and a["expression"] == b["expression"]
                if b["error"] is None:
                    np.testing.assert_allclose([a["valence"], a["arousal"]], [b["valence"], b["arousal"]], atol=2e-6)
