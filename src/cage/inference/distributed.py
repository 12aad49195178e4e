"""``cage predict`` across processes (``accelerate launch``) and resumable runs (``--resume``).

    accelerate launch [--multi_gpu --num_processes N] -m cage predict INPUT... --output OUT.jsonl [--resume]

Every process expands the inputs the same way (files, folder contents sorted, videos), takes its share with
``accelerate.PartialState.split_between_processes`` (in blocks of the images read per batch, so that each
forward pass holds the same images as in a one-process run, and the numbers agree to the last printed digit)
and appends its records to its own part file ``OUT.parts/part-<rank>.jsonl``, one JSON line per record,
flushed per line. Each line names its input (``i``, index in the expanded input list) and the attempt that
wrote it (``a``); an input is complete when a line with ``done`` for it is written (an image: its record; a
video: after its last frame and its track summary). When all processes have finished (a barrier), the main
process merges the complete records in input order into ``--output`` (any ``--format``), written to a
temporary file and renamed, and removes ``OUT.parts``.

``--resume``: a run restarted with the same command (any number of processes) reads the part files, keeps the
complete inputs, cuts a half-written last line, and redoes only the rest (a video that was interrupted is
redone whole, since its tracks need every frame). At the end there is exactly one record per image and per
sampled video frame. The part files are flushed per line (they survive a killed process) but not fsynced
(a machine crash can lose the last lines; they are redone).

The main process shows one progress bar for all processes: it counts its own records and reads the lines the
others append to their part files.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

__all__ = ["merge_parts", "parts_folder", "read_parts", "run_predict_parts", "uses_parts"]

EXIT_OK, EXIT_INPUT_ERRORS, EXIT_USAGE = 0, 1, 2


def _world_size() -> int:
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        return 1


def uses_parts(args: argparse.Namespace) -> bool:
    """Whether this run goes through part files: several processes were launched, or ``--resume`` was given."""
    return _world_size() > 1 or bool(getattr(args, "resume", False))


def parts_folder(output: str | os.PathLike) -> Path:
    """Where the part files of ``output`` live: ``<output>.parts/`` beside it."""
    output = Path(output)
    return output.with_name(output.name + ".parts")


class _StoredResult:
    """A record read back from a part file, as the writers see an ``ImageResult`` (its dict kept verbatim)."""

    def __init__(self, record: dict[str, Any]):
        self.record = record
        self.file = record["file"]
        self.faces = record.get("faces", [])
        self.error = record.get("error")
        self.frame = record.get("frame")
        self.time_s = record.get("time_s")

    def to_dict(self) -> dict[str, Any]:
        return self.record


def _cut_partial_line(path: Path) -> int:
    """Truncate ``path`` after its last newline (a line half-written when the process was killed); returns the
    number of bytes cut."""
    if not path.is_file():
        return 0
    size = path.stat().st_size
    with open(path, "rb+") as handle:
        keep, step = size, 65536
        while keep > 0:
            start = max(0, keep - step)
            handle.seek(start)
            chunk = handle.read(keep - start)
            newline = chunk.rfind(b"\n")
            if newline >= 0:
                keep = start + newline + 1
                break
            keep = start
        handle.truncate(keep)
    return size - keep


def _part_files(folder: Path) -> list[Path]:
    return sorted(folder.glob("part-*.jsonl"))


def read_parts(folder: Path, files: Sequence[Any]) -> tuple[dict[int, list[tuple[int, int]]], int]:
    """Index the complete inputs in the part files of ``folder``.

    Args:
        folder: a parts folder (see [`parts_folder`]).
        files: the expanded inputs (``sources.InputFile``), to check each line's input index and file name.

    Returns:
        ``(complete, records)``: for each complete input index, the ``(part number, byte offset)`` of its record
        lines in write order (one attempt only: the first that completed); and how many records they hold.
        Lines that are not valid JSON (a half-written last line) and lines of unfinished attempts are ignored.

    Raises:
        ValueError: a line names an input index or file that does not match ``files`` (the parts were written
            for other inputs); the message names the part file.
    """
    pending: dict[tuple[int, str], list[tuple[int, int]]] = {}
    complete: dict[int, list[tuple[int, int]]] = {}
    for number, path in enumerate(_part_files(folder)):
        with open(path, "rb") as handle:
            offset = 0
            for raw in handle:
                start, offset = offset, offset + len(raw)
                if not raw.endswith(b"\n"):
                    break
                try:
                    line = json.loads(raw)
                    index, attempt = int(line["i"]), str(line["a"])
                except (ValueError, KeyError, TypeError):
                    continue
                if not 0 <= index < len(files) or ("r" in line and line["r"].get("file") != files[index].path):
                    raise ValueError(
                        f"{path}: written for other inputs (line for input {index}); start without --resume"
                    )
                if index in complete:
                    continue
                key = (index, attempt)
                if "r" in line:
                    pending.setdefault(key, []).append((number, start))
                if line.get("done"):
                    complete[index] = pending.pop(key, [])
    records = sum(len(v) for v in complete.values())
    return complete, records


def merge_parts(folder: Path, files: Sequence[Any], writer: Any) -> Any:
    """Write the complete records of ``folder`` through ``writer`` (a ``ResultWriter``), in input order.

    Returns:
        The ``output.RunCounts`` of the records (track summaries are written but not counted).

    Raises:
        RuntimeError: some input has no complete record (a process did not finish); the message names the first.
    """
    from .tracking import TrackSummary

    complete, _ = read_parts(folder, files)
    missing = [files[i].path for i in range(len(files)) if i not in complete]
    if missing:
        raise RuntimeError(f"{len(missing)} inputs have no complete record in {folder} (first: {missing[0]})")
    from .output import RunCounts

    handles = [open(path, "rb") for path in _part_files(folder)]
    counts = RunCounts()
    try:
        for index in range(len(files)):
            for number, offset in complete[index]:
                handles[number].seek(offset)
                record = json.loads(handles[number].readline())["r"]
                if "track_summary" in record:
                    writer.write(TrackSummary.from_dict(record))
                    continue
                result = _StoredResult(record)
                counts.add(result)
                writer.write(result)
    finally:
        for handle in handles:
            handle.close()
    return counts


class _Progress:
    """The main process's bar: its own records plus the lines the other processes append to their parts."""

    def __init__(self, bar: Any, folder: Path, rank: int, num_processes: int, offsets: dict[int, int]):
        self.bar, self.folder, self.rank = bar, folder, rank
        self.others = [r for r in range(num_processes) if r != rank]
        self.offsets = {r: offsets.get(r, 0) for r in self.others}  # sizes before this run appended anything
        self.last_poll = 0.0

    def poll(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self.last_poll < 0.5:
            return
        self.last_poll = now
        for rank in self.others:
            path = self.folder / f"part-{rank:05d}.jsonl"
            if not path.is_file():
                continue
            with open(path, "rb") as handle:
                self.offsets[rank] = min(self.offsets[rank], os.fstat(handle.fileno()).st_size)  # a cut last line
                handle.seek(self.offsets[rank])
                data = handle.read()
            cut = data.rfind(b"\n") + 1
            self.offsets[rank] += cut
            self.bar.update(sum(1 for line in data[:cut].splitlines() if b'"r": ' in line))


def _part_size(path: Path) -> int:
    return path.stat().st_size if path.is_file() else 0


def _input_groups(indices: Sequence[int], files: Sequence[Any]) -> Iterator[list[int]]:
    """Consecutive inputs that are images (or unreadable) form one group, batched together; each video is alone
    (one result per input for a group of images; any number of frame results for a video)."""
    group: list[int] = []
    for index in indices:
        if files[index].kind == "video" and files[index].error is None:
            if group:
                yield group
                group = []
            yield [index]
        else:
            group.append(index)
    if group:
        yield group


def run_predict_parts(
    args: argparse.Namespace,
    boxes: Any,
    load: Callable[[argparse.Namespace, str], Any],
) -> int:
    """``cage predict`` through part files: the handler's path under ``accelerate launch`` or with ``--resume``.

    Args:
        args: the parsed ``cage predict`` options (``inputs``, ``output``, ``format``, ``resume``, ...).
        boxes: user boxes (``predict.load_boxes``) or ``None``.
        load: the CLI's analyzer loader (prints its own one-line error and returns ``None`` on failure).

    Returns:
        The exit code: 0, 1 when some inputs failed (main process), 2 for usage errors.
    """
    from tqdm.auto import tqdm

    from .output import Annotator, ResultWriter, printable_name
    from .predict import iter_input_results
    from .sources import sampled_frame_count, scan_inputs
    from .tracking import TrackSummary, track_results

    state = None
    if _world_size() > 1:
        from accelerate import PartialState
        from accelerate.utils import parse_flag_from_env

        # like Accelerator(): ACCELERATE_USE_CPU=1 (set by `accelerate launch --cpu`, or by hand with --multi_gpu
        # for gloo on CPUs) keeps every process on the CPU; without it PartialState assumes GPUs.
        state = PartialState(cpu=parse_flag_from_env("ACCELERATE_USE_CPU"))
    num_processes = state.num_processes if state is not None else 1
    rank = state.process_index if state is not None else 0
    is_main = rank == 0

    def barrier() -> None:
        if state is not None:
            state.wait_for_everyone()

    if args.output is None:
        if is_main:
            what = "--resume" if getattr(args, "resume", False) else "several processes"
            print(f"cage predict: {what} needs --output FILE (the parts are merged into it)", file=sys.stderr)
        return EXIT_USAGE
    if state is not None and args.device == "auto":
        # one device per process: cuda:<local rank> on GPUs, the CPU under gloo
        args.device = "cpu" if state.device.type == "cpu" else str(state.device)
    from ..files import OutputBusy, OutputLock

    lock = OutputLock(args.output) if is_main else contextlib.nullcontext()
    try:  # the main process holds the output's lock for the whole run: a second run on it is refused
        lock.__enter__()
    except OutputBusy as error:
        print(f"cage predict: {error}", file=sys.stderr)
        if state is None:
            return EXIT_USAGE
        raise SystemExit(EXIT_USAGE) from None
    try:
        return _run_parts(args, boxes, load, state, num_processes, rank, is_main, barrier)
    finally:
        lock.__exit__(None, None, None)


def _run_parts(args, boxes, load, state, num_processes: int, rank: int, is_main: bool, barrier) -> int:
    """The body of [`run_predict_parts`], run while the main process holds the output's lock."""
    from tqdm.auto import tqdm

    from .output import Annotator, ResultWriter, printable_name
    from .predict import iter_input_results
    from .sources import sampled_frame_count, scan_inputs
    from .tracking import TrackSummary, track_results

    started = time.perf_counter()
    analyzer = load(args, "predict")
    if analyzer is None:
        return EXIT_USAGE
    files, skipped = scan_inputs(args.inputs)
    if is_main:  # named and counted as in a plain run
        for item in skipped:
            print(f"cage predict: skipped {printable_name(item.path)}: {item.reason}", file=sys.stderr)
    folder = parts_folder(args.output)
    manifest = folder / "inputs.json"
    names = [f.path for f in files]
    if is_main:
        if not args.resume and folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True, exist_ok=True)
        if not manifest.is_file():
            manifest.write_text(json.dumps(names))
    barrier()
    own_part = folder / f"part-{rank:05d}.jsonl"
    finished = folder / f"finished-{rank:05d}"
    finished.unlink(missing_ok=True)
    try:
        if json.loads(manifest.read_text()) != names:
            raise ValueError(f"{folder} was written for other inputs; start without --resume or remove it")
        complete, done_records = read_parts(folder, files) if args.resume else ({}, 0)
    except ValueError as error:
        if is_main:
            print(f"cage predict: {error}", file=sys.stderr)
        return EXIT_USAGE
    sizes = {r: _part_size(folder / f"part-{r:05d}.jsonl") for r in range(num_processes)}
    barrier()  # everyone has read the same complete set before anyone appends
    cut = _cut_partial_line(own_part)
    if cut and args.resume:
        print(f"cage predict: {own_part}: cut a half-written last line ({cut} bytes); redoing it", file=sys.stderr)
    batch = min(8, args.batch_size)
    todo = [i for i in range(len(files)) if i not in complete]
    blocks = [todo[k : k + batch] for k in range(0, len(todo), batch)]
    if state is not None:
        with state.split_between_processes(blocks) as share:
            mine = [i for block in share for i in block]
    else:
        mine = todo
    has_video = any(f.kind == "video" for f in files)
    plot_dir = getattr(args, "plot", None)
    annotator = Annotator(args.annotate) if args.annotate else None
    roots = {f.path: Path(f.root) for f in files if f.root is not None}
    bar = None
    if is_main:
        total = sum(
            (sampled_frame_count(f.path, args.every, args.fps) or 1) if f.kind == "video" and not f.error else 1
            for f in files
        )
        disable = True if args.no_progress else None
        bar = tqdm(total=total, initial=done_records, unit="image", disable=disable, delay=2, file=sys.stderr)
    progress = _Progress(bar, folder, rank, num_processes, sizes) if bar is not None else None
    attempt = uuid.uuid4().hex[:12]
    with open(own_part, "a", encoding="utf-8") as part:

        def emit(index: int, record: dict[str, Any] | None, done: bool) -> None:
            line: dict[str, Any] = {"i": index, "a": attempt}
            if record is not None:
                line["r"] = record
            if done:
                line["done"] = 1
            part.write(json.dumps(line) + "\n")
            part.flush()

        for group in _input_groups(mine, files):
            selected = [files[i] for i in group]
            pairs = iter_input_results(
                analyzer, selected, every=args.every, fps=args.fps, images_per_batch=batch, boxes=boxes
            )
            if has_video:
                pairs = track_results(pairs, analyzer.config, plot_dir)
            position = 0
            is_video = selected[0].kind == "video" and selected[0].error is None
            for result, image in pairs:
                if isinstance(result, TrackSummary):
                    emit(group[0], result.to_dict(), done=False)
                    continue
                if result.error:
                    message = f"cage predict: error: {result.error}"
                    if bar is None:
                        print(message, file=sys.stderr)
                    else:
                        bar.write(message, file=sys.stderr)
                elif annotator is not None and image is not None:
                    annotator.save(result, image, roots.get(result.file))
                index = group[0] if is_video else group[position]
                emit(index, result.to_dict(), done=not is_video)
                position += 1
                if bar is not None:
                    bar.update(1)
                    progress.poll()
            if is_video:
                emit(group[0], None, done=True)
    finished.write_text(attempt)
    while not all((folder / f"finished-{r:05d}").is_file() for r in range(num_processes)):
        if progress is not None:
            progress.poll()
        time.sleep(0.2)
    barrier()
    if not is_main:
        return EXIT_OK
    if progress is not None:
        progress.poll(force=True)
        bar.close()
    fmt = args.format
    temporary = Path(args.output).with_name(Path(args.output).name + ".tmp")
    with open(temporary, "w", newline="", encoding="utf-8") as stream:
        writer = ResultWriter(stream, fmt, analyzer.config, tracks=has_video)
        counts = merge_parts(folder, files, writer)
        writer.close()
    os.replace(temporary, args.output)
    shutil.rmtree(folder)
    elapsed = time.perf_counter() - started
    summary = counts.summary(len(skipped), elapsed, analyzer.engine, analyzer.detector.name, num_processes)
    print(summary, file=sys.stderr)
    return EXIT_INPUT_ERRORS if counts.failed else EXIT_OK
