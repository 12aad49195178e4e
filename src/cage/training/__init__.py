"""Training CAGE models with Accelerate: the paper's recipe on one CPU or many GPUs.

``train(TrainingArguments(...))`` (``loop``), the options (``arguments``), the paper's augmentation and the
evaluation transform (``transforms``), prepared data and loaders (``data``). Imports are lazy so that the
``cage`` command starts fast.
"""

from importlib import import_module

_EXPORTS = {
    "TrainingArguments": "arguments",
    "parse_training_arguments": "arguments",
    "train": "loop",
    "main": "loop",
    "train_transform": "transforms",
    "eval_transform": "transforms",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
