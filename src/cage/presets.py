"""Ready-made CAGE configurations (AffectNet-8, AffectNet-7, EMOTIC) and untrained model folders.

Turns a label set of the registry (``configuration_cage.LABEL_SETS``: labels, regression targets,
single/multi-label) into a config, and the config into a processor with its crop policy; training,
``cage init-model`` and checkpoint conversion all start here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .configuration_cage import DEFAULT_BACKBONE, LABEL_SETS, CageConfig
from .image_processing_cage import CageImageProcessor
from .modeling_cage import CageForExpressionInference


def make_config(
    labels: str = "affectnet8",
    objective: str = "combined",
    backbone: str = DEFAULT_BACKBONE,
    image_size: int = 224,
    **overrides: Any,
) -> CageConfig:
    """A ``CageConfig`` for the label set ``labels``, a name in ``configuration_cage.LABEL_SETS``.

    The label set gives ``id2label``, ``regression_targets`` and ``multi_label``: ``affectnet8``/``affectnet7``:
    single-label, valence and arousal; ``emotic``: 26 multi-label categories, valence, arousal and dominance
    (paper, Section 4). ``backbone``: torchvision's ``maxvit_t`` (the
    authors' network, default) or a timm model name (``CageConfig`` resolves ``backbone_library`` from it
    unless ``overrides`` name it). ``overrides`` go to ``CageConfig``.

    Raises:
        ValueError: unknown label set (the message lists the known ones) or an invalid config field.
    """
    if labels not in LABEL_SETS:
        raise ValueError(f"unknown label set {labels!r}; choose one of {', '.join(LABEL_SETS)}")
    label_set = LABEL_SETS[labels]
    fields: dict[str, Any] = {
        "backbone": backbone,
        "image_size": image_size,
        "id2label": dict(enumerate(label_set.labels)),
        "regression_targets": list(label_set.regression_targets),
        "multi_label": label_set.multi_label,
        "objective": objective,
    }
    fields.update(overrides)
    return CageConfig(**fields)


def backbone_data_config(config: CageConfig) -> dict[str, Any]:
    """Normalisation and interpolation the backbone's weights were trained with.

    timm backbones: ``timm.data.resolve_model_data_config`` on the backbone's ``pretrained_cfg`` (e.g.
    ``maxvit_rmlp_pico_rw_256``: mean = std = 0.5, bicubic; ``maxvit_tiny_tf_224``: ImageNet mean/std,
    bicubic). torchvision backbones: the ImageNet mean/std and interpolation of torchvision's ``DEFAULT``
    weights' transforms (``maxvit_t``: bicubic).

    Returns:
        ``{"image_mean": [3 floats], "image_std": [3 floats], "resample": PILImageResampling}``.

    Raises:
        ValueError: the backbone has no pretrained configuration to read them from.
    """
    from transformers.image_utils import PILImageResampling

    if config.backbone_library == "torchvision":
        from torchvision.models import get_model_weights

        transforms = get_model_weights(config.backbone).DEFAULT.transforms()
        mean, std = transforms.mean, transforms.std
        interpolation = transforms.interpolation.value
    else:
        import timm
        from timm.data import resolve_model_data_config

        pretrained_cfg = timm.models.get_pretrained_cfg(config.backbone)
        if pretrained_cfg is None:
            raise ValueError(f"timm has no pretrained configuration for backbone {config.backbone!r}")
        data_config = resolve_model_data_config(None, pretrained_cfg=pretrained_cfg.to_dict())
        mean, std, interpolation = data_config["mean"], data_config["std"], data_config["interpolation"]
    resample = {"nearest": PILImageResampling.NEAREST, "bilinear": PILImageResampling.BILINEAR,
                "bicubic": PILImageResampling.BICUBIC, "lanczos": PILImageResampling.LANCZOS}  # fmt: skip
    if interpolation not in resample:
        raise ValueError(f"backbone {config.backbone!r}: unsupported interpolation {interpolation!r}")
    return {
        "image_mean": [float(v) for v in mean],
        "image_std": [float(v) for v in std],
        "resample": resample[interpolation],
    }


def make_image_processor(config: CageConfig, **overrides: Any) -> CageImageProcessor:
    """The processor matching ``config``: square ``image_size`` input, the backbone's own mean/std and
    interpolation ([`backbone_data_config`]), and a face crop policy for AffectNet-style models (square + margin
    until ``cage train`` writes the training data's measured framing) or an exact-box body crop policy for
    multi-label (EMOTIC) models. The saved processor records all of them."""
    fields: dict[str, Any] = {
        "size": {"height": config.image_size, "width": config.image_size},
        "crop_target": "body" if config.multi_label else "face",
        # Body crops are cut as the exact person box, as `cage prepare` cuts EMOTIC's body boxes.
        "crop_exact": bool(config.multi_label),
        **backbone_data_config(config),
    }
    fields.update(overrides)
    return CageImageProcessor(**fields)


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return ""


def write_untrained_model(
    output_dir: str | Path,
    labels: str = "affectnet8",
    backbone: str = DEFAULT_BACKBONE,
    image_size: int = 224,
    objective: str = "combined",
    seed: int = 0,
    backbone_kwargs: dict[str, Any] | None = None,
    overwrite: bool = False,
) -> Path:
    """Save a randomly initialised model and its processor to ``output_dir`` (safetensors + configs + code).

    ``backbone_kwargs`` go to the backbone's constructor (``timm.create_model``). The config says
    ``weights_status: "untrained"``; every prediction from it is meaningless and the CLI
    says so. Meant for exercising the pipeline before trained weights exist.

    Raises:
        FileExistsError: ``output_dir`` exists and is not empty (it may hold a trained model), unless
            ``overwrite``; the message names it.
    """
    import torch

    folder = Path(output_dir)
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())) and not overwrite:
        kind = "a trained model" if '"trained"' in _read_text(folder / "config.json") else "files"
        raise FileExistsError(f"{folder} exists and holds {kind}; not replacing it (pass --overwrite to replace it)")

    torch.manual_seed(seed)
    overrides = {"backbone_kwargs": backbone_kwargs} if backbone_kwargs else {}
    config = make_config(labels, objective=objective, backbone=backbone, image_size=image_size, **overrides)
    from .model_folder import save_model_folder

    model = CageForExpressionInference(config)
    return save_model_folder(model, make_image_processor(config), output_dir)
