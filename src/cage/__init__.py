"""cage: the CAGE facial-expression model (expression + valence/arousal) as a Hugging Face model.

Importing ``cage`` registers the model with the transformers Auto classes, so that
``AutoModel.from_pretrained(path)`` and ``AutoImageProcessor.from_pretrained(path)`` work without
``trust_remote_code``; models saved with ``save_pretrained`` also carry their code (``auto_map``) and load
with ``trust_remote_code=True`` where ``cage`` is not installed.

``import cage`` itself is light (no torch, no transformers), so that ``cage --help`` starts fast: the
registration runs at once when transformers is already imported, else as soon as transformers is first
imported (a one-shot import hook), and the public names below are loaded on first access.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys

__version__ = "0.1.0"

_EXPORTS = {
    "AFFECTNET7_LABELS": "configuration_cage",
    "AFFECTNET8_LABELS": "configuration_cage",
    "EMOTIC_LABELS": "configuration_cage",
    "LABEL_SETS": "configuration_cage",
    "LabelSet": "configuration_cage",
    "CageConfig": "configuration_cage",
    "CageImageProcessor": "image_processing_cage",
    "CageForExpressionInference": "modeling_cage",
    "CageOutput": "modeling_cage",
    "ExpressionAnalyzer": "inference.api",
}

__all__ = sorted(_EXPORTS)


def _register_auto_classes() -> None:
    """Register the CAGE config, model and processor with the transformers Auto classes (idempotent)."""
    from transformers import AutoConfig, AutoImageProcessor, AutoModel
    from transformers.models.auto import image_processing_auto

    from .configuration_cage import CageConfig
    from .image_processing_cage import CageImageProcessor
    from .modeling_cage import CageForExpressionInference

    AutoConfig.register(CageConfig.model_type, CageConfig, exist_ok=True)
    AutoModel.register(CageConfig, CageForExpressionInference, exist_ok=True)
    # The processor is a PIL backend and registered as that only. AutoImageProcessor picks the torchvision
    # backend by default unless the processor's name is in its list of processors that default to PIL
    # (transformers 5.x, `DEFAULT_TO_PIL_BACKEND_IMAGE_PROCESSORS`); listing it there makes a plain
    # `from_pretrained` choose PIL without a fallback warning, while `backend="torchvision"` still says
    # truthfully that there is none.
    AutoImageProcessor.register(CageConfig, image_processor_classes={"pil": CageImageProcessor}, exist_ok=True)
    if CageImageProcessor.__name__ not in image_processing_auto.DEFAULT_TO_PIL_BACKEND_IMAGE_PROCESSORS:
        image_processing_auto.DEFAULT_TO_PIL_BACKEND_IMAGE_PROCESSORS.append(CageImageProcessor.__name__)
    # save_pretrained() writes `auto_map` and copies the flat model files next to the weights.
    CageConfig.register_for_auto_class()
    CageForExpressionInference.register_for_auto_class("AutoModel")
    CageImageProcessor.register_for_auto_class("AutoImageProcessor")


_WATCHED = ("transformers", *(f"{__name__}.{m}" for m in ("configuration_cage", "image_processing_cage", "modeling_cage")))


class _RegisterWhenReady(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Import hook: registers the Auto classes as soon as transformers is loaded and no watched module is
    half-executed (registering imports the three HF-facing modules, which import transformers)."""

    def __init__(self):
        self.loaders: dict[str, importlib.abc.Loader] = {}
        self.executing: set[str] = set()

    def find_spec(self, name, path, target=None):
        if name not in _WATCHED or name in self.loaders:
            return None
        self.loaders[name] = None  # find the real spec without finding ourselves again
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None:
            return spec
        self.loaders[name], spec.loader = spec.loader, self
        return spec

    def create_module(self, spec):
        return self.loaders[spec.name].create_module(spec)

    def exec_module(self, module):
        name = module.__spec__.name
        self.executing.add(name)
        try:
            self.loaders[name].exec_module(module)
        finally:
            self.executing.discard(name)
        if not self.executing and "transformers" in sys.modules and self in sys.meta_path:
            sys.meta_path.remove(self)
            _register_auto_classes()


if "transformers" in sys.modules:
    _register_auto_classes()
elif not any(isinstance(finder, _RegisterWhenReady) for finder in sys.meta_path):
    sys.meta_path.insert(0, _RegisterWhenReady())


def lazy_exports(package: str, exports: dict[str, str]):
    """A PEP 562 module ``__getattr__`` for ``package`` that imports ``exports[name]`` (a submodule name relative
    to ``package``) on first access of ``name``: the package ``__init__`` files of cage use it so that importing
    them stays light (the fast-start rule in ``cage.cli``).

    Raises (from the returned function):
        AttributeError: ``name`` is not exported.
    """

    def __getattr__(name: str):
        if name in exports:
            return getattr(importlib.import_module(f".{exports[name]}", package), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__


# Public names load on first access (`cage.ExpressionAnalyzer` is the documented Python API).
__getattr__ = lazy_exports(__name__, _EXPORTS)
