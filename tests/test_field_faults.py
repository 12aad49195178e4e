"""Faults reported from the field (issue 11): non-finite outputs, usage errors, odd file names, threads,
pipeline batching, small faces in big photos, variable-frame-rate and damaged videos."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import TINY_BACKBONE, TINY_SIZE, face_photo


def strict_json(text: str):
    """``json.loads`` that refuses NaN/Infinity, as strict JSON parsers do."""

    def refuse(name):
        raise ValueError(f"non-standard JSON constant {name}")

    return json.loads(text, parse_constant=refuse)


# ----------------------------------------------------------------------------------------- 6. non-finite outputs


@pytest.fixture(scope="module")
def nan_model_dir(tmp_path_factory) -> Path:
    """A tiny model whose head's output layer is NaN (what a diverged fp16 run looks like)."""
    import torch

    from cage.modeling_cage import CageForExpressionInference
    from cage.presets import write_untrained_model

    source = write_untrained_model(
        tmp_path_factory.mktemp("nan") / "src", backbone=TINY_BACKBONE, image_size=TINY_SIZE, seed=0
    )
    model = CageForExpressionInference.from_pretrained(source)
    with torch.no_grad():
        model.head.output.weight.fill_(float("nan"))
    target = tmp_path_factory.mktemp("nan") / "nan_model"
    model.save_pretrained(target)
    for name in ("preprocessor_config.json",):
        (target / name).write_text((source / name).read_text())
    return target


def test_non_finite_outputs_give_null_values_an_error_and_exit_1(cli, nan_model_dir, tmp_path):
    obama = face_photo("obama.jpg")
    for fmt in ("json", "jsonl"):
        code, out, err = cli("predict", str(obama), "--model", str(nan_model_dir), "--format", fmt)
        assert code == 1, err
        records = strict_json(out) if fmt == "json" else [strict_json(line) for line in out.splitlines()]
        (face,) = records[0]["faces"]
        assert face["expression"] is None and face["valence"] is None and face["arousal"] is None
        assert set(face["probabilities"].values()) == {None}
        assert "not finite" in face["error"]
        assert "1 face without a prediction" in err
    code, out, _ = cli("predict", str(obama), "--model", str(nan_model_dir), "--format", "csv")
    assert code == 1
    import csv
    import io

    (row,) = list(csv.DictReader(io.StringIO(out)))
    assert row["valence"] == "" and row["expression"] == "" and "not finite" in row["error"]
    values = [v for k, v in row.items() if k not in ("file", "error")]
    assert all(v.lower() not in ("nan", "inf", "-inf") for v in values)


def test_writers_refuse_nan():
    from types import SimpleNamespace

    from cage.inference.output import ResultWriter
    from cage.inference.predict import ImageResult

    config = SimpleNamespace(id2label={0: "Neutral"}, regression_targets=["valence"], multi_label=False)
    face = {"box": [0, 0, 1, 1], "score": 1.0, "crop": "face", "box_source": "user", "expression": "Neutral"}
    face.update(probabilities={"Neutral": 1.0}, valence=float("nan"))
    import io

    for fmt in ("json", "jsonl", "csv"):
        writer = ResultWriter(io.StringIO(), fmt, config)
        with pytest.raises(ValueError):
            writer.write(ImageResult(file="x.jpg", faces=[face]))


def test_outputs_to_records_marks_only_the_non_finite_rows():
    import torch

    from cage.configuration_cage import CageConfig
    from cage.pipeline_cage import NON_FINITE_ERROR, outputs_to_records

    config = CageConfig()
    logits = torch.zeros(3, config.num_labels)
    regression = torch.tensor([[0.5, -0.25], [float("nan"), 0.0], [0.1, float("inf")]])
    good, nan_row, inf_row = outputs_to_records(logits, regression, config)
    assert good["valence"] == 0.5 and good["arousal"] == -0.25 and "error" not in good
    for row in (nan_row, inf_row):
        assert row["error"] == NON_FINITE_ERROR and row["valence"] is None and row["expression"] is None


# ------------------------------------------------------------------------------------------- 8. usage errors


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--device", "meta"], "device 'meta' cannot run inference"),
        (["--device", "nonsense"], "device 'nonsense' is not a device name"),
        (["--device", "xpu"], "no Intel XPU is available"),
        (["-o", "{tmp}/missing/out.json"], "does not exist; create it first"),
        (["-o", "{tmp}"], "is a folder"),
    ],
)
def test_usage_errors_are_one_line_and_exit_2(cli, tiny_model_dir, tmp_path, extra, needle):
    import torch

    if "xpu" in extra and getattr(torch, "xpu", None) is not None and torch.xpu.is_available():
        pytest.skip("an Intel XPU is present")
    extra = [value.replace("{tmp}", str(tmp_path)) for value in extra]
    code, out, err = cli("predict", str(face_photo("obama.jpg")), "--model", str(tiny_model_dir), *extra)
    assert code == 2 and out == ""
    lines = [line for line in err.splitlines() if line.startswith("cage predict:")]
    assert len(lines) == 1 and needle in lines[0], err
    assert "Traceback" not in err
    assert not (tmp_path / "missing").exists()


def test_model_path_with_tilde_is_expanded(cli, tiny_model_dir, tmp_path, monkeypatch):
    import shutil

    shutil.copytree(tiny_model_dir, tmp_path / "models" / "tiny")
    monkeypatch.setenv("HOME", str(tmp_path))
    code, out, err = cli("predict", str(face_photo("obama.jpg")), "--model", "~/models/tiny", "--format", "jsonl")
    assert code == 0, err
    assert len(strict_json(out)["faces"]) == 1
    code, _, err = cli("predict", str(face_photo("obama.jpg")), "--model", "~/models/absent")
    assert code == 2 and f"{tmp_path}/models/absent: no such folder" in err


def test_model_load_errors_of_any_command_are_one_line(cli, tmp_path):
    code, _, err = cli("bench", "--model", str(tmp_path / "absent"))
    assert code == 2 and "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith(f"cage bench: {tmp_path / 'absent'}: no such folder")


# ------------------------------------------------------------------------------------ 9. prepare pre-checks


def test_prepare_checks_the_hold_out_before_decoding_and_names_the_smallest_fraction(tmp_path, monkeypatch):
    from data_fixtures import affectnet_labels, write_affectnet_cropped

    from cage.data import PrepareError, affectnet, prepare_affectnet

    root = tmp_path / "affectnet"
    write_affectnet_cropped(root, affectnet_labels(per_class=4), affectnet_labels(per_class=1, offset=100))
    decoded = []
    monkeypatch.setattr(affectnet, "read_source_image", lambda *a, **k: decoded.append(a) or None)
    with pytest.raises(PrepareError, match=r"32 training examples.*use --val-fraction 0\.25 \(the smallest") as info:
        prepare_affectnet(root, tmp_path / "out", val_fraction=0.05)
    assert decoded == [] and "before decoding" in str(info.value)
    assert not (tmp_path / "out").exists()
    # The fraction named works: 8 of 32 held out, one per class.
    monkeypatch.undo()
    splits, _, _ = prepare_affectnet(root, tmp_path / "out", val_fraction=0.25)
    assert len(splits["validation"]) == 8 and sorted(splits["validation"]["label"]) == list(range(8))


def test_holdout_problem_bounds():
    from cage.data.affectnet import holdout_problem

    assert holdout_problem([5] * 8, 0.2) is None  # 8 of 40: one per class
    assert "--val-fraction 0.2 " in holdout_problem([5] * 8, 0.05)
    assert "classes [2] have fewer" in holdout_problem([5, 5, 1, 5, 5, 5, 5, 5], 0.5)
    assert "--val-fraction 0.2 " in holdout_problem([5] * 8, 0.9)  # too few left to train on


# ------------------------------------------------------------------------------------------ 7. files and names


def test_odd_names_extensions_and_linked_folders_are_read_or_named_as_skipped(cli, tiny_model_dir, tmp_path):
    import os
    import shutil

    obama = face_photo("obama.jpg")
    photos = tmp_path / "photos"
    photos.mkdir()
    raw_name = os.fsencode(str(photos)) + b"/caf\xe9.jpg"  # Latin-1 byte: not valid UTF-8
    shutil.copy(obama, os.fsdecode(raw_name))
    shutil.copy(obama, photos / "portrait.img")  # a JPEG with an extension on no list
    (photos / "notes.txt").write_text("not an image")
    shutil.copy(obama, photos / ".hidden.jpg")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.copy(obama, elsewhere / "linked.jpg")
    (photos / "album").symlink_to(elsewhere, target_is_directory=True)
    (photos / "loop").symlink_to(photos, target_is_directory=True)  # must not recurse forever

    for fmt in ("jsonl", "csv"):
        code, out, err = cli("predict", str(photos), "--model", str(tiny_model_dir), "--format", fmt)
        assert code == 0, err
        if fmt == "jsonl":
            records = [strict_json(line) for line in out.splitlines()]
            names = [record["file"] for record in records]
            assert names == [f"{photos}/album/linked.jpg", f"{photos}/caf\\xe9.jpg", f"{photos}/portrait.img"]
            assert [len(record["faces"]) for record in records] == [1, 1, 1]
        else:
            out.encode("utf-8")  # the CSV is valid UTF-8 whatever the names
            assert f"{photos}/caf\\xe9.jpg" in out
    skipped = [line for line in err.splitlines() if "skipped" in line and "cage predict: skipped" in line]
    assert any("notes.txt: not an image Pillow can open" in line for line in skipped)
    assert any(".hidden.jpg: hidden file" in line for line in skipped)
    assert any("loop: link to a folder already read" in line for line in skipped)
    assert "3 images, 3 faces, 0 failed, 0 faces without a prediction, 3 skipped" in err


# --------------------------------------------------------------------------------------------------- 1. threads


def test_one_analyzer_shared_by_four_threads_gives_the_sequential_records(tiny_model_dir):
    import threading

    from cage import ExpressionAnalyzer

    skimage_data = pytest.importorskip("skimage.data")
    analyzer = ExpressionAnalyzer.from_pretrained(tiny_model_dir, device="cpu", detector="dlib")
    base = Image.fromarray(skimage_data.astronaut())
    two = Image.open(face_photo("two_people.jpg")).convert("RGB")
    images = [base.resize((384, 384)), two, base.resize((300, 300)), two.resize((two.width // 2 * 2, two.height))]
    expected = [analyzer.predict(image) for image in images]
    assert [len(faces) for faces in expected] == [1, 2, 1, 2]
    got: dict[tuple[int, int], list] = {}
    start = threading.Barrier(4)

    def work(index: int) -> None:
        start.wait()
        for repeat in range(3):
            got[index, repeat] = analyzer.predict(images[(index + repeat) % 4])

    threads = [threading.Thread(target=work, args=(index,)) for index in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert len(got) == 12
    for (index, repeat), faces in got.items():
        assert faces == expected[(index + repeat) % 4]


# ------------------------------------------------------------------------------------- 2. pipeline batching


def assert_same_records(got: list[dict], want: list[dict], tolerance: float = 1e-5) -> None:
    """Same faces (boxes, scores, labels exactly) and the same numbers up to ``tolerance``."""
    assert len(got) == len(want)
    for a, b in zip(got, want):
        assert a.keys() == b.keys()
        assert (a["box"], a["score"], a["box_source"]) == (b["box"], b["score"], b["box_source"])
        assert a["probabilities"] == pytest.approx(b["probabilities"], abs=tolerance)
        for key in ("valence", "arousal"):
            assert a[key] == pytest.approx(b[key], abs=tolerance)


def test_pipeline_batch_size_gives_the_batch_size_1_records(one_torch_thread, tiny_model_dir, coffee_image):
    from transformers import pipeline

    from cage import ExpressionAnalyzer
    from cage.pipeline_cage import TASK, FaceExpressionPipeline

    pipe = pipeline(TASK, model=str(tiny_model_dir), pipeline_class=FaceExpressionPipeline, device="cpu")
    two, one = str(face_photo("two_people.jpg")), str(face_photo("obama.jpg"))
    images = [two, one, str(coffee_image), one, two]
    alone = [pipe(image) for image in images]
    assert [len(faces) for faces in alone] == [2, 1, 0, 1, 2]
    analyzer = ExpressionAnalyzer.from_pretrained(tiny_model_dir, device="cpu")
    assert_same_records(alone[0], analyzer.predict(two))
    for batch_size in (2, 4):
        batched = pipe(images, batch_size=batch_size)
        assert len(batched) == len(images)
        for got, want in zip(batched, alone):
            assert_same_records(got, want)


# ------------------------------------------------------------------------------------------ 3. detection size


@pytest.fixture(scope="module")
def group_canvas():
    """30 faces of ~90 px pasted on a 4800 x 3200 canvas (rows of 6, jittered so that several straddle the
    detector's tile edges), with each pasted face's box (dlib's box on the source photo, scaled and moved)."""
    import dlib

    detector = dlib.get_frontal_face_detector()
    sources = []
    for name in ("obama.jpg", "biden.jpg", "two_people.jpg"):
        photo = Image.open(face_photo(name)).convert("RGB")
        for rect in detector(np.asarray(photo), 1):
            x, y, w, h = rect.left(), rect.top(), rect.width(), rect.height()
            margin, scale = 0.6 * w, 90 / w
            crop = photo.crop((round(x - margin), round(y - margin), round(x + w + margin), round(y + h + margin)))
            crop = crop.resize((round(crop.width * scale), round(crop.height * scale)), Image.BILINEAR)
            sources.append((crop, (round(x - margin) - x) * -scale, (round(y - margin) - y) * -scale, 90, h * scale))
    assert len(sources) == 4
    rng = np.random.default_rng(0)
    canvas = Image.new("RGB", (4800, 3200), (128, 128, 128))
    truth = []
    for index in range(30):
        row, column = divmod(index, 6)
        left = 100 + column * 780 + int(rng.integers(0, 450))
        top = 100 + row * 620 + int(rng.integers(0, 300))
        crop, fx, fy, fw, fh = sources[index % 4]
        canvas.paste(crop, (left, top))
        truth.append((left + fx, top + fy, fw, fh))
    return canvas, truth


def test_small_faces_in_a_big_photo_are_found_by_default(group_canvas):
    from cage.face_detection_cage import create_face_detector, tile_starts

    canvas, truth = group_canvas
    faces = create_face_detector("dlib").detect(canvas)
    assert len(faces) == 30
    # One detection per pasted face, centred on it (within 15 px) and of its size (dlib's boxes come in
    # pyramid steps of ~1.2x, so 75-110 px for a 90 px face).
    for x, y, w, h in truth:
        near = [
            f
            for f in faces
            if abs(f.box[0] + f.box[2] / 2 - x - w / 2) < 15 and abs(f.box[1] + f.box[3] / 2 - y - h / 2) < 15
        ]
        assert len(near) == 1 and 70 <= near[0].box[2] <= 115, (x, y, [f.box for f in near])
    # Some faces straddle a tile edge: they were found whole in the neighbouring tile.
    edges = [start + 1024 for start in tile_starts(4800, 1024, 256)[:-1]]
    assert any(x < edge < x + w for x, y, w, h in truth for edge in edges)
    # The old single pass at 1024 px sees 19-pixel faces: none are found.
    assert create_face_detector("dlib", detect_size=1024).detect(canvas) == []


def test_detect_size_reaches_the_api_and_the_cli(cli, tiny_model_dir, tmp_path):
    from cage import ExpressionAnalyzer

    analyzer = ExpressionAnalyzer.from_pretrained(tiny_model_dir, device="cpu", detect_size=640)
    assert analyzer.detector.detect_size == 640
    assert ExpressionAnalyzer.from_pretrained(tiny_model_dir, device="cpu").detector.detect_size == "auto"
    code, _, err = cli("predict", str(face_photo("obama.jpg")), "--model", str(tiny_model_dir), "--detect-size", "x")
    assert code == 2 and "detect size 'x' is not valid" in err
    code, out, err = cli(
        "predict", str(face_photo("two_people.jpg")), "--model", str(tiny_model_dir), "--detect-size", "512"
    )
    assert code == 0, err
    assert len(strict_json(out)[0]["faces"]) == 2


# --------------------------------------------------------------------------------------- 4/5. real videos


def write_vfr_mp4(path: Path) -> list[float]:
    """A 40-frame MP4 whose first 20 frames last 0.04 s and the next 20 last 0.5 s (explicit PTS, PyAV);
    returns each frame's presentation time in seconds."""
    av = pytest.importorskip("av")
    from fractions import Fraction

    times, pts = [], 0
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.codec_context.time_base = stream.time_base = Fraction(1, 1000)
        for index in range(40):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), index * 6, np.uint8), format="rgb24")
            frame.pts, frame.time_base = pts, Fraction(1, 1000)
            times.append(pts / 1000)
            for packet in stream.encode(frame):
                container.mux(packet)
            pts += 40 if index < 20 else 500
        for packet in stream.encode():
            container.mux(packet)
    return times


def write_mjpeg_avi(path: Path, frames: int = 30, corrupt: tuple[int, ...] = ()) -> None:
    """An MJPEG AVI of ``frames`` gray frames at 10 fps whose ``corrupt`` frames' JPEG data is overwritten."""
    import cv2

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    for index in range(frames):
        writer.write(np.full((48, 64, 3), index * 8, np.uint8))
    writer.release()
    data = bytearray(path.read_bytes())
    chunks, position = [], data.find(b"00dc")
    while position != -1:
        if data[position + 8 : position + 10] == b"\xff\xd8":  # '00dc', size, then a JPEG
            chunks.append(position + 8)
        position = data.find(b"00dc", position + 4)
    assert len(chunks) == frames
    for index in corrupt:
        start = chunks[index]
        size = int.from_bytes(data[start - 4 : start], "little")
        data[start : start + size] = bytes(range(256)) * (size // 256) + bytes(size % 256)
    path.write_bytes(bytes(data))


def test_video_time_is_each_frames_presentation_time(tmp_path):
    from cage.inference.sources import iter_video_frames

    path = tmp_path / "vfr.mp4"
    times = write_vfr_mp4(path)
    frames = list(iter_video_frames(path))
    assert [f.index for f in frames] == list(range(40)) and all(f.error is None for f in frames)
    assert [frames[i].time_s for i in (1, 20, 39)] == [0.04, 0.8, 10.3]
    assert [f.time_s for f in frames] == pytest.approx(times, abs=1e-3)
    # --fps 1 follows the same clock: the first frame at or after each whole second.
    sampled = list(iter_video_frames(path, fps=1))
    want = [next(i for i, t in enumerate(times) if t >= second - 1e-9) for second in range(11)]
    assert [f.index for f in sampled] == sorted(set(want))
    assert [f.time_s for f in sampled] == [round(times[i], 3) for i in sorted(set(want))]


def test_bad_frames_are_skipped_and_reported_and_the_video_goes_on(cli, tiny_model_dir, tmp_path):
    from cage.inference.sources import iter_video_frames

    bad = tmp_path / "bad.avi"
    write_mjpeg_avi(bad, corrupt=(10,))
    frames = list(iter_video_frames(bad))
    assert [f.index for f in frames] == list(range(30))
    assert [f.index for f in frames if f.error] == [10] and "frame 10 cannot be decoded" in frames[10].error
    assert frames[11].time_s == pytest.approx(1.1) and frames[11].image is not None
    code, out, err = cli("predict", str(bad), "--model", str(tiny_model_dir), "--detector", "none", "--format", "jsonl")
    assert code == 1
    records = [strict_json(line) for line in out.splitlines()]
    # The video's per-track summary (issue 15) closes its output: 29 decoded frames of one face, one track.
    summaries = [r for r in records if "track_summary" in r]
    assert records[-1] is summaries[-1] and [(t["track_id"], t["frames"]) for t in summaries[0]["track_summary"]] == [(0, 29)]
    records = [r for r in records if "track_summary" not in r]
    assert len(records) == 30 and [r["frame"] for r in records] == list(range(30))
    assert [r["frame"] for r in records if "error" in r] == [10] and records[10]["time_s"] is None
    assert all(len(r["faces"]) == 1 for r in records if "error" not in r)
    assert "frame 10 cannot be decoded" in err and "1 failed" in err


def test_empty_and_short_videos_give_an_error_record(cli, tiny_model_dir, tmp_path):
    import cv2

    empty = tmp_path / "empty.avi"
    writer = cv2.VideoWriter(str(empty), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    writer.release()
    short = tmp_path / "short.avi"
    write_mjpeg_avi(short, frames=12, corrupt=(9, 10, 11))  # the last frames are unreadable
    code, out, err = cli("predict", str(empty), str(short), "--model", str(tiny_model_dir), "--detector", "none",
                         "--format", "jsonl")  # fmt: skip
    assert code == 1
    records = [strict_json(line) for line in out.splitlines()]
    summaries = [r for r in records if "track_summary" in r]  # per-track summaries close each video (issue 15)
    assert [r["file"] for r in summaries] == [str(short)]
    records = [r for r in records if "track_summary" not in r]
    assert records[0]["file"] == str(empty) and records[0]["faces"] == [] and "error" in records[0]
    assert [r["frame"] for r in records[1:10]] == list(range(9)) and all("error" not in r for r in records[1:10])
    assert records[10]["file"] == str(short) and "frame" not in records[10]
    assert "read 9 of the 12 frames the container states" in records[10]["error"]
    assert len(records) == 11


def test_evaluate_checks_its_output_folder_first(cli, tmp_path):
    code, out, err = cli("evaluate", "--model", str(tmp_path / "m"), "--data", str(tmp_path / "d"),
                         "--output", str(tmp_path / "missing" / "metrics.json"))  # fmt: skip
    assert code == 2 and out == ""
    output, folder = tmp_path / "missing" / "metrics.json", tmp_path / "missing"
    assert err.strip() == f"cage evaluate: --output {output}: the folder {folder} does not exist; create it first"
