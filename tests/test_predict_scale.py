"""``cage predict`` at scale: two gloo processes under ``accelerate launch`` give the one-process records, a killed
run resumes to exactly one record per input."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import free_port
from PIL import Image

N_CROPS = 40


def _env() -> dict[str, str]:
    # One thread per process: the same summation order in every run (thread count changes the last digits on CPU).
    return dict(
        os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", ACCELERATE_USE_CPU="1", PYTHONPATH=_src_path()
    )


def _src_path() -> str:
    src = str(Path(__file__).resolve().parents[1] / "src")
    return os.pathsep.join([src, os.environ["PYTHONPATH"]]) if os.environ.get("PYTHONPATH") else src


def _cage(*args: str, processes: int = 1) -> list[str]:
    if processes == 1:
        return [sys.executable, "-m", "cage", *args]
    accelerate = shutil.which("accelerate", path=str(Path(sys.executable).parent)) or "accelerate"
    port = str(free_port())  # not the default 29500, which parallel runs on the same machine may hold
    return [accelerate, "launch", "--multi_gpu", "--num_processes", str(processes), "--main_process_port", port,
            "-m", "cage", *args]


def run(*args: str, processes: int = 1, timeout: int = 600) -> subprocess.CompletedProcess:
    command = _cage(*args, processes=processes)
    return subprocess.run(command, capture_output=True, text=True, env=_env(), timeout=timeout)


def records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def crops(tmp_path_factory, faces_dir) -> Path:
    """40 different 80 px crops of the shared photos, as a folder (name order = input order)."""
    folder = tmp_path_factory.mktemp("crops")
    photos = [Image.open(faces_dir / n).convert("RGB") for n in ("obama.jpg", "biden.jpg", "two_people.jpg")]
    for k in range(N_CROPS):
        photo = photos[k % len(photos)]
        side = min(photo.size) // 2
        x, y = (k * 37) % (photo.width - side), (k * 53) % (photo.height - side)
        photo.crop((x, y, x + side, y + side)).resize((80, 80)).save(folder / f"crop_{k:02d}.png")
    return folder


@pytest.fixture(scope="module")
def one_process(tiny_model_dir, crops, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("one") / "out.jsonl"
    done = run("predict", str(crops), "--model", str(tiny_model_dir), "--detector", "none", "--precision", "fp32",
               "--output", str(out))
    assert done.returncode == 0, done.stderr
    return out


def test_two_gloo_processes_give_the_one_process_records(tiny_model_dir, crops, one_process, tmp_path):
    out = tmp_path / "out.jsonl"
    done = run("predict", str(crops), "--model", str(tiny_model_dir), "--detector", "none", "--precision", "fp32",
               "--output", str(out), processes=2)
    assert done.returncode == 0, done.stderr
    assert f"{N_CROPS} images, {N_CROPS} faces, 0 failed" in done.stderr and "2 processes" in done.stderr
    got = records(out)
    assert [r["file"] for r in got] == [str(crops / f"crop_{k:02d}.png") for k in range(N_CROPS)]
    assert all(len(r["faces"]) == 1 for r in got)
    assert out.read_text() == one_process.read_text()  # every printed digit
    assert not (tmp_path / "out.jsonl.parts").exists()


def _complete_lines(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.is_file() else 0


def test_killed_run_resumes_to_one_record_per_input(tiny_model_dir, crops, one_process, tmp_path):
    out = tmp_path / "out.jsonl"
    part = tmp_path / "out.jsonl.parts" / "part-00000.jsonl"
    args = ["predict", str(crops), "--model", str(tiny_model_dir), "--detector", "none", "--precision", "fp32",
            "--batch-size", "1", "--output", str(out), "--resume"]
    process = subprocess.Popen(_cage(*args), env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    while _complete_lines(part) < 3 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    process.wait()
    written = _complete_lines(part)
    assert 3 <= written < N_CROPS, f"the run was not stopped midway ({written} records)"
    assert not out.exists()
    with open(part, "a") as handle:  # what a kill in the middle of a write leaves behind
        handle.write('{"i": 39, "a": "0123456789ab", "r": {"file": "')
    done = run(*args, processes=2)  # resumed with another number of processes
    assert done.returncode == 0, done.stderr
    assert "half-written last line" in done.stderr
    got, want = records(out), records(one_process)
    assert [r["file"] for r in got] == [r["file"] for r in want]  # exactly one record per input, in order
    assert f"{N_CROPS} images" in done.stderr
    for a, b in zip(got, want):
        face_a, face_b = a["faces"][0], b["faces"][0]
        assert face_a["expression"] == face_b["expression"]
        np.testing.assert_allclose([face_a["valence"], face_a["arousal"]], [face_b["valence"], face_b["arousal"]],
                                   atol=2e-6)
    assert not (tmp_path / "out.jsonl.parts").exists()


def test_resume_refuses_parts_of_other_inputs(tiny_model_dir, crops, tmp_path):
    out = tmp_path / "out.jsonl"
    parts = tmp_path / "out.jsonl.parts"
    parts.mkdir()
    (parts / "inputs.json").write_text(json.dumps(["elsewhere.png"]))
    done = run("predict", str(crops), "--model", str(tiny_model_dir), "--detector", "none", "--output", str(out),
               "--resume")
    assert done.returncode == 2
    assert "was written for other inputs" in done.stderr.splitlines()[-1]


def test_read_parts_keeps_only_completed_attempts(tmp_path):
    from cage.inference.distributed import _cut_partial_line, read_parts
    from cage.inference.sources import InputFile

    files = [InputFile("a.png", "image"), InputFile("v.mp4", "video")]
    part = tmp_path / "part-00000.jsonl"
    lines = [
        {"i": 1, "a": "old", "r": {"file": "v.mp4", "frame": 0}},  # a video attempt that never finished
        {"i": 0, "a": "x", "r": {"file": "a.png"}, "done": 1},
        {"i": 1, "a": "new", "r": {"file": "v.mp4", "frame": 0}},
        {"i": 1, "a": "new", "r": {"file": "v.mp4", "frame": 5}},
        {"i": 1, "a": "new", "done": 1},
    ]
    part.write_text("".join(json.dumps(line) + "\n" for line in lines) + '{"i": 0, "a"')
    complete, count = read_parts(tmp_path, files)
    assert sorted(complete) == [0, 1] and count == 3
    assert len(complete[1]) == 2
    assert _cut_partial_line(part) == len('{"i": 0, "a"')
    assert part.read_text().endswith('"done": 1}\n')


def test_two_processes_with_videos_and_images_give_the_one_process_csv(tiny_model_dir, crops, tmp_path):
    """Videos go whole to one process; their tracks and summaries, and every batch, are those of one process."""
    import cv2

    folder = tmp_path / "mixed"
    folder.mkdir()
    names = [f"a_{k}.png" for k in range(6)] + ["b_video.avi"] + [f"c_{k}.png" for k in range(6)] + ["d_video.avi"]
    names += ["e_0.png", "e_1.png"]  # 16 inputs: two blocks of 8, one video in each
    for k, name in enumerate(names):
        if name.endswith(".png"):
            shutil.copy(crops / f"crop_{k:02d}.png", folder / name)
            continue
        writer = cv2.VideoWriter(str(folder / name), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (80, 80))
        for frame in range(7 + k % 3):
            writer.write(np.asarray(Image.open(crops / f"crop_{(k + frame) % N_CROPS:02d}.png"))[:, :, ::-1].copy())
        writer.release()
    outputs = {}
    for processes in (1, 2):
        out = tmp_path / f"out{processes}.csv"
        done = run("predict", str(folder), "--model", str(tiny_model_dir), "--detector", "none", "--precision",
                   "fp32", "--output", str(out), processes=processes)
        assert done.returncode == 0, done.stderr
        outputs[processes] = out.read_text()
    assert outputs[2] == outputs[1]
    rows = outputs[1].splitlines()
    assert rows[0].split(",")[3:5] == ["face", "track_id"]
    summaries = [r for r in rows if ",summary," in r]
    assert [r.split(",")[0] for r in summaries] == [str(folder / "b_video.avi"), str(folder / "d_video.avi")]
