"""Checks on the files a command writes, shared by every subcommand (light: standard library only)."""

from __future__ import annotations

from pathlib import Path


def output_path_problem(output: str) -> str | None:
    """Why the file ``output`` cannot be written (its folder is missing or it is a folder), or ``None``."""
    path = Path(output).expanduser()
    if path.is_dir():
        return f"--output {output} is a folder; give a file name"
    if not path.parent.is_dir():
        return f"--output {output}: the folder {path.parent} does not exist; create it first"
    return None
