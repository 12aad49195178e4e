"""Load a CAGE model and its processor from a local folder or a Hub repository, with clear errors."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from huggingface_hub import is_offline_mode
from transformers import AutoImageProcessor, AutoModel

from ..hub_ids import looks_like_repo_id

from ..pipeline_cage import FaceExpressionAnalyzer

logger = logging.getLogger(__name__)


class ModelLoadError(RuntimeError):
    """A model could not be loaded; the message names the model and the reason."""


def load_model_and_processor(model: str | Path, device: Any = None) -> tuple[Any, Any]:
    """Load ``model`` (a folder written by ``save_pretrained`` or a Hub repo id) and its image processor.

    Uses this package's registered classes (no remote code is executed).

    Raises:
        ModelLoadError: the folder does not exist or lacks ``config.json``/``preprocessor_config.json``, the
            repo cannot be reached (offline mode or no network), or the files are not a CAGE model.
    """
    import cage  # noqa: F401  (registers the Auto classes)

    name = str(model)
    if name.startswith("~"):  # a quoted "~/models/x" (the shell expands only unquoted tildes)
        name = os.path.expanduser(name)
    path = Path(name)
    if path.exists():
        if not (path / "config.json").is_file():
            raise ModelLoadError(f"{name}: not a model folder (no config.json); create one with `cage init-model`")
    elif not looks_like_repo_id(name):
        raise ModelLoadError(f"{name}: no such folder (and not a Hub repo id of the form 'owner/name')")
    elif is_offline_mode():
        raise ModelLoadError(
            f"{name}: not a local folder and HF_HUB_OFFLINE=1 forbids downloading it; pass a local model folder"
        )
    try:
        network = AutoModel.from_pretrained(name)
        processor = AutoImageProcessor.from_pretrained(name, backend="pil")
    except (OSError, ValueError, KeyError) as error:
        raise ModelLoadError(f"{name}: cannot load the model: {error}") from error
    if getattr(network.config, "model_type", None) != "cage":
        raise ModelLoadError(f"{name}: model_type is {network.config.model_type!r}, not a CAGE model")
    if getattr(network.config, "weights_status", "trained") != "trained":
        logger.warning(
            "%s has weights_status=%r: its predictions are not meaningful (no trained CAGE weights)",
            name,
            network.config.weights_status,
        )
    if device is not None:
        network = network.to(device)
    return network.eval(), processor


def load_analyzer(
    model: str | Path,
    detector: str | None = None,
    device: str = "auto",
    batch_size: int = 32,
    detector_model: str | os.PathLike | None = None,
    precision: str = "fp32",
    runtime: str = "torch",
    onnx_model: str | os.PathLike | None = None,
    detect_size: str | int | None = None,
    latency: bool = False,
) -> FaceExpressionAnalyzer:
    """A [`FaceExpressionAnalyzer`] for ``model``; see [`load_model_and_processor`] and
    ``face_detection_cage.create_face_detector`` for the errors."""
    from .api import ExpressionAnalyzer

    return ExpressionAnalyzer.from_pretrained(
        model,
        detector=detector,
        device=device,
        batch_size=batch_size,
        detector_model=detector_model,
        precision=precision,
        runtime=runtime,
        onnx_model=onnx_model,
        detect_size=detect_size,
        latency=latency,
    )
