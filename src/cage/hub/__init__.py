"""The Hugging Face Hub: model cards, ``cage push``, and converting the CAGE authors' checkpoints."""

from .authors_checkpoint import VARIANTS, AuthorsCheckpointError, convert_authors_checkpoint
from .card import MetricsFileError, load_metrics, render_model_card
from .push import HubPushError, push_model_folder, stage_model_folder

__all__ = [
    "VARIANTS",
    "AuthorsCheckpointError",
    "HubPushError",
    "MetricsFileError",
    "convert_authors_checkpoint",
    "load_metrics",
    "push_model_folder",
    "render_model_card",
    "stage_model_folder",
]
