"""Running CAGE models on real input: the analyzer (runner + processor + detector),
files, folders and videos, output writers, the Python API.

Imports are lazy so that the ``cage`` command starts fast (see ``cage.cli``).
"""

from .. import lazy_exports

_EXPORTS = {
    "ExpressionAnalyzer": "api",
    "load_analyzer": "api",
    "ImageResult": "predict",
    "load_boxes": "predict",
    "predict_paths": "predict",
    "predict_video": "predict",
}

__all__ = sorted(_EXPORTS)


__getattr__ = lazy_exports(__name__, _EXPORTS)
