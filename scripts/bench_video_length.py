"""Memory and time of ``cage predict`` on a short and a long video: peak memory must stay flat with the video's
length and the time per analysed frame constant.

Writes two synthetic 1280x720 videos at 25 fps (MPEG-4 part 2, OpenCV): two heads from ../shared/faces walking
across a plain background, of SHORT and LONG seconds (default 30 s and 600 s = 10 min). Then runs, in a fresh
process each, what ``cage predict VIDEO --model M --fps F --format csv --output ...`` runs (dlib detection, face
tracks, per-track summary, CSV written as it goes) and reports the peak resident memory of that process
(``ru_maxrss``), the wall time, the frames analysed and the time per analysed frame after the first batch of 8
(model loading and warm-up excluded; decoding of the skipped frames included). ``--fps`` subsamples the
analysis (every frame is still decoded), which keeps the 10-minute run feasible on a small CPU.

    python scripts/bench_video_length.py --model /tmp/cage-untrained [--fps 1] [--short 30] [--long 600]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

FACES = Path(__file__).resolve().parents[1].parent / "shared" / "faces"
WIDTH, HEIGHT, FPS = 1280, 720, 25.0

CHILD = """
import resource, sys, time
from cage.inference import load_analyzer
from cage.inference.output import ResultWriter
from cage.inference.predict import iter_input_results
from cage.inference.sources import expand_inputs
from cage.inference.tracking import TrackSummary, track_results

model, video, fps, out = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4]
started = time.perf_counter()
analyzer = load_analyzer(model, device="cpu", precision="fp32")
files = expand_inputs([video])
frames, first, BATCH = 0, None, 8  # iter_input_results decodes and predicts 8 frames at a time
with open(out, "w", newline="") as stream:  # what `cage predict VIDEO --fps F --format csv` runs
    writer = ResultWriter(stream, "csv", analyzer.config, tracks=True)
    for result, _ in track_results(iter_input_results(analyzer, files, fps=fps), analyzer.config):
        writer.write(result)
        if not isinstance(result, TrackSummary):
            frames += 1
            if frames == BATCH:
                first = time.perf_counter()  # after loading and the first batch of frames: steady state from here
    writer.close()
end = time.perf_counter()
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
steady = (end - first) / (frames - BATCH) if first is not None and frames > BATCH else float("nan")
print("BENCH", frames, end - started, steady, rss, flush=True)
"""


def heads() -> list[np.ndarray]:
    from PIL import Image

    out = []
    for name, (x, y, w, h) in (("obama.jpg", (377, 158, 249, 249)), ("biden.jpg", (432, 211, 336, 336))):
        photo = Image.open(FACES / name).convert("RGB")
        m = w // 2
        head = photo.crop((x - m, y - m, x + w + m, y + h + m)).resize((300, 300))
        out.append(np.asarray(head)[:, :, ::-1].copy())  # BGR for OpenCV
    return out


def write_video(path: Path, seconds: float) -> int:
    import cv2

    left, right = heads()
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), FPS, (WIDTH, HEIGHT))
    if not writer.isOpened():
        raise SystemExit(f"OpenCV cannot write {path}")
    frames = int(seconds * FPS)
    background = np.full((HEIGHT, WIDTH, 3), (110, 100, 90), np.uint8)
    for index in range(frames):
        frame = background.copy()
        phase = index / FPS
        lx = int(100 + 250 * (1 + np.sin(phase / 4)))  # slow back-and-forth walks
        rx = int(700 + 120 * (1 + np.cos(phase / 5)))
        frame[200 : 200 + 300, lx : lx + 300] = left
        frame[150 : 150 + 300, rx : rx + 300] = right
        writer.write(frame)
    writer.release()
    return frames


def run(model: str, video: Path, fps: float, out: Path) -> dict:
    done = subprocess.run([sys.executable, "-c", CHILD, model, str(video), str(fps), str(out)], capture_output=True,
                          text=True)
    line = [x for x in done.stdout.splitlines() if x.startswith("BENCH")]
    if not line:
        raise SystemExit(done.stderr[-2000:])
    _, frames, seconds, per_frame, rss_kib = line[0].split()
    return {"wall_s": round(float(seconds), 1), "peak_rss_mib": round(int(rss_kib) / 1024),
            "frames_analysed": int(frames), "s_per_analysed_frame": round(float(per_frame), 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--fps", type=float, default=1.0, help="frames analysed per second of video (default 1)")
    parser.add_argument("--short", type=float, default=30.0, help="seconds (default 30)")
    parser.add_argument("--long", type=float, default=600.0, help="seconds (default 600)")
    parser.add_argument("--output", default=None, help="also write the results as JSON here")
    args = parser.parse_args()
    results = {"fps_analysed": args.fps, "resolution": f"{WIDTH}x{HEIGHT}", "video_fps": FPS,
               "threads": os.environ.get("OMP_NUM_THREADS", "default")}
    with tempfile.TemporaryDirectory() as folder:
        for name, seconds in (("short", args.short), ("long", args.long)):
            video = Path(folder) / f"{name}.mp4"
            started = time.perf_counter()
            frames = write_video(video, seconds)
            written = time.perf_counter() - started
            result = run(args.model, video, args.fps, Path(folder) / f"{name}.csv")
            result.update(seconds=seconds, frames_in_video=frames, write_s=round(written, 1))
            results[name] = result
            print(name, json.dumps(result), flush=True)
            video.unlink()
    short, long = results["short"], results["long"]
    results["ratio_peak_rss_long_over_short"] = round(long["peak_rss_mib"] / short["peak_rss_mib"], 3)
    results["ratio_s_per_frame_long_over_short"] = round(
        long["s_per_analysed_frame"] / short["s_per_analysed_frame"], 3
    )
    print(json.dumps(results, indent=2))
    if args.output:
        Path(args.output).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
