"""Running CAGE models on real input: loading, files and folders, and output records."""

from .loading import ModelLoadError, load_analyzer, load_model_and_processor
from .predict import ImageResult, predict_paths

__all__ = ["ModelLoadError", "ImageResult", "load_analyzer", "load_model_and_processor", "predict_paths"]
