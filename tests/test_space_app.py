"""The Gradio Space (spaces_app/): served in-process and called with gradio_client, plus its pure parts."""

from __future__ import annotations

import json
import math
import re
import time
from pathlib import Path

import pytest
from PIL import Image

from conftest import GRADIO_PANDAS_WARNINGS, REPO_ROOT, face_photo, free_port, load_space_app

gr = pytest.importorskip("gradio", reason="the Space needs the `demo` extra (gradio)")
pytestmark = GRADIO_PANDAS_WARNINGS

gradio_client = pytest.importorskip("gradio_client")

SPACE_DIR = REPO_ROOT / "spaces_app"


@pytest.fixture(scope="module")
def app():
    return load_space_app()


@pytest.fixture(scope="module")
def client(app, tiny_model_dir):
    """The Space served on a free local port with the tiny model chosen through ``CAGE_MODEL``."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CAGE_MODEL", str(tiny_model_dir))
        demo = app.build_demo()
    _, url, _ = demo.launch(server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True, quiet=True)
    try:
        yield gradio_client.Client(url, verbose=False)
    finally:
        demo.close()


@pytest.fixture(scope="module")
def reference_faces(tiny_model_dir):
    """What `cage predict` computes for two_people.jpg (same library path: predict_paths)."""
    from cage.inference import load_analyzer, predict_paths

    (result,) = predict_paths(load_analyzer(tiny_model_dir), [face_photo("two_people.jpg")])
    assert result.error is None
    return result.faces


def test_predict_endpoint_matches_cage_predict(client, reference_faces):
    record = client.predict(gradio_client.handle_file(str(face_photo("two_people.jpg"))), api_name="/predict")
    assert record["file"] == "two_people.jpg"
    assert len(record["faces"]) == 2 == len(reference_faces)
    for got, want in zip(record["faces"], reference_faces):
        assert set(got) == set(want) >= {"box", "score", "crop", "expression", "probabilities", "valence", "arousal"}
        assert got["box"] == want["box"]
        assert got["expression"] == want["expression"]
        assert list(got["probabilities"]) == list(want["probabilities"])
        for label, probability in want["probabilities"].items():
            assert got["probabilities"][label] == pytest.approx(probability, abs=1e-6)
        assert got["valence"] == pytest.approx(want["valence"], abs=1e-6)
        assert got["arousal"] == pytest.approx(want["arousal"], abs=1e-6)
        assert got["score"] == want["score"]


def test_analyze_endpoint_shows_each_face(app, client, reference_faces):
    outputs = client.predict(gradio_client.handle_file(str(face_photo("two_people.jpg"))), api_name="/analyze")
    annotated, status, *panels = outputs[: 2 + app.MAX_FACES_SHOWN]
    table, _plot, record = outputs[2 + app.MAX_FACES_SHOWN :]
    assert "2 faces" in status
    assert Image.open(annotated).size == Image.open(face_photo("two_people.jpg")).size
    shown = [panel for panel in panels if panel.get("visible")]
    assert len(shown) == 2
    for index, (panel, face) in enumerate(zip(shown, reference_faces)):
        assert panel["color"] == app.face_colour(index)
        assert panel["value"]["label"] == face["expression"]
        assert f"valence {face['valence']:+.2f}" in panel["label"]
    assert [row[2] for row in table["data"]] == [face["expression"] for face in reference_faces]
    assert [row[4] for row in table["data"]] == pytest.approx([face["valence"] for face in reference_faces])
    assert record["faces"][0]["box"] == reference_faces[0]["box"]


def test_no_face_message(app, client, coffee_image):
    outputs = client.predict(gradio_client.handle_file(str(coffee_image)), api_name="/analyze")
    status, record = outputs[1], outputs[-1]
    assert status == app.NO_FACE_MESSAGE
    assert record["faces"] == []
    assert client.predict(gradio_client.handle_file(str(coffee_image)), api_name="/predict")["faces"] == []


def test_model_that_cannot_be_loaded(app, tmp_path):
    state = app.load_model(str(tmp_path / "missing-model"))
    assert state.analyzer is None and "missing-model" in state.error
    assert state.banner.startswith("### The model cannot be loaded")
    outputs = app.analyze_photo(state, str(face_photo("obama.jpg")))
    assert outputs[1] == state.banner and outputs[0] is None
    with pytest.raises(gr.Error, match="cannot be loaded"):
        app.predict_records(state, str(face_photo("obama.jpg")))
    offline_hub = app.load_model("cage/maxvit-va")  # HF_HUB_OFFLINE=1 in tests
    assert offline_hub.analyzer is None and "HF_HUB_OFFLINE" in offline_hub.error


def test_boxes_and_plot_markers_share_colours(app):
    image = Image.new("RGB", (400, 300), "white")
    faces = [
        {"box": [20, 100, 80, 80], "expression": "Happy", "valence": 0.5, "arousal": 0.1},
        {"box": [250, 120, 90, 90], "expression": "Sad", "valence": -0.4, "arousal": -0.3},
    ]
    drawn = app.draw_faces(image, faces)
    assert drawn.size == image.size and image.getpixel((60, 180)) == (255, 255, 255)  # drawn on a copy
    for index, face in enumerate(faces):
        x, y, w, h = face["box"]
        expected = Image.new("RGB", (1, 1), app.face_colour(index)).getpixel((0, 0))
        assert drawn.getpixel((x + w // 2, y + h)) == expected  # bottom edge of the box
    points = [(f["valence"], f["arousal"], app.face_colour(i), str(i + 1)) for i, f in enumerate(faces)]
    axes = app.circumplex_figure(points).axes[0]
    collections = axes.collections
    references = collections[: len(app.AFFECTNET_REFERENCE_POINTS)]
    got_references = [float(v) for c in references for v in c.get_offsets()[0]]
    assert got_references == pytest.approx([v for point in app.AFFECTNET_REFERENCE_POINTS.values() for v in point])
    markers = collections[len(app.AFFECTNET_REFERENCE_POINTS) :]
    assert [tuple(float(v) for v in c.get_offsets()[0]) for c in markers] == [(0.5, 0.1), (-0.4, -0.3)]
    marker_rgb = [float(v) for c in markers for v in c.get_facecolor()[0][:3]]
    box_rgb = [v / 255 for i in range(2) for v in Image.new("RGB", (1, 1), app.face_colour(i)).getpixel((0, 0))]
    assert marker_rgb == pytest.approx(box_rgb)
    circle = axes.lines[0].get_xydata()
    assert all(math.hypot(x, y) == pytest.approx(1.0) for x, y in circle)
    texts = {text.get_text() for text in axes.texts}
    assert set(app.QUADRANTS) <= texts and set(app.AFFECTNET_REFERENCE_POINTS) <= texts


def test_live_frames_are_smoothed_and_rate_bounded(app, tiny_model_dir):
    state = app.load_model(str(tiny_model_dir))
    frame = Image.open(face_photo("obama.jpg"))
    annotated, figure, status, smoother = app.analyze_frame(state, frame, None)
    skipped = app.analyze_frame(state, frame, smoother)  # immediately after: over the rate bound
    assert skipped[:3] == (gr.skip(), gr.skip(), gr.skip()) and skipped[3] is smoother
    (face,) = state.analyzer.analyze([frame])[0]
    assert smoother.value == pytest.approx((face["valence"], face["arousal"]))
    assert len(smoother.trace_points()) == 1
    assert annotated.size == frame.size and face["expression"] in status
    assert len(figure.axes[0].collections) == len(app.AFFECTNET_REFERENCE_POINTS) + 2  # smoothed + raw point
    _, _, no_face, _ = app.analyze_frame(state, None, smoother)
    assert no_face == gr.skip()


def test_examples_need_no_upload(app, tiny_model_dir, tmp_path):
    astronaut, coffee = app.example_images(tmp_path)
    state = app.load_model(str(tiny_model_dir))
    boxes = [face["box"] for face in app.predict_records(state, astronaut)["faces"]]
    # Eileen Collins' head is around (220, 120) of the 512 x 512 photo (dlib also reports a weak second box).
    assert any(x <= 220 <= x + w and y <= 120 <= y + h for x, y, w, h in boxes)
    assert app.predict_records(state, coffee)["faces"] == []


def test_space_folder_deploys_on_its_own():
    import yaml

    readme = (SPACE_DIR / "README.md").read_text()
    header = yaml.safe_load(re.match(r"^---\n(.*?)\n---\n", readme, re.S).group(1))
    assert header["sdk"] == "gradio" and header["app_file"] == "app.py"
    assert int(str(header["sdk_version"]).split(".")[0]) == 6
    assert header["models"] == ["cage/maxvit-va"]
    assert {"license", "python_version", "short_description", "title"} <= set(header)
    assert len(header["short_description"]) <= 60  # the Hub's limit
    lines = [line.strip() for line in (SPACE_DIR / "requirements.txt").read_text().splitlines()]
    requirements = [line for line in lines if line and not line.startswith("#")]
    names = {re.split(r"[ @=<>\[]", line)[0].lower() for line in requirements}
    assert {"cage", "matplotlib", "scikit-image"} <= names
    source = (SPACE_DIR / "app.py").read_text()
    assert "sys.path" not in source and "src/" not in source  # `cage` comes from requirements.txt


def test_unreadable_upload_is_named(app, tiny_model_dir, tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg")
    outputs = app.analyze_photo(app.load_model(str(tiny_model_dir)), str(broken))
    assert outputs[0] is None and "broken.jpg: cannot read this image" in outputs[1]


def test_inputs_and_live_stream_are_configured(app, monkeypatch):
    monkeypatch.setenv("CAGE_LIVE_INTERVAL", "0.7")
    demo = app.build_demo(app.ModelState(name="nowhere", error="no such folder"))
    components = {c.elem_id: c for c in demo.blocks.values() if getattr(c, "elem_id", None)}
    assert set(components["photo"].sources) == {"upload", "webcam", "clipboard"}
    # every component is one the browser has a frontend for (a subclass must be a gradio template component)
    assert components["photo"].get_block_name() == "image"
    foreign = [type(block).__name__ for block in demo.blocks.values() if not type(block).__module__.startswith("gradio.")
               and not getattr(block, "is_template", False)]  # fmt: skip
    assert foreign == []
    assert components["webcam"].streaming and components["webcam"].sources == ["webcam"]
    (stream,) = [fn for fn in demo.fns.values() if any(event == "stream" for _, event in fn.targets)]
    assert stream.targets == [(components["webcam"]._id, "stream")]
    assert stream.stream_every == 0.7 and stream.time_limit == 120
    assert {fn.api_name for fn in demo.fns.values()} >= {"predict", "analyze"}
    assert "cannot be loaded" in components["model-banner"].value


# ------------------------------------------------------------------------ uploads read as `cage predict` reads them


def upload_variants(folder) -> dict[str, str]:
    """two_people.jpg as a 16-bit gray PNG, a gray JPEG, a CMYK JPEG and an EXIF-rotated JPEG (upright: the photo)."""
    import numpy as np

    photo = Image.open(face_photo("two_people.jpg")).convert("RGB")
    paths = {}
    gray16 = (np.asarray(photo.convert("L"), dtype=np.uint16) * 257).astype(np.uint16)
    paths["16-bit"] = folder / "sixteen.png"
    Image.fromarray(gray16, mode="I;16").save(paths["16-bit"])
    paths["gray"] = folder / "gray.jpg"
    photo.convert("L").save(paths["gray"], quality=92)
    paths["cmyk"] = folder / "cmyk.jpg"
    photo.convert("CMYK").save(paths["cmyk"], quality=92)
    paths["exif-rotated"] = folder / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation 6: the viewer turns it 90 degrees clockwise to show it upright
    photo.transpose(Image.Transpose.ROTATE_90).save(paths["exif-rotated"], quality=92, exif=exif)
    return {kind: str(path) for kind, path in paths.items()}


def test_uploads_of_every_image_mode_equal_the_cli_fp32_record(client, tiny_model_dir, tmp_path, cli):
    for kind, path in upload_variants(tmp_path).items():
        record = client.predict(gradio_client.handle_file(path), api_name="/predict")
        code, out, err = cli("predict", path, "--model", str(tiny_model_dir), "--precision", "fp32", "--format",
                             "jsonl")  # fmt: skip
        assert code == 0, err
        expected = json.loads(out)
        assert record["file"] == Path(path).name, kind
        assert len(record["faces"]) == len(expected["faces"]) == 2, kind
        for got, want in zip(record["faces"], expected["faces"]):
            assert got["box"] == want["box"] and got["expression"] == want["expression"], kind
            for name in ("valence", "arousal"):
                assert got[name] == pytest.approx(want[name], abs=1e-4), kind
            for label, probability in want["probabilities"].items():
                assert got["probabilities"][label] == pytest.approx(probability, abs=1e-4), kind


def test_an_unreadable_upload_gets_the_app_s_message_through_the_server(client, tmp_path):
    broken = tmp_path / "holiday.jpg"
    broken.write_bytes(b"this is not a jpeg")
    with pytest.raises(Exception, match="holiday.jpg: cannot read this image"):
        client.predict(gradio_client.handle_file(str(broken)), api_name="/predict")
    truncated = tmp_path / "cut.jpg"
    truncated.write_bytes(face_photo("obama.jpg").read_bytes()[:5000])
    with pytest.raises(Exception, match="cut.jpg: cannot read this image"):
        client.predict(gradio_client.handle_file(str(truncated)), api_name="/predict")


def test_a_huge_pixel_upload_is_refused_before_decoding(client, app, tmp_path):
    import psutil

    bomb = tmp_path / "bomb.png"
    Image.new("L", (13000, 13000)).save(bomb, optimize=True)  # a small file of 169 MP
    assert bomb.stat().st_size < 1_000_000
    process = psutil.Process()
    before = process.memory_info().rss
    started = time.perf_counter()
    with pytest.raises(Exception, match="13000 x 13000 pixels .169 MP. is more than this Space decodes"):
        client.predict(gradio_client.handle_file(str(bomb)), api_name="/predict")
    assert time.perf_counter() - started < 20  # the header is read, not 169 MP of pixels
    assert process.memory_info().rss - before < 200_000_000  # decoding would take 169 MB at least, plus copies
    assert app.MAX_PIXELS == 40_000_000 and app.MAX_UPLOAD_BYTES == 20_000_000
    assert app.launch_options()["max_file_size"] == app.MAX_UPLOAD_BYTES


def test_the_upload_cache_is_cleaned(app):
    demo = app.build_demo(app.ModelState(name="nowhere", error="no such folder"))
    assert demo.delete_cache == app.CACHE_CLEANUP == (600, 3600)
