"""A model folder, both ways: writing it complete (weights, config, processor, their code, the pipeline) and
loading it (or a Hub repository) back with clear errors.

Every producer of a model folder (``cage init-model``, training, checkpoint conversion, ``cage push``) goes
through [`save_model_folder`], so every folder loads the same ways: ``import cage`` + Auto classes (what
[`load_model_and_processor`] does, for every command that reads a model),
``trust_remote_code=True`` where ``cage`` is not installed, and
``transformers.pipeline(model=folder, trust_remote_code=True)`` (custom task ``facial-expression-inference``).
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)


class ModelLoadError(RuntimeError):
    """A model could not be loaded; the message names the model and the reason."""


# The trained model inside the package (trained by cage on FER+; its README.md is the model card): what
# `cage predict`, `cage webcam`, `ExpressionAnalyzer.from_pretrained()` and the Space use when no model is named.
BUNDLED_MODEL_NAME = "cage-ferplus-resnet10t-48"
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
    if "not human ratings: " in detail:  # the note says it itself (FER+'s): keep only how they were derived
        detail = detail.split("not human ratings: ", 1)[1]
    return f"this model's {targets} were trained on DERIVED targets, not human ratings: {detail}"


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


TRUST_REMOTE_CODE_FLAG = "--trust-remote-code"
WEIGHTS_FILES = ("model.safetensors", "model.safetensors.index.json")
PICKLE_FILES = ("pytorch_model.bin", "pytorch_model.bin.index.json", "model.pt", "model.pth", "model.ckpt")


def _one_line(error: BaseException) -> str:
    """An exception's message on one line (its first non-empty line), for errors that must stay one line."""
    text = str(error).strip()
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    return f"{type(error).__name__}: {first}" if first else type(error).__name__


def check_model_folder(path: Path, trust_remote_code: bool = False) -> dict:
    """Check a local model folder before transformers reads it; returns its ``config.json``.

    Model folders are untrusted input: cage reads only safetensors weights, and only CAGE configs (whose code is
    this package's own), unless ``trust_remote_code``.

    Raises:
        ModelLoadError: no ``config.json`` or one that is not JSON, a ``model_type`` other than ``cage`` (with
            code in the folder: refused unless ``trust_remote_code``), or no safetensors weights (a folder with
            only a pickle such as ``pytorch_model.bin`` is refused: loading a pickle can run code).
    """
    import json

    config_path = path / "config.json"
    if not config_path.is_file():
        raise ModelLoadError(f"{path}: not a model folder (no config.json); create one with `cage init-model`")
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
        if not isinstance(config, dict):
            raise ValueError("not a JSON object")
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise ModelLoadError(f"{config_path}: not a readable JSON config ({_one_line(error)})") from None
    model_type = config.get("model_type")
    if model_type != "cage" and not trust_remote_code:
        code = " and asks to run code from the folder (auto_map)" if config.get("auto_map") else ""
        raise ModelLoadError(
            f"{config_path}: model_type is {model_type!r}, not a CAGE model{code}; cage never runs code from a model "
            f"folder unless you pass {TRUST_REMOTE_CODE_FLAG}"
        )
    if not any((path / name).is_file() for name in WEIGHTS_FILES):
        pickles = [name for name in PICKLE_FILES if (path / name).is_file()]
        if pickles:
            raise ModelLoadError(
                f"{path / pickles[0]}: cage loads safetensors weights only (a pickle can run code when loaded); "
                "convert it to model.safetensors with a tool you trust"
            )
        raise ModelLoadError(f"{path}: no model.safetensors (the weights) in the folder")
    return config


@contextlib.contextmanager
def _quiet_transformers():
    """transformers' warnings (its load report) and progress bars off for a while, then as they were."""
    from transformers.utils import logging as transformers_logging

    verbosity = transformers_logging.get_verbosity()
    bars = transformers_logging.is_progress_bar_enabled()
    transformers_logging.set_verbosity_error()
    transformers_logging.disable_progress_bar()
    try:
        yield
    finally:
        transformers_logging.set_verbosity(verbosity)
        if bars:
            transformers_logging.enable_progress_bar()


def load_model_and_processor(model: str | Path, device: Any = None, trust_remote_code: bool = False) -> tuple[Any, Any]:
    """Load ``model`` (a folder written by ``save_pretrained`` or a Hub repo id) and its image processor.

    Model folders are untrusted input. By default this uses this package's registered classes and never runs
    code from the folder (``trust_remote_code=False`` everywhere, so transformers never prompts either); reads
    weights from safetensors only, in float32; and refuses weights that do not fit the config (missing,
    unexpected or mismatched tensors are never left randomly initialised).

    Args:
        model: a local folder or a Hub repo id (``owner/name``, downloaded unless offline).
        device: where to put the network (default: the CPU).
        trust_remote_code: let transformers run the folder's own code (its ``auto_map``), as
            ``--trust-remote-code`` does on the command line. Only for folders you trust.

    Raises:
        ModelLoadError: one line naming the model or file and the reason: no such folder or repo, offline, not a
            CAGE model, code in the folder without ``trust_remote_code``, only a pickle, a truncated or corrupt
            weights file, weights that do not fit, or an impossible processor setting (e.g. ``size`` 0).
    """
    import torch
    from huggingface_hub import is_offline_mode
    from transformers import AutoImageProcessor, AutoModel

    import cage  # noqa: F401  (registers the Auto classes)

    from .hub_ids import looks_like_repo_id

    name = str(model)
    if name.startswith("~"):  # a quoted "~/models/x" (the shell expands only unquoted tildes)
        name = os.path.expanduser(name)
    path = Path(name)
    if path.exists():
        if not path.is_dir():
            raise ModelLoadError(f"{name}: not a model folder (a file); pass the folder that holds config.json")
        check_model_folder(path, trust_remote_code)
    elif not looks_like_repo_id(name):
        raise ModelLoadError(f"{name}: no such folder (and not a Hub repo id of the form 'owner/name')")
    elif is_offline_mode():
        raise ModelLoadError(
            f"{name}: not a local folder and HF_HUB_OFFLINE=1 forbids downloading it; pass a local model folder"
        )
    options = {"trust_remote_code": trust_remote_code}
    if not path.exists():
        from .face_detection_cage import hub_reachable

        if not hub_reachable():  # the Hub's ~20 s of retries would end in the same place: the local cache or nothing
            options["local_files_only"] = True
    try:
        with _quiet_transformers():  # cage reports what matters (weights that do not fit) in its own one line
            network, info = AutoModel.from_pretrained(
                name, use_safetensors=True, output_loading_info=True, dtype=torch.float32, **options
            )
    except Exception as error:  # safetensors, OSError, ValueError...: every failure is one line, exit 2
        text = _one_line(error)
        if "trust_remote_code" in str(error) or "custom code" in str(error):
            text = f"the model asks to run code from its files; cage never does unless you pass {TRUST_REMOTE_CODE_FLAG}"
        elif options.get("local_files_only"):
            text = "the Hugging Face Hub cannot be reached and the model is not in the local cache"
        kind = f"{type(error).__module__}.{type(error).__name__}".lower()
        if path.exists() and "safetensor" in kind and (path / "model.safetensors").is_file():
            raise ModelLoadError(f"{path / 'model.safetensors'}: cannot load the weights ({text})") from None
        raise ModelLoadError(f"{name}: cannot load the model ({text})") from None
    if getattr(network.config, "model_type", None) != "cage":
        raise ModelLoadError(f"{name}: model_type is {network.config.model_type!r}, not a CAGE model")
    problems = [
        f"{len(keys)} {kind} (e.g. {', '.join(str(k) for k in list(keys)[:3])})"
        for kind, keys in (("missing", info.get("missing_keys")), ("unexpected", info.get("unexpected_keys")),
                           ("mismatched", info.get("mismatched_keys")))  # fmt: skip
        if keys
    ]
    if problems:
        raise ModelLoadError(f"{name}: the weights do not fit its config: {'; '.join(problems)} tensors")
    try:
        processor = AutoImageProcessor.from_pretrained(name, backend="pil", **options)  # same trust and cache rules
    except Exception as error:  # noqa: BLE001 - an impossible setting is a defect of the model: one line at load
        where = str(path / "preprocessor_config.json") if path.exists() else name
        raise ModelLoadError(f"{where}: cannot load the image processor ({_one_line(error)})") from None
    warn_if_untrained(name, getattr(network.config, "weights_status", "trained"))
    if device is not None:
        network = network.to(device)
    return network.eval(), processor
