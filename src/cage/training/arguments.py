"""Options of ``cage train`` / ``scripts/train.py``; the defaults are the CAGE recipe (``cage.md``).

Each option is written once, as a field of the [`TrainingArguments`] dataclass: its type, default and (in the
field's ``metadata``) its help text and choices. The command-line parser is built from those fields
(``add_training_arguments``), so a default cannot differ between the dataclass and the CLI.

Why not ``transformers.HfArgumentParser`` itself: it imports transformers (and torch) while the parser is built,
and ``cage --help`` must import neither (fast start, ``cage/cli.py``; tests/test_cli_startup.py). So the parser is
built here with the standard library, following HfArgumentParser's rules for these field types (``X | None`` ->
``X``; a required field without default; ``bool`` fields as flags, ``--no-NAME`` for a field that defaults to
``True``), and the metadata uses HfArgumentParser's keys only (``help``, ``choices``): ``HfArgumentParser(
TrainingArguments)`` parses the same command lines to the same arguments (tests/test_training_args.py), e.g. to
read a run's options from a JSON file with ``parse_json_file``. Choices are literals (importing
``configuration_cage.OBJECTIVES`` would import transformers); a test checks they match.
"""

from __future__ import annotations

import argparse
import types
import typing
from collections.abc import Sequence
from dataclasses import MISSING, asdict, dataclass, field, fields
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


def _option(default: Any = MISSING, help: str | None = None, **kwargs: Any) -> Any:
    """A dataclass field whose ``metadata`` holds its command-line help (and ``choices``), as HfArgumentParser reads it."""
    metadata = {"help": help, **kwargs} if help is not None else dict(kwargs)
    return field(default=default, metadata=metadata)


@dataclass
class TrainingArguments:
    """Everything that defines a training run; recorded in the saved model's ``config.training_recipe``.

    Defaults reproduce the paper (AdamW, lr 5e-5, batch 128, cosine schedule, 20 epochs, the paper's
    augmentations, class-weighted CE + alpha=5 MSE or 1-CCC + beta=3 MSE). ``batch_size`` is per device;
    the effective batch is ``batch_size * num_processes * gradient_accumulation_steps``. Each field's
    ``metadata["help"]`` is its ``--help`` text.
    """

    data: str = _option(help="prepared dataset folder (`cage prepare`) or Hub dataset id")
    output_dir: str = _option(help="where the model folder, metrics and checkpoints go")
    objective: str = _option("combined", choices=["discrete", "combined", "valence_arousal"])
    init_from: str | None = _option(
        None,
        help="start from this CAGE model folder/repo (the paper's valence-arousal stage starts from the combined model)",
    )
    backbone: str = _option(
        "maxvit_t",
        help="trunk: torchvision's maxvit_t (default: the paper's MaxViT-T, the authors' network) or a timm model name",
    )
    backbone_weights: str | None = _option(
        None,
        help="ImageNet weights for the trunk: a local file (for maxvit_t torchvision's maxvit_t-bc5ab103.pth; for a "
        f"timm backbone its timm checkpoint, e.g. model.safetensors), or '{BACKBONE_WEIGHTS_DOWNLOAD}' for the "
        "library's default weights (torchvision IMAGENET1K_V1 / timm's default tag; needs network)",
    )
    random_init: bool = _option(
        False, help="allow training from a RANDOM trunk when neither --backbone-weights nor --init-from is given"
    )
    image_size: int = _option(224)
    epochs: int = _option(20)
    max_steps: int | None = _option(None, help="optimizer steps; overrides --epochs")
    batch_size: int = _option(128, help="per device (default: %(default)s)")
    eval_batch_size: int | None = _option(None, help="per device (default: --batch-size)")
    gradient_accumulation_steps: int = _option(1)
    learning_rate: float = _option(5e-5)
    weight_decay: float = _option(0.01)
    warmup_steps: int = _option(0)
    max_grad_norm: float | None = _option(None, help="clip gradients to this norm (default: no clipping, as the paper)")
    mixed_precision: str = _option("no", help="the paper used fp16 on GPU", choices=["no", "bf16", "fp16"])
    gradient_checkpointing: bool = _option(False)
    channels_last: bool = _option(False)
    seed: int = _option(42)
    balanced: bool = _option(False, help="class-balanced sampling (the paper's valence-arousal stage)")
    expression_loss_weight: float | None = _option(
        None,
        help="weight of the expression CE inside the valence_arousal objective (default: 0, the paper's; or the "
        "--init-from model's); a small weight such as 0.1 keeps the expression output meaningful",
    )
    augmentation: str = _option(
        "paper",
        help="paper: the CAGE augmentation; ferplus: flip, affine jitter, brightness/contrast, erasing (small gray "
        "faces from scratch); none (see cage.data.transforms.train_transform)",
        choices=["paper", "ferplus", "none"],
    )
    label_mode: str = _option(
        "auto",
        help="expression target: soft = the vote distribution (FER+'s cross-entropy mode, column soft_label), "
        "majority = one class per face (faces without one, label -1, are left out of training); auto: soft where "
        "the data has soft labels, else the class label",
        choices=["auto", "soft", "majority"],
    )
    class_weighting: str = _option(
        "inverse_frequency",
        help="CE class weights: inverse_frequency (the paper's, normalised to sum 1) or none",
        choices=["inverse_frequency", "none"],
    )
    compile: bool = _option(
        False,
        help="torch.compile the model for training (about a minute of compilation; ~1.4x faster per step on a "
        "2-core CPU for a ResNet-18 at 64 px: pays back on runs of more than a few minutes)",
    )
    num_workers: int = _option(4)
    early_stopping_patience: int | None = _option(None, help="stop after this many evaluations without improvement")
    selection_metric: str | None = _option(
        None,
        help="validation metric picking the best epoch (default: macro_f1 for discrete, mean_ccc otherwise; "
        "mean_average_precision for EMOTIC discrete)",
        choices=sorted(SELECTION_METRICS),
    )
    checkpointing_steps: int | None = _option(
        None, help="also save_state every N optimizer steps (always at each epoch end)"
    )
    resume_from_checkpoint: str | None = _option(
        None, help="a checkpoint folder written by this script (OUTPUT_DIR/checkpoints/...)"
    )
    report_to: str = _option("none", help="Accelerate trackers", choices=["none", "tensorboard", "all"])
    evaluate_test: bool = _option(True, help="skip the final evaluation of the best model on `test`")
    framing_file: str | None = _option(
        None,
        help="framing calibration JSON (`cage calibrate-framing --output`) to write into the saved processor "
        "(default: the calibration in the data's stats, if any)",
    )

    def to_dict(self) -> dict[str, Any]:
        """All fields as a plain dict (the ``training_recipe`` record)."""
        return asdict(self)

    def to_command(self, program: str = "cage train") -> str:
        """The shell command that trains with these arguments: ``program``, then ``--data`` and
        ``--output-dir``, then every option whose value differs from its default, in field order (what a model
        card quotes; ``parse_training_arguments`` of its options gives these arguments back)."""
        import shlex

        words = program.split()
        for item in fields(self):
            value = getattr(self, item.name)
            if item.default is not MISSING and value == item.default:
                continue
            option = item.name.replace("_", "-")
            if isinstance(value, bool):
                words.append(f"--{option}" if value else f"--no-{option}")
            else:
                words += [f"--{option}", str(value)]
        return shlex.join(words)


def _value_type(annotation: Any) -> Any:
    """``int``/``float``/``str``/``bool`` of a field annotation, ``X | None`` read as ``X``."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        (annotation,) = [a for a in typing.get_args(annotation) if a is not type(None)]
    return annotation


def add_dataclass_arguments(parser: argparse.ArgumentParser, dataclass_type: type) -> None:
    """Add one ``--field-name`` option per field of ``dataclass_type`` to ``parser`` (standard library only).

    The type comes from the annotation (``X | None`` -> ``X``), the default from the field (no default:
    required), help and choices from ``field.metadata``. ``bool`` fields become flags: ``--name`` sets ``True``
    for a field defaulting to ``False``, ``--no-name`` sets ``False`` for one defaulting to ``True``.

    Raises:
        TypeError: a field's type is not ``str``, ``int``, ``float`` or ``bool`` (optionally ``| None``).
    """
    hints = typing.get_type_hints(dataclass_type)
    for item in fields(dataclass_type):
        value_type = _value_type(hints[item.name])
        option = "--" + item.name.replace("_", "-")
        kwargs = dict(item.metadata)
        if value_type is bool:
            if item.default is True:
                parser.add_argument(f"--no-{item.name.replace('_', '-')}", dest=item.name, action="store_false", **kwargs)
            else:
                parser.add_argument(option, action="store_true", **kwargs)
            continue
        if value_type not in (str, int, float):
            raise TypeError(f"{dataclass_type.__name__}.{item.name}: unsupported option type {value_type!r}")
        if item.default is MISSING:
            kwargs["required"] = True
        else:
            kwargs["default"] = item.default
        parser.add_argument(option, type=None if value_type is str else value_type, **kwargs)


def add_training_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``TrainingArguments`` options to ``parser`` (built from the dataclass fields, see the module doc)."""
    add_dataclass_arguments(parser, TrainingArguments)


def parse_training_arguments(argv: Sequence[str] | None = None) -> TrainingArguments:
    """``TrainingArguments`` from a command line (``scripts/train.py``); ``argv`` defaults to ``sys.argv[1:]``.

    Raises:
        SystemExit: unknown options or bad values (argparse prints the usage).
    """
    parser = argparse.ArgumentParser(prog="train.py", description="Train a CAGE model with Accelerate.")
    add_training_arguments(parser)
    return arguments_from_namespace(parser.parse_args(argv))


def arguments_from_namespace(namespace: argparse.Namespace) -> TrainingArguments:
    """The ``TrainingArguments`` fields of a parsed namespace (other attributes, e.g. ``handler``, are ignored)."""
    names = {f.name for f in fields(TrainingArguments)}
    return TrainingArguments(**{k: v for k, v in vars(namespace).items() if k in names})
