"""CAGE multi-task network: a trunk (by default torchvision's ``maxvit_t``, the authors' network; or any timm
model) with the paper's head, and its training objectives.

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
            Pooled trunk features (timm's own pooling of the backbone, ``forward_head(..., pre_logits=True)``),
            before the head's LayerNorm.
        hidden_states (`tuple(torch.FloatTensor)`, *optional*):
            With ``output_hidden_states``: the trunk's feature map after each stage (the stem first where the
            trunk reports it, as timm's ``forward_intermediates``), each ``(batch_size, C_i, H_i, W_i)`` for
            convolutional/hybrid trunks or timm's layout for token trunks.
    """

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    regression: torch.FloatTensor | None = None
    pooled_features: torch.FloatTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None


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
    """The CAGE head on pooled features: LayerNorm(C) -> Linear(C, H) -> Tanh -> Linear(H, K, bias=False).

    Layout from the paper and the authors' scripts (the torchvision MaxViT classifier with K outputs, after
    its global average pool); C = H = 512 for MaxViT-T, K = 10 for AffectNet-8 combined (8 logits, valence,
    arousal). Pooling belongs to the trunk ([`CageForExpressionInference.pool_features`]).

    Input: pooled features ``(B, C)``. Output: ``(B, K)``.
    """

    def __init__(self, in_features: int, hidden_size: int, num_outputs: int):
        super().__init__()
        self.norm = nn.LayerNorm(in_features)
        self.hidden = nn.Linear(in_features, hidden_size)
        self.activation = nn.Tanh()
        self.output = nn.Linear(hidden_size, num_outputs, bias=False)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.output(self.activation(self.hidden(self.norm(pooled))))


def build_timm_trunk(config: CageConfig) -> nn.Module:
    """Build the timm trunk of ``config.backbone`` with random weights and without its classifier.

    Never downloads: ``pretrained=False``. ImageNet weights are loaded on request by
    [`CageForExpressionInference.load_backbone_weights`].

    The classifier goes through timm's own interface, ``reset_classifier(0)``, so that
    ``forward_head(features, pre_logits=True)`` pools as timm intends for every architecture (global
    average of NCHW maps, of Swin's NHWC maps, a ViT's class token, ...). Heads that also hold a
    LayerNorm and a Linear + Tanh pre-logits layer after the pool (timm's ``NormMlpClassifierHead``:
    MaxViT, ConvNeXt) are reset with ``reset_other=True``: those layers are the CAGE head's own LayerNorm,
    Linear and Tanh, which must be applied once, by [`CageHead`].
    """
    import inspect

    kwargs = dict(config.backbone_kwargs)
    pretrained_cfg = timm.models.get_pretrained_cfg(config.backbone)
    if pretrained_cfg is not None and pretrained_cfg.fixed_input_size:
        kwargs.setdefault("img_size", config.image_size)
    trunk = timm.create_model(config.backbone, pretrained=False, **kwargs)
    if "reset_other" in inspect.signature(trunk.reset_classifier).parameters:
        trunk.reset_classifier(0, reset_other=True)
    else:
        trunk.reset_classifier(0)
    return trunk


class TorchvisionMaxVitTrunk(nn.Module):
    """torchvision's MaxViT without its classifier: ``stem`` and ``blocks`` under torchvision's own names.

    The CAGE authors trained torchvision's ``maxvit_t``; it is cage's default trunk. Keeping its modules (and
    parameter names) lets their checkpoints and torchvision's ImageNet file load exactly. Built with random
    weights (``weights=None``); never downloads. torchvision's defaults stay (stochastic depth 0.2 in training
    mode, BatchNorm eps 1e-3 and momentum 0.01), as the authors trained it.

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

    def _run_block(self, block: nn.Module, features: torch.Tensor) -> torch.Tensor:
        if self.grad_checkpointing and self.training:
            return torch.utils.checkpoint.checkpoint(block, features, use_reentrant=False)
        return block(features)

    def forward_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        features = self.stem(pixel_values)
        for block in self.blocks:
            features = self._run_block(block, features)
        return features

    def forward_intermediates(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """``(final features, [stem output, output of each of the 4 blocks])``, all NCHW, as timm's MaxViT."""
        features = self.stem(pixel_values)
        intermediates = [features]
        for block in self.blocks:
            features = self._run_block(block, features)
            intermediates.append(features)
        return features, intermediates

    def forward_head(self, features: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Global average pool ``(B, C, h, w) -> (B, C)``, as torchvision's classifier; CAGE supplies the rest."""
        if not pre_logits:
            raise ValueError("TorchvisionMaxVitTrunk has no classifier: call forward_head(x, pre_logits=True)")
        return features.mean(dim=(2, 3))


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

    # The Trainer must not pass `num_items_in_batch`: the CAGE losses are means over the batch.
    accepts_loss_kwargs = False

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        """Initialise one module's own parameters and buffers (transformers calls this on every module).

        transformers 5 calls it leaf by leaf and skips modules without tensors of their own (``CageHead``
        itself is never seen), and every ``transformers.initialization`` function leaves tensors that
        were loaded from a checkpoint (flagged ``_is_hf_initialized``) alone. So this runs on: every module
        of a fresh model (the trunk's tensors are flagged in ``__init__``: timm's own initialisation is kept),
        the missing or mismatched ones of ``from_pretrained`` (e.g. ``head.output`` re-targeted to other
        labels with ``ignore_mismatched_sizes=True``), and everything after building on the meta device,
        ``to_empty`` and ``init_weights()``.

        - head: LayerNorm weight 1 and bias 0; Linear weights truncated normal with std
          ``config.initializer_range``, biases 0 (the head's own modules are recognised by identity);
        - trunk layers of standard torch types (Linear, Conv, norms, BatchNorm running statistics, Embedding):
          ``PreTrainedModel._init_weights``, transformers' generic scheme (as its ``TimmWrapper``);
        - other tensors that timm/torchvision modules own directly (class tokens, position embeddings,
          relative-position bias tables): truncated normal with std ``initializer_range``; LayerScale
          ``gamma``: its ``init_values``;
        - non-persistent buffers (MaxViT/Swin relative-position indices, sin-cos position embeddings): rebuilt
          by the module (``init_non_persistent_buffers``), as they are never in a checkpoint; torchvision MaxViT's
          persistent relative-position index is rebuilt too where it was not loaded.
        """
        std = self.config.initializer_range
        head = getattr(self, "head", None)
        if head is not None and module is head.norm:
            init.ones_(module.weight)
            init.zeros_(module.bias)
            return
        if head is not None and module in (head.hidden, head.output):
            init.trunc_normal_(module.weight, std=std)
            if module.bias is not None:
                init.zeros_(module.bias)
            return
        standard = (
            nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.Embedding,
            nn.GroupNorm, nn.LayerNorm, nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.MultiheadAttention,
        )  # fmt: skip
        if isinstance(module, standard):
            super()._init_weights(module)
            if isinstance(module, nn.LayerNorm) and "LayerNorm" not in type(module).__name__:
                # subclasses of LayerNorm with other names (timm's LayerNorm2d is one; RmsNorm is not a LayerNorm)
                if module.weight is not None:
                    init.ones_(module.weight)
                if module.bias is not None:
                    init.zeros_(module.bias)
        else:
            standard_names = {"weight", "bias"} if isinstance(module, nn.modules.batchnorm._NormBase) else set()
            for name, parameter in module.named_parameters(recurse=False):
                if name in standard_names:
                    continue
                if name == "gamma" and hasattr(module, "init_values"):  # timm's LayerScale / LayerScale2d
                    init.constant_(parameter, float(module.init_values))
                elif name in ("weight",) and "norm" in type(module).__name__.lower():  # timm's RmsNorm and similar
                    init.ones_(parameter)
                elif name == "bias" and "norm" in type(module).__name__.lower():
                    init.zeros_(parameter)
                else:
                    init.trunc_normal_(parameter, std=std)
        index = getattr(module, "relative_position_index", None)
        if isinstance(index, torch.Tensor) and type(module).__module__ == "torchvision.models.maxvit":
            # torchvision's MaxViT keeps its relative-position index as a persistent buffer built in __init__
            if is_torchvision_available():  # (an `if` keeps torchvision optional for timm models loaded as remote code)
                from torchvision.models.maxvit import _get_relative_position_index

            init.copy_(index, _get_relative_position_index(module.size, module.size))
        if hasattr(module, "init_non_persistent_buffers"):
            module.init_non_persistent_buffers()
        elif hasattr(module, "_get_pos_embed_values") and getattr(module, "feat_shape", None) is not None:
            # timm's rotary/sin-cos position embeddings keep their table in a non-persistent buffer
            module.pos_embed = module._get_pos_embed_values(
                feat_shape=module.feat_shape,
                device=module.pos_embed.device if module.pos_embed is not None else None,
                dtype=module.pos_embed.dtype if module.pos_embed is not None else torch.float32,
            )

    def get_input_embeddings(self) -> None:
        """``None``: an image trunk has no token embeddings (as transformers' ``TimmWrapper``)."""
        return None

    def set_input_embeddings(self, value) -> None:
        raise NotImplementedError("CAGE models have no token embeddings to set")

    def save_pretrained(self, save_directory, *args, **kwargs):
        """``PreTrainedModel.save_pretrained``, plus the code of the pipelines that ``config.custom_pipelines``
        names, so that a plain ``model.save_pretrained`` of a loaded model keeps its folder's pipeline loadable.

        transformers copies only the config and modeling files. The modules named by each
        ``custom_pipelines[task]["impl"]`` are copied, with the files they import relatively, from beside this
        file. Where one is not there (e.g. this class was loaded as remote code without the pipeline), the
        config is saved without ``custom_pipelines`` and a warning says so, so that the folder never names
        code it lacks. (The pipeline itself is written by ``Pipeline.save_pretrained``, see
        ``cage.model_folder.save_model_folder``.)
        """
        from transformers.dynamic_module_utils import get_relative_import_files

        here = Path(__file__).parent
        pipelines = getattr(self.config, "custom_pipelines", None) or {}
        modules = {str(info["impl"]).rsplit(".", 1)[0] for info in pipelines.values()}
        files = [here / f"{module}.py" for module in sorted(modules)]
        if not all(path.is_file() for path in files):
            del self.config.custom_pipelines  # saved without the key; the loaded model keeps it
            try:
                super().save_pretrained(save_directory, *args, **kwargs)
            finally:
                self.config.custom_pipelines = pipelines
            logger.warning(
                "%s: the code of the pipeline(s) %s is not available here, so the saved config does not register "
                "them (save with cage.model_folder.save_model_folder to include it)",
                save_directory,
                ", ".join(sorted(pipelines)),
            )
            return
        super().save_pretrained(save_directory, *args, **kwargs)
        import shutil

        target = Path(save_directory)
        for path in files + [Path(f) for module in files for f in get_relative_import_files(module)]:
            if not (target / path.name).is_file():
                shutil.copyfile(path, target / path.name)

    def _set_gradient_checkpointing(self, enable: bool = True, gradient_checkpointing_func=None, **kwargs) -> None:
        # The trunk checkpoints its own stages (timm's / TorchvisionMaxVitTrunk's set_grad_checkpointing); the
        # flag tells transformers (`is_activation_checkpointing`, the Trainer, DDP) that it is on.
        self.trunk.set_grad_checkpointing(enable)
        self.gradient_checkpointing = enable


class CageForExpressionInference(CagePreTrainedModel):
    """CAGE: discrete expression plus continuous valence/arousal(/dominance) from a face (or body) crop.

    Inputs:
        pixel_values (`torch.FloatTensor` of shape `(batch_size, 3, image_size, image_size)`):
            RGB crops normalised with the processor's mean/std (ImageNet by default).
        labels (`torch.LongTensor` of shape `(batch_size,)`, *optional*):
            Expression class indices in ``id2label`` order (-1: no class, left out of the loss); or, for
            single-label models, a float tensor of shape `(batch_size, num_labels)` whose rows are probability
            distributions over the classes (soft labels, e.g. FER+'s vote distribution); for multi-label models
            a float multi-hot tensor of shape `(batch_size, num_labels)`.
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
        # Width of forward_head(x, pre_logits=True): timm reports it as head_hidden_size (the feature width, unless
        # a timm head keeps a pre-logits layer of another width); TorchvisionMaxVitTrunk has num_features only.
        pooled_width = getattr(self.trunk, "head_hidden_size", None) or self.trunk.num_features
        hidden = config.head_hidden_size or pooled_width
        self.head = CageHead(pooled_width, hidden, config.num_outputs)
        self.gradient_checkpointing = False
        # timm/torchvision have just initialised the trunk their own way: keep it (see `_init_weights`). On
        # the meta device nothing was initialised, so `init_weights()` after `to_empty` does all of it.
        for tensor in (*self.trunk.parameters(), *self.trunk.buffers()):
            if tensor.device.type != "meta":
                tensor._is_hf_initialized = True
        self.post_init()

    def pool_features(self, features: torch.Tensor) -> torch.Tensor:
        """Pool trunk features ``forward_features(x)`` to ``(B, C)``.

        ``config.pooling == "timm"``: the trunk's own pooling, ``forward_head(features, pre_logits=True)``
        (after ``reset_classifier(0)``; see [`build_timm_trunk`]). ``"mean"`` (folders saved by cage 0.1.0):
        the mean over all positions of ``(B, C, h, w)`` maps or ``(B, N, C)`` tokens, as they were trained with.
        """
        if self.config.pooling == "mean":
            if features.ndim == 4:
                return features.mean(dim=(2, 3))
            if features.ndim == 3:
                return features.mean(dim=1)
            return features
        return self.trunk.forward_head(features, pre_logits=True)

    def forward(
        self,
        pixel_values: torch.Tensor,
        labels: torch.Tensor | None = None,
        regression_labels: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> CageOutput | tuple:
        r"""
        output_attentions (`bool`, *optional*):
            Not supported (timm trunks compute attention inside fused kernels); ``True`` raises ``ValueError``.
        output_hidden_states (`bool`, *optional*):
            Also return the trunk's per-stage feature maps (timm's ``forward_intermediates``).
        return_dict (`bool`, *optional*):
            A [`CageOutput`] (default ``config.return_dict``) or a plain tuple of its non-``None`` fields.

        Raises:
            TypeError: on any other keyword argument (e.g. ``label=`` for ``labels=``), naming it.
            ValueError: ``output_attentions=True``; ``output_hidden_states=True`` with a trunk that has no
                ``forward_intermediates``; labels as in [`compute_loss`].
        """
        if kwargs:
            raise TypeError(
                f"{type(self).__name__}.forward() got unexpected keyword argument(s) {sorted(kwargs)}; it takes "
                "pixel_values, labels, regression_labels, output_attentions, output_hidden_states, return_dict"
            )
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        output_attentions = output_attentions if output_attentions is not None else self.config.output_attentions
        output_hidden_states = (
            output_hidden_states if output_hidden_states is not None else self.config.output_hidden_states
        )
        if output_attentions:
            raise ValueError("output_attentions is not supported by CAGE models (the trunk's attention is fused)")
        if output_hidden_states:
            if not hasattr(self.trunk, "forward_intermediates"):
                raise ValueError(f"output_hidden_states: the trunk {self.config.backbone} has no forward_intermediates")
            features, hidden_states = self.trunk.forward_intermediates(pixel_values)
            hidden_states = tuple(hidden_states)
        else:
            features, hidden_states = self.trunk.forward_features(pixel_values), None
        pooled = self.pool_features(features)
        outputs = self.head(pooled)
        logits = outputs[:, : self.config.num_labels]
        regression = outputs[:, self.config.num_labels :]
        loss = self.compute_loss(logits, regression, labels, regression_labels)
        output = CageOutput(
            loss=loss, logits=logits, regression=regression, pooled_features=pooled, hidden_states=hidden_states
        )
        return output if return_dict else output.to_tuple()

    @property
    def loss_function(self):
        """This model's loss: [`compute_loss`] (transformers' generic ``loss_function`` lookup does not apply)."""
        return self.compute_loss

    def compute_loss(
        self,
        logits: torch.Tensor,
        regression: torch.Tensor,
        labels: torch.Tensor | None,
        regression_labels: torch.Tensor | None,
        class_weighted: bool = True,
    ) -> torch.Tensor | None:
        """Loss of ``config.objective`` (paper, Section 3.3); ``None`` when no labels are given.

        - discrete: CE(weight=class_weights) — or BCE(pos_weight) when ``multi_label``; with
          ``class_weighted=False`` the CE/BCE is unweighted (the authors' validation loss: AffectNet's
          validation set is balanced). Hard labels: ``torch.nn.functional.cross_entropy`` with class indices
          (rows labelled -1 are ignored; the weighted mean divides by the rows' weights). Soft labels (rows of
          class probabilities ``q``): the same function with probability targets, the mean over rows of
          ``-sum_c w_c q_c log p_c`` (the FER+ paper's cross-entropy mode).
        - combined: that term + alpha * MSE(regression, regression_labels), alpha = 5 in the paper.
        - valence_arousal: mean over targets of (1 - CCC) + beta * MSE, beta = 3 in the paper; CCC is
          computed over the batch with population moments (Lin 1989); plus ``expression_loss_weight`` x
          that CE/BCE term when the weight is > 0 (keeps the expression output meaningful; not in the paper).
        MSE is the mean over all batch elements and targets.

        Args:
            logits: ``(N, L)`` expression logits; regression: ``(N, R)`` raw regression outputs.
            labels: ``(N,)`` class indices (-1: none), ``(N, L)`` class probabilities (soft labels), or
                ``(N, L)`` multi-hot for ``multi_label``; ``None`` if absent.
            regression_labels: ``(N, R)`` targets in [-1, 1]; ``None`` if absent.
            class_weighted: apply ``config.class_weights``/``pos_weight`` (training); ``False``: unweighted.

        Returns:
            A float32 scalar tensor, or ``None``.

        Raises:
            ValueError: the objective needs labels that are missing, or their shapes do not match the outputs.
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
                pos_weight = self._config_tensor(self.config.pos_weight if class_weighted else None, logits.device)
                expression = F.binary_cross_entropy_with_logits(logits.float(), labels.float(), pos_weight=pos_weight)
            else:
                weight = self._config_tensor(self.config.class_weights if class_weighted else None, logits.device)
                if labels.is_floating_point():  # soft labels: one probability distribution per row
                    if labels.shape != logits.shape:
                        raise ValueError(
                            f"soft `labels` must have shape {tuple(logits.shape)} (rows of class probabilities), "
                            f"got {tuple(labels.shape)}"
                        )
                    expression = F.cross_entropy(logits.float(), labels.float(), weight=weight)
                else:
                    if labels.ndim != 1 or labels.shape[0] != logits.shape[0]:
                        raise ValueError(f"`labels` must be {logits.shape[0]} class indices, got shape {tuple(labels.shape)}")
                    expression = F.cross_entropy(logits.float(), labels.long(), weight=weight, ignore_index=-1)
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
            checkpoint: with ``backbone_library="torchvision"`` (the default ``maxvit_t``): a torchvision
                state dict file (``maxvit_t-bc5ab103.pth``, as torchvision ships it: ``.pth`` read with
                ``weights_only=True``, or ``.safetensors``); ``None`` loads torchvision's ``IMAGENET1K_V1``
                weights from torch hub's cache or downloads them (refused with ``HF_HUB_OFFLINE=1``).
                With ``backbone_library="timm"``: a local timm checkpoint file (``.safetensors``, or
                ``.pth``/``.bin``) for offline use; ``None`` fetches ``config.backbone``'s default
                pretrained weights through timm (the Hugging Face Hub), which needs network access.
                Only the trunk's tensors are taken (torchvision's ``classifier.*`` is ignored).

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
            if not isinstance(state, dict):
                raise RuntimeError(f"backbone checkpoint {checkpoint} is not a state dict of tensors")
        else:
            state, source = _torchvision_imagenet_state_dict(self.config.backbone)
        state = {k: v for k, v in state.items() if k.startswith(("stem.", "blocks."))}
        result = self.trunk.load_state_dict(state, strict=False)
        if result.missing_keys or result.unexpected_keys:
            raise RuntimeError(
                f"weights from {source} do not fit torchvision {self.config.backbone}: missing "
                f"{result.missing_keys[:5]}, unexpected {result.unexpected_keys[:5]}"
            )
        self.config.weights_status = "imagenet_backbone"


def _torchvision_imagenet_state_dict(backbone: str) -> tuple[dict[str, torch.Tensor], str]:
    """torchvision's first ImageNet weights of ``backbone`` (``IMAGENET1K_V1``; for ``maxvit_t`` the file
    ``maxvit_t-bc5ab103.pth``, the CAGE authors' starting point), and a description of where they came from.

    Read from torch hub's cache (``$TORCH_HOME/hub/checkpoints``) when there, else downloaded into it; with
    ``HF_HUB_OFFLINE=1`` nothing is downloaded.

    Raises:
        RuntimeError: offline and not cached, or the download fails; the message names the file to pass instead.
    """
    if not is_torchvision_available():
        raise ImportError(f"torchvision's ImageNet weights of {backbone} need torchvision installed")
    if is_torchvision_available():  # (an `if` keeps torchvision optional for timm models loaded as remote code)
        from torchvision.models import get_model_weights

    weights = get_model_weights(backbone)["IMAGENET1K_V1"]
    file_name = weights.url.rsplit("/", 1)[-1]
    cached = Path(torch.hub.get_dir()) / "checkpoints" / file_name
    source = f"torchvision's {backbone} ImageNet weights IMAGENET1K_V1 ({file_name})"
    hint = f"pass the file {file_name} ({weights.url}) as the backbone checkpoint (`--backbone-weights`)"
    from huggingface_hub import is_offline_mode

    if not cached.is_file() and is_offline_mode():
        raise RuntimeError(f"could not load {source}: offline (HF_HUB_OFFLINE=1) and not in {cached.parent}; {hint}")
    try:
        return weights.get_state_dict(progress=False, check_hash=True, map_location="cpu", weights_only=True), source
    except Exception as error:  # URLError, HTTP errors, a truncated download
        raise RuntimeError(f"could not load {source}: {error}; offline, {hint}") from error


__all__ = ["CageForExpressionInference", "CagePreTrainedModel", "CageOutput", "CageHead"]
