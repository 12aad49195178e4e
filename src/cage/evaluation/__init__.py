"""Evaluating CAGE models: the field's metrics and the paper's pooled ones (``metrics``), running a model
over a split with Accelerate (``runner``), figures (``plots``) and ``cage evaluate`` (``cli``).
Imports are lazy so that the ``cage`` command starts fast."""

from importlib import import_module

_EXPORTS = {
    "compute_metrics": "metrics",
    "concordance_correlation_coefficient": "metrics",
    "pearson_correlation": "metrics",
    "sign_agreement": "metrics",
    "load_evaluate_metric": "metrics",
    "evaluate_model": "runner",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
