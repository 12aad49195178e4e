"""Running CAGE models on real input: loading, files, folders and videos, output writers, the Python API."""

from .api import ExpressionAnalyzer
from .loading import ModelLoadError, load_analyzer, load_model_and_processor
from .predict import ImageResult, load_boxes, predict_paths, predict_video

__all__ = [
    "ExpressionAnalyzer",
    "ImageResult",
    "ModelLoadError",
    "load_analyzer",
    "load_boxes",
    "load_model_and_processor",
    "predict_paths",
    "predict_video",
]
