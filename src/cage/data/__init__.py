"""AffectNet, EMOTIC and FER+, as users have them on disk, into Hugging Face ``datasets`` (``cage prepare``).

``prepare_affectnet``, ``prepare_emotic`` and ``prepare_ferplus`` write a ``DatasetDict`` (``train``/``validation``/``test``)
with ``save_to_disk``; ``datasets.load_from_disk`` reads it back. Class statistics are in every split's
``info.description`` (JSON, read with [`load_stats`]) and in ``cage_stats.json``, with the crop policy and
the framing calibration (``cage.data.framing``); every problem found in the source is in ``cage_report.jsonl``.

Names are imported lazily, so that ``cage --help`` does not load ``datasets``.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "AFFECTNET_LAYOUTS": ("affectnet", "LAYOUTS"),
    "affectnet_features": ("affectnet", "affectnet_features"),
    "check_affectnet_labels": ("affectnet", "check_affectnet_labels"),
    "detect_affectnet_layout": ("affectnet", "detect_affectnet_layout"),
    "prepare_affectnet": ("affectnet", "prepare_affectnet"),
    "EMOTIC_LAYOUTS": ("emotic", "LAYOUTS"),
    "detect_emotic_layout": ("emotic", "detect_emotic_layout"),
    "emotic_features": ("emotic", "emotic_features"),
    "prepare_emotic": ("emotic", "prepare_emotic"),
    "scale_emotic": ("emotic", "scale_emotic"),
    "FERPLUS_LAYOUTS": ("ferplus", "LAYOUTS"),
    "derived_valence_arousal": ("ferplus", "derived_valence_arousal"),
    "detect_ferplus_layout": ("ferplus", "detect_ferplus_layout"),
    "ferplus_features": ("ferplus", "ferplus_features"),
    "prepare_ferplus": ("ferplus", "prepare_ferplus"),
    "vote_labels": ("ferplus", "vote_labels"),
    "PrepareError": ("build", "PrepareError"),
    "CalibrationError": ("framing", "CalibrationError"),
    "calibrate_split": ("framing", "calibrate_split"),
    "framing_for_processor": ("framing", "framing_for_processor"),
    "measure_framing": ("framing", "measure_framing"),
    "store_calibration": ("framing", "store_calibration"),
    "KINDS": ("problems", "KINDS"),
    "Problem": ("problems", "Problem"),
    "ProblemLog": ("problems", "ProblemLog"),
    "read_report": ("problems", "read_report"),
    "REPORT_FILE": ("stats", "REPORT_FILE"),
    "STATS_FILE": ("stats", "STATS_FILE"),
    "class_weights_from_counts": ("stats", "class_weights_from_counts"),
    "load_stats": ("stats", "load_stats"),
    "pos_weights_from_counts": ("stats", "pos_weights_from_counts"),
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module, attribute = _EXPORTS[name]
    return getattr(importlib.import_module(f"{__name__}.{module}"), attribute)


def __dir__():
    return __all__
