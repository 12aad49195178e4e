"""Running CAGE models on real input: the analyzer (runner + processor + detector),
files, folders and videos, output writers, the Python API.

Imports are lazy so that the ``cage`` command starts fast (see ``cage.cli``).
"""

from importlib import import_module

_EXPORTS = {
    "ExpressionAnalyzer": "api",
    "load_analyzer": "api",
    "ImageResult": "predict",
    "load_boxes": "predict",
    "predict_paths": "predict",
    "predict_video": "predict",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
