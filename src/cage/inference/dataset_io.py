"""``cage predict --dataset``: add prediction columns to a Hugging Face dataset, keeping every row and column.

    cage predict --dataset DIR_OR_HUB_ID [--split S] [--image-column image] --output-dataset DIR
        [--push-to-hub REPO] [--num-proc N] --model M [--detector none] ...
    accelerate launch [--multi_gpu --num_processes N] -m cage predict --dataset ...   (one process per GPU)

The dataset is read with ``datasets.load_from_disk`` (a folder written by ``save_to_disk``) or else
``datasets.load_dataset`` (a folder of data files, e.g. an ``imagefolder``, or a Hub id). Predictions are added
with ``Dataset.map`` (batched; ``--num-proc`` worker processes on the CPU, each loading the model once; under
``accelerate launch`` every process maps its contiguous shard on its own device and the main process
concatenates the shards in order). Images are decoded inside the mapped function, so an undecodable image
gives its row an ``error`` instead of stopping the map; no row is ever dropped or reordered.
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["PredictionColumns", "load_input_dataset", "prediction_features", "run_predict_dataset"]

EXIT_OK, EXIT_INPUT_ERRORS, EXIT_USAGE = 0, 1, 2
PREFIX_ON_CLASH = "predicted_"


def load_input_dataset(name: str, split: str | None = None) -> Any:
    """A ``datasets.Dataset`` (``split`` given, or a single split) or ``DatasetDict`` (every split).

    Raises:
        ValueError: ``split`` is not in the dataset (the message lists the splits), or nothing can be loaded
            from ``name`` (the message names it and the reason).
    """
    import datasets

    path = Path(name)
    saved = path.is_dir() and any((path / f).is_file() for f in ("state.json", "dataset_dict.json"))
    try:
        data = datasets.load_from_disk(name) if saved else datasets.load_dataset(name)
    except (OSError, ValueError, FileNotFoundError, datasets.exceptions.DatasetNotFoundError) as error:
        raise ValueError(f"{name}: cannot load as a dataset ({error})") from error
    if isinstance(data, datasets.DatasetDict):
        if split is not None:
            if split not in data:
                raise ValueError(f"{name}: no split {split!r}; it has {', '.join(data)}")
            return data[split]
        return data
    if split is not None and (data.split is None or str(data.split) != split):
        has = f"it is split {data.split}" if data.split is not None else "it has no named splits"
        raise ValueError(f"{name}: no split {split!r}; {has} (leave out --split)")
    return data


def prediction_features(config: Any, prefix: str = "") -> dict[str, Any]:
    """The added columns and their ``datasets`` types for a model ``config``.

    ``expression`` (string), ``probabilities`` (label -> float64, ``id2label`` order), one float64 column per
    regression target (``valence``, ``arousal``[, ``dominance``]; in [-1, 1]), ``categories`` (list of
    strings, multi-label models only), ``box`` (4 int64: x, y, w, h in pixels of the image), ``num_faces``
    (int64) and ``error`` (string). All but ``num_faces`` are null where the row has no face or an error.
    """
    from datasets import List, Value

    labels = [config.id2label[i] for i in range(len(config.id2label))]
    columns: dict[str, Any] = {"expression": Value("string"), "probabilities": {n: Value("float64") for n in labels}}
    columns.update({t: Value("float64") for t in config.regression_targets})
    if config.multi_label:
        columns["categories"] = List(Value("string"))
    columns.update(box=List(Value("int64"), length=4), num_faces=Value("int64"), error=Value("string"))
    return {prefix + k: v for k, v in columns.items()}


def _decode(value: Any) -> Any:
    """An RGB PIL image from a dataset cell: a PIL image, ``{"bytes", "path"}`` (undecoded ``Image`` feature),
    a file path or an ``(H, W[, C])`` uint8 array. Raises OSError/ValueError/TypeError for what is not one."""
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    from ..face_analysis_cage import read_image, to_rgb

    if isinstance(value, dict):
        if value.get("bytes") is not None:
            try:
                image = Image.open(io.BytesIO(value["bytes"]))
            except UnidentifiedImageError as error:
                raise OSError(f"its {len(value['bytes'])} bytes are not an image format PIL can read") from error
        elif value.get("path"):
            return to_rgb(read_image(value["path"]))
        else:
            raise ValueError("empty image cell (no bytes, no path)")
    elif isinstance(value, (str, os.PathLike)):
        return to_rgb(read_image(value))
    elif isinstance(value, Image.Image):
        image = value
    elif isinstance(value, np.ndarray):
        image = Image.fromarray(value)
    elif value is None:
        raise ValueError("no image (null cell)")
    else:
        raise TypeError(f"not an image: {type(value).__name__}")
    image.load()
    return to_rgb(image)


class PredictionColumns:
    """The function given to ``Dataset.map(batched=True)``: a batch of rows -> the prediction columns.

    Holds only the loading options; the analyzer is loaded on the first call in each process (so that
    ``num_proc`` workers and accelerate processes each load their own, on their own device) and is not pickled.
    Of several faces in an image the largest box is reported (``num_faces`` says how many were found).
    """

    def __init__(self, options: dict[str, Any], image_column: str, prefix: str, num_proc: int = 1):
        self.options, self.image_column, self.prefix, self.num_proc = options, image_column, prefix, num_proc
        self._analyzer = None
        self.config: Any = None
        self.row_offset = 0  # index of the first row of the mapped shard in the whole split (for error messages)

    def __getstate__(self) -> dict[str, Any]:
        return dict(self.__dict__, _analyzer=None)

    def analyzer(self) -> Any:
        if self._analyzer is None:
            from .api import ExpressionAnalyzer

            if self.num_proc > 1:
                import torch

                torch.set_num_threads(max(1, (os.cpu_count() or 1) // self.num_proc))
            self._analyzer = ExpressionAnalyzer.from_pretrained(**self.options)
            self.config = self._analyzer.config
        return self._analyzer

    def __call__(self, batch: dict[str, list[Any]], indices: list[int]) -> dict[str, list[Any]]:
        analyzer = self.analyzer()
        config = analyzer.config
        names = list(prediction_features(config))
        out: dict[str, list[Any]] = {self.prefix + n: [] for n in names}
        images, errors = [], []
        indices = [self.row_offset + i for i in indices]
        for index, value in zip(indices, batch[self.image_column]):
            try:
                images.append(_decode(value))
                errors.append(None)
            except (OSError, ValueError, TypeError) as error:
                images.append(None)
                errors.append(f"row {index}: {error}")
        good = [i for i, image in enumerate(images) if image is not None]
        faces: dict[int, list[dict[str, Any]]] = {}
        try:
            faces = dict(zip(good, analyzer.analyze([images[i] for i in good])))
        except (OSError, ValueError):  # one bad image in the batch: find it, keep the others
            for i in good:
                try:
                    faces[i] = analyzer.analyze([images[i]])[0]
                except (OSError, ValueError) as error:
                    errors[i] = f"row {indices[i]}: {error}"
        for i in range(len(images)):
            found = faces.get(i, []) if errors[i] is None else []
            face = max(found, key=lambda f: f["box"][2] * f["box"][3]) if found else None
            row = {n: None for n in names}
            row.update(num_faces=len(found), error=errors[i])
            if face is not None:
                row.update({n: face[n] for n in names if n in face and n not in ("error",)})
                row["box"] = [int(v) for v in face["box"]]
            for name in names:
                out[self.prefix + name].append(row[name])
        return out


def _annotate(dataset: Any, function: PredictionColumns, config: Any, num_proc: int, batch_size: int) -> Any:
    from datasets import Features, Image

    feature = dataset.features[function.image_column]
    undecoded = isinstance(feature, Image) and feature.decode
    if undecoded:  # decode in the function, so that a corrupt image is the row's error, not the map's crash
        dataset = dataset.cast_column(function.image_column, Image(decode=False))
    features = Features({**dataset.features, **prediction_features(config, function.prefix)})
    mapped = dataset.map(
        function,
        batched=True,
        batch_size=batch_size,
        with_indices=True,
        features=features,
        num_proc=num_proc if num_proc > 1 else None,
        desc="cage predict",
    )
    if undecoded:
        mapped = mapped.cast_column(function.image_column, feature)
    return mapped


def run_predict_dataset(args: argparse.Namespace, load: Callable[[argparse.Namespace, str], Any]) -> int:
    """``cage predict --dataset``: the handler (see the module docstring). Returns the exit code: 0; 1 when some
    rows have an error (they are kept, with the error); 2 for usage errors (one line on stderr)."""
    import datasets

    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    state = None
    if world > 1:
        from accelerate import PartialState
        from accelerate.utils import parse_flag_from_env

        state = PartialState(cpu=parse_flag_from_env("ACCELERATE_USE_CPU"))
    rank = state.process_index if state is not None else 0
    is_main = rank == 0

    def fail(message: str) -> int:
        if is_main:
            print(f"cage predict: {message}", file=sys.stderr)
        return EXIT_USAGE

    if args.inputs:
        return fail("give either INPUT files or --dataset, not both")
    if args.output_dataset is None and args.push_to_hub is None:
        return fail("--dataset needs --output-dataset DIR and/or --push-to-hub REPO")
    if args.num_proc < 1:
        return fail("--num-proc must be >= 1")
    if state is not None and args.device == "auto":
        args.device = "cpu" if state.device.type == "cpu" else str(state.device)
    started = time.perf_counter()
    try:
        data = load_input_dataset(args.dataset, args.split)
    except ValueError as error:
        return fail(str(error))
    splits = data if isinstance(data, datasets.DatasetDict) else {None: data}
    for name, split in splits.items():
        if args.image_column not in split.column_names:
            where = f" (split {name})" if name else ""
            has = ", ".join(split.column_names)
            return fail(f"{args.dataset}{where}: no column {args.image_column!r}; it has {has}")
    analyzer = load(args, "predict")  # checks the options and the model once, with the CLI's one-line errors
    if analyzer is None:
        return EXIT_USAGE
    config = analyzer.config
    columns = {c for split in splits.values() for c in split.column_names}
    prefix = PREFIX_ON_CLASH if columns & set(prediction_features(config)) else ""
    if prefix and is_main:
        print(f"cage predict: the dataset already has some of the prediction columns; adding them as {prefix}*",
              file=sys.stderr)
    options = dict(
        model=args.model, detector=args.detector, device=args.device, batch_size=args.batch_size,
        detector_model=args.detector_model, precision=args.precision, runtime=args.runtime, onnx_model=args.onnx_model,
        trust_remote_code=args.trust_remote_code,
    )
    function = PredictionColumns(options, args.image_column, prefix, args.num_proc)
    function._analyzer, function.config = analyzer, config  # the one-process map reuses the loaded analyzer
    datasets.disable_caching()  # never write cache files into the input dataset's folder
    results = {}
    work = Path(args.output_dataset or ".").with_name(Path(args.output_dataset or "dataset").name + ".parts")
    for name, split in splits.items():
        if state is None:
            results[name] = _annotate(split, function, config, args.num_proc, args.batch_size)
            continue
        shard = split.shard(num_shards=state.num_processes, index=rank, contiguous=True)
        function.row_offset = sum(
            split.shard(num_shards=state.num_processes, index=r, contiguous=True).num_rows for r in range(rank)
        )
        mapped = _annotate(shard, function, config, 1, args.batch_size)
        mapped.save_to_disk(str(work / f"{name or 'data'}" / f"shard-{rank:05d}"))
        state.wait_for_everyone()
        if is_main:
            shards = [
                datasets.load_from_disk(str(work / f"{name or 'data'}" / f"shard-{r:05d}"))
                for r in range(state.num_processes)
            ]
            results[name] = datasets.concatenate_datasets(shards)
    if not is_main:
        state.wait_for_everyone()
        return EXIT_OK
    output = datasets.DatasetDict(results) if isinstance(data, datasets.DatasetDict) else results[None]
    code = EXIT_OK
    if args.output_dataset is not None:
        output.save_to_disk(args.output_dataset)
    if args.push_to_hub is not None:
        try:
            output.push_to_hub(args.push_to_hub)
        except Exception as error:  # noqa: BLE001 (network, auth, offline mode: one line, the saved copy stays)
            print(f"cage predict: push to {args.push_to_hub} failed: {error}", file=sys.stderr)
            code = EXIT_INPUT_ERRORS
    if state is not None:
        state.wait_for_everyone()
        shutil.rmtree(work, ignore_errors=True)
    rows = faces = failures = 0
    for split in results.values():
        rows += split.num_rows
        faces += sum(split[prefix + "num_faces"])
        failures += sum(e is not None for e in split[prefix + "error"])
    for name, split in results.items():
        where = f"{args.dataset}[{name}]" if name is not None else args.dataset
        for error in (e for e in split[prefix + "error"] if e is not None):
            print(f"cage predict: error: {where}: {error}", file=sys.stderr)
    elapsed = time.perf_counter() - started
    processes = state.num_processes if state is not None else 1
    print(
        f"cage predict: {rows} rows, {faces} faces, {failures} failed, {elapsed:.1f} s, {processes} process"
        + ("es" if processes != 1 else ""),
        file=sys.stderr,
    )
    return code if code else (EXIT_INPUT_ERRORS if failures else EXIT_OK)
