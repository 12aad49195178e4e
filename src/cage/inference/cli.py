"""``cage predict`` and ``cage webcam``: parsers and handlers (the CLI module only registers them).

    cage predict INPUT... [--model DIR_OR_REPO] [--format json|jsonl|csv] [--output FILE]
        [--detector dlib|yunet|none] [--detector-model PATH] [--boxes boxes.json]
        [--device auto|cpu|cuda|mps] [--batch-size N] [--every N | --fps F] [--annotate DIR]
        [--resume] [--plot DIR]          (several processes: accelerate launch -m cage predict ...)
    cage predict --dataset DIR_OR_HUB_ID [--split S] [--image-column image] --output-dataset DIR
        [--push-to-hub REPO] [--num-proc N] --model DIR_OR_REPO ...
    cage webcam [--model DIR_OR_REPO] [--camera 0] [--every N] [--max-frames N] [--annotate DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from ..files import (
    OutputBusy,
    OutputLock,
    output_path_problem,
    partial_path,
    resolved_output,
    unwritable_folder_problem,
    writable_folder_problem,
)

EXIT_OK = 0
EXIT_INPUT_ERRORS = 1  # some inputs could not be processed; the others were
EXIT_USAGE = 2
EXIT_OUTPUT = 3  # the output (--output, --annotate) could not be written: a full disk, a read-only folder


def _add_model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model",
        default=None,
        help="model folder or Hub repo id (default: the model bundled with cage, trained on FER+; see the README)",
    )
    parser.add_argument(
        "--trust-remote-code",
        action="store_true",
        help="let a model folder run its own Python code (auto_map); off by default: cage never runs code from model "
        "folders, and loads safetensors weights only",
    )
    parser.add_argument(
        "--detector",
        default=None,
        choices=["auto", "yunet", "dlib", "none"],
        help="face detector (default: auto for face models = YuNet where its model file can be had (--detector-model, "
        "CAGE_YUNET_MODEL, the Hugging Face cache, or a download when online), else dlib with one line saying why; "
        "whole image for body/EMOTIC models); none = each input is already a face crop",
    )
    parser.add_argument(
        "--detector-model",
        default=None,
        metavar="PATH",
        help="YuNet ONNX file (face_detection_yunet_2023mar.onnx; or set CAGE_YUNET_MODEL)",
    )
    parser.add_argument(
        "--detect-size",
        default="auto",
        metavar="auto|N",
        help="auto (default): images over 1024 px are also searched in native-resolution tiles, so small faces "
        "in group photos are found (about one detector run per 768 px of tile stride); N: downscale to a "
        "longer side of N pixels for one fast pass (1024 = the old behaviour)",
    )
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps (default: auto)")
    parser.add_argument("--batch-size", type=int, default=32, help="face crops per forward pass (default: 32)")
    parser.add_argument(
        "--precision",
        default="auto",
        choices=["auto", "fp32", "bf16"],
        help="auto (default): bf16 where the device has native bf16 (AVX512-BF16/AMX CPUs, recent GPUs; it "
        "passed cage bench's agreement bar), else fp32; fp32 forces exact fp32 (what the Python API uses)",
    )
    parser.add_argument(
        "--runtime",
        default="auto",
        choices=["auto", "torch", "onnx", "openvino"],
        help="auto (default): the fastest path for this CPU and the installed runtimes (OpenVINO, then ONNX "
        "Runtime, then PyTorch; bf16 first where the CPU has native bf16), checked against PyTorch, falling "
        "back to the next with one warning line; on a GPU: torch. openvino/onnx: that runtime on the CPU "
        "(converted once into ~/.cache/cage); torch: PyTorch",
    )
    parser.add_argument(
        "--onnx-model", default=None, metavar="FILE", help="with --runtime onnx: the file from `cage export onnx`"
    )
    parser.add_argument("--every", type=int, default=1, metavar="N", help="video: keep every N-th frame")
    parser.add_argument("--fps", type=float, default=None, help="video: keep about this many frames per second")
    parser.add_argument("--annotate", default=None, metavar="DIR", help="write annotated images to DIR")


def add_predict_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``cage predict``."""
    parser = subparsers.add_parser(
        "predict",
        help="expression, valence and arousal for every face in images, folders and videos",
        description="Detect the faces in each image (folders: recursively, sorted; videos: streamed frame by "
        "frame), crop them as the model was trained, and write per image or frame a record with its faces: "
        "box [x, y, w, h] (pixels of the original image), expression, probabilities, valence and arousal "
        "(clamped to [-1, 1]). Unreadable files are reported by name; the others are still processed and "
        "the exit code is 1. A summary line (images, faces, failures, time, how the network ran) goes to stderr.",
    )
    parser.add_argument("inputs", nargs="*", metavar="INPUT", help="image files, folders or video files")
    _add_model_options(parser)
    parser.add_argument(
        "--format",
        default=None,
        choices=["json", "jsonl", "csv"],
        help="output format (default: from the --output suffix .jsonl/.csv, else json)",
    )
    parser.add_argument("--output", "-o", default=None, metavar="FILE", help="write results here (default: stdout)")
    parser.add_argument(
        "--boxes", default=None, metavar="JSON", help='boxes instead of detection: {"image": [[x, y, w, h], ...]}'
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    _add_scale_options(parser)
    parser.set_defaults(handler=run_predict)


def _add_scale_options(parser: argparse.ArgumentParser) -> None:
    """Options of ``cage predict`` for many processes, resumable runs, datasets and video tracks."""
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue an interrupted run with the same inputs and --output: complete records in OUTPUT.parts/ "
        "are kept, the rest is redone (also under accelerate launch with several processes)",
    )
    parser.add_argument(
        "--plot", default=None, metavar="DIR", help="videos: per video, valence/arousal over time per face track "
        "and each track's path on the circumplex (PNG)"
    )
    group = parser.add_argument_group("datasets (instead of INPUT...)")
    group.add_argument(
        "--dataset", default=None, metavar="DIR_OR_HUB_ID", help="a datasets folder (save_to_disk), a data folder, "
        "or a Hub dataset id; prediction columns are added to every row"
    )
    group.add_argument("--split", default=None, help="the split to annotate (default: every split)")
    group.add_argument("--image-column", default="image", help="the column holding the images (default: image)")
    group.add_argument("--output-dataset", default=None, metavar="DIR", help="save the annotated dataset here")
    group.add_argument("--push-to-hub", default=None, metavar="REPO", help="also push the annotated dataset to REPO")
    group.add_argument(
        "--num-proc", type=int, default=1, metavar="N", help="datasets.map worker processes on the CPU (default: 1)"
    )


def _output_format(args: argparse.Namespace) -> str:
    """``--format``, or the one named by the ``--output`` suffix (``.jsonl``, ``.csv``), else ``json``."""
    if args.format is not None:
        return args.format
    suffix = Path(args.output).suffix.lower() if args.output else ""
    return {".jsonl": "jsonl", ".csv": "csv"}.get(suffix, "json")


def add_webcam_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``cage webcam``."""
    parser = subparsers.add_parser(
        "webcam",
        help="live expression, valence and arousal from a camera",
        description="Read frames from a camera (or any stream OpenCV opens) and print one JSON line per analysed "
        "frame. Stop with Ctrl+C. Exits with code 2 and a message when no camera can be opened.",
    )
    parser.add_argument("--camera", default="0", help="camera index, or a stream URL/file (default: 0)")
    parser.add_argument("--max-frames", type=int, default=None, help="stop after this many analysed frames")
    _add_model_options(parser)
    parser.set_defaults(handler=run_webcam)


def _load(args: argparse.Namespace, command: str):
    from ..model_folder import ModelLoadError
    from .api import ExpressionAnalyzer

    if args.batch_size < 1 or args.every < 1 or (args.fps is not None and args.fps <= 0):
        print(f"cage {command}: --batch-size and --every must be >= 1, --fps > 0", file=sys.stderr)
        return None
    try:
        analyzer = ExpressionAnalyzer.from_pretrained(
            args.model,
            detector=args.detector,
            device=args.device,
            batch_size=args.batch_size,
            detector_model=args.detector_model,
            precision=args.precision,
            runtime=args.runtime,
            onnx_model=args.onnx_model,
            detect_size=args.detect_size,
            latency=command == "webcam",  # the webcam wants the lowest latency of one frame
            trust_remote_code=args.trust_remote_code,
        )
    except (ModelLoadError, ValueError, ImportError, FileNotFoundError, RuntimeError) as error:
        print(f"cage {command}: {error}", file=sys.stderr)
        return None
    from ..model_folder import BUNDLED_MODEL_DIR, BUNDLED_MODEL_NAME, derived_targets_note

    if args.model is None:
        print(f"cage {command}: model: {BUNDLED_MODEL_NAME}, bundled with cage (trained on FER+; its card: "
              f"{BUNDLED_MODEL_DIR / 'README.md'})", file=sys.stderr)  # fmt: skip
    note = derived_targets_note(analyzer.config)
    if note:
        print(f"cage {command}: note: {note}", file=sys.stderr)
    return analyzer


def run_predict(args: argparse.Namespace) -> int:
    from .predict import load_boxes

    args.format = _output_format(args)
    if getattr(args, "dataset", None) is not None:
        from .dataset_io import run_predict_dataset

        return run_predict_dataset(args, _load)
    if not args.inputs:
        print("cage predict: give INPUT files/folders/videos, or --dataset", file=sys.stderr)
        return EXIT_USAGE
    boxes = None
    if args.boxes is not None:
        try:
            boxes = load_boxes(args.boxes)
        except (OSError, ValueError) as error:
            print(f"cage predict: {error}", file=sys.stderr)
            return EXIT_USAGE
    if args.output is not None:
        problem = output_path_problem(args.output)
        if problem:
            print(f"cage predict: {problem}", file=sys.stderr)
            return EXIT_USAGE
        problem = unwritable_folder_problem(args.output)  # a read-only folder: before any work, like a full disk
        if problem:
            print(f"cage predict: {problem}", file=sys.stderr)
            return EXIT_OUTPUT
        args.output = str(resolved_output(args.output))  # a link's target is written; the link stays
    if args.annotate is not None:
        problem = writable_folder_problem(args.annotate)  # before any work, not after it
        if problem:
            print(f"cage predict: {problem}", file=sys.stderr)
            return EXIT_OUTPUT

    from .distributed import uses_parts

    if uses_parts(args):  # under accelerate launch with several processes, or --resume
        from .distributed import run_predict_parts

        return run_predict_parts(args, boxes, _load)
    try:
        with OutputLock(args.output) if args.output else contextlib.nullcontext():
            analyzer = _load(args, "predict")
            if analyzer is None:
                return EXIT_USAGE
            return _predict_files(args, analyzer, boxes)
    except OutputBusy as error:
        print(f"cage predict: {error}", file=sys.stderr)
        return EXIT_USAGE
    except OutputWriteError as error:
        print(f"cage predict: {error}", file=sys.stderr)
        return EXIT_OUTPUT
    except OSError as error:  # the lock file cannot be created (the folder became read-only...)
        if error.filename is None or not str(error.filename).startswith(str(args.output)):
            raise
        print(f"cage predict: cannot write {error.filename}: {error.strerror or error}", file=sys.stderr)
        return EXIT_OUTPUT


class OutputWriteError(OSError):
    """Writing an output file (``--output``, an ``--annotate`` image) failed: the disk is full, the folder
    read-only... The message is one line naming the file and the cause."""

    def __init__(self, path: Any, error: OSError):
        super().__init__(f"cannot write {path}: {error.strerror or error}; nothing was written there")


def _predict_files(args: argparse.Namespace, analyzer: Any, boxes: Any) -> int:
    """The plain ``cage predict`` run over files (the caller holds the output's lock).

    ``--output`` is written to ``.NAME.partial`` and renamed to NAME when complete, so a cut run (a full disk,
    Ctrl-C, a crash) never leaves a file that looks complete.

    Raises:
        OutputWriteError: the output or an annotated image cannot be written.
    """
    from tqdm.auto import tqdm

    from .output import Annotator, ResultWriter, RunCounts, printable_name
    from .predict import iter_input_results
    from .sources import sampled_frame_count, scan_inputs

    started = time.perf_counter()
    files, skipped = scan_inputs(args.inputs)
    for item in skipped:
        print(f"cage predict: skipped {printable_name(item.path)}: {item.reason}", file=sys.stderr)
    roots = {f.path: Path(f.root) for f in files if f.root is not None}
    total = sum(
        (sampled_frame_count(f.path, args.every, args.fps) or 1) if f.kind == "video" and not f.error else 1
        for f in files
    )
    annotator = Annotator(args.annotate) if args.annotate else None
    partial = partial_path(args.output) if args.output else None
    try:
        stream = open(partial, "w", newline="", encoding="utf-8") if partial else sys.stdout
    except OSError as error:
        raise OutputWriteError(args.output, error) from None
    has_video = any(f.kind == "video" for f in files)
    counts = RunCounts()
    complete = False
    progress = tqdm(total=total, unit="image", disable=True if args.no_progress else None, delay=2, file=sys.stderr)
    try:
        writer = ResultWriter(stream, args.format, analyzer.config, tracks=has_video)
        pairs = iter_input_results(
            analyzer, files, every=args.every, fps=args.fps, images_per_batch=min(8, args.batch_size), boxes=boxes
        )
        if has_video:  # face tracks and a per-track summary closing each video (tracking.py)
            from ..extras import require_extra
            from .tracking import TrackSummary, track_results

            if args.plot:  # before any video is read
                require_extra("plots", "cage predict --plot")

            pairs = track_results(pairs, analyzer.config, args.plot)
        for result, image in pairs:
            if has_video and isinstance(result, TrackSummary):
                writer.write(result)
                continue
            progress.update(1)
            counts.add(result)
            if result.error:
                progress.write(f"cage predict: error: {result.error}", file=sys.stderr)
            else:
                lost = sum(1 for face in result.faces if face.get("error"))
                if lost:
                    where = result.file if result.frame is None else f"{result.file} frame {result.frame}"
                    progress.write(
                        f"cage predict: error: {where}: {lost} face(s) without a prediction: "
                        f"{next(face['error'] for face in result.faces if face.get('error'))}",
                        file=sys.stderr,
                    )
                if annotator is not None and image is not None:
                    try:
                        annotator.save(result, image, roots.get(result.file))
                    except OSError as error:
                        raise OutputWriteError(args.annotate, error) from None
            writer.write(result)
        writer.close()
        if partial:
            stream.close()
            os.replace(partial, Path(args.output).expanduser())
        complete = True
    except OSError as error:
        if isinstance(error, OutputWriteError):
            raise
        if partial is None:
            raise
        raise OutputWriteError(args.output, error) from None
    finally:
        progress.close()
        if partial:
            if not stream.closed:
                with contextlib.suppress(OSError):
                    stream.close()
            if not complete:
                partial.unlink(missing_ok=True)
    elapsed = time.perf_counter() - started
    print(counts.summary(len(skipped), elapsed, analyzer.engine, analyzer.detector.name), file=sys.stderr)
    return EXIT_INPUT_ERRORS if counts.failed else EXIT_OK


def _camera_source(camera: str) -> Any:
    return int(camera) if camera.isdigit() else camera


def run_webcam(args: argparse.Namespace) -> int:
    import cv2

    from ..face_analysis_cage import bgr_to_rgb
    from .output import Annotator
    from .predict import ImageResult

    source = _camera_source(args.camera)
    capture = cv2.VideoCapture(source)
    if not capture.isOpened():
        capture.release()
        print(
            f"cage webcam: no camera or stream could be opened at {args.camera!r} (none attached, no permission, "
            "or in use); try --camera 1, or run `cage predict` on a video file",
            file=sys.stderr,
        )
        return EXIT_USAGE
    analyzer = _load(args, "webcam")
    if analyzer is None:
        capture.release()
        return EXIT_USAGE
    annotator = Annotator(args.annotate) if args.annotate else None
    name = f"camera:{args.camera}"
    fps = float(capture.get(cv2.CAP_PROP_FPS) or 0.0)
    from .sources import MAX_CONSECUTIVE_FAILURES, FrameSampler

    sampler = FrameSampler(fps=args.fps)  # by the camera's stated frame rate; every frame where it states none

    started, index, analysed, faces, lost, failing = time.perf_counter(), 0, 0, 0, 0, 0
    print("cage webcam: running; press Ctrl+C to stop", file=sys.stderr)
    try:
        while args.max_frames is None or analysed < args.max_frames:
            ok, frame = capture.read()
            if not ok or frame is None:  # a bad frame: retried; many in a row end the stream
                failing += 1
                if failing >= MAX_CONSECUTIVE_FAILURES:
                    print("cage webcam: the camera stopped delivering frames", file=sys.stderr)
                    break
                continue
            if failing:
                print(f"cage webcam: {failing} frame(s) could not be read and were skipped", file=sys.stderr)
                lost, failing = lost + failing, 0
            if index % args.every == 0 and sampler.keep(index, index / fps if fps > 0 else None):
                rgb = bgr_to_rgb(frame)
                result = ImageResult(
                    file=name,
                    faces=analyzer.predict(rgb),
                    frame=index,
                    time_s=round(index / fps, 3) if fps > 0 else round(time.perf_counter() - started, 3),
                )
                print(json.dumps(result.to_dict(), allow_nan=False), flush=True)
                if annotator is not None:
                    from PIL import Image

                    annotator.save(result, Image.fromarray(rgb))
                analysed += 1
                faces += len(result.faces)
            index += 1
    except KeyboardInterrupt:
        print("cage webcam: stopped", file=sys.stderr)
    finally:
        capture.release()
    elapsed = time.perf_counter() - started
    print(f"cage webcam: {analysed} frames, {faces} faces, {lost} failed, {elapsed:.1f} s", file=sys.stderr)
    return EXIT_INPUT_ERRORS if lost else EXIT_OK


__all__ = ["add_predict_parser", "add_webcam_parser", "run_predict", "run_webcam"]
