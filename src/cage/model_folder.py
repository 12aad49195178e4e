"""Writing a complete model folder: weights (safetensors), config, processor and their code.

Every producer of a model folder (``cage init-model``, training, checkpoint conversion, ``cage push``) goes
through [`save_model_folder`], so every folder loads the same ways: ``import cage`` + Auto classes, or
``trust_remote_code=True`` where ``cage`` is not installed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def save_model_folder(model: Any, image_processor: Any, output_dir: str | Path) -> Path:
    """Save ``model`` and ``image_processor`` to ``output_dir`` (created if needed) and return its path.

    Writes ``model.safetensors``, ``config.json`` (with ``auto_map``), ``preprocessor_config.json`` and the
    flat code files the Auto classes need as remote code.
    """
    import cage  # noqa: F401  (registers the Auto classes, so that auto_map and code files are written)

    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(output_dir, safe_serialization=True)
    image_processor.save_pretrained(output_dir)
    return output_dir
