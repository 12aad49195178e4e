"""The Space in a real browser: headless Debian Chromium driven by Playwright uploads a photo and predicts.

Uses the system browser (``apt-get install -y chromium``), never Playwright's browser download; skips with
the reason when either is missing.
"""

from __future__ import annotations

import re
import shutil

import numpy as np
import pytest
from PIL import Image

from conftest import GRADIO_PANDAS_WARNINGS, face_photo, free_port, load_space_app

pytest.importorskip("gradio", reason="the Space needs the `demo` extra (gradio)")
sync_api = pytest.importorskip("playwright.sync_api", reason="the browser test needs `pip install playwright`")

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [
    pytest.mark.skipif(CHROMIUM is None, reason="no system Chromium (Debian: apt-get install -y chromium)"),
    *GRADIO_PANDAS_WARNINGS,
]

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
TIMEOUT_MS = 120_000


@pytest.fixture(scope="module")
def space_url(tiny_model_dir):
    app = load_space_app()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CAGE_MODEL", str(tiny_model_dir))
        demo = app.build_demo()
    _, url, _ = demo.launch(
        server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True, quiet=True, theme=app.THEME
    )
    try:
        yield url
    finally:
        demo.close()


def write_y4m(image: Image.Image, path, size=(640, 480), frames=5) -> None:
    """A still video (YUV4MPEG2, 4:2:0) of ``image`` letterboxed to ``size``, for Chromium's fake webcam."""
    from PIL import ImageOps

    ycbcr = np.asarray(ImageOps.pad(image.convert("RGB"), size, color=(0, 0, 0)).convert("YCbCr"))
    planes = ycbcr[:, :, 0].tobytes() + ycbcr[::2, ::2, 1].tobytes() + ycbcr[::2, ::2, 2].tobytes()
    with open(path, "wb") as stream:
        stream.write(f"YUV4MPEG2 W{size[0]} H{size[1]} F10:1 Ip A1:1 C420jpeg\n".encode())
        for _ in range(frames):
            stream.write(b"FRAME\n" + planes)


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """Headless Chromium whose fake webcam shows obama.jpg."""
    video = tmp_path_factory.mktemp("webcam") / "obama.y4m"
    write_y4m(Image.open(face_photo("obama.jpg")), video)
    fake_webcam = [
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-video-capture={video}",
    ]
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS + fake_webcam)
        try:
            yield browser
        finally:
            browser.close()


def test_upload_predict_and_screenshot(space_url, browser, tmp_path):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    try:
        page.goto(space_url, timeout=TIMEOUT_MS)
        page.locator("#photo input[type=file]").set_input_files(str(face_photo("obama.jpg")))
        page.locator("#photo img").first.wait_for(timeout=TIMEOUT_MS)
        page.locator("#analyze").click()
        annotated = page.locator("#annotated img").first
        annotated.wait_for(timeout=TIMEOUT_MS)
        plot = page.locator("#circumplex img").first
        plot.wait_for(timeout=TIMEOUT_MS)
        status = page.locator("#status").inner_text(timeout=TIMEOUT_MS)
        panel = page.locator("#face-1").inner_text(timeout=TIMEOUT_MS)
        page.screenshot(path=str(tmp_path / "page.png"), full_page=True)
        annotated.screenshot(path=str(tmp_path / "annotated.png"))
        plot.screenshot(path=str(tmp_path / "plot.png"))
    finally:
        page.close()
    assert "1 face" in status
    assert "Face 1" in panel and "valence" in panel
    for name in ("page.png", "annotated.png", "plot.png"):
        pixels = np.asarray(Image.open(tmp_path / name).convert("L"), dtype=np.float64)
        assert pixels.shape[0] > 100 and pixels.shape[1] > 100, name
        assert pixels.std() > 10, f"{name} looks blank (pixel std {pixels.std():.1f})"
    # The annotated photo is the photo, not the plot: mostly non-white; the plot is mostly white.
    assert np.asarray(Image.open(tmp_path / "annotated.png").convert("L")).mean() < 200
    assert np.asarray(Image.open(tmp_path / "plot.png").convert("L")).mean() > 200


def test_live_webcam_stream(space_url, browser, tmp_path):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    try:
        page.goto(space_url, timeout=TIMEOUT_MS)
        page.get_by_role("tab", name="Live webcam").click()
        webcam = page.locator("#webcam")
        webcam.get_by_text("Click to Access Webcam").click()
        webcam.get_by_role("button", name="capture photo").click()  # "Record": starts streaming
        status = page.locator("#live-status")
        status.get_by_text("smoothed valence").wait_for(timeout=TIMEOUT_MS)
        text = status.inner_text()
        page.locator("#live-circumplex img").first.wait_for(timeout=TIMEOUT_MS)
        page.locator("#live-annotated img").first.screenshot(path=str(tmp_path / "live.png"))
    finally:
        page.close()
    assert re.search(r"smoothed valence [+-]\d\.\d\d, arousal [+-]\d\.\d\d", text), text
    pixels = np.asarray(Image.open(tmp_path / "live.png").convert("L"), dtype=np.float64)
    assert pixels.std() > 10, "the annotated webcam frame looks blank"
