"""Telling a Hub repository id from a local path: the one rule every loader uses (models and datasets)."""

from __future__ import annotations

import os


def looks_like_repo_id(name: str | os.PathLike) -> bool:
    """Whether ``name``, which is not an existing local path, should be tried as a Hub repository id.

    A repo id has the form ``owner/name``: exactly one ``/`` and no leading ``.``, ``/`` or ``~`` (those are
    paths that do not exist). Only the shape is checked; ``huggingface_hub`` validates the characters when
    the id is used. Callers check ``Path(name).exists()`` first.
    """
    text = str(name)
    return not text.startswith((".", "/", "~")) and text.count("/") == 1
