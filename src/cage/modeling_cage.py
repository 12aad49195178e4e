"""CAGE multi-task network: a timm trunk with the paper's head, and its training objectives.

Wagner et al., "CAGE: Circumplex Affect Guided Expression Inference", CVPR 2024 Workshops
(arXiv 2404.14975). This file is copied next to the weights by ``save_pretrained`` and imported as remote
code, so it imports only ``configuration_cage`` from its own folder and nothing else from ``cage``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import timm
import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.utils import ModelOutput, is_torchvision_available, logging

from .configuration_cage import CageConfig

logger = logging.get_logger(__name__)


@dataclass
class CageOutput(ModelOutput):
    """Output of [`CageForExpressionInference`].

    Args:
        loss (`torch.FloatTensor` of shape `()`, *optional*):
            Loss of ``config.objective``; present when labels are given.
        logits (`torch.FloatTensor` of shape `(batch_size, num_labels)`):
            Expression scores before softmax (single-label) or sigmoid (multi-label), in ``id2label`` order.
        regression (`torch.FloatTensor` of shape `(batch_size, len(config.regression_targets))`):
            Raw continuous outputs in ``config.regression_targets`` order (valence, arousal[, dominance]).
            Trained towards [-1, 1] but not clamped: clamp for display, keep raw for metrics.
        pooled_features (`torch.FloatTensor` of shape `(batch_size, hidden_size)`):
            Global-average-pooled trunk features, before the head's LayerNorm.
    """

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    regression: torch.FloatTensor | None = None
    pooled_features: torch.FloatTensor | None = None


def concordance_correlation_coefficient(prediction: torch.Tensor, target: torch.Tensor, dim: int = 0) -> torch.Tensor:
    """Lin's concordance correlation coefficient along ``dim``, with consistent (population) moments.

    ``CCC = 2 cov(x, y) / (var x + var y + (mean x - mean y)^2)`` (Lin, 1989, Biometrics 45(1)); all
    moments use the 1/n normalisation, unlike the CAGE authors' script, which mixed ddof 1 and 0.

    Args:
        prediction, target: tensors of the same shape, e.g. ``(N,)`` or ``(N, R)``.
        dim: the sample dimension.

    Returns:
        Tensor with ``dim`` reduced, values in [-1, 1]. NaN where both inputs are constant and equal.
    """
    prediction = prediction.float()
    target = target.float()
    mean_p = prediction.mean(dim)
    mean_t = target.mean(dim)
    var_p = prediction.var(dim, unbiased=False)
    var_t = target.var(dim, unbiased=False)
    cov = ((prediction - mean_p.unsqueeze(dim)) * (target - mean_t.unsqueeze(dim))).mean(dim)
    return 2 * cov / (var_p + var_t + (mean_p - mean_t) ** 2)


class CageHead(nn.Module):
    """The CAGE head: pool -> LayerNorm(C) -> Linear(C, H) -> Tanh -> Linear(H, K, bias=False).

    Layout from the paper and the authors' scripts (the torchvision MaxViT classifier with K outputs);
    C = H = 512 for MaxViT-T, K = 10 for AffectNet-8 combined (8 logits, valence, arousal).

    Input: trunk features ``(B, C, h, w)`` (channels-first maps) or ``(B, N, C)`` (tokens).
    Output: ``(pooled (B, C), outputs (B, K))``.
    """

    def __init__(self, in_features: int, hidden_size: int, num_outputs: int):
        super().__init__()
        self.norm = nn.LayerNorm(in_features)
        self.hidden = nn.Linear(in_features, hidden_size)
        self.activation = nn.Tanh()
        self.output = nn.Linear(hidden_size, num_outputs, bias=False)

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if features.ndim == 4:
            pooled = features.mean(dim=(2, 3))
        elif features.ndim == 3:
            pooled = features.mean(dim=1)
        else:
            pooled = features
        return pooled, self.output(self.activation(self.hidden(self.norm(pooled))))


def build_timm_trunk(config: CageConfig) -> nn.Module:
    """Build the timm trunk of ``config.backbone`` with random weights and without its classifier.

    Never downloads: ``pretrained=False``. ImageNet weights are loaded on request by
    [`CageForExpressionInference.load_backbone_weights`].
    """
    kwargs = dict(config.backbone_kwargs)
    pretrained_cfg = timm.models.get_pretrained_cfg(config.backbone)
    if pretrained_cfg is not None and pretrained_cfg.fixed_input_size:
        kwargs.setdefault("img_size", config.image_size)
    trunk = timm.create_model(config.backbone, pretrained=False, num_classes=0, **kwargs)
    # The trunk's own classifier (MaxViT's NormMlpClassifierHead, a ViT's head, ...) is replaced by the
    # CAGE head; forward_features() never uses it, so its parameters would be dead weight.
    for name in ("head", "fc", "classifier"):
        if isinstance(getattr(trunk, name, None), nn.Module):
            setattr(trunk, name, nn.Identity())
    return trunk


class TorchvisionMaxVitTrunk(nn.Module):
    """torchvision's MaxViT without its classifier: ``stem`` and ``blocks`` under torchvision's own names.

    The CAGE authors trained torchvision's ``maxvit_t``; keeping its modules (and parameter names) lets
    their checkpoints load exactly. Built with random weights (``weights=None``); never downloads.

    Input ``(B, 3, H, W)`` with H = W = ``config.image_size``; output of ``forward_features``:
    ``(B, C, H / 32, W / 32)`` feature maps, C = ``num_features`` (512 for ``maxvit_t``).
    """

    def __init__(self, config: CageConfig):
        super().__init__()
        if not is_torchvision_available():
            raise ImportError(f"backbone_library 'torchvision' ({config.backbone}) needs torchvision installed")
        if is_torchvision_available():  # (an `if` keeps torchvision optional for timm models loaded as remote code)
            from torchvision.models import get_model

        kwargs = dict(config.backbone_kwargs)
        kwargs.setdefault("input_size", (config.image_size, config.image_size))
        network = get_model(config.backbone, weights=None, **kwargs)
        self.stem = network.stem
        self.blocks = network.blocks
        # torchvision's classifier is pool, flatten, LayerNorm(C), ...: C is the trunk's feature width.
        self.num_features = network.classifier[2].normalized_shape[0]
        self.grad_checkpointing = False

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.grad_checkpointing = enable

    def forward_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        features = self.stem(pixel_values)
        for block in self.blocks:
            if self.grad_checkpointing and self.training:
                features = torch.utils.checkpoint.checkpoint(block, features, use_reentrant=False)
            else:
                features = block(features)
        return features


def build_trunk(config: CageConfig) -> nn.Module:
    """The trunk of ``config.backbone`` from ``config.backbone_library`` (timm or torchvision), random weights."""
    if config.backbone_library == "torchvision":
        return TorchvisionMaxVitTrunk(config)
    return build_timm_trunk(config)


class CagePreTrainedModel(PreTrainedModel):
    config_class = CageConfig
    config: CageConfig
    base_model_prefix = "cage"
    main_input_name = "pixel_values"
    input_modalities = ("image",)
    supports_gradient_checkpointing = True
    _no_split_modules = []

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        # Head layers get a truncated normal; timm's trunk keeps its own initialisation. transformers v5
        # builds from_pretrained models on the meta device, so timm's non-persistent buffers (MaxViT's
        # relative-position indices) are not in the checkpoint and must be rebuilt here.
        if isinstance(module, CageHead):
            init.ones_(module.norm.weight)
            init.zeros_(module.norm.bias)
            init.trunc_normal_(module.hidden.weight, std=self.config.initializer_range)
            init.zeros_(module.hidden.bias)
            init.trunc_normal_(module.output.weight, std=self.config.initializer_range)
        if hasattr(module, "init_non_persistent_buffers"):
            module.init_non_persistent_buffers()

    def save_pretrained(self, save_directory, *args, **kwargs):
        """``PreTrainedModel.save_pretrained``, plus the pipeline code that ``config.custom_pipelines`` names.

        transformers copies only the config and modeling files; a folder whose config names the
        ``facial-expression-inference`` pipeline also needs ``pipeline_cage.py`` and the flat files it
        imports. They are copied from beside this file; where they are not available (e.g. this class was
        loaded as remote code without the pipeline), ``custom_pipelines`` is removed from the saved
        ``config.json`` so that the folder never names code it lacks.
        """
        super().save_pretrained(save_directory, *args, **kwargs)
        if not getattr(self.config, "custom_pipelines", None):
            return
        import json
        import shutil

        here, target = Path(__file__).parent, Path(save_directory)
        files = ("pipeline_cage.py", "face_detection_cage.py", "image_processing_cage.py")
        if all((here / name).is_file() for name in files):
            for name in files:
                if not (target / name).is_file():
                    shutil.copyfile(here / name, target / name)
            return
        config_file = target / "config.json"
        saved = json.loads(config_file.read_text())
        saved.pop("custom_pipelines", None)
        config_file.write_text(json.dumps(saved, indent=2, sort_keys=True) + "\n")
        logger.warning(
            "%s: the pipeline code is not available here, so the saved config does not register the "
            "facial-expression-inference pipeline (save with cage.model_folder.save_model_folder to include it)",
            save_directory,
        )

    def _set_gradient_checkpointing(self, enable: bool = True, gradient_checkpointing_func=None, **kwargs) -> None:
        self.trunk.set_grad_checkpointing(enable)


class CageForExpressionInference(CagePreTrainedModel):
    """CAGE: discrete expression plus continuous valence/arousal(/dominance) from a face (or body) crop.

    Inputs:
        pixel_values (`torch.FloatTensor` of shape `(batch_size, 3, image_size, image_size)`):
            RGB crops normalised with the processor's mean/std (ImageNet by default).
        labels (`torch.LongTensor` of shape `(batch_size,)`, *optional*):
            Expression class indices in ``id2label`` order; for multi-label models a float multi-hot
            tensor of shape `(batch_size, num_labels)`.
        regression_labels (`torch.FloatTensor` of shape `(batch_size, len(regression_targets))`, *optional*):
            Targets in ``config.regression_targets`` order, in [-1, 1].

    Returns:
        [`CageOutput`], with ``loss`` when the labels the objective needs are given.

    Raises:
        ValueError: when some but not all of the labels the objective needs are given, or their shapes are wrong.
    """

    def __init__(self, config: CageConfig):
        super().__init__(config)
        self.trunk = build_trunk(config)
        hidden = config.head_hidden_size or self.trunk.num_features
        self.head = CageHead(self.trunk.num_features, hidden, config.num_outputs)
        self.post_init()

    def forward(
        self,
        pixel_values: torch.Tensor,
        labels: torch.Tensor | None = None,
        regression_labels: torch.Tensor | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> CageOutput | tuple:
        features = self.trunk.forward_features(pixel_values)
        pooled, outputs = self.head(features)
        logits = outputs[:, : self.config.num_labels]
        regression = outputs[:, self.config.num_labels :]
        loss = self.compute_loss(logits, regression, labels, regression_labels)
        output = CageOutput(loss=loss, logits=logits, regression=regression, pooled_features=pooled)
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        return output if return_dict else output.to_tuple()

    def compute_loss(
        self,
        logits: torch.Tensor,
        regression: torch.Tensor,
        labels: torch.Tensor | None,
        regression_labels: torch.Tensor | None,
    ) -> torch.Tensor | None:
        """Loss of ``config.objective`` (paper, Section 3.3); ``None`` when no labels are given.

        - discrete: CE(weight=class_weights) — or BCE(pos_weight) when ``multi_label``.
        - combined: that term + alpha * MSE(regression, regression_labels), alpha = 5 in the paper.
        - valence_arousal: mean over targets of (1 - CCC) + beta * MSE, beta = 3 in the paper; CCC is
          computed over the batch with population moments (Lin 1989); plus ``expression_loss_weight`` x
          that CE/BCE term when the weight is > 0 (keeps the expression output meaningful; not in the paper).
        MSE is the mean over all batch elements and targets.
        """
        objective = self.config.objective
        expression_weight = getattr(self.config, "expression_loss_weight", 0.0)
        needs_labels = objective in ("discrete", "combined") or expression_weight > 0
        needs_regression = objective in ("combined", "valence_arousal")
        if labels is None and regression_labels is None:
            return None
        if needs_labels and labels is None:
            raise ValueError(f"objective {objective!r} needs `labels` (expression classes)")
        if needs_regression and regression_labels is None:
            raise ValueError(f"objective {objective!r} needs `regression_labels` {self.config.regression_targets}")

        loss = logits.new_zeros((), dtype=torch.float32)
        if needs_labels:
            if self.config.multi_label:
                if labels.shape != logits.shape:
                    raise ValueError(f"multi-label `labels` must have shape {tuple(logits.shape)}, got {tuple(labels.shape)}")
                pos_weight = self._config_tensor(self.config.pos_weight, logits.device)
                expression = F.binary_cross_entropy_with_logits(logits.float(), labels.float(), pos_weight=pos_weight)
            else:
                weight = self._config_tensor(self.config.class_weights, logits.device)
                expression = F.cross_entropy(logits.float(), labels.long(), weight=weight)
            loss = loss + (expression if objective in ("discrete", "combined") else expression_weight * expression)
        if needs_regression:
            if regression_labels.shape != regression.shape:
                raise ValueError(
                    f"`regression_labels` must have shape {tuple(regression.shape)}, got {tuple(regression_labels.shape)}"
                )
            mse = F.mse_loss(regression.float(), regression_labels.float())
            if objective == "combined":
                loss = loss + self.config.alpha * mse
            else:
                ccc = concordance_correlation_coefficient(regression, regression_labels, dim=0)
                loss = loss + (1 - ccc).mean() + self.config.beta * mse
        return loss

    @staticmethod
    def _config_tensor(values: list[float] | None, device: torch.device) -> torch.Tensor | None:
        # Loss weights live in the config (the saved source of truth), not in the state dict.
        return None if values is None else torch.tensor(values, dtype=torch.float32, device=device)

    def load_backbone_weights(self, checkpoint: str | Path | None = None) -> None:
        """Load ImageNet weights into the trunk (the starting point for training; the head stays random).

        Args:
            checkpoint: a local timm checkpoint file (``.safetensors``, or ``.pth``/``.bin`` read with
                ``weights_only=True``) for offline use; ``None`` fetches ``config.backbone``'s default
                pretrained weights through timm (the Hugging Face Hub), which needs network access.
                With ``backbone_library="torchvision"``: a torchvision state dict file (e.g.
                ``maxvit_t-bc5ab103.pth``), or ``None`` for torchvision's ``DEFAULT`` weights (download).

        Raises:
            FileNotFoundError: the checkpoint file does not exist.
            RuntimeError: the weights cannot be fetched (offline, unknown tag) or do not fit the trunk;
                the message names the checkpoint and the missing or unexpected keys.
        """
        if self.config.backbone_library == "torchvision":
            self._load_torchvision_backbone_weights(checkpoint)
            return
        kwargs = dict(self.config.backbone_kwargs)
        pretrained_cfg = timm.models.get_pretrained_cfg(self.config.backbone)
        if pretrained_cfg is not None and pretrained_cfg.fixed_input_size:
            kwargs.setdefault("img_size", self.config.image_size)
        if checkpoint is not None:
            checkpoint = Path(checkpoint)
            if not checkpoint.is_file():
                raise FileNotFoundError(f"backbone checkpoint {checkpoint} does not exist")
            kwargs["pretrained_cfg_overlay"] = {"file": str(checkpoint)}
        source = str(checkpoint) if checkpoint is not None else f"timm's default weights for {self.config.backbone}"
        try:
            # timm applies the architecture's own checkpoint filter (e.g. resizing relative-position tables).
            reference = timm.create_model(self.config.backbone, pretrained=True, num_classes=0, **kwargs)
        except Exception as error:  # timm raises many kinds; one clear message for the user
            raise RuntimeError(
                f"could not load ImageNet weights from {source}: {error}. Offline, pass a local timm checkpoint "
                "file (e.g. model.safetensors from the Hub repo timm/<backbone>)."
            ) from error
        state = {k: v for k, v in reference.state_dict().items() if not k.startswith(("head.", "fc.", "classifier."))}
        result = self.trunk.load_state_dict(state, strict=False)
        if result.missing_keys or result.unexpected_keys:
            raise RuntimeError(
                f"weights from {source} do not fit {self.config.backbone}: missing {result.missing_keys[:5]}, "
                f"unexpected {result.unexpected_keys[:5]}"
            )
        self.config.weights_status = "imagenet_backbone"

    def _load_torchvision_backbone_weights(self, checkpoint: str | Path | None) -> None:
        # torchvision state dicts name the trunk `stem.*` and `blocks.*`, exactly as TorchvisionMaxVitTrunk.
        if checkpoint is not None:
            checkpoint = Path(checkpoint)
            if not checkpoint.is_file():
                raise FileNotFoundError(f"backbone checkpoint {checkpoint} does not exist")
            source = str(checkpoint)
            try:
                if checkpoint.suffix == ".safetensors":
                    from safetensors.torch import load_file

                    state = load_file(checkpoint)
                else:
                    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
            except Exception as error:
                raise RuntimeError(f"could not read backbone checkpoint {checkpoint}: {error}") from error
        else:
            source = f"torchvision's DEFAULT weights for {self.config.backbone}"
            try:
                from torchvision.models import get_model

                state = get_model(self.config.backbone, weights="DEFAULT").state_dict()
            except Exception as error:
                raise RuntimeError(f"could not load {source}: {error}. Offline, pass a local .pth file.") from error
        state = {k: v for k, v in state.items() if k.startswith(("stem.", "blocks."))}
        result = self.trunk.load_state_dict(state, strict=False)
        if result.missing_keys or result.unexpected_keys:
            raise RuntimeError(
                f"weights from {source} do not fit {self.config.backbone}: missing {result.missing_keys[:5]}, "
                f"unexpected {result.unexpected_keys[:5]}"
            )
        self.config.weights_status = "imagenet_backbone"


__all__ = ["CageForExpressionInference", "CagePreTrainedModel", "CageOutput", "CageHead"]
