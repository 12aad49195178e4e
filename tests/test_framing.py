"""Framing: one owner (the processor) of how a face is cut, for preparation, training and inference.

- Calibration recovers a known framing: a synthetic AffectNet "cropped release" is cut from the real photos
  in ../shared/faces around each dlib detection with a known framing (side 1.6 x the detector box, centre 10 %
  of the box side above its centre); ``cage prepare`` measures it; a short ``cage train`` writes it into the
  saved processor, which then crops each original photo's detected face like the training crop.
- A prepared 2017-release (and EMOTIC) example equals the processor's crop of its source box, pixel for pixel,
  through the same method.
"""

from __future__ import annotations

import json

import datasets
import numpy as np
import pytest
from conftest import face_photo
from data_fixtures import affectnet_labels, emotic_people, write_affectnet_release2017, write_emotic_mat
from PIL import Image

import cage  # noqa: F401  (registers the Auto classes)
from cage.cli import main
from cage.data import load_stats, prepare_affectnet, prepare_emotic
from cage.data.framing import crop_geometry, framing_for_processor, measure_framing, padded
from cage.face_detection_cage import create_face_detector
from cage.image_processing_cage import CageImageProcessor, clamp_box, crop_with_padding, framed_box, to_rgb
from cage.presets import make_config, make_image_processor
from transformers import AutoImageProcessor

TRUTH = {"side_ratio": [1.6, 1.6], "center_offset": [0.0, -0.1]}
PHOTOS = ("obama.jpg", "biden.jpg", "two_people.jpg", "obama_small.jpg", "32bit.png")
SIZES = (160, 192, 224, 256)  # each training crop is stored at these sizes, plain and mirrored


def iou(a, b) -> float:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    w = max(0.0, min(ax + aw, bx + bw) - max(ax, bx))
    h = max(0.0, min(ay + ah, by + bh) - max(ay, by))
    return w * h / (aw * ah + bw * bh - w * h)


@pytest.fixture(scope="module")
def detected_faces():
    """(photo name, upright RGB photo, dlib box) of every face dlib finds in the shared photos (6 faces); the box
    as calibration and inference measure it: at the canonical face size (``FaceDetector.refine``)."""
    detector = create_face_detector("dlib")
    faces = []
    for name in PHOTOS:
        photo = to_rgb(Image.open(face_photo(name)))
        faces.extend((name, photo, detector.refine(photo, detection).box) for detection in detector.detect(photo))
    assert len(faces) == 6
    return faces


@pytest.fixture(scope="module")
def cropped_release(detected_faces, tmp_path_factory):
    """The AffectNet cropped layout (train_set/val_set, images + annotations/*.npy) of the known-framing crops."""
    root = tmp_path_factory.mktemp("framing") / "affectnet"
    variants = []
    for name, photo, box in detected_faces:
        crop = crop_with_padding(photo, framed_box(box, TRUTH))
        for size in SIZES:
            for mirrored in (False, True):
                image = crop.resize((size, size), Image.Resampling.BILINEAR)
                variants.append(image.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if mirrored else image)
    rows = {"train_set": affectnet_labels(per_class=6), "val_set": affectnet_labels(per_class=1, offset=50)}
    for folder, labels in rows.items():
        (root / folder / "images").mkdir(parents=True)
        (root / folder / "annotations").mkdir()
        for index, (expression, valence, arousal) in enumerate(labels):
            variants[index % len(variants)].save(root / folder / "images" / f"{index}.jpg", quality=95)
            for suffix, value in (("exp", expression), ("val", valence), ("aro", arousal)):
                np.save(root / folder / "annotations" / f"{index}_{suffix}.npy", np.array(value))
    assert len(rows["train_set"]) == len(variants) == 48
    return root


def test_framed_box_is_the_inverse_of_the_measured_geometry():
    framing = {"side_ratio": [1.5, 1.25], "center_offset": [0.05, -0.12]}
    box = (100.0, 80.0, 200.0, 160.0)
    crop = framed_box(box, framing)
    assert crop == (60, 41, 300, 200)
    rx, ry, ox, oy = crop_geometry(crop, box)
    assert (rx, ry) == pytest.approx((1.5, 1.25))
    assert (ox, oy) == pytest.approx((0.05, -0.12), abs=2e-3)  # within a rounded pixel


def test_framing_is_saved_checked_and_followed(tmp_path):
    processor = CageImageProcessor()
    assert processor.crop_policy == "square_margin" and processor.crop_box((10, 20, 100, 80)) == (-5, -5, 130, 130)
    with pytest.raises(ValueError, match="side_ratio"):
        processor.set_framing({"side_ratio": [1.6, -1.0], "center_offset": [0, 0]})
    with pytest.raises(ValueError, match="center_offset"):
        CageImageProcessor(framing={"side_ratio": [1.6, 1.6]})
    processor.set_framing(dict(TRUTH, detector="dlib"))
    processor.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "preprocessor_config.json").read_text())
    assert saved["framing"]["side_ratio"] == [1.6, 1.6] and saved["framing"]["detector"] == "dlib"
    loaded = AutoImageProcessor.from_pretrained(tmp_path)
    assert loaded.crop_policy == "framing"
    assert loaded.crop_box((100, 100, 50, 50)) == (85, 80, 80, 80)
    photo = to_rgb(Image.open(face_photo("obama_small.jpg")))
    assert loaded.crop(photo, (103, 68, 109, 108)).size == (174, 173)


def test_body_processors_crop_the_exact_box_as_prepare_does():
    body = make_image_processor(make_config("emotic", backbone="test_vit", image_size=64))
    face = make_image_processor(make_config("affectnet8", backbone="test_vit", image_size=64))
    assert body.crop_policy == "exact" and face.crop_policy == "square_margin"
    photo = to_rgb(Image.open(face_photo("obama_small.jpg")))
    box = (-10.4, 20.6, 150.0, 300.0)  # leaves the image on the left and at the bottom: clamped, not padded
    crop = body.crop(photo, box)
    assert crop.size == (140, 219)  # x 0..140 (-10 rounded, clamped), y 21..240
    np.testing.assert_array_equal(np.asarray(crop), np.asarray(photo)[21:240, 0:140])
    np.testing.assert_array_equal(np.asarray(crop), np.asarray(body.crop_annotation(photo, box)))
    assert clamp_box(box, *photo.size) == ((0, 21, 140, 219), True)
    with pytest.raises(ValueError, match="no area inside"):
        body.crop(photo, (400, 10, 20, 20))


def test_prepared_2017_example_equals_the_processor_crop_through_the_same_method(tmp_path, monkeypatch):
    root = tmp_path / "affectnet"
    expected = write_affectnet_release2017(root, affectnet_labels(per_class=2), affectnet_labels(1, offset=9), True)
    calls = []
    original = CageImageProcessor.crop_annotation

    def spy(self, image, box):
        calls.append(tuple(box))
        return original(self, image, box)

    monkeypatch.setattr(CageImageProcessor, "crop_annotation", spy)
    loaded, stats, _ = prepare_affectnet(root, tmp_path / "out", val_fraction=0.5, crop_format="png", calibrate=False)
    monkeypatch.setattr(CageImageProcessor, "crop_annotation", original)
    rows = [row for split in loaded.values() for row in split]
    assert len(calls) == len(rows) == 25  # every stored crop came from crop_annotation (16 + 8 + 1 clamped)
    assert stats["framing"]["crops"]["method"] == "CageImageProcessor.crop_annotation"
    assert stats["framing"]["calibration"]["status"] == "skipped"
    assert load_stats(loaded)["framing"] == stats["framing"]
    lines = {}
    for name in ("training", "validation"):
        for line in (root / "Manually_Annotated_file_lists" / f"{name}.csv").read_text().splitlines():
            cells = line.split(",")
            if cells[0] != "subDirectory_filePath":
                lines[cells[0]] = [float(v) for v in cells[1:5]]
    processor = CageImageProcessor()
    for row in rows:
        source = root / "Manually_Annotated_Images" / row["source_id"]
        want = processor.crop_annotation(to_rgb(Image.open(source)), lines[row["source_id"]])
        np.testing.assert_array_equal(np.asarray(row["image"]), np.asarray(want))
        np.testing.assert_array_equal(np.asarray(row["image"]), expected[row["source_id"]]["pixels"])


def test_prepared_emotic_example_equals_the_body_processor_crop(tmp_path):
    root = tmp_path / "emotic"
    write_emotic_mat(root)
    loaded, stats, _ = prepare_emotic(root, tmp_path / "out", crop_format="png")
    assert stats["framing"]["calibration"]["status"] == "not_applicable"
    body = make_image_processor(make_config("emotic", backbone="test_vit", image_size=64))
    people = {
        f"{image['folder']}/{image['filename']}": image["persons"] for s in emotic_people().values() for image in s
    }
    checked = 0
    for split in loaded.values():
        for row in split:
            source, index = row["source_id"].rsplit("#person", 1)
            x1, y1, x2, y2 = people[source][int(index)]["box"]
            photo = to_rgb(Image.open(root / "emotic" / source))
            want = body.crop(photo, (x1, y1, x2 - x1, y2 - y1))
            np.testing.assert_array_equal(np.asarray(row["image"]), np.asarray(want))
            checked += 1
    assert checked == len(loaded["train"]) + len(loaded["validation"]) + len(loaded["test"]) > 0


def test_calibration_recovers_a_known_framing_and_training_writes_it_into_the_processor(
    cropped_release, detected_faces, tmp_path
):
    from accelerate.state import AcceleratorState, GradientState

    from cage.training import TrainingArguments, train

    out = tmp_path / "prepared"
    loaded, stats, _ = prepare_affectnet(cropped_release, out, val_fraction=0.25)
    calibration = stats["framing"]["calibration"]
    assert calibration["status"] == "measured" and calibration["detector"] == "dlib"
    assert calibration["sample_size"] == 48 and calibration["detection_share"] >= 0.9
    # Within 5 %: side ratios relative to the truth, centre offsets within 0.05 of the box side.
    for axis in (0, 1):
        assert calibration["side_ratio"][axis] == pytest.approx(TRUTH["side_ratio"][axis], rel=0.05)
        assert calibration["center_offset"][axis] == pytest.approx(TRUTH["center_offset"][axis], abs=0.05)
        low, high = calibration["side_ratio_iqr"][axis]
        assert low <= calibration["side_ratio"][axis] <= high
    assert load_stats(loaded)["framing"]["calibration"] == calibration
    try:
        train(
            TrainingArguments(
                data=str(out),
                output_dir=str(tmp_path / "model"),
                backbone="test_convnext",
                image_size=64,
                batch_size=4,
                max_steps=1,
                random_init=True,
                num_workers=0,
                evaluate_test=False,
            )
        )
    finally:
        AcceleratorState._reset_state(reset_partial_state=True)
        GradientState._reset_state()
    processor = AutoImageProcessor.from_pretrained(tmp_path / "model")
    assert processor.crop_policy == "framing"
    assert processor.framing["side_ratio"] == calibration["side_ratio"]
    assert processor.framing["sample_size"] == 48
    for name, photo, box in detected_faces:
        training_crop = framed_box(box, TRUTH)
        assert iou(processor.crop_box(box), training_crop) >= 0.9, name
        assert processor.crop(photo, box).size == processor.crop_box(box)[2:]


def test_calibrate_framing_command_updates_a_prepared_folder(cropped_release, tmp_path, capsys):
    out = tmp_path / "prepared"
    assert main(["prepare", "affectnet", str(cropped_release), "--out", str(out), "--val-fraction", "0.25",
                 "--sample", "10"]) == 0  # fmt: skip
    printed = capsys.readouterr().err
    assert "cage prepare: framing calibration (dlib, 10/10 crops with a detection): crop side = " in printed
    assert load_stats(out)["framing"]["calibration"]["sample_size"] == 10
    _, stats, _ = prepare_affectnet(cropped_release, out, val_fraction=0.25, calibrate=False, overwrite=True)
    assert framing_for_processor(stats) is None and stats["framing"]["calibration"]["status"] == "skipped"
    result = tmp_path / "framing.json"
    assert main(["calibrate-framing", str(out), "--sample", "12", "--seed", "1", "--output", str(result)]) == 0
    assert "framing calibration (dlib, 12/12 crops with a detection)" in capsys.readouterr().err
    written = json.loads(result.read_text())
    assert written["sample_size"] == 12 and written["split"] == "train" and written["seed"] == 1
    reloaded = datasets.load_from_disk(str(out))
    for source in (out, reloaded, reloaded["test"]):
        assert load_stats(source)["framing"]["calibration"] == written
    assert framing_for_processor(load_stats(out))["side_ratio"] == written["side_ratio"]
    assert main(["calibrate-framing", str(out), "--split", "nope"]) == 2
    assert "has no split 'nope'" in capsys.readouterr().err


def test_measure_framing_counts_misses_and_unreadable_images():
    photo = to_rgb(Image.open(face_photo("obama_small.jpg")))
    blank = Image.new("RGB", (200, 200), (128, 128, 128))
    detector = create_face_detector("dlib")
    canvas, box = padded(photo, 0.25)
    assert box == (80, 60, 320, 240) and canvas.size == (480, 360)
    result = measure_framing([(canvas, box, "a"), (blank, (0, 0, 200, 200), "b"), (None, None, "c")], detector)
    assert (result["sample_size"], result["detected"], result["unreadable"]) == (2, 1, 1)
    assert result["status"] == "too_few_detections" and "side_ratio" not in result
    assert result["detection_share"] == 0.5


def test_training_framing_from_a_file_and_its_refusals(tmp_path):
    from cage.training.loop import apply_training_framing

    lines = []
    face = make_image_processor(make_config("affectnet8", backbone="test_vit", image_size=64))
    body = make_image_processor(make_config("emotic", backbone="test_vit", image_size=64))
    no_stats = datasets.Dataset.from_dict({"label": [0]})
    assert apply_training_framing(face, no_stats, None, lines.append) is None
    assert face.crop_policy == "square_margin" and "no calibration in the data" in lines[-1]
    measured = dict(TRUTH, status="measured", detector="dlib", sample_size=40, detected=38, detection_share=0.95)
    good, failed, broken = tmp_path / "good.json", tmp_path / "failed.json", tmp_path / "broken.json"
    good.write_text(json.dumps(measured))
    failed.write_text(json.dumps({"status": "too_few_detections", "detector": "dlib", "sample_size": 9, "detected": 2}))
    broken.write_text("{not json")
    framing = apply_training_framing(face, no_stats, str(good), lines.append)
    assert face.framing == framing and framing["side_ratio"] == [1.6, 1.6] and framing["detection_share"] == 0.95
    assert "38/40 crops with a detection" in lines[-1]
    with pytest.raises(ValueError, match="holds no measured framing .status 'too_few_detections'"):
        apply_training_framing(face, no_stats, str(failed), lines.append)
    with pytest.raises(ValueError, match="cannot read it as JSON"):
        apply_training_framing(face, no_stats, str(broken), lines.append)
    with pytest.raises(ValueError, match="face models only"):
        apply_training_framing(body, no_stats, str(good), lines.append)
    assert apply_training_framing(body, no_stats, None, lines.append) is None and body.crop_policy == "exact"


def test_a_detector_other_than_the_measured_one_is_warned_about():
    from cage.face_detection_cage import FaceDetector
    from cage.pipeline_cage import locate_faces

    class FixedBox(FaceDetector):
        name = "fixed"

        def _detect_boxes(self, work):
            return [((103.0, 68.0, 109.0, 108.0), 1.0)]

    processor = CageImageProcessor(framing=dict(TRUTH, detector="dlib"))
    assert processor.detector_mismatch("dlib") is None and CageImageProcessor().detector_mismatch("yunet") is None
    photo = to_rgb(Image.open(face_photo("obama_small.jpg")))
    with pytest.warns(UserWarning, match="measured with the 'dlib' face detector.s., but 'fixed' is used"):
        detections, crops, source = locate_faces(photo, FixedBox(), processor)
    assert source == "fixed" and crops[0].size == processor.crop_box(detections[0].box)[2:] == (174, 173)


def test_2017_release_calibrates_on_full_images_with_their_boxes(detected_faces, tmp_path):
    """File-list face boxes with the known framing around dlib's box: measured on the full images."""
    root = tmp_path / "affectnet"
    images, lists = root / "Manually_Annotated_Images", root / "Manually_Annotated_file_lists"
    lists.mkdir(parents=True)
    for index, (name, photo, box) in enumerate(detected_faces):
        (images / "1").mkdir(parents=True, exist_ok=True)
        photo.save(images / "1" / f"face{index}.jpg", quality=95)
    for csv_name, labels in (("training", affectnet_labels(per_class=2)), ("validation", affectnet_labels(1, 20))):
        lines = []
        for row, (expression, valence, arousal) in enumerate(labels):
            index = row % len(detected_faces)
            x, y, w, h = framed_box(detected_faces[index][2], TRUTH)
            lines.append(f"1/face{index}.jpg,{x},{y},{w},{h},,{expression},{valence},{arousal}")
        (lists / f"{csv_name}.csv").write_text("\n".join(lines) + "\n")
    _, stats, _ = prepare_affectnet(root, tmp_path / "out", val_fraction=0.5, calibration_sample=8, seed=2)
    calibration = stats["framing"]["calibration"]
    assert calibration["source"] == "full images with their face boxes (training file list)"
    assert calibration["sample_size"] == 8 and calibration["detected"] == 8 and calibration["seed"] == 2
    for axis in (0, 1):
        assert calibration["side_ratio"][axis] == pytest.approx(TRUTH["side_ratio"][axis], rel=0.01)
        assert calibration["center_offset"][axis] == pytest.approx(TRUTH["center_offset"][axis], abs=0.01)
    assert stats["framing"]["crops"]["policy"] == "exact"


def test_model_card_states_the_saved_framing_policy(tmp_path):
    from cage.hub.card import render_model_card
    from cage.model_folder import save_model_folder
    from cage.modeling_cage import CageForExpressionInference

    texts = {}
    for labels, framing in (("affectnet8", None), ("affectnet8", TRUTH), ("emotic", None)):
        config = make_config(labels, backbone="test_vit", image_size=64)
        processor = make_image_processor(config)
        if framing:
            processor.set_framing(dict(framing, detector="dlib", sample_size=48, detected=47))
        name = f"{labels}-{bool(framing)}"
        folder = save_model_folder(CageForExpressionInference(config), processor, tmp_path / name)
        texts[name] = " ".join(render_model_card(folder, f"someone/{name}").text.split())
    assert "a square face crop with a 15 % margin per side, resized to 64 x 64 px" in texts["affectnet8-False"]
    assert (
        "a face crop framed as the training crops frame the dlib detector's box (measured on 47 of 48 training "
        "crops: side 1.600 x 1.600 the box, centre offset (+0.000, -0.100) box sides), "
        "resized to 64 x 64 px" in texts["affectnet8-True"]
    )
    body = "the body box itself, clamped to the image (as the training crops were cut), resized to"
    assert body in texts["emotic-False"]
