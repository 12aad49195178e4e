"""Training CAGE models with Accelerate: the paper's recipe on one CPU or many GPUs.

``train(TrainingArguments(...))`` (``loop``) and the options (``arguments``); prepared data, loaders and the
paper's augmentation live in ``cage.data`` (``loading``, ``transforms``). Imports are lazy so that the
``cage`` command starts fast.
"""

from .. import lazy_exports

_EXPORTS = {
    "TrainingArguments": "arguments",
    "parse_training_arguments": "arguments",
    "train": "loop",
    "main": "loop",
}

__all__ = sorted(_EXPORTS)


__getattr__ = lazy_exports(__name__, _EXPORTS)
