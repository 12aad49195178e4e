"""Training options are parsed from the TrainingArguments dataclass: each default is written once."""

from __future__ import annotations

import dataclasses

import pytest

from cage.training.arguments import TrainingArguments, parse_training_arguments

FULL_ARGV = [
    "--data", "d", "--output-dir", "o", "--objective", "valence_arousal", "--init-from", "m", "--backbone", "test_vit",
    "--backbone-weights", "w.safetensors", "--random-init", "--image-size", "64", "--epochs", "3", "--max-steps", "7",
    "--batch-size", "4", "--eval-batch-size", "2", "--gradient-accumulation-steps", "2", "--learning-rate", "1e-3",
    "--weight-decay", "0.5", "--warmup-steps", "3", "--max-grad-norm", "1.5", "--mixed-precision", "bf16",
    "--gradient-checkpointing", "--channels-last", "--seed", "7", "--balanced", "--expression-loss-weight", "0.1",
    "--augmentation", "none", "--num-workers", "0", "--early-stopping-patience", "2", "--selection-metric", "loss",
    "--checkpointing-steps", "5", "--resume-from-checkpoint", "c", "--report-to", "tensorboard",
    "--no-evaluate-test", "--framing-file", "f.json", "--label-mode", "soft", "--class-weighting", "none",
    "--compile",
]  # fmt: skip


def test_defaults_come_from_the_dataclass():
    parsed = parse_training_arguments(["--data", "d", "--output-dir", "o"])
    assert parsed == TrainingArguments(data="d", output_dir="o")
    # the paper's recipe, as documented
    assert (parsed.learning_rate, parsed.batch_size, parsed.epochs, parsed.seed) == (5e-5, 128, 20, 42)
    assert parsed.evaluate_test is True and parsed.random_init is False and parsed.max_steps is None


def test_every_field_is_an_option_and_every_option_sets_it():
    parsed = parse_training_arguments(FULL_ARGV)
    defaults = TrainingArguments(data="d", output_dir="o")
    unchanged = [f.name for f in dataclasses.fields(TrainingArguments)
                 if getattr(parsed, f.name) == getattr(defaults, f.name) and f.name not in ("data", "output_dir")]  # fmt: skip
    assert unchanged == []
    assert parsed.learning_rate == 1e-3 and parsed.max_grad_norm == 1.5 and parsed.image_size == 64
    assert parsed.evaluate_test is False and parsed.channels_last is True


def test_required_options_and_choices():
    with pytest.raises(SystemExit):
        parse_training_arguments(["--output-dir", "o"])  # --data is required
    with pytest.raises(SystemExit):
        parse_training_arguments(["--data", "d", "--output-dir", "o", "--objective", "regression"])


def test_hf_argument_parser_reads_the_same_dataclass():
    from transformers import HfArgumentParser

    (hf,) = HfArgumentParser(TrainingArguments).parse_args_into_dataclasses(FULL_ARGV)
    assert hf == parse_training_arguments(FULL_ARGV)
    (hf,) = HfArgumentParser(TrainingArguments).parse_args_into_dataclasses(["--data", "d", "--output-dir", "o"])
    assert hf == TrainingArguments(data="d", output_dir="o")


def test_literal_choices_match_the_model():
    from cage.configuration_cage import OBJECTIVES

    objective = next(f for f in dataclasses.fields(TrainingArguments) if f.name == "objective")
    assert tuple(objective.metadata["choices"]) == OBJECTIVES


def test_to_command_gives_the_arguments_back():
    import shlex

    parsed = parse_training_arguments(FULL_ARGV)
    command = parsed.to_command()
    assert command.startswith("cage train --data d --output-dir o --objective valence_arousal ")
    assert "--no-evaluate-test" in command and "--compile" in command and "--learning-rate 0.001" in command
    assert parse_training_arguments(shlex.split(command)[2:]) == parsed
    minimal = TrainingArguments(data="my data", output_dir="o")
    assert minimal.to_command() == "cage train --data 'my data' --output-dir o"
