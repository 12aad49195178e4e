"""Optional extras: what only some commands need, and the one-line message naming the extra when it is missing.

The core install (``pip install cage``) predicts, prepares, trains, evaluates and publishes. These extras add
what only some commands use (``pip install 'cage[NAME]'``; ``cage[dev]`` installs all that the tests need):

- ``plots``: matplotlib, for ``cage evaluate --plots``, ``cage predict --plot`` (videos) and ``cage reproduce``
  (its evaluation plots and the card's circumplex figure).
- ``onnx``: onnx and onnxruntime, for ``cage export onnx``, ``--runtime onnx`` and the ONNX Runtime fallback
  of ``--runtime auto`` (left out of ``auto`` when not installed).
- ``int8``: NNCF, for ``cage bench``'s static int8 variant.
- ``demo``: gradio (and matplotlib), for the Space in ``spaces_app/``.

Standard library only: the CLI's parsers may look extras up without importing anything heavy.
"""

from __future__ import annotations

import importlib.util

# extra -> the modules it provides (as imported), in the order pyproject.toml lists the packages.
EXTRAS = {
    "plots": ("matplotlib",),
    "onnx": ("onnx", "onnxruntime"),
    "int8": ("nncf",),
    "demo": ("gradio", "matplotlib"),
}


class MissingExtraError(ImportError):
    """A feature needs an optional extra that is not installed; the message names it and the pip command."""


def require_extra(extra: str, purpose: str) -> None:
    """Raise unless every module of ``extra`` can be imported.

    Args:
        extra: a key of ``EXTRAS`` (e.g. ``"plots"``).
        purpose: what needs it, for the message (e.g. ``"cage evaluate --plots"``).

    Raises:
        MissingExtraError: one line such as ``cage evaluate --plots needs the 'plots' extra (matplotlib is
            missing): pip install 'cage[plots]'``.
        KeyError: ``extra`` is not a known extra.
    """
    missing = [name for name in EXTRAS[extra] if importlib.util.find_spec(name) is None]
    if missing:
        raise MissingExtraError(
            f"{purpose} needs the '{extra}' extra ({', '.join(missing)} {'is' if len(missing) == 1 else 'are'} "
            f"missing): pip install 'cage[{extra}]'"
        )
