"""The Hugging Face Hub: model cards, ``cage push``, and converting the CAGE authors' checkpoints.

Imports are lazy so that the ``cage`` command starts fast (see ``cage.cli``).
"""

from .. import lazy_exports

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


__getattr__ = lazy_exports(__name__, _EXPORTS)
