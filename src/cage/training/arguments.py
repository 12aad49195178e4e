"""Options of ``cage train`` / ``scripts/train.py``; the defaults are the CAGE recipe (``cage.md``)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

SELECTION_METRICS = {
    # name: (path into the metrics dict, greater is better)
    "mean_ccc": (None, True),  # mean of valence and arousal CCC
    "macro_f1": (("expression", "macro_f1"), True),
    "weighted_f1": (("expression", "weighted_f1"), True),
    "accuracy": (("expression", "accuracy"), True),
    "pooled_ccc": (("pooled_valence_arousal", "ccc"), True),
    "pooled_rmse": (("pooled_valence_arousal", "rmse"), False),
    "mean_average_precision": (("multilabel", "mean_average_precision"), True),
    "loss": (("loss",), False),
}


# `--backbone-weights download`: the backbone library's default ImageNet weights, fetched online.
BACKBONE_WEIGHTS_DOWNLOAD = "download"


@dataclass
class TrainingArguments:
    """Everything that defines a training run; recorded in the saved model's ``config.training_recipe``.

    Defaults reproduce the paper (AdamW, lr 5e-5, batch 128, cosine schedule, 20 epochs, the paper's
    augmentations, class-weighted CE + alpha=5 MSE or 1-CCC + beta=3 MSE). ``batch_size`` is per device;
    the effective batch is ``batch_size * num_processes * gradient_accumulation_steps``.
    """

    data: str
    output_dir: str
    objective: str = "combined"
    init_from: str | None = None
    backbone: str = "maxvit_t"
    backbone_weights: str | None = None
    random_init: bool = False
    image_size: int = 224
    epochs: int = 20
    max_steps: int | None = None
    batch_size: int = 128
    eval_batch_size: int | None = None
    gradient_accumulation_steps: int = 1
    learning_rate: float = 5e-5
    weight_decay: float = 0.01
    warmup_steps: int = 0
    max_grad_norm: float | None = None
    mixed_precision: str = "no"
    gradient_checkpointing: bool = False
    channels_last: bool = False
    seed: int = 42
    balanced: bool = False
    expression_loss_weight: float | None = None
    augmentation: str = "paper"
    num_workers: int = 4
    early_stopping_patience: int | None = None
    selection_metric: str | None = None
    checkpointing_steps: int | None = None
    resume_from_checkpoint: str | None = None
    report_to: str = "none"
    evaluate_test: bool = True
    framing_file: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def add_training_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``TrainingArguments`` options to ``parser``."""
    add = parser.add_argument
    add("--data", required=True, help="prepared dataset folder (`cage prepare`) or Hub dataset id")
    add("--output-dir", required=True, help="where the model folder, metrics and checkpoints go")
    add("--objective", default="combined", choices=["discrete", "combined", "valence_arousal"])
    add(
        "--init-from",
        default=None,
        help="start from this CAGE model folder/repo (the paper's valence-arousal stage starts from the combined model)",
    )
    add(
        "--backbone",
        default="maxvit_t",
        help="trunk: torchvision's maxvit_t (default: the paper's MaxViT-T, the authors' network) or a timm model name",
    )
    add(
        "--backbone-weights",
        default=None,
        help="ImageNet weights for the trunk: a local file (for maxvit_t torchvision's maxvit_t-bc5ab103.pth; for a "
        f"timm backbone its timm checkpoint, e.g. model.safetensors), or '{BACKBONE_WEIGHTS_DOWNLOAD}' for the "
        "library's default weights (torchvision IMAGENET1K_V1 / timm's default tag; needs network)",
    )
    add(
        "--random-init",
        action="store_true",
        help="allow training from a RANDOM trunk when neither --backbone-weights nor --init-from is given",
    )
    add("--image-size", type=int, default=224)
    add("--epochs", type=int, default=20)
    add("--max-steps", type=int, default=None, help="optimizer steps; overrides --epochs")
    add("--batch-size", type=int, default=128, help="per device (default: %(default)s)")
    add("--eval-batch-size", type=int, default=None, help="per device (default: --batch-size)")
    add("--gradient-accumulation-steps", type=int, default=1)
    add("--learning-rate", type=float, default=5e-5)
    add("--weight-decay", type=float, default=0.01)
    add("--warmup-steps", type=int, default=0)
    add(
        "--max-grad-norm",
        type=float,
        default=None,
        help="clip gradients to this norm (default: no clipping, as the paper)",
    )
    add("--mixed-precision", default="no", choices=["no", "bf16", "fp16"], help="the paper used fp16 on GPU")
    add("--gradient-checkpointing", action="store_true")
    add("--channels-last", action="store_true")
    add("--seed", type=int, default=42)
    add("--balanced", action="store_true", help="class-balanced sampling (the paper's valence-arousal stage)")
    add(
        "--expression-loss-weight",
        type=float,
        default=None,
        help="weight of the expression CE inside the valence_arousal objective (default: 0, the paper's; or the "
        "--init-from model's); a small weight such as 0.1 keeps the expression output meaningful",
    )
    add("--augmentation", default="paper", choices=["paper", "none"])
    add("--num-workers", type=int, default=4)
    add(
        "--early-stopping-patience", type=int, default=None, help="stop after this many evaluations without improvement"
    )
    add(
        "--selection-metric",
        default=None,
        choices=sorted(SELECTION_METRICS),
        help="validation metric picking the best epoch (default: macro_f1 for discrete, mean_ccc otherwise; "
        "mean_average_precision for EMOTIC discrete)",
    )
    add(
        "--checkpointing-steps",
        type=int,
        default=None,
        help="also save_state every N optimizer steps (always at each epoch end)",
    )
    add(
        "--resume-from-checkpoint",
        default=None,
        help="a checkpoint folder written by this script (OUTPUT_DIR/checkpoints/...)",
    )
    add("--report-to", default="none", choices=["none", "tensorboard", "all"], help="Accelerate trackers")
    add(
        "--no-evaluate-test",
        dest="evaluate_test",
        action="store_false",
        help="skip the final evaluation of the best model on `test`",
    )
    add(
        "--framing-file",
        default=None,
        help="framing calibration JSON (`cage calibrate-framing --output`) to write into the saved processor "
        "(default: the calibration in the data's stats, if any)",
    )


def parse_training_arguments(argv: Sequence[str] | None = None) -> TrainingArguments:
    parser = argparse.ArgumentParser(prog="train.py", description="Train a CAGE model with Accelerate.")
    add_training_arguments(parser)
    return arguments_from_namespace(parser.parse_args(argv))


def arguments_from_namespace(namespace: argparse.Namespace) -> TrainingArguments:
    names = {f.name for f in fields(TrainingArguments)}
    return TrainingArguments(**{k: v for k, v in vars(namespace).items() if k in names})
