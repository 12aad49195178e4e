"""Published CAGE results, as data, for the "paper" column of model cards.

Source: Wagner, Mätzler, Vossberg, Schneider, Pavlitska, Zöllner, "CAGE: Circumplex Affect Guided
Expression Inference", CVPR 2024 Workshops (ABAW), pp. 4683-4692, arXiv 2404.14975 — the AffectNet results
table (official validation set used as test set, 3,999 images), the per-dimension benchmark comparison,
and the EMOTIC results. Restated in this project's ``../shared/reference/cage.md``.

Metric names follow the ``cage evaluate`` metrics JSON: ``weighted_*`` are class-frequency-weighted
averages (the paper's P/R/F1); ``pooled_valence_arousal`` treats valence and arousal as one series (the
paper's table); ``valence``/``arousal``/``dominance`` are per dimension.
"""

from __future__ import annotations

PAPER_TITLE = "CAGE: Circumplex Affect Guided Expression Inference (Wagner et al., CVPR 2024 Workshops)"
PAPER_URL = "https://arxiv.org/abs/2404.14975"

# One entry per published model: (dataset, objective) -> {"name", section -> {metric -> value}}; the dataset is
# the label set's title in ``configuration_cage.LABEL_SETS`` (what ``hub.card.dataset_name`` returns).
PAPER_RESULTS: dict[tuple[str, str], dict] = {
    ("AffectNet-7", "combined"): {
        "name": "CAGE MaxViT combined (paper)",
        "expression": {"weighted_precision": 0.666, "weighted_recall": 0.664, "weighted_f1": 0.664},
        "pooled_valence_arousal": {"rmse": 0.3077, "ccc": 0.7640},
    },
    ("AffectNet-7", "valence_arousal"): {
        "name": "CAGE MaxViT valence-arousal (paper)",
        "pooled_valence_arousal": {"rmse": 0.2901, "ccc": 0.8196},
    },
    ("AffectNet-8", "combined"): {
        "name": "CAGE MaxViT combined (paper)",
        "expression": {"weighted_precision": 0.623, "weighted_recall": 0.621, "weighted_f1": 0.621},
        "pooled_valence_arousal": {"rmse": 0.3701, "ccc": 0.6592},
    },
    ("AffectNet-8", "valence_arousal"): {
        "name": "CAGE MaxViT valence-arousal (paper)",
        "pooled_valence_arousal": {"rmse": 0.3196, "ccc": 0.7840},
    },
    ("EMOTIC", "combined"): {
        "name": "CAGE MaxViT combined (paper)",
        # RMSE on the 1..10 scale (1.150, 1.209, 1.169) divided by 4.5, i.e. on the [-1, 1] scale used here.
        "valence": {"rmse": 0.256, "ccc": 0.316},
        "arousal": {"rmse": 0.269, "ccc": 0.594},
        "dominance": {"rmse": 0.260, "ccc": 0.300},
        "multilabel": {"top3_accuracy": 0.1473},
    },
}

# The paper's per-dimension AffectNet-8 comparison: CAGE vs the previous best (Bulat et al. 2022, VGG-F).
PAPER_PER_DIMENSION_AFFECTNET8 = {
    "CAGE (paper, per-dimension comparison)": {"valence": {"rmse": 0.331, "ccc": 0.716}, "arousal": {"rmse": 0.305, "ccc": 0.642}},
    "Bulat et al. 2022 (paper's comparison)": {
        "valence": {"rmse": 0.356, "ccc": 0.710},
        "arousal": {"rmse": 0.326, "ccc": 0.629},
    },
}

# AffectNet validation set: per-class medians of (valence, arousal), from its labels (reference points on
# the circumplex; computed by this project's reference notes, not published in the paper).
AFFECTNET_CLASS_MEDIANS = {
    "Neutral": (0.00, 0.00),
    "Happy": (0.69, 0.09),
    "Sad": (-0.68, -0.27),
    "Surprise": (0.18, 0.73),
    "Fear": (-0.11, 0.78),
    "Disgust": (-0.73, 0.45),
    "Anger": (-0.41, 0.57),
    "Contempt": (-0.59, 0.64),
}

CAGE_BIBTEX = """@inproceedings{wagner2024cage,
  title     = {{CAGE}: Circumplex Affect Guided Expression Inference},
  author    = {Wagner, Niklas and M{\\"a}tzler, Felix and Vossberg, Samed R. and Schneider, Helen and
               Pavlitska, Svetlana and Z{\\"o}llner, J. Marius},
  booktitle = {Proceedings of the IEEE/CVF Conference on Computer Vision and Pattern Recognition (CVPR) Workshops},
  pages     = {4683--4692},
  year      = {2024},
  eprint    = {2404.14975},
  archivePrefix = {arXiv}
}"""
