"""Checks on the files a command writes, shared by every subcommand (light: standard library only)."""

from __future__ import annotations

import os
from pathlib import Path


def output_path_problem(output: str) -> str | None:
    """Why the file ``output`` cannot be written as cage writes outputs (its folder is missing, it is a folder,
    or it is not a regular file: a device such as ``/dev/null``, a FIFO or a socket, which the atomic
    write-then-rename would replace), or ``None``. A symbolic link is judged by what it points to (see
    [`resolved_output`])."""
    path = resolved_output(output)
    if path.is_dir():
        return f"--output {output} is a folder; give a file name"
    if path.exists() and not path.is_file():
        return (f"--output {output} is not a regular file (a device, FIFO or socket); cage writes its output to a "
                "temporary file and renames it into place, which would replace it: leave --output out to print "
                "to stdout, and redirect that")  # fmt: skip
    if not path.parent.is_dir():
        return f"--output {output}: the folder {path.parent} does not exist; create it first"
    return None


def resolved_output(output: str | os.PathLike) -> Path:
    """``output`` with ``~`` expanded and symbolic links followed: writing the file a link points to keeps the
    link (renaming onto the link itself would replace it with a regular file)."""
    return Path(os.path.realpath(Path(output).expanduser()))


def unwritable_folder_problem(output: str) -> str | None:
    """Why no file can be created beside ``output`` (its folder is read-only, ...), or ``None``: checked before a
    run starts (cage writes ``output``'s lock and a temporary file there)."""
    folder = resolved_output(output).parent
    error = _write_probe(folder)
    return None if error is None else f"cannot write {output}: {error.strerror or error} (in {folder}); nothing was written there"


def writable_folder_problem(folder: str, option: str = "--annotate") -> str | None:
    """Why files cannot be written into ``folder`` (created if missing), or ``None``: checked before a run
    starts, so that a read-only or impossible folder is one line at once, not an error after the work."""
    path = Path(folder).expanduser()
    if path.exists() and not path.is_dir():
        return f"{option} {folder} is a file, not a folder"
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        return f"{option} {folder}: cannot write there ({error.strerror or error})"
    error = _write_probe(path)
    return None if error is None else f"{option} {folder}: cannot write there ({error.strerror or error})"


def _write_probe(folder: Path) -> OSError | None:
    """The error creating (and removing) a temporary file in ``folder`` raises, or ``None`` when it can."""
    import tempfile

    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as error:
        return error
    return None


class OutputBusy(RuntimeError):
    """Another process is writing the same output file (its lock is held)."""


class OutputLock:
    """An exclusive lock on an output file: ``OUTPUT.lock`` beside it, held with ``fcntl.flock`` (released by
    the operating system when the process ends, even when it is killed). Two runs writing one output would
    lose one run's records; the second is refused instead.

    Raises (on enter):
        OutputBusy: another process holds the lock; the message names the output.
        OSError: the lock file cannot be created (the folder is read-only...).
    """

    def __init__(self, output: str | Path):
        self.output = Path(output).expanduser()
        self.path = self.output.with_name(self.output.name + ".lock")
        self._handle = None

    def __enter__(self) -> OutputLock:
        try:
            import fcntl
        except ImportError:  # Windows: no advisory locks here; the output is still written atomically
            return self
        while True:
            handle = open(self.path, "a+")
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                handle.close()
                raise OutputBusy(
                    f"another cage process is writing {self.output} (lock {self.path}); wait for it, or choose "
                    "another --output"
                ) from None
            try:
                same = os.stat(self.path).st_ino == os.fstat(handle.fileno()).st_ino
            except FileNotFoundError:
                same = False
            if same:  # not a lock file its previous holder removed meanwhile
                self._handle = handle
                return self
            handle.close()

    def __exit__(self, *exc) -> None:
        if self._handle is not None:
            self._handle.close()  # releases the lock
            self._handle = None
            try:
                self.path.unlink()
            except OSError:
                pass


def partial_path(output: str | Path) -> Path:
    """Where an output file is written before it is complete (then renamed to ``output``): ``.NAME.partial``
    beside it, so that a cut run never leaves a file that looks complete."""
    output = Path(output).expanduser()
    return output.with_name(f".{output.name}.partial")
