"""Where converted graphs (ONNX, OpenVINO IR) are cached, and the key that names them."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any


def cache_root(cache_dir: str | Path | None = None) -> Path:
    """``cache_dir``, else ``$CAGE_CACHE``, else ``~/.cache/cage``."""
    return Path(cache_dir or os.environ.get("CAGE_CACHE") or Path.home() / ".cache" / "cage")


def model_digest(model: Any, *extra: str) -> str:
    """24 hex digits of SHA-256 over the model's full config JSON, every weight tensor and ``extra`` strings
    (e.g. the runtime's version): a changed model or runtime gets a new cache entry."""
    digest = hashlib.sha256(model.config.to_json_string(use_diff=False).encode())
    for text in extra:
        digest.update(text.encode())
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:24]
