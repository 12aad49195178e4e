"""The Hugging Face Hub: model cards, ``cage push``, and converting the CAGE authors' checkpoints.

Imports are lazy so that the ``cage`` command starts fast (see ``cage.cli``).
"""

from importlib import import_module

_EXPORTS = {
    "VARIANTS": "authors_checkpoint",
    "AuthorsCheckpointError": "authors_checkpoint",
    "convert_authors_checkpoint": "authors_checkpoint",
    "MetricsFileError": "card",
    "load_metrics": "card",
    "render_model_card": "card",
    "HubPushError": "push",
    "push_model_folder": "push",
    "stage_model_folder": "push",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
