"""Writing a complete model folder: weights (safetensors), config, processor, their code and the pipeline.

Every producer of a model folder (``cage init-model``, training, checkpoint conversion, ``cage push``) goes
through [`save_model_folder`], so every folder loads the same ways: ``import cage`` + Auto classes,
``trust_remote_code=True`` where ``cage`` is not installed, and
``transformers.pipeline(model=folder, trust_remote_code=True)`` (custom task ``facial-expression-inference``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def save_model_folder(model: Any, image_processor: Any, output_dir: str | Path) -> Path:
    """Save ``model`` and ``image_processor`` to ``output_dir`` (created if needed) and return its path.

    Writes ``model.safetensors``, ``config.json`` (with ``auto_map`` and ``custom_pipelines``),
    ``preprocessor_config.json`` and the flat code files the Auto classes and the pipeline need as remote
    code (``configuration_cage.py``, ``modeling_cage.py``, ``image_processing_cage.py``, ``pipeline_cage.py``,
    ``face_detection_cage.py``). The model stays on its device; only its config gains ``custom_pipelines``.
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
