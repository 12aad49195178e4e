"""Videos: streamed frame by frame, sampled frames carry their indices and times, memory stays bounded."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from cage import ExpressionAnalyzer
from cage.cli import main
from cage.inference.sources import iter_video_frames
from conftest import face_photo

cv2 = pytest.importorskip("cv2")


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # conftest: one intra-op thread


FPS = 10.0
SIZE = (320, 240)


def _write_video(path, frames, fps=FPS):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, SIZE)
    assert writer.isOpened()
    for frame in frames:
        writer.write(np.ascontiguousarray(np.asarray(frame)[:, :, ::-1]))  # OpenCV writes BGR
    writer.release()
    return path


@pytest.fixture(scope="module")
def scenes():
    """Three letterboxed scenes: one face, two faces, no face (scikit-image's coffee)."""
    data = pytest.importorskip("skimage.data")
    photos = [
        Image.open(face_photo("obama.jpg")),
        Image.open(face_photo("two_people.jpg")),
        Image.fromarray(data.coffee()),
    ]
    return [ImageOps.pad(photo.convert("RGB"), SIZE) for photo in photos]


@pytest.fixture(scope="module")
def video(tmp_path_factory, scenes):
    """12 frames at 10 fps cycling through the scenes: faces per frame 1, 2, 0, 1, 2, 0, ..."""
    return _write_video(tmp_path_factory.mktemp("video") / "clip.avi", [scenes[i % 3] for i in range(12)])


@pytest.fixture(scope="module")
def analyzer(tiny_model_dir):
    return ExpressionAnalyzer.from_pretrained(tiny_model_dir, device="cpu")


def test_every_nth_frame_with_indices_times_and_faces(analyzer, video):
    results = list(analyzer.predict_video(video, every=4))
    assert [r.frame for r in results] == [0, 4, 8]
    assert [r.time_s for r in results] == [0.0, 0.4, 0.8]
    assert [len(r.faces) for r in results] == [1, 2, 0]  # frames 0, 4, 8 show scenes 0, 1, 2
    assert all(r.error is None and r.file == str(video) for r in results)
    left, right = results[1].faces
    assert left["box"][0] + left["box"][2] <= SIZE[0] / 2 < right["box"][0]


def test_fps_sampling(video):
    assert [f.index for f in iter_video_frames(video, fps=2.5)] == [0, 4, 8]  # 10 fps video, one frame per 0.4 s
    assert [f.index for f in iter_video_frames(video, fps=100)] == list(range(12))  # never more than every frame
    frame = next(iter_video_frames(video))
    assert frame.image.mode == "RGB" and frame.image.size == SIZE


def test_video_frames_are_rgb(tmp_path):
    # A pure red clip must come back red, not blue (OpenCV decodes to BGR).
    path = _write_video(tmp_path / "red.avi", [Image.new("RGB", SIZE, (255, 0, 0))] * 2)
    r, g, b = np.asarray(next(iter_video_frames(path)).image).reshape(-1, 3).mean(axis=0)
    assert r > 200 and g < 40 and b < 40


def test_cli_on_video_and_unreadable_video(tiny_model_dir, video, tmp_path, capsys):
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video at all")
    code = main(
        ["predict", str(video), str(broken), "--model", str(tiny_model_dir), "--every", "3", "--format", "jsonl"]
    )
    captured = capsys.readouterr()
    records = [json.loads(line) for line in captured.out.splitlines()]
    assert code == 1
    # the video's frames, then its per-track summary (tracking.py), then the broken video's error
    assert [(r["file"], r.get("frame")) for r in records] == [(str(video), i) for i in (0, 3, 6, 9)] + [
        (str(video), None),
        (str(broken), None),
    ]
    assert [len(r["faces"]) for r in records[:4]] == [1, 1, 1, 1]  # every 3rd frame of a 3-scene cycle: scene 0
    assert [f["track_id"] for r in records[:4] for f in r["faces"]] == [0, 0, 0, 0]  # the same face throughout
    assert [(t["track_id"], t["frames"]) for t in records[4]["track_summary"]] == [(0, 4)]
    assert records[1]["time_s"] == 0.3
    assert "broken.mp4" in records[5]["error"] and "broken.mp4" in captured.err
    assert "cage predict: 4 video frames, 4 faces, 1 failed" in captured.err


def _peak_rss_growth_kib(analyzer, path) -> tuple[int, int]:
    """Frames processed and the rise of the process's peak resident memory (KiB) while streaming ``path``.

    Linux: writing 5 to /proc/self/clear_refs resets the peak (VmHWM) so that each run is measured alone.
    """

    def peak() -> int:
        return int(re.search(r"VmHWM:\s+(\d+)", Path("/proc/self/status").read_text()).group(1))

    Path("/proc/self/clear_refs").write_text("5")
    before = peak()
    count = sum(1 for _ in analyzer.predict_video(path))  # results are consumed, not kept
    return count, peak() - before


def test_memory_does_not_grow_with_video_length(tiny_model_dir, scenes, tmp_path):
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pytest.skip("peak memory is measured through Linux's /proc/self/clear_refs")
    # Whole-image "detection" keeps this fast; the frames still go through decoding, cropping and the model.
    analyzer = ExpressionAnalyzer.from_pretrained(tiny_model_dir, detector="none", device="cpu")
    short = _write_video(tmp_path / "short.avi", [scenes[i % 3] for i in range(30)])
    long = _write_video(tmp_path / "long.avi", [scenes[i % 3] for i in range(150)])
    _peak_rss_growth_kib(analyzer, short)  # warm-up: one-off allocations (caches, lazy imports) are not the point
    short_count, short_growth = _peak_rss_growth_kib(analyzer, short)
    long_count, long_growth = _peak_rss_growth_kib(analyzer, long)
    assert (short_count, long_count) == (30, 150)
    # Holding the extra 120 decoded frames would add >= 27 MiB (320 x 240 x 3 bytes each); streaming holds
    # at most one batch of frames whatever the length.
    assert long_growth - short_growth < 12 * 1024, (short_growth, long_growth)
