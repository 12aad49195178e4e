"""Fast start: run a model folder's cached OpenVINO graph without importing torch or transformers.

Importing torch and transformers and building the PyTorch model takes seconds, more than predicting a
folder of a hundred faces with OpenVINO. The first run of ``cage predict --runtime auto`` on a model folder
takes the full path: it loads the model, converts it to OpenVINO (cached, ``cage.runtimes.openvino``) and
checks the graph against PyTorch (``cage.runtimes.select``). Then it records in the cache what it resolved:
the graph, the labels and regression targets from the config, the processor's crop policy and
preprocessing settings. A later run on the same folder whose first ``--runtime auto`` candidate is that
checked OpenVINO path replays the record: the same graph at the same precision, the same crops and pixel
values (the framing policy is the one ``FramingPolicy`` class; resize and normalisation are transformers'
PIL-backend arithmetic, equal to the bit), the same records.

The record is keyed by the SHA-256 of every file at the folder's top level, OpenVINO's version and
[`RECORD_VERSION`]: any change to the folder gives a new key, so a stale record is never used. Anything
the fast start cannot replay (a Hub repo id, a GPU that ``--device auto`` would take, the webcam's latency
race, a path other than OpenVINO first, a missing or unreadable record) leaves it to the full path.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import platform
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..face_analysis_cage import FramingPolicy, to_rgb

logger = logging.getLogger("cage")

RECORD_VERSION = 2  # bump when the record's fields or the replayed preprocessing change


def local_model_folder(model: str | os.PathLike) -> Path | None:
    """``model`` as a local model folder (``~`` expanded; it holds ``config.json``), or ``None``."""
    path = Path(os.path.expanduser(str(model)))
    return path if (path / "config.json").is_file() else None


def folder_key(folder: Path, runtime_version: str) -> str:
    """24 hex digits of SHA-256 over the name and content of every file at ``folder``'s top level (sorted),
    ``runtime_version`` and [`RECORD_VERSION`]."""
    digest = hashlib.sha256(f"cage fast start {RECORD_VERSION} {runtime_version}".encode())
    for path in sorted(folder.iterdir()):
        if path.is_file():
            digest.update(path.name.encode() + b"\0")
            with open(path, "rb") as stream:
                for chunk in iter(lambda: stream.read(1 << 24), b""):
                    digest.update(chunk)
    return digest.hexdigest()[:24]


def _record_path(folder: Path, cache_dir: str | Path | None) -> Path | None:
    from ..runtimes.cache import cache_root
    from ..runtimes.openvino import runtime_version

    version = runtime_version()
    if version is None:
        return None
    return cache_root(cache_dir) / "openvino" / "folders" / f"{folder_key(folder, version)}.json"


class RecordedConfig:
    """What the analyzer reads from a model's config: ``id2label`` (int -> label), ``multi_label``,
    ``regression_targets``, ``num_labels``, ``weights_status``, ``name_or_path``, ``regression_source`` and
    ``regression_note``."""

    def __init__(self, fields: dict[str, Any]):
        self.id2label = {int(index): label for index, label in fields["id2label"].items()}
        self.num_labels = len(self.id2label)
        self.multi_label = bool(fields["multi_label"])
        self.regression_targets = list(fields["regression_targets"])
        self.weights_status = fields["weights_status"]
        self.name_or_path = fields.get("name_or_path", "")
        self.regression_source = fields.get("regression_source", "annotated")
        self.regression_note = fields.get("regression_note")


class ArrayImageProcessor(FramingPolicy):
    """A ``CageImageProcessor``'s framing and preprocessing from its recorded settings, in PIL and NumPy.

    ``__call__(images, return_tensors="np")`` -> ``{"pixel_values": (B, 3, H, W) float32}``: each RGB crop is
    made upright RGB ([`to_rgb`]), made to look like the training faces (``grayscale``, ``source_resolution``:
    ``FramingPolicy.match_training_faces``), resized with PIL to ``size`` (``resample``: a PIL filter number), scaled by
    ``rescale_factor`` in float64 and cast to float32, then normalised ``(x - image_mean) / image_std`` in
    float32: the arithmetic of transformers' PIL backend, which ``CageImageProcessor`` uses (equal to the bit;
    ``tests/test_fast_start.py``).

    Raises:
        ValueError: ``return_tensors`` other than ``"np"``; malformed crop settings (see ``check_policy``).
    """

    def __init__(self, settings: dict[str, Any]):
        for name in ("framing", "crop_exact", "crop_square", "crop_margin", "crop_target"):
            setattr(self, name, settings[name])
        self.framings = settings.get("framings")
        self.grayscale = bool(settings.get("grayscale", False))
        self.source_resolution = settings.get("source_resolution")
        self.size = (int(settings["size"]["height"]), int(settings["size"]["width"]))
        self.resample = int(settings["resample"])
        self.do_resize, self.do_rescale = bool(settings["do_resize"]), bool(settings["do_rescale"])
        self.do_normalize = bool(settings["do_normalize"])
        self.rescale_factor = float(settings["rescale_factor"])
        self.image_mean = np.asarray(settings["image_mean"], dtype=np.float32)
        self.image_std = np.asarray(settings["image_std"], dtype=np.float32)
        self.check_policy()

    def __call__(self, images: list[Image.Image], return_tensors: str = "np") -> dict[str, np.ndarray]:
        if return_tensors != "np":
            raise ValueError(f"the fast start's processor returns NumPy arrays only, not {return_tensors!r}")
        height, width = self.size
        batch = []
        for image in images:
            image = self.match_training_faces(to_rgb(image))
            if self.do_resize:
                image = image.resize((width, height), resample=self.resample)
            pixels = np.asarray(image)
            pixels = (pixels.astype(np.float64) * self.rescale_factor).astype(np.float32) if self.do_rescale else pixels
            if self.do_normalize:
                pixels = (pixels.astype(np.float32) - self.image_mean) / self.image_std
            batch.append(pixels.transpose(2, 0, 1))
        return {"pixel_values": np.ascontiguousarray(np.stack(batch), dtype=np.float32)}


def _processor_settings(processor: Any) -> dict[str, Any]:
    size = processor.size
    return {
        "size": {"height": int(size["height"]), "width": int(size["width"])},
        "resample": int(processor.resample),
        "do_resize": bool(processor.do_resize),
        "do_rescale": bool(processor.do_rescale),
        "rescale_factor": float(processor.rescale_factor),
        "do_normalize": bool(processor.do_normalize),
        "image_mean": [float(v) for v in processor.image_mean],
        "image_std": [float(v) for v in processor.image_std],
        "framing": processor.framing,
        "framings": getattr(processor, "framings", None),
        "crop_exact": bool(processor.crop_exact),
        "crop_square": bool(processor.crop_square),
        "crop_margin": float(processor.crop_margin),
        "crop_target": processor.crop_target,
        "grayscale": bool(getattr(processor, "grayscale", False)),
        "source_resolution": getattr(processor, "source_resolution", None),
    }


def record_fast_start(model: str | os.PathLike, runner: Any, processor: Any, cache_dir: Any = None) -> Path | None:
    """After the full path loaded ``model`` (a local folder) and chose ``runner`` (an ``OpenVinoModel`` on the
    cached graph, checked against PyTorch), record what a fast start needs; returns the record's path, or
    ``None`` when there is nothing to record (another runner, a Hub id) or the cache cannot be written.

    The record is written only for processors [`ArrayImageProcessor`] reproduces: PIL-mode RGB
    ``CageImageProcessor``s without a center crop or padding, at a fixed height and width.
    """
    folder = local_model_folder(model)
    source = getattr(runner, "source", None)
    if folder is None or source is None or getattr(runner, "runtime", None) != "openvino":
        return None
    if getattr(processor, "do_center_crop", False) or getattr(processor, "do_pad", False):
        return None
    try:
        settings = _processor_settings(processor)
        config = runner.config
        record = {
            "graph": source.name,
            "precision": runner.precision,
            "config": {
                "id2label": {str(k): v for k, v in config.id2label.items()},
                "multi_label": bool(config.multi_label),
                "regression_targets": list(config.regression_targets),
                "weights_status": getattr(config, "weights_status", "trained"),
                "name_or_path": str(model),
                "regression_source": getattr(config, "regression_source", "annotated"),
                "regression_note": getattr(config, "regression_note", None),
            },
            "processor": settings,
        }
        path = _record_path(folder, cache_dir)
        if path is None:
            return None
        path.parent.mkdir(parents=True, exist_ok=True)
        scratch = path.with_name(f"{path.stem}.{os.getpid()}.tmp")
        scratch.write_text(json.dumps(record, indent=1))
        scratch.replace(path)
        return path
    except (OSError, KeyError, TypeError, ValueError, AttributeError) as error:
        logger.debug("cage: no fast-start record for %s: %s", model, error)
        return None


def _gpu_may_be_used() -> bool:
    """Whether ``--device auto`` might pick a GPU here (then the full path decides): an NVIDIA or AMD (ROCm)
    device node, or an Apple-silicon Mac (MPS)."""
    if Path("/dev/nvidia0").exists() or Path("/dev/kfd").exists() or Path("/dev/dxg").exists():
        return True
    return platform.system() == "Darwin" and platform.machine() == "arm64"


def fast_start_parts(
    model: str | os.PathLike,
    runtime: str = "auto",
    precision: str = "auto",
    device: str = "auto",
    cache_dir: Any = None,
) -> tuple[Any, ArrayImageProcessor] | None:
    """``(runner, processor)`` replaying the full path's choice for ``model`` without torch or transformers,
    or ``None`` when the fast start does not apply (see the module docstring; never raises).

    The runner is the ``OpenVinoModel`` ``--runtime auto`` would use (the first candidate for this CPU,
    ``cage.runtimes.select.runtime_candidates``, which must be OpenVINO and have passed its check against
    PyTorch on this machine); the processor an [`ArrayImageProcessor`]. The model's ``weights_status``
    warning is logged as the full path logs it.
    """
    if runtime not in ("auto", "openvino") or str(device) not in ("auto", "cpu"):
        return None
    if str(device) == "auto" and _gpu_may_be_used():
        return None
    folder = local_model_folder(model)
    if folder is None or importlib.util.find_spec("openvino") is None:
        return None
    try:
        from ..runtimes.select import cpu_features, installed_runtimes, runtime_candidates

        first_runtime, first_precision = runtime_candidates(cpu_features(), installed_runtimes(), runtime, precision)[0]
        path = _record_path(folder, cache_dir)
        if first_runtime != "openvino" or path is None or not path.is_file():
            return None
        record = json.loads(path.read_text())
        graph = path.parent.parent / record["graph"]
        checked = graph.with_name(f"{graph.stem}.{first_precision}.check.json")  # written by select._build
        if not (graph.is_file() and graph.with_suffix(".bin").is_file() and checked.is_file()):
            return None
        config = RecordedConfig(record["config"])
        processor = ArrayImageProcessor(record["processor"])
        from ..runtimes.openvino import OpenVinoModel

        runner = OpenVinoModel(graph, config, precision=first_precision)
        runner.fast_start = True  # said in the summary line (FaceExpressionAnalyzer.engine)
    except Exception as error:  # noqa: BLE001 - whatever fails here, the full path still works
        logger.debug("cage: no fast start for %s: %s", model, error)
        return None
    from ..model_folder import warn_if_untrained

    warn_if_untrained(str(model), config.weights_status)
    return runner, processor


__all__ = ["ArrayImageProcessor", "RECORD_VERSION", "fast_start_parts", "folder_key", "record_fast_start"]
