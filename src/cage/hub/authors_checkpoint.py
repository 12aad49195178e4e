"""Converting checkpoints written by the CAGE authors' training scripts into ``cage`` model folders.

The authors (github.com/wagner-niklas/CAGE_expression_inference, ``models/*_Maxvit_*/train.py``) train
torchvision's ``maxvit_t`` with its ``classifier`` replaced, and save ``model.state_dict()`` with
``torch.save``. Two head layouts occur:

- combined (and discrete) models: ``classifier`` = AdaptiveAvgPool2d(1), Flatten, LayerNorm(512),
  Linear(512, 512), Tanh, Linear(512, K, bias=False) with K = 8 + 2 (AffectNet-8) or 7 + 2
  (AffectNet-7): expression logits in AffectNet's order, then valence, then arousal;
- valence-arousal models (fine-tuned from the combined ones): the same with Dropout(0.3) before the last
  layer, which has K = 2 outputs (valence, arousal) and no expression logits.

The trunk converts into the default CAGE trunk, torchvision's ``maxvit_t``
(``backbone_library="torchvision"``: the same network, so the same function); the head into [`CageHead`]
(pool, LayerNorm, Linear, Tanh, Linear without bias: identical in eval mode, where dropout is the identity).
No weights are invented: every tensor of the result comes from the file.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import torch

# variant -> (label set, objective). AffectNet-7 vs -8 is also the training set (with or without Contempt).
VARIANTS: dict[str, tuple[str, str]] = {
    "affectnet8-combined": ("affectnet8", "combined"),
    "affectnet7-combined": ("affectnet7", "combined"),
    "affectnet8-va": ("affectnet8", "valence_arousal"),
    "affectnet7-va": ("affectnet7", "valence_arousal"),
}
AUTHORS_REPOSITORY = "https://github.com/wagner-niklas/CAGE_expression_inference"
# The authors' trunk, torchvision's maxvit_t: also cage's default backbone (tests pin that the two agree).
AUTHORS_BACKBONE = "maxvit_t"
# Keys of the head in the authors' nn.Sequential: 2 LayerNorm, 3 Linear(C, C); the last Linear is
# index 5 (no dropout) or 6 (after Dropout(0.3), valence-arousal scripts).
_HEAD_KEYS = {
    "classifier.2.weight": "head.norm.weight",
    "classifier.2.bias": "head.norm.bias",
    "classifier.3.weight": "head.hidden.weight",
    "classifier.3.bias": "head.hidden.bias",
    "classifier.5.weight": "head.output.weight",
    "classifier.6.weight": "head.output.weight",
}


class AuthorsCheckpointError(ValueError):
    """The file is not a checkpoint of the authors' torchvision MaxViT-T with the CAGE head."""


def read_authors_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read an authors' checkpoint with ``torch.load(weights_only=True)`` (tensors only; no pickled code runs).

    Accepts a bare state dict, one wrapped under ``state_dict``/``model_state_dict``/``model``, and the
    ``module.`` prefix that ``nn.DataParallel`` adds.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        AuthorsCheckpointError: the file cannot be read safely, or holds no tensors.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"authors' checkpoint {path} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # pickle errors, truncated zip, objects refused by weights_only
        raise AuthorsCheckpointError(
            f"{path}: cannot be read as a PyTorch state dict with weights_only=True ({error})"
        ) from error
    if isinstance(state, dict):
        for key in ("state_dict", "model_state_dict", "model"):
            if isinstance(state.get(key), dict):
                state = state[key]
                break
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise AuthorsCheckpointError(f"{path}: expected a state dict of tensors (torch.save(model.state_dict()))")
    if all(key.startswith("module.") for key in state):
        state = {key[len("module.") :]: value for key, value in state.items()}
    return state


def authors_state_dict_to_cage(state: dict[str, torch.Tensor], source: str = "checkpoint") -> dict[str, torch.Tensor]:
    """Rename an authors' ``maxvit_t`` state dict to ``CageForExpressionInference`` names.

    ``stem.*``/``blocks.*`` -> ``trunk.stem.*``/``trunk.blocks.*``; the head as in ``_HEAD_KEYS``.

    Raises:
        AuthorsCheckpointError: keys outside that layout (e.g. a bias on the last layer), or a missing head.
    """
    converted, unknown = {}, []
    for key, value in state.items():
        if key.startswith(("stem.", "blocks.")):
            converted["trunk." + key] = value
        elif key in _HEAD_KEYS:
            if _HEAD_KEYS[key] in converted:
                raise AuthorsCheckpointError(f"{source}: both classifier.5 and classifier.6 weights are present")
            converted[_HEAD_KEYS[key]] = value
        else:
            unknown.append(key)
    if unknown:
        raise AuthorsCheckpointError(
            f"{source}: keys outside the authors' maxvit_t + CAGE head layout: {unknown[:8]}"
        )
    missing = sorted(set(_HEAD_KEYS.values()) - set(converted))
    if missing or not any(k.startswith("trunk.stem.") for k in converted):
        raise AuthorsCheckpointError(
            f"{source}: not a maxvit_t with the CAGE head (missing {missing or 'stem.*'}); is it a CAGE checkpoint?"
        )
    return converted


def convert_authors_checkpoint(
    checkpoint: str | Path,
    variant: str,
    output_dir: str | Path,
    weights_status: str = "trained",
) -> Path:
    """Convert an authors' ``model.pt`` into a ``cage`` model folder and return the folder's path.

    Args:
        checkpoint: the ``.pt`` file written by the authors' ``train.py`` (``torch.save(model.state_dict())``).
        variant: one of ``VARIANTS``: which script produced it (label set and objective).
        output_dir: folder to write with [`cage.model_folder.save_model_folder`].
        weights_status: recorded in the config; ``"trained"`` for real checkpoints (the CLI and card then
            stop warning), ``"untrained"`` for random test networks.

    The result has the default architecture (``backbone="maxvit_t"``, ``backbone_library="torchvision"``,
    as ``cage init-model`` and training build it), 224 px input, ImageNet
    mean/std and the face crop policy; ``id2label`` in AffectNet's order, or empty for the authors'
    valence-arousal models (their head has only the two regression outputs). ``training_recipe`` records
    the source file, its SHA-256 and the variant.

    Raises:
        ValueError: unknown variant.
        FileNotFoundError / AuthorsCheckpointError: unreadable file, or a layout that does not match the
            variant (e.g. 10 outputs for an AffectNet-7 checkpoint).
    """
    from ..model_folder import save_model_folder
    from ..modeling_cage import CageForExpressionInference
    from ..configuration_cage import LABEL_SETS
    from ..presets import make_config, make_image_processor

    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; choose one of {', '.join(VARIANTS)}")
    checkpoint = Path(checkpoint)
    labels, objective = VARIANTS[variant]
    state = authors_state_dict_to_cage(read_authors_state_dict(checkpoint), source=str(checkpoint))

    num_outputs = state["head.output.weight"].shape[0]
    num_labels = len(LABEL_SETS[labels].labels)
    overrides: dict[str, Any] = {}
    if num_outputs == 2 and objective == "valence_arousal":
        overrides["id2label"] = {}  # the authors' VA head: valence and arousal only
    elif num_outputs != num_labels + 2:
        expected = f"{num_labels} + 2" + (" or 2" if objective == "valence_arousal" else "")
        raise AuthorsCheckpointError(
            f"{checkpoint}: the last layer has {num_outputs} outputs, but variant {variant!r} needs {expected} "
            f"({num_labels} {labels} logits, valence, arousal); check --variant"
        )
    digest = hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    config = make_config(
        labels,
        objective=objective,
        backbone=AUTHORS_BACKBONE,
        image_size=224,
        backbone_library="torchvision",
        weights_status=weights_status,
        training_recipe={
            "source": f"converted from a checkpoint of the CAGE authors' training scripts ({AUTHORS_REPOSITORY})",
            "checkpoint_file": checkpoint.name,
            "checkpoint_sha256": digest,
            "variant": variant,
            "dataset": LABEL_SETS[labels].title,
        },
        **overrides,
    )
    model = CageForExpressionInference(config)
    try:
        result = model.load_state_dict(state, strict=False)
    except RuntimeError as error:  # size mismatches
        raise AuthorsCheckpointError(f"{checkpoint}: does not fit torchvision maxvit_t at 224 px: {error}") from error
    if result.missing_keys or result.unexpected_keys:
        raise AuthorsCheckpointError(
            f"{checkpoint}: does not fit torchvision maxvit_t at 224 px: missing {result.missing_keys[:5]}, "
            f"unexpected {result.unexpected_keys[:5]}"
        )
    return save_model_folder(model.eval(), make_image_processor(config), output_dir)


__all__ = ["VARIANTS", "AuthorsCheckpointError", "convert_authors_checkpoint", "read_authors_state_dict"]
