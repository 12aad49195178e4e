"""Ready-made CAGE configurations (AffectNet-8, AffectNet-7, EMOTIC) and untrained model folders.

The one place that turns a dataset name into labels, regression targets, single/multi-label and crop
policy; training, ``cage init-model`` and checkpoint conversion all start here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .configuration_cage import AFFECTNET7_LABELS, AFFECTNET8_LABELS, DEFAULT_BACKBONE, EMOTIC_LABELS, CageConfig
from .image_processing_cage import CageImageProcessor
from .modeling_cage import CageForExpressionInference

LABEL_SETS = {
    "affectnet8": AFFECTNET8_LABELS,
    "affectnet7": AFFECTNET7_LABELS,
    "emotic": EMOTIC_LABELS,
}


def make_config(
    labels: str = "affectnet8",
    objective: str = "combined",
    backbone: str = DEFAULT_BACKBONE,
    image_size: int = 224,
    **overrides: Any,
) -> CageConfig:
    """A ``CageConfig`` for one of ``LABEL_SETS``.

    ``affectnet8``/``affectnet7``: single-label, valence and arousal. ``emotic``: 26 multi-label categories,
    valence, arousal and dominance (paper, Section 4). ``backbone``: torchvision's ``maxvit_t`` (the
    authors' network, default) or a timm model name (``CageConfig`` resolves ``backbone_library`` from it
    unless ``overrides`` name it). ``overrides`` go to ``CageConfig``.

    Raises:
        ValueError: unknown label set (the message lists the known ones) or an invalid config field.
    """
    if labels not in LABEL_SETS:
        raise ValueError(f"unknown label set {labels!r}; choose one of {', '.join(LABEL_SETS)}")
    emotic = labels == "emotic"
    fields: dict[str, Any] = {
        "backbone": backbone,
        "image_size": image_size,
        "id2label": dict(enumerate(LABEL_SETS[labels])),
        "regression_targets": ["valence", "arousal", "dominance"] if emotic else ["valence", "arousal"],
        "multi_label": emotic,
        "objective": objective,
    }
    fields.update(overrides)
    return CageConfig(**fields)


def make_image_processor(config: CageConfig, **overrides: Any) -> CageImageProcessor:
    """The processor matching ``config``: square ``image_size`` input, ImageNet mean/std, and a face crop
    policy for AffectNet-style models (square + margin until ``cage train`` writes the training data's measured
    framing) or an exact-box body crop policy for multi-label (EMOTIC) models."""
    fields: dict[str, Any] = {
        "size": {"height": config.image_size, "width": config.image_size},
        "crop_target": "body" if config.multi_label else "face",
        # Body crops are cut as the exact person box, as `cage prepare` cuts EMOTIC's body boxes.
        "crop_exact": bool(config.multi_label),
    }
    fields.update(overrides)
    return CageImageProcessor(**fields)


def write_untrained_model(
    output_dir: str | Path,
    labels: str = "affectnet8",
    backbone: str = DEFAULT_BACKBONE,
    image_size: int = 224,
    objective: str = "combined",
    seed: int = 0,
) -> Path:
    """Save a randomly initialised model and its processor to ``output_dir`` (safetensors + configs + code).

    The config says ``weights_status: "untrained"``; every prediction from it is meaningless and the CLI
    says so. Meant for exercising the pipeline before trained weights exist.
    """
    import torch

    torch.manual_seed(seed)
    config = make_config(labels, objective=objective, backbone=backbone, image_size=image_size)
    from .model_folder import save_model_folder

    model = CageForExpressionInference(config)
    return save_model_folder(model, make_image_processor(config), output_dir)
