"""The Space under load: 50 concurrent ``/predict`` calls from ``gradio_client`` threads on loopback, against
the app started on the tiny model in its own process; every answer right, the process's memory bounded."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from PIL import Image

from conftest import REPO_ROOT, face_photo, free_port, load_space_app

pytest.importorskip("gradio", reason="the Space needs the `demo` extra (gradio)")
gradio_client = pytest.importorskip("gradio_client")
psutil = pytest.importorskip("psutil")

REQUESTS = 50
# Resident memory the app process may gain while serving the burst (measured: see README, "Space").
RSS_GROWTH_LIMIT_MB = 300


@pytest.fixture(scope="module")
def load_images(tmp_path_factory, coffee_image):
    """Three small uploads: two faces, one face, no face."""
    folder = tmp_path_factory.mktemp("load")
    paths = []
    for name, source, width in (
        ("two.png", face_photo("two_people.jpg"), 480),
        ("one.png", face_photo("obama.jpg"), 320),
        ("none.png", coffee_image, 320),
    ):
        image = Image.open(source).convert("RGB")
        image.resize((width, round(image.height * width / image.width))).save(folder / name)
        paths.append(str(folder / name))
    return paths


@pytest.fixture(scope="module")
def space_process(tiny_model_dir):
    """``python spaces_app/app.py`` on a free loopback port, with the tiny model; yields (process, url)."""
    port = free_port()
    env = dict(
        os.environ,
        CAGE_MODEL=str(tiny_model_dir),
        GRADIO_SERVER_NAME="127.0.0.1",
        GRADIO_SERVER_PORT=str(port),
        GRADIO_ANALYTICS_ENABLED="False",
        HF_HUB_OFFLINE="1",
        OMP_NUM_THREADS="1",
        PYTHONPATH=str(REPO_ROOT / "src"),
    )
    process = subprocess.Popen(
        [sys.executable, str(REPO_ROOT / "spaces_app" / "app.py")],
        env=env,
        cwd=REPO_ROOT / "spaces_app",
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 240
        while True:
            assert process.poll() is None, "the Space process exited while starting"
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                assert time.monotonic() < deadline, "the Space did not start within 240 s"
                time.sleep(0.5)
        yield process, url
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()


def test_fifty_concurrent_predict_calls_are_all_answered_right(space_process, load_images, tiny_model_dir):
    from cage.inference import load_analyzer

    process, url = space_process
    analyzer = load_analyzer(tiny_model_dir, device="cpu")
    expected = {path: analyzer.predict(path) for path in load_images}
    assert [len(faces) for faces in expected.values()] == [2, 1, 0]

    client = gradio_client.Client(url, verbose=False)
    for path in load_images:  # warm-up: models, detectors and gradio's queue in memory
        client.predict(gradio_client.handle_file(path), api_name="/predict")
    app = psutil.Process(process.pid)
    baseline = app.memory_info().rss
    peak = [baseline]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], app.memory_info().rss)
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()

    def call(index: int):
        path = load_images[index % len(load_images)]
        own = gradio_client.Client(url, verbose=False) if index % 10 == 0 else client  # shared and own clients
        return path, own.predict(gradio_client.handle_file(path), api_name="/predict")

    started = time.monotonic()
    try:
        with ThreadPoolExecutor(max_workers=REQUESTS) as pool:
            answers = [future.result(timeout=600) for future in [pool.submit(call, i) for i in range(REQUESTS)]]
    finally:
        done.set()
        sampler.join()
    elapsed = time.monotonic() - started
    assert process.poll() is None  # no crash
    assert len(answers) == REQUESTS
    for path, record in answers:
        assert record["file"] == os.path.basename(path)
        want = expected[path]
        assert len(record["faces"]) == len(want)
        for got, face in zip(record["faces"], want):
            assert got["box"] == face["box"] and got["expression"] == face["expression"]
            assert got["valence"] == pytest.approx(face["valence"], abs=1e-5)
            assert got["arousal"] == pytest.approx(face["arousal"], abs=1e-5)
    growth_mb = (peak[0] - baseline) / 2**20
    print(f"\n{REQUESTS} requests in {elapsed:.1f} s; RSS {baseline / 2**20:.0f} MB -> peak {peak[0] / 2**20:.0f} MB")
    assert growth_mb < RSS_GROWTH_LIMIT_MB


def test_space_shows_faces_without_prediction_and_offers_detection_sizes(tiny_model_dir, tmp_path):
    import torch

    from cage.modeling_cage import CageForExpressionInference

    app = load_space_app()
    model = CageForExpressionInference.from_pretrained(tiny_model_dir)
    with torch.no_grad():
        model.head.output.weight.fill_(float("nan"))
    model.save_pretrained(tmp_path / "nan")
    processor_config = (tiny_model_dir / "preprocessor_config.json").read_text()
    (tmp_path / "nan" / "preprocessor_config.json").write_text(processor_config)
    state = app.load_model(str(tmp_path / "nan"))
    assert state.detector_for("auto") is state.analyzer.detector
    assert state.detector_for("1024").detect_size == 1024
    outputs = app.analyze_photo(state, str(face_photo("obama.jpg")), "1024")
    status, table, record = outputs[1], outputs[2 + app.MAX_FACES_SHOWN], outputs[-1]
    assert "1 face(s) without a prediction" in status
    assert table["expression"].tolist() == [None] and table["valence"].isna().all()
    assert "not finite" in record["faces"][0]["error"]
