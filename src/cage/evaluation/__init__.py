"""Evaluating CAGE models: the field's metrics and the paper's pooled ones (``metrics``), running a model
over a split with Accelerate (``runner``), figures (``plots``) and ``cage evaluate`` (``cli``).
Imports are lazy so that the ``cage`` command starts fast."""

from .. import lazy_exports

_EXPORTS = {
    "compute_metrics": "metrics",
    "concordance_correlation_coefficient": "metrics",
    "pearson_correlation": "metrics",
    "sign_agreement": "metrics",
    "load_evaluate_metric": "metrics",
    "evaluate_model": "runner",
}

__all__ = sorted(_EXPORTS)


__getattr__ = lazy_exports(__name__, _EXPORTS)
