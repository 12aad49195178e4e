"""Face tracks through videos: stable ids for two people moving across frames, also across a detection gap;
one CSV row per (frame, track); per-track summary and plots."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from PIL import Image

from cage.cli import main
from cage.inference.tracking import IoUTracker, box_iou
from conftest import face_photo

cv2 = pytest.importorskip("cv2")

FRAMES, GAP = 20, (8, 9)  # frames 8 and 9 show nobody: a 2-frame gap in detection


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # conftest: one intra-op thread


def _head(name: str, box: tuple[int, int, int, int], size: int = 150) -> Image.Image:
    photo = Image.open(face_photo(name)).convert("RGB")
    x, y, w, h = box
    margin = w // 2
    return photo.crop((x - margin, y - margin, x + w + margin, y + h + margin)).resize((size, size))


@pytest.fixture(scope="module")
def two_people_video(tmp_path_factory):
    """20 frames, 640x360 at 10 fps: Obama walks right and down on the left, Biden walks left on the right (6 px
    per frame each); in frames 8 and 9 both are hidden."""
    left = _head("obama.jpg", (377, 158, 249, 249))  # their dlib boxes in the shared photos
    right = _head("biden.jpg", (432, 211, 336, 336))
    path = tmp_path_factory.mktemp("tracks") / "two_people_walking.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (640, 360))
    for frame in range(FRAMES):
        canvas = Image.new("RGB", (640, 360), (90, 100, 110))
        if frame not in GAP:
            canvas.paste(left, (20 + 6 * frame, 100 + 2 * frame))
            canvas.paste(right, (470 - 6 * frame, 80))
        writer.write(np.ascontiguousarray(np.asarray(canvas)[:, :, ::-1]))
    writer.release()
    return path


def test_two_people_keep_their_track_ids_across_a_gap(tiny_model_dir, two_people_video, tmp_path, capsys):
    out, plots = tmp_path / "tracks.csv", tmp_path / "plots"
    code = main(["predict", str(two_people_video), "--model", str(tiny_model_dir), "--precision", "fp32",
                 "--output", str(out), "--plot", str(plots), "--no-progress"])
    assert code == 0, capsys.readouterr().err
    rows = list(csv.DictReader(out.open()))
    faces = [r for r in rows if r["face"] not in ("", "summary")]
    summaries = [r for r in rows if r["face"] == "summary"]
    # every frame appears; the gap frames with no face, the others with both people
    assert sorted({int(r["frame"]) for r in rows if r["frame"]}) == list(range(FRAMES))
    assert {int(r["frame"]) for r in rows if r["face"] == ""} == set(GAP)
    assert len(faces) == 2 * (FRAMES - len(GAP))
    by_frame: dict[int, dict[str, str]] = {}
    for row in faces:
        x = float(row["x"])
        by_frame.setdefault(int(row["frame"]), {})["left" if x < 320 else "right"] = row["track_id"]
    assert all(set(people) == {"left", "right"} for people in by_frame.values())
    assert {people["left"] for people in by_frame.values()} == {"0"}  # one id each, before and after the gap
    assert {people["right"] for people in by_frame.values()} == {"1"}
    # the summary closes the video: one row per track, frames seen, means of that track's rows
    assert rows[-2:] == summaries and [r["track_id"] for r in summaries] == ["0", "1"]
    for summary in summaries:
        mine = [r for r in faces if r["track_id"] == summary["track_id"]]
        assert int(summary["frames"]) == len(mine) == FRAMES - len(GAP)
        for target in ("valence", "arousal"):
            values = np.array([float(r[target]) for r in mine])
            assert float(summary[target]) == pytest.approx(values.mean(), abs=2e-6)
            assert float(summary[f"{target}_std"]) == pytest.approx(values.std(), abs=2e-6)
        shares = {k[2:]: float(v) for k, v in summary.items() if k.startswith("p_")}
        counts = {label: sum(r["expression"] == label for r in mine) / len(mine) for label in shares}
        assert shares == pytest.approx(counts, abs=1e-6)
    assert sorted(p.name for p in plots.iterdir()) == [
        "two_people_walking_circumplex.png",
        "two_people_walking_timeline.png",
    ]
    assert all(Image.open(p).size[0] > 100 for p in plots.iterdir())


def test_json_output_ends_each_video_with_its_track_summary(tiny_model_dir, two_people_video, tmp_path, capsys):
    out = tmp_path / "tracks.jsonl"
    code = main(["predict", str(two_people_video), "--model", str(tiny_model_dir), "--precision", "fp32",
                 "--every", "2", "--output", str(out), "--no-progress"])
    assert code == 0, capsys.readouterr().err
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r.get("frame") for r in records[:-1]] == list(range(0, FRAMES, 2))
    assert "cage predict: 10 video frames, 18 faces, 0 failed" in capsys.readouterr().err
    summary = records[-1]
    assert summary["file"] == str(two_people_video) and set(summary) == {"file", "track_summary"}
    assert [t["track_id"] for t in summary["track_summary"]] == [0, 1]
    assert [t["frames"] for t in summary["track_summary"]] == [9, 9]
    assert summary["track_summary"][0]["first_frame"] == 0 and summary["track_summary"][0]["last_frame"] == 18
    assert {tuple(sorted(f["track_id"] for f in r["faces"])) for r in records[:-1]} == {(0, 1), ()}


def test_tracker_matches_by_overlap_and_forgets_after_max_missed():
    tracker = IoUTracker(iou_threshold=0.3, max_missed=2)
    assert tracker.update([[0, 0, 10, 10], [100, 0, 10, 10]]) == [0, 1]
    assert tracker.update([[102, 0, 10, 10], [2, 0, 10, 10]]) == [1, 0]  # order of detections does not matter
    assert tracker.update([]) == []
    assert tracker.update([[6, 0, 10, 10]]) == [0]  # after one missed frame, found where its motion leads
    for _ in range(3):
        tracker.update([[8, 0, 10, 10]])
    assert tracker.update([[300, 300, 10, 10]]) == [2]  # a new face: a new id
    for _ in range(3):
        tracker.update([])
    assert tracker.update([[104, 0, 10, 10]]) == [3]  # track 1 was lost more than 2 frames ago: never reused


def test_box_iou():
    iou = box_iou(np.array([[0, 0, 10, 10]]), np.array([[5, 0, 10, 10], [20, 20, 5, 5], [0, 0, 10, 10]]))
    np.testing.assert_allclose(iou, [[50 / 150, 0.0, 1.0]])
