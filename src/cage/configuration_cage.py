"""Configuration of a CAGE model (Wagner et al., "CAGE: Circumplex Affect Guided Expression Inference",
CVPR 2024 Workshops, arXiv 2404.14975).

This file is self-contained on purpose: it is copied next to the weights by ``save_pretrained`` and
imported as remote code by ``AutoConfig.from_pretrained(..., trust_remote_code=True)``, where the
``cage`` package may not be installed. It must import nothing from ``cage``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from transformers import PreTrainedConfig

# AffectNet's own class indices (Mollahosseini et al. 2017); 8 None, 9 Uncertain and 10 No-Face
# are not training classes. AffectNet-7 is the same list without Contempt.
AFFECTNET8_LABELS = ("Neutral", "Happy", "Sad", "Surprise", "Fear", "Disgust", "Anger", "Contempt")
AFFECTNET7_LABELS = AFFECTNET8_LABELS[:7]

# EMOTIC's 26 context categories in the dataset's own order (Kosti et al. 2019).
EMOTIC_LABELS = (
    "Affection", "Anger", "Annoyance", "Anticipation", "Aversion", "Confidence", "Disapproval",
    "Disconnection", "Disquietment", "Doubt/Confusion", "Embarrassment", "Engagement", "Esteem",
    "Excitement", "Fatigue", "Fear", "Happiness", "Pain", "Peace", "Pleasure", "Sadness",
    "Sensitivity", "Suffering", "Surprise", "Sympathy", "Yearning",
)  # fmt: skip

OBJECTIVES = ("discrete", "combined", "valence_arousal")
REGRESSION_TARGETS = ("valence", "arousal", "dominance")


@dataclass(frozen=True)
class LabelSet:
    """One label set a CAGE model can be trained on: what its head predicts and how.

    Attributes:
        name: the short name used on the command line and in code (``"affectnet8"``, ``"affectnet7"``, ``"emotic"``).
        title: the field's name for it, as the paper and model cards write it (``"AffectNet-8"``, ``"EMOTIC"``).
        dataset: the ``cage prepare`` dataset it comes from (``"affectnet"`` or ``"emotic"``).
        labels: category names in the dataset's own order (AffectNet's class indices; EMOTIC's category list).
        regression_targets: continuous outputs in order, each in [-1, 1] (EMOTIC's 1..10 scores mapped by
            ``(x - 5.5) / 4.5``).
        multi_label: ``False``: one expression per face (softmax, CE); ``True``: independent categories
            (sigmoid, BCE), EMOTIC.
    """

    name: str
    title: str
    dataset: str
    labels: tuple[str, ...]
    regression_targets: tuple[str, ...]
    multi_label: bool


# The registry of label sets (paper, Section 4): everything else (presets, `cage prepare`, checkpoint conversion,
# model cards, `cage reproduce`, the CLI's `--labels`/`--classes` choices) looks label sets up here.
LABEL_SETS: dict[str, LabelSet] = {
    label_set.name: label_set
    for label_set in (
        LabelSet("affectnet8", "AffectNet-8", "affectnet", AFFECTNET8_LABELS, ("valence", "arousal"), False),
        LabelSet("affectnet7", "AffectNet-7", "affectnet", AFFECTNET7_LABELS, ("valence", "arousal"), False),
        LabelSet("emotic", "EMOTIC", "emotic", EMOTIC_LABELS, ("valence", "arousal", "dominance"), True),
    )
}


def label_set_of_labels(labels: list[str] | tuple[str, ...], multi_label: bool) -> LabelSet | None:
    """The registered label set whose names equal ``labels`` (same order) and whose kind is ``multi_label``;
    ``None`` for any other list (a custom label set)."""
    labels = tuple(labels)
    return next((s for s in LABEL_SETS.values() if s.labels == labels and s.multi_label == multi_label), None)


def affectnet_label_set(classes: int) -> LabelSet:
    """The AffectNet label set with ``classes`` categories: 8 (``affectnet8``) or 7 (``affectnet7``, no Contempt).

    Raises:
        ValueError: ``classes`` is neither 8 nor 7.
    """
    name = f"affectnet{classes}"
    if name not in LABEL_SETS:
        raise ValueError(f"classes must be 8 (AffectNet-8) or 7 (AffectNet-7), got {classes}")
    return LABEL_SETS[name]
WEIGHTS_STATUSES = ("untrained", "imagenet_backbone", "trained")
# Where the trunk comes from: torchvision (MaxViT only; the default ``maxvit_t`` is the network the CAGE authors
# trained, so their checkpoints and torchvision's ImageNet file load into it exactly) or timm (any timm model).
BACKBONE_LIBRARIES = ("timm", "torchvision")
# Trunk names taken from torchvision when ``backbone_library`` is not given; every other name is a timm model.
TORCHVISION_BACKBONES = ("maxvit_t",)
DEFAULT_BACKBONE = "maxvit_t"
# How trunk features become one vector per image: "timm" = the trunk's own pooling (timm's
# forward_head(x, pre_logits=True)); "mean" = the mean over all positions, what cage 0.1.0 did.
POOLINGS = ("timm", "mean")
# Where a model's regression targets came from: human ratings, or derived from other labels (FER+).
REGRESSION_SOURCES = ("annotated", "derived")


class CageConfig(PreTrainedConfig):
    r"""Configuration of [`CageForExpressionInference`]: a trunk (torchvision ``maxvit_t`` or a timm model) and the
    CAGE multi-task head.

    The head has ``num_labels + len(regression_targets)`` outputs: the first ``num_labels`` are expression
    logits in ``id2label`` order, the rest are the raw regression outputs in ``regression_targets`` order
    (valence and arousal in [-1, 1] on AffectNet; EMOTIC's 1..10 scores mapped to [-1, 1] by
    ``(x - 5.5) / 4.5``). For AffectNet-8 "combined" this is the paper's K = 10 (Section 3 of the paper).

    Args:
        backbone (`str`, defaults to `"maxvit_t"`):
            Name of the trunk. The default, torchvision's ``maxvit_t`` (MaxViT-T, 30.9 M parameters with its
            ImageNet classifier, 224 px), is the network of the paper: the authors trained it from torchvision's
            ImageNet weights ``IMAGENET1K_V1``. Any other name is a timm model (e.g. ``"convnext_tiny"``).
        backbone_kwargs (`dict`, *optional*):
            Extra keyword arguments for ``timm.create_model`` (e.g. ``{"drop_path_rate": 0.1}``), or for
            ``torchvision.models.get_model`` when ``backbone_library="torchvision"``.
        backbone_library (`str`, *optional*):
            ``"torchvision"``: ``backbone`` is a torchvision MaxViT (``"maxvit_t"``); checkpoints of the
            authors' scripts (``cage convert-authors-checkpoint``) and torchvision's ImageNet file
            ``maxvit_t-bc5ab103.pth`` load into it exactly. ``"timm"``: ``backbone`` is a timm model name.
            ``None`` (default): ``"torchvision"`` for the names in ``TORCHVISION_BACKBONES``, else ``"timm"``;
            the resolved value is what the saved ``config.json`` records. timm's ``maxvit_tiny_tf_224`` (the
            default of cage 0.1.0, still available by name) has the same widths and depths but computes a
            different function (TF "same" padding of strided convolutions, tanh-approximated GELU, a 2 x 2
            average-pool shortcut without torchvision's 1 x 1 projection), so weights do not carry over.
        image_size (`int`, defaults to 224):
            Side in pixels of the square input; MaxViT needs it at build time.
        head_hidden_size (`int`, *optional*):
            Width of the head's hidden layer; ``None`` means the trunk's feature width (512 for MaxViT-T),
            as in the paper.
        id2label (`dict[int, str]`, *optional*):
            Category names by output index. Defaults to AffectNet-8 in AffectNet's order.
        regression_targets (`list[str]`, defaults to `["valence", "arousal"]`):
            Continuous outputs in order; EMOTIC models use ``["valence", "arousal", "dominance"]``.
        multi_label (`bool`, defaults to `False`):
            ``False``: one expression per face (softmax, cross-entropy; AffectNet). ``True``: independent
            categories (sigmoid, binary cross-entropy; EMOTIC).
        objective (`str`, defaults to `"combined"`):
            Training loss. ``"discrete"``: weighted CE only. ``"combined"``: weighted CE + ``alpha`` * MSE.
            ``"valence_arousal"``: (1 - CCC) averaged over the regression targets + ``beta`` * MSE.
            With ``multi_label`` the CE becomes BCE with ``pos_weight``.
        class_weights (`list[float]`, *optional*):
            CE weight per class (the paper: inverse class frequency normalised to sum 1). ``None``: unweighted.
        pos_weight (`list[float]`, *optional*):
            BCE positive weight per category for multi-label models. ``None``: unweighted.
        alpha (`float`, defaults to 5.0):
            Weight of the MSE term in the combined objective (paper, Section 3.3).
        beta (`float`, defaults to 3.0):
            Weight of the MSE term in the valence-arousal objective (paper, Section 3.3).
        expression_loss_weight (`float`, defaults to 0.0):
            Weight of the expression CE (BCE for ``multi_label``) added to the ``"valence_arousal"`` objective.
            0 is the paper's valence-arousal stage, which drops the expression term so that the expression
            output drifts away from what the combined stage learned; a small weight (``cage reproduce`` uses
            0.1) keeps it meaningful. Ignored by the other objectives.
        weights_status (`str`, defaults to `"untrained"`):
            ``"untrained"`` (random weights: predictions are meaningless), ``"imagenet_backbone"`` (trunk
            from ImageNet, head random) or ``"trained"``. Model cards and the CLI warn unless ``"trained"``.
        training_recipe (`dict`, *optional*):
            Free-form record of how the weights were produced (data, epochs, learning rate, metrics).
        initializer_range (`float`, defaults to 0.02):
            Standard deviation of the truncated-normal initialisation of the head (and of the trunk where
            transformers initialises it: missing weights, or ``init_weights()`` after building on the meta device).
        regression_source (`str`, defaults to `"annotated"`):
            Where the regression targets the model was trained on came from: ``"annotated"`` (human ratings:
            AffectNet, EMOTIC) or ``"derived"`` (computed from other labels, e.g. FER+'s valence/arousal from
            its expression votes and AffectNet's class centroids; not human ratings). Every place that shows a
            model's valence/arousal says so for ``"derived"``, with ``regression_note``.
        regression_note (`str`, *optional*):
            How derived targets were computed (one sentence), shown with the values; ``None`` for annotated ones.
        pooling (`str`, defaults to `"timm"`):
            ``"timm"``: trunk features are pooled as timm intends for the backbone
            (``forward_head(x, pre_logits=True)``: average of NCHW or NHWC maps, a ViT's class token, ...).
            ``"mean"``: the mean over all spatial positions or tokens, as cage 0.1.0 did; a saved config without
            this field was written by cage 0.1.0 and loads as ``"mean"``, so it keeps predicting the same.

    Raises:
        ValueError: on an unknown objective, regression target, backbone library, pooling or weights status, or on
            class/positive weights whose length differs from the number of labels.
    """

    model_type = "cage"

    def __init__(
        self,
        backbone: str = DEFAULT_BACKBONE,
        backbone_kwargs: dict[str, Any] | None = None,
        backbone_library: str | None = None,
        image_size: int = 224,
        head_hidden_size: int | None = None,
        regression_targets: list[str] | tuple[str, ...] = ("valence", "arousal"),
        multi_label: bool = False,
        objective: str = "combined",
        class_weights: list[float] | None = None,
        pos_weight: list[float] | None = None,
        alpha: float = 5.0,
        beta: float = 3.0,
        expression_loss_weight: float = 0.0,
        weights_status: str = "untrained",
        training_recipe: dict[str, Any] | None = None,
        initializer_range: float = 0.02,
        pooling: str = "timm",
        regression_source: str = "annotated",
        regression_note: str | None = None,
        **kwargs: Any,
    ):
        if "id2label" not in kwargs and "num_labels" not in kwargs:
            kwargs["id2label"] = dict(enumerate(AFFECTNET8_LABELS))
        super().__init__(**kwargs)
        if not self.label2id:
            self.label2id = {label: index for index, label in self.id2label.items()}
        self.backbone = backbone
        self.backbone_kwargs = dict(backbone_kwargs or {})
        if backbone_library is None:
            backbone_library = "torchvision" if backbone in TORCHVISION_BACKBONES else "timm"
        self.backbone_library = backbone_library
        self.image_size = int(image_size)
        self.head_hidden_size = head_hidden_size
        self.regression_targets = list(regression_targets)
        self.multi_label = bool(multi_label)
        self.objective = objective
        self.class_weights = None if class_weights is None else [float(w) for w in class_weights]
        self.pos_weight = None if pos_weight is None else [float(w) for w in pos_weight]
        self.alpha = float(alpha)
        self.beta = float(beta)
        self.expression_loss_weight = float(expression_loss_weight)
        self.weights_status = weights_status
        self.training_recipe = training_recipe
        self.initializer_range = initializer_range
        self.pooling = pooling
        self.regression_source = regression_source
        self.regression_note = regression_note
        self.validate_cage()

    @classmethod
    def from_dict(cls, config_dict: dict[str, Any], **kwargs: Any):
        # A saved config without `pooling` was written by cage 0.1.0, whose model mean-pooled every trunk.
        if "pooling" not in config_dict:
            config_dict = {**config_dict, "pooling": "mean"}
        return super().from_dict(config_dict, **kwargs)

    def validate_cage(self) -> None:
        """Check the CAGE-specific fields; raises ``ValueError`` naming the bad field."""
        if self.objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {OBJECTIVES}, got {self.objective!r}")
        unknown = [t for t in self.regression_targets if t not in REGRESSION_TARGETS]
        if unknown or len(set(self.regression_targets)) != len(self.regression_targets):
            raise ValueError(
                f"regression_targets must be distinct names from {REGRESSION_TARGETS}, got {self.regression_targets}"
            )
        if self.objective != "discrete" and not self.regression_targets:
            raise ValueError(f"objective {self.objective!r} needs at least one regression target")
        if self.backbone_library not in BACKBONE_LIBRARIES:
            raise ValueError(f"backbone_library must be one of {BACKBONE_LIBRARIES}, got {self.backbone_library!r}")
        if self.backbone_library == "torchvision" and not self.backbone.startswith("maxvit"):
            raise ValueError(f"backbone_library 'torchvision' supports MaxViT only (e.g. 'maxvit_t'), got {self.backbone!r}")
        if self.regression_source not in REGRESSION_SOURCES:
            raise ValueError(f"regression_source must be one of {REGRESSION_SOURCES}, got {self.regression_source!r}")
        if self.pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {self.pooling!r}")
        if not self.expression_loss_weight >= 0:
            raise ValueError(f"expression_loss_weight must be >= 0, got {self.expression_loss_weight}")
        if self.expression_loss_weight > 0 and not self.num_labels:
            raise ValueError("expression_loss_weight > 0 needs expression labels, but the model has none")
        if self.weights_status not in WEIGHTS_STATUSES:
            raise ValueError(f"weights_status must be one of {WEIGHTS_STATUSES}, got {self.weights_status!r}")
        for name in ("class_weights", "pos_weight"):
            weights = getattr(self, name)
            if weights is not None and len(weights) != self.num_labels:
                raise ValueError(f"{name} has {len(weights)} entries but the model has {self.num_labels} labels")

    @property
    def num_outputs(self) -> int:
        """Width K of the head's last layer: categories followed by regression targets."""
        return self.num_labels + len(self.regression_targets)


__all__ = [
    "CageConfig", "AFFECTNET8_LABELS", "AFFECTNET7_LABELS", "EMOTIC_LABELS", "DEFAULT_BACKBONE", "LABEL_SETS", "LabelSet",
    "affectnet_label_set", "label_set_of_labels",
]  # fmt: skip
