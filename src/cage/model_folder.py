"""A model folder, both ways: writing it complete (weights, config, processor, their code, the pipeline) and
loading it (or a Hub repository) back with clear errors.

Every producer of a model folder (``cage init-model``, training, checkpoint conversion, ``cage push``) goes
through [`save_model_folder`], so every folder loads the same ways: ``import cage`` + Auto classes (what
[`load_model_and_processor`] does, for every command that reads a model),
``trust_remote_code=True`` where ``cage`` is not installed, and
``transformers.pipeline(model=folder, trust_remote_code=True)`` (custom task ``facial-expression-inference``).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)


class ModelLoadError(RuntimeError):
    """A model could not be loaded; the message names the model and the reason."""


# The trained model inside the package (trained by cage on FER+; its README.md is the model card): what
# `cage predict`, `cage webcam`, `ExpressionAnalyzer.from_pretrained()` and the Space use when no model is named.
BUNDLED_MODEL_NAME = "cage-ferplus-resnet18"
BUNDLED_MODEL_DIR = Path(__file__).resolve().parent / "pretrained" / BUNDLED_MODEL_NAME


def default_model(model: str | os.PathLike | None = None) -> str:
    """``model`` as given, or, when it is ``None``, the path of the model bundled with cage
    ([`BUNDLED_MODEL_DIR`]: trained on FER+, works offline).

    Raises:
        ModelLoadError: no model was named and the bundled one is missing from this installation.
    """
    if model is not None:
        return str(model)
    if not (BUNDLED_MODEL_DIR / "config.json").is_file():
        raise ModelLoadError(
            f"no --model given and the bundled model is missing from this installation ({BUNDLED_MODEL_DIR}); "
            "reinstall cage, or pass a model folder or Hub repo id"
        )
    return str(BUNDLED_MODEL_DIR)


def derived_targets_note(config: Any) -> str | None:
    """One line for people when ``config``'s regression targets are derived (``regression_source ==
    "derived"``, e.g. a model trained on FER+), else ``None``."""
    if getattr(config, "regression_source", "annotated") != "derived":
        return None
    targets = "/".join(getattr(config, "regression_targets", ["valence", "arousal"]))
    detail = getattr(config, "regression_note", None) or "computed from other labels"
    return f"this model's {targets} were trained on DERIVED targets, not human ratings ({detail})"


def save_model_folder(model: Any, image_processor: Any, output_dir: str | Path) -> Path:
    """Save ``model`` and ``image_processor`` to ``output_dir`` (created if needed) and return its path.

    Writes ``model.safetensors``, ``config.json`` (with ``auto_map`` and ``custom_pipelines``),
    ``preprocessor_config.json`` and the flat code files the Auto classes and the pipeline need as remote
    code (``configuration_cage.py``, ``modeling_cage.py``, ``image_processing_cage.py``, ``pipeline_cage.py``,
    ``face_analysis_cage.py``, ``face_detection_cage.py``). The model stays on its device; only its config gains ``custom_pipelines``.
    """
    import cage  # noqa: F401  (registers the Auto classes, so that auto_map and code files are written)

    from .pipeline_cage import TASK, FaceExpressionPipeline

    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    # Pipeline.save_pretrained writes config.custom_pipelines, copies pipeline_cage.py with its relative
    # imports, then saves the model (safetensors) and the processor.
    pipe = FaceExpressionPipeline(model=model, image_processor=image_processor, device=model.device, task=TASK)
    pipe.save_pretrained(output_dir)
    return output_dir


def warn_if_untrained(name: str, weights_status: str) -> None:
    """Log a warning (logger ``cage.model_folder``) unless ``weights_status`` is ``"trained"``: an untrained
    model's predictions are not meaningful."""
    if weights_status != "trained":
        logger.warning(
            "%s has weights_status=%r: its predictions are not meaningful (no trained CAGE weights)",
            name,
            weights_status,
        )


def load_model_and_processor(model: str | Path, device: Any = None) -> tuple[Any, Any]:
    """Load ``model`` (a folder written by ``save_pretrained`` or a Hub repo id) and its image processor.

    Uses this package's registered classes (no remote code is executed).

    Raises:
        ModelLoadError: the folder does not exist or lacks ``config.json``/``preprocessor_config.json``, the
            repo cannot be reached (offline mode or no network), or the files are not a CAGE model.
    """
    from huggingface_hub import is_offline_mode
    from transformers import AutoImageProcessor, AutoModel

    import cage  # noqa: F401  (registers the Auto classes)

    from .hub_ids import looks_like_repo_id

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
    warn_if_untrained(name, getattr(network.config, "weights_status", "trained"))
    if device is not None:
        network = network.to(device)
    return network.eval(), processor
