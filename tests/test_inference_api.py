"""The Python API and the transformers pipeline: same records on every path, colour discipline, clamping,
body (EMOTIC) models, and any model object with the CAGE output protocol."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from cage import ExpressionAnalyzer
from cage.cli import main
from conftest import BLOCK_CAGE_IMPORTS, TINY_BACKBONE, TINY_SIZE, face_photo

PHOTOS = ["32bit.png", "biden.jpg", "obama.jpg", "obama_partial_face.jpg", "obama_small.jpg", "two_people.jpg"]
EXPECTED_FACES = {"32bit.png": 1, "biden.jpg": 1, "obama.jpg": 1, "obama_partial_face.jpg": 1,
                  "obama_small.jpg": 1, "two_people.jpg": 2, "coffee.png": 0, "chelsea.png": 0}  # fmt: skip

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # conftest: one intra-op thread (2 shared cores)


@pytest.fixture(scope="module")
def photo_dir(tmp_path_factory) -> Path:
    """The shared photos plus scikit-image's coffee and chelsea (no faces) in one folder."""
    data = pytest.importorskip("skimage.data")
    folder = tmp_path_factory.mktemp("photos")
    for name in PHOTOS:
        (folder / name).write_bytes(face_photo(name).read_bytes())
    Image.fromarray(data.coffee()).save(folder / "coffee.png")
    Image.fromarray(data.chelsea()).save(folder / "chelsea.png")
    return folder


@pytest.fixture(scope="module")
def analyzer(tiny_model_dir) -> ExpressionAnalyzer:
    return ExpressionAnalyzer.from_pretrained(tiny_model_dir, device="cpu")


def assert_same_records(a, b, atol=1e-5):
    """Equal structure, labels, boxes and scores; floats from the network equal up to float32 round-off.

    Crops batched with different neighbours (one image at a time vs a whole folder) go through CPU kernels
    whose summation order depends on the batch, so the 6th decimal may differ.
    """
    if isinstance(a, dict):
        assert isinstance(b, dict) and list(a) == list(b)
        for key in a:
            assert_same_records(a[key], b[key], atol)
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b)
        for x, y in zip(a, b):
            assert_same_records(x, y, atol)
    elif isinstance(a, float):
        assert b == pytest.approx(a, abs=atol)
    else:
        assert a == b


REMOTE_PIPELINE = BLOCK_CAGE_IMPORTS + textwrap.dedent(
    """
    import json, sys

    import torch
    from transformers import pipeline

    torch.set_num_threads(1)
    model_dir, out, images = sys.argv[1], sys.argv[2], sys.argv[3:]
    pipe = pipeline(model=model_dir, trust_remote_code=True, device="cpu")
    assert type(pipe).__module__.startswith("transformers_modules"), type(pipe).__module__
    assert pipe.task == "facial-expression-inference", pipe.task
    with open(out, "w") as f:
        json.dump({"list": pipe(images), "single": pipe(images[0])}, f)
    """
)


def test_same_records_one_by_one_as_folder_and_through_transformers_pipeline(
    analyzer, tiny_model_dir, photo_dir, tmp_path, capsys
):
    names = sorted(EXPECTED_FACES)
    paths = [str(photo_dir / name) for name in names]
    one_by_one = [analyzer.predict(path) for path in paths]
    assert [len(faces) for faces in one_by_one] == [EXPECTED_FACES[n] for n in names]
    two = one_by_one[names.index("two_people.jpg")]
    width = Image.open(photo_dir / "two_people.jpg").width
    assert two[0]["box"][0] + two[0]["box"][2] <= width / 2 < two[1]["box"][0]  # left, then right

    args = ["predict", str(photo_dir), "--model", str(tiny_model_dir), "--format", "json", "--precision", "fp32"]
    assert main(args) == 0  # fp32: the same computation as the pipeline (the bf16 default is checked elsewhere)
    folder = json.loads(capsys.readouterr().out)
    assert [r["file"] for r in folder] == paths  # sorted, recursive listing of the folder
    for record, faces in zip(folder, one_by_one):
        assert_same_records(record["faces"], faces)

    out = tmp_path / "remote.json"
    env = {"HF_HUB_OFFLINE": "1", "HF_MODULES_CACHE": str(tmp_path / "modules"), "PATH": "/usr/bin:/bin",
           "TRANSFORMERS_VERBOSITY": "error", "OMP_NUM_THREADS": "1"}  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-c", REMOTE_PIPELINE, str(tiny_model_dir), str(out), *paths],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    remote = json.loads(out.read_text())
    # The pipeline batches per face (a ChunkPipeline; one face per forward pass at batch_size=1): the same
    # records up to float32 round-off.
    assert_same_records(remote["list"], one_by_one)
    assert_same_records(remote["single"], one_by_one[0])


def test_saved_folder_carries_the_pipeline(tiny_model_dir):
    config = json.loads((Path(tiny_model_dir) / "config.json").read_text())
    assert config["custom_pipelines"] == {
        "facial-expression-inference": {
            "impl": "pipeline_cage.FaceExpressionPipeline",
            "pt": ["AutoModel"],
            "type": "image",
        }
    }
    for name in ("pipeline_cage.py", "face_detection_cage.py"):
        text = (Path(tiny_model_dir) / name).read_text()
        assert "from cage" not in text and "import cage" not in text and "from .." not in text


def test_pipeline_in_process_after_import_cage(tiny_model_dir, analyzer):
    from transformers import pipeline

    from cage.pipeline_cage import FaceExpressionPipeline

    # The local class, no remote code executed.
    pipe = pipeline(
        "facial-expression-inference", model=str(tiny_model_dir), pipeline_class=FaceExpressionPipeline, device="cpu"
    )
    assert type(pipe) is FaceExpressionPipeline
    photo = face_photo("obama.jpg")
    assert pipe(str(photo)) == analyzer.predict(photo)


def test_colour_discipline_pil_array_path_and_bgr(analyzer, tmp_path):
    cv2 = pytest.importorskip("cv2")
    # A lossless copy, so that OpenCV's and PIL's decoders see the same pixels.
    path = tmp_path / "two_people.png"
    Image.open(face_photo("two_people.jpg")).convert("RGB").save(path)
    pil = Image.open(path)
    rgb = np.asarray(pil.convert("RGB"))
    by_path = analyzer.predict(path)
    assert len(by_path) == 2
    assert analyzer.predict(pil) == by_path
    assert analyzer.predict(rgb) == by_path
    assert analyzer.predict_bgr(rgb[:, :, ::-1]) == by_path
    assert analyzer.predict_bgr(cv2.imread(str(path))) == by_path
    # The same BGR array misread as RGB would change the predictions: the test can fail.
    swapped = analyzer.predict(np.ascontiguousarray(rgb[:, :, ::-1]))
    assert [f["probabilities"] for f in swapped] != [f["probabilities"] for f in by_path]


class _OutputProtocolModel:
    """Not a torch module: a config and __call__(pixel_values=...) -> .logits, .regression (as an ONNX
    Runtime runner would be). Forwards to the torch model and records what it was given."""

    def __init__(self, network):
        self.network, self.config, self.seen = network, network.config, []

    def __call__(self, pixel_values):
        self.seen.append((pixel_values.device.type, tuple(pixel_values.shape)))
        with torch.no_grad():
            out = self.network(pixel_values=pixel_values)
        return SimpleNamespace(logits=out.logits.numpy(), regression=out.regression.numpy())


def test_any_model_with_the_output_protocol(analyzer):
    wrapped = _OutputProtocolModel(analyzer.model)
    other = ExpressionAnalyzer(wrapped, analyzer.image_processor, detector=analyzer.detector, device="cpu")
    photo = face_photo("two_people.jpg")
    assert_same_records(other.predict(photo), analyzer.predict(photo))
    assert wrapped.seen == [("cpu", (2, 3, TINY_SIZE, TINY_SIZE))]


class _FixedOutputs:
    def __init__(self, config, regression):
        self.config, self.regression = config, torch.tensor(regression)

    def __call__(self, pixel_values):
        n = pixel_values.shape[0]
        return SimpleNamespace(logits=torch.zeros(n, len(self.config.id2label)), regression=self.regression[:n])


def test_valence_arousal_clamped_in_records(analyzer):
    raw = [[3.0, -5.0], [0.25, -0.5]]
    stub = _FixedOutputs(analyzer.config, raw)
    other = ExpressionAnalyzer(stub, analyzer.image_processor, detector="none", device="cpu", batch_size=2)
    records = other.predict([Image.new("RGB", (32, 32)), Image.new("RGB", (40, 40))])
    assert [(r[0]["valence"], r[0]["arousal"]) for r in records] == [(1.0, -1.0), (0.25, -0.5)]
    assert stub.regression[0].tolist() == [3.0, -5.0]  # the raw model output is untouched
    assert records[0][0]["probabilities"]["Neutral"] == pytest.approx(1 / 8)
    assert records[1][0]["box"] == [0, 0, 40, 40] and records[1][0]["box_source"] == "image"


@pytest.fixture(scope="module")
def emotic_model_dir(tmp_path_factory) -> Path:
    from cage.presets import write_untrained_model

    return write_untrained_model(
        tmp_path_factory.mktemp("models") / "emotic", labels="emotic", backbone=TINY_BACKBONE, image_size=TINY_SIZE
    )


def test_body_model_whole_image_or_user_boxes(emotic_model_dir, tmp_path, capsys):
    photo = face_photo("two_people.jpg")
    width, height = Image.open(photo).size
    boxes = tmp_path / "boxes.json"
    boxes.write_text(json.dumps({"two_people.jpg": [[100, 40, 400, 600], [700, 50, 380, 600]]}))
    obama = face_photo("obama.jpg")
    args = ["predict", str(photo), str(obama), "--model", str(emotic_model_dir), "--format", "jsonl"]
    assert main([*args, "--boxes", str(boxes)]) == 0
    with_boxes, whole = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [f["box"] for f in with_boxes["faces"]] == [[100, 40, 400, 600], [700, 50, 380, 600]]
    assert {(f["crop"], f["box_source"]) for f in with_boxes["faces"]} == {("body", "user")}
    assert [(f["crop"], f["box_source"], f["box"]) for f in whole["faces"]] == [
        ("body", "image", [0, 0, *Image.open(obama).size])
    ]
    face = with_boxes["faces"][0]
    assert len(face["probabilities"]) == 26 and set(face) >= {"valence", "arousal", "dominance", "categories"}
    assert main(["predict", str(photo), "--model", str(emotic_model_dir), "--format", "csv"]) == 0
    header, row = capsys.readouterr().out.splitlines()
    assert "dominance" in header.split(",") and "categories" in header.split(",")
    assert row.startswith(f"{photo},,,0,0,0,{width},{height},1.0,body,image,")


def test_bad_boxes_file_is_a_clear_error(tiny_model_dir, tmp_path, capsys):
    boxes = tmp_path / "boxes.json"
    boxes.write_text(json.dumps({"a.jpg": [[1, 2, 3]]}))
    assert main(["predict", str(face_photo("obama.jpg")), "--model", str(tiny_model_dir), "--boxes", str(boxes)]) == 2
    assert "boxes.json" in capsys.readouterr().err


def test_array_inputs_become_rgb():
    from cage.pipeline_cage import array_to_image, bgr_to_rgb, load_image

    rgb = np.random.default_rng(0).integers(0, 256, size=(6, 5, 3), dtype=np.uint8)
    np.testing.assert_array_equal(np.asarray(load_image(rgb)), rgb)
    np.testing.assert_array_equal(np.asarray(array_to_image(np.dstack([rgb, np.full((6, 5), 7, np.uint8)]))), rgb)
    np.testing.assert_array_equal(np.asarray(array_to_image(rgb.astype(np.uint16) * 257)), rgb)
    np.testing.assert_array_equal(np.asarray(array_to_image(rgb / 255.0)), rgb)
    gray = np.asarray(array_to_image(rgb[:, :, 0]))
    assert gray.shape == (6, 5, 3) and (gray == rgb[:, :, :1]).all()
    np.testing.assert_array_equal(bgr_to_rgb(rgb[:, :, ::-1]), rgb)
    bgra = np.dstack([rgb[:, :, ::-1], np.zeros((6, 5), np.uint8)])
    np.testing.assert_array_equal(bgr_to_rgb(bgra), rgb)
    with pytest.raises(ValueError, match=r"\(6, 5, 2\)"):
        array_to_image(rgb[:, :, :2])
    with pytest.raises(ValueError, match="int64"):
        array_to_image(rgb.astype(np.int64))
    with pytest.raises(OSError, match="nothing.jpg: no such file"):
        load_image("nothing.jpg")


def test_file_modes_and_exif_orientation_end_to_end(analyzer, tmp_path):
    photo = Image.open(face_photo("obama.jpg")).convert("RGB")
    (upright,) = analyzer.predict(photo)
    files = {
        "cmyk.jpg": photo.convert("CMYK"),
        "gray16.png": Image.fromarray(np.asarray(photo.convert("L")).astype(np.uint16) * 257),
        "rgba.png": photo.convert("RGBA"),
    }
    for name, image in files.items():
        image.save(tmp_path / name)
        (face,) = analyzer.predict(tmp_path / name)
        assert np.abs(np.subtract(face["box"], upright["box"])).max() <= 0.05 * upright["box"][2], name
    assert Image.open(tmp_path / "gray16.png").mode.startswith("I")
    # Stored rotated with EXIF orientation 8 (view = rotate 90 degrees counter-clockwise): boxes come back in
    # the upright picture's pixels.
    exif = Image.Exif()
    exif[0x0112] = 8
    photo.transpose(Image.Transpose.ROTATE_270).save(tmp_path / "rotated.jpg", exif=exif.tobytes(), quality=95)
    (face,) = analyzer.predict(tmp_path / "rotated.jpg")
    assert np.abs(np.subtract(face["box"], upright["box"])).max() <= 0.05 * upright["box"][2]


def test_pipeline_detector_per_call_and_at_construction(tiny_model_dir, tmp_path):
    from transformers import pipeline

    from cage.pipeline_cage import TASK, FaceExpressionPipeline

    photo = str(face_photo("two_people.jpg"))
    width, height = Image.open(photo).size
    pipe = pipeline(TASK, model=str(tiny_model_dir), pipeline_class=FaceExpressionPipeline)
    assert pipe.task == "facial-expression-inference"
    assert [f["box_source"] for f in pipe(photo)] == ["dlib", "dlib"]
    (whole,) = pipe(photo, detector="none")
    assert (whole["box"], whole["box_source"]) == ([0, 0, width, height], "image")
    assert len(pipe(photo)) == 2  # a per-call detector does not stick
    (given,) = pipe(photo, boxes=[[10, 20, 100, 120]])
    assert (given["box"], given["box_source"]) == ([10, 20, 100, 120], "user")
    crops_only = pipeline(TASK, model=str(tiny_model_dir), pipeline_class=FaceExpressionPipeline, detector="none")
    assert [f["box_source"] for f in crops_only(photo)] == ["image"]
    with pytest.raises(FileNotFoundError, match="yunet.onnx"):
        pipe(photo, detector="yunet", detector_model=tmp_path / "yunet.onnx")
