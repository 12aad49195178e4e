"""The CAGE training loop (Accelerate): one CPU, one GPU or many GPUs/nodes with the same code.

Read top to bottom, like the Hugging Face ``*_no_trainer`` examples: accelerator, data, model, optimizer
and schedule, loop (with ``accumulate``), validation (``gather_for_metrics``), checkpoints (``save_state``
each epoch, ``--resume-from-checkpoint`` continues bit for bit), model selection and early stopping, and
the final model folder (``save_model_folder``, ``weights_status="trained"``, recipe and metrics in
``config.training_recipe``).

Reproducibility: the shuffling sampler is seeded by ``seed + epoch`` (Accelerate's seedable sampler, or
[`ClassBalancedSampler`]); each example's augmentation is seeded by ``(seed, epoch, index)``; a resumed run
skips the batches already seen with ``skip_first_batches`` and restores optimizer, scheduler and RNG
states with ``load_state``.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..configuration_cage import LABEL_SETS
from ..data.loading import (
    ClassBalancedSampler,
    describe,
    label_set_of,
    load_prepared_dataset,
    loss_weights,
    make_loader,
    with_cage_transform,
)
from ..data.transforms import eval_transform, train_transform
from ..evaluation.runner import metrics_for, predict_split, validation_loss, write_metrics
from .arguments import BACKBONE_WEIGHTS_DOWNLOAD, SELECTION_METRICS, TrainingArguments

logger = logging.getLogger(__name__)

STATE_FILE = "cage_training_state.json"
PAPER = "Wagner et al., CAGE: Circumplex Affect Guided Expression Inference, CVPR 2024 Workshops, arXiv 2404.14975"


def selection_value(metrics: dict[str, Any], name: str) -> float:
    """The value of selection metric ``name`` (see ``SELECTION_METRICS``) in a metrics dict; NaN if absent."""
    path, _ = SELECTION_METRICS[name]
    if path is None:
        values = [metrics.get(t, {}).get("ccc", math.nan) for t in ("valence", "arousal")]
        return float(sum(values) / 2)
    value: Any = metrics
    for key in path:
        value = value.get(key, math.nan) if isinstance(value, dict) else math.nan
    return float(value)


def default_selection_metric(objective: str, multi_label: bool) -> str:
    if objective == "discrete":
        return "mean_average_precision" if multi_label else "macro_f1"
    return "mean_ccc"


def _is_better(value: float, best: float | None, greater: bool) -> bool:
    if best is None or math.isnan(best):
        return True
    if math.isnan(value):
        return False
    return value > best if greater else value < best


def build_model(args: TrainingArguments, label_set: str, weights: dict[str, list[float]], log):
    """The model and processor to train: from ``--init-from``, or new with ImageNet (or, explicitly, random)
    trunk weights. Raises ``ValueError`` when no trunk weights are given and ``--random-init`` is not set."""
    from ..modeling_cage import CageForExpressionInference
    from ..presets import make_config, make_image_processor

    if args.init_from:
        from ..model_folder import load_model_and_processor

        model, processor = load_model_and_processor(args.init_from)
        names = tuple(model.config.id2label[i] for i in range(model.config.num_labels))
        if names != LABEL_SETS[label_set].labels:
            raise ValueError(f"--init-from {args.init_from} predicts {names}, but the data is {label_set}")
        model.config.objective = args.objective
        model.config.class_weights = weights.get("class_weights")
        model.config.pos_weight = weights.get("pos_weight")
        if args.expression_loss_weight is not None:
            model.config.expression_loss_weight = args.expression_loss_weight
        model.config.validate_cage()
        model.train()
        log(f"initialised from {args.init_from} ({model.config.backbone}, {model.config.image_size} px)")
        return model, processor
    if args.expression_loss_weight is not None:
        weights = {**weights, "expression_loss_weight": args.expression_loss_weight}
    config = make_config(
        label_set, objective=args.objective, backbone=args.backbone, image_size=args.image_size, **weights
    )
    model = CageForExpressionInference(config)
    if args.backbone_weights:
        download = args.backbone_weights == BACKBONE_WEIGHTS_DOWNLOAD and not Path(args.backbone_weights).exists()
        try:
            model.load_backbone_weights(None if download else args.backbone_weights)
        except RuntimeError as error:  # offline, download failed, or a file of another network: a usage error
            raise ValueError(f"--backbone-weights {args.backbone_weights}: {error}") from error
        source = f"the default ImageNet weights of {config.backbone_library}" if download else args.backbone_weights
        log(f"trunk initialised from ImageNet weights: {source}")
    elif args.random_init:
        logger.warning(
            "TRAINING FROM A RANDOM TRUNK (--random-init): no ImageNet weights; the paper's results need them"
        )
    else:
        example = (
            "torchvision's maxvit_t-bc5ab103.pth"
            if config.backbone_library == "torchvision"
            else f"a timm checkpoint of {args.backbone}, e.g. model.safetensors from the Hub repo timm/{args.backbone}"
        )
        raise ValueError(
            f"no trunk weights: pass --backbone-weights PATH (ImageNet weights: {example}), --backbone-weights "
            f"{BACKBONE_WEIGHTS_DOWNLOAD} (online) or --init-from MODEL; --random-init trains from random weights "
            "on purpose"
        )
    return model, make_image_processor(config)


def apply_training_framing(processor, train_split, framing_file: str | None, log) -> dict | None:
    """Write the training data's measured framing into ``processor`` (its ``framing``), so that inference
    turns a detector box into the crop the model is trained on (see ``cage.data.framing``).

    Args:
        processor: the ``CageImageProcessor`` saved with the model.
        train_split: the training split; its stats (``info.description``) hold ``framing.calibration``.
        framing_file: a calibration JSON from ``cage calibrate-framing --output``; overrides the stats.
        log: prints one line for people.

    Returns:
        The framing written, or None when there is none (body crops, no or failed calibration: the
        processor keeps its policy, and the line printed says so).

    Raises:
        ValueError: ``framing_file`` cannot be read or holds no usable measurement.
    """
    from ..data.framing import describe, framing_for_processor, framings_for_processor
    from ..data.stats import load_stats

    if processor.crop_target != "face":
        if framing_file:
            raise ValueError(f"--framing-file {framing_file}: framing calibration applies to face models only")
        return None
    others = None
    if framing_file:
        try:
            calibration = json.loads(Path(framing_file).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as error:
            raise ValueError(f"--framing-file {framing_file}: cannot read it as JSON ({error})") from error
        framing = framing_for_processor({"framing": {"calibration": calibration}})
        if framing is None:
            status = calibration.get("status") if isinstance(calibration, dict) else None
            raise ValueError(f"--framing-file {framing_file}: holds no measured framing (status {status!r})")
    else:
        try:
            stats = load_stats(train_split)
        except ValueError:
            stats = {}
        calibration = (stats.get("framing") or {}).get("calibration")
        framing = framing_for_processor(stats)
        others = framings_for_processor(stats)
        if framing is None:
            if isinstance(calibration, dict) and "detected" in calibration:
                reason = describe(calibration)
            else:
                reason = (calibration or {}).get("reason", "no calibration in the data")
            log(f"framing: keeping the processor's {processor.crop_policy} crop policy ({reason})")
            return None
    processor.set_framing(framing, others)
    log(f"framing written into the processor: {describe(calibration)}")
    for other in (others or {}).values():
        log(f"framing for the {other['detector']} detector written into the processor too")
    return framing


def apply_training_data(processor, config, train_split, log) -> dict[str, Any]:
    """What the training data's stats say about the faces and targets, written into the saved processor and
    config so that inference sees what training saw.

    - ``image_domain`` (FER+: ``{"grayscale": true, "resolution": 48}``): the processor's ``grayscale`` and
      ``source_resolution`` (``CageImageProcessor``), so that a face from a colour photo is made gray and
      reduced to the training faces' resolution before the resize to the model's input;
    - ``regression_targets.source == "derived"`` (FER+): ``config.regression_source = "derived"`` and
      ``config.regression_note``, shown with every valence/arousal the model gives.

    Returns:
        ``{"dataset": ..., "terms": ..., "image_domain": ..., "regression_targets": ...}`` as found (``None``
        where absent; ``dataset`` is the stats' id, e.g. ``"ferplus"``, which the model card names).
    """
    from ..data.stats import load_stats

    try:
        stats = load_stats(train_split)
    except ValueError:
        stats = {}
    domain = stats.get("image_domain")
    if isinstance(domain, dict):
        processor.grayscale = bool(domain.get("grayscale", False))
        processor.source_resolution = domain.get("resolution")
        processor.check_policy()
        log(
            f"image domain of the training faces written into the processor: grayscale={processor.grayscale}, "
            f"source_resolution={processor.source_resolution}"
        )
    targets = stats.get("regression_targets")
    if isinstance(targets, dict) and targets.get("source") == "derived":
        config.regression_source = "derived"
        config.regression_note = targets.get("note")
        log(f"regression targets are derived, not human ratings: {config.regression_note}")
    return {"dataset": stats.get("dataset"), "terms": stats.get("terms"), "image_domain": domain,
            "regression_targets": targets}  # fmt: skip


def resolve_label_mode(label_mode: str, train_split) -> str:
    """``"soft"`` or ``"majority"`` for ``--label-mode`` on this data (``auto``: soft where the data has soft
    labels). Raises ``ValueError`` for ``soft`` on data without a ``soft_label`` column."""
    from ..data.loading import SOFT_LABEL_COLUMN

    has_soft = SOFT_LABEL_COLUMN in train_split.column_names
    if label_mode == "auto":
        return "soft" if has_soft else "majority"
    if label_mode == "soft" and not has_soft:
        raise ValueError(f"--label-mode soft needs a {SOFT_LABEL_COLUMN!r} column (FER+ data); this data has none")
    return label_mode


def train(args: TrainingArguments, end_training: bool = True) -> dict[str, Any]:
    """Train a CAGE model as ``args`` say and write it to ``args.output_dir``.

    ``end_training=False`` keeps the process group of a multi-process run alive (trackers are still
    finished), so that one process can train again or evaluate afterwards (``cage reproduce``); the caller
    then ends it (``PartialState().destroy_process_group()``).

    Writes ``OUTPUT_DIR/`` (model folder: ``model.safetensors``, ``config.json`` with ``weights_status
    "trained"`` and ``training_recipe``, processor, code), ``metrics_validation.json`` and, when the data
    has a ``test`` split, ``metrics_test.json``; ``OUTPUT_DIR/checkpoints/`` (Accelerate states) and
    ``OUTPUT_DIR/best_model/`` (the best epoch so far, for resuming).

    Returns:
        The training recipe (arguments, data, best step, validation and test metrics, skipped images).

    Raises:
        ValueError: bad arguments or data (see ``build_model`` and ``cage.data.loading``).
    """
    from accelerate import Accelerator
    from accelerate.utils import DataLoaderConfiguration, ProjectConfiguration, gather_object, set_seed
    from transformers import get_scheduler

    from ..model_folder import save_model_folder

    output_dir = Path(args.output_dir)
    accelerator = Accelerator(
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        mixed_precision=args.mixed_precision,
        log_with=None if args.report_to == "none" else args.report_to,
        project_config=ProjectConfiguration(project_dir=str(output_dir), logging_dir=str(output_dir / "runs")),
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True, data_seed=args.seed),
    )

    def log(message: str) -> None:
        if accelerator.is_main_process:
            print(f"[cage train] {message}", flush=True)

    set_seed(args.seed)

    # Data: the schema of `cage prepare`; loss weights from the training split's label counts.
    dataset = load_prepared_dataset(args.data)
    for name in ("train", "validation"):
        if name not in dataset:
            raise ValueError(f"{args.data}: no {name!r} split (has {', '.join(dataset)})")
    label_set = label_set_of(dataset["train"])
    label_mode = "multi_label" if LABEL_SETS[label_set].multi_label else resolve_label_mode(args.label_mode, dataset["train"])
    soft = label_mode == "soft"
    if label_mode == "majority" and "label" in dataset["train"].column_names:
        unlabelled = int((np.asarray(dataset["train"].with_format("numpy", columns=["label"])["label"]) < 0).sum())
        if unlabelled:  # faces without a class (FER+'s no-majority faces) cannot train a class label
            dataset["train"] = dataset["train"].filter(lambda label: label >= 0, input_columns="label")
            log(f"majority labels: {unlabelled} training faces without a class (label -1) left out")
    weights = loss_weights(dataset["train"], label_set, args.class_weighting)
    if args.balanced and LABEL_SETS[label_set].multi_label:
        raise ValueError("--balanced needs single-label (AffectNet) data")
    if args.balanced and weights.get("class_weights") is not None:
        # The sampler already draws every class equally often; inverse-frequency CE weights on top would
        # count rarity twice.
        weights["class_weights"] = None
        log("class-balanced sampling: the expression CE is unweighted (the sampler balances the classes)")

    # Model: ImageNet trunk or a previous CAGE model; never silently random.
    model, processor = build_model(args, label_set, weights, log)
    # Where the trunk's weights started ("imagenet", "random"; inherited through --init-from): the model card
    # names an ImageNet base model only when there was one.
    if args.init_from:
        trunk_start = (model.config.training_recipe or {}).get("trunk_start", "unknown")
    else:
        trunk_start = "random" if args.random_init else "imagenet"
    config = model.config
    # Framing: the saved processor crops detector boxes as the training crops frame the detected face; it also
    # makes crops look like the training faces (gray, low resolution) where the data says so.
    apply_training_framing(processor, dataset["train"], args.framing_file, log)
    training_data = apply_training_data(processor, config, dataset["train"], log)
    if args.gradient_checkpointing:
        model.gradient_checkpointing_enable()
    if args.channels_last:
        model = model.to(memory_format=torch.channels_last)

    augment = train_transform(processor, args.augmentation)
    train_split, train_batch_transform = with_cage_transform(
        dataset["train"], augment, config.regression_targets, seed=args.seed
    )
    val_split, _ = with_cage_transform(dataset["validation"], eval_transform(processor), config.regression_targets)
    sampler = ClassBalancedSampler(dataset["train"]["label"], args.seed) if args.balanced else None
    eval_batch_size = args.eval_batch_size or args.batch_size
    train_loader = make_loader(
        train_split,
        args.batch_size,
        config.multi_label,
        shuffle=True,
        sampler=sampler,
        num_workers=args.num_workers,
        seed=args.seed,
    )
    val_loader = make_loader(val_split, eval_batch_size, config.multi_label, num_workers=args.num_workers)

    optimizer = torch.optim.AdamW(model.parameters(), lr=args.learning_rate, weight_decay=args.weight_decay)
    model, optimizer, train_loader, val_loader = accelerator.prepare(model, optimizer, train_loader, val_loader)
    # torch.compile of the training forward pass (the prepared module keeps its parameters; saving and
    # evaluation use the uncompiled one).
    forward = torch.compile(model) if args.compile else model

    # Schedule in optimizer steps; Accelerate's scheduler wrapper steps num_processes times per optimizer
    # step, hence the scaling (as in the transformers no_trainer examples).
    steps_per_epoch = math.ceil(len(train_loader) / args.gradient_accumulation_steps)
    total_steps = args.max_steps if args.max_steps else args.epochs * steps_per_epoch
    num_epochs = math.ceil(total_steps / steps_per_epoch)
    scheduler = get_scheduler(
        "cosine",
        optimizer=optimizer,
        num_warmup_steps=args.warmup_steps * accelerator.num_processes,
        num_training_steps=total_steps * accelerator.num_processes,
    )
    scheduler = accelerator.prepare(scheduler)

    selection = args.selection_metric or default_selection_metric(args.objective, config.multi_label)
    greater = SELECTION_METRICS[selection][1]
    state: dict[str, Any] = {
        "global_step": 0,
        "epoch": 0,
        "batches_in_epoch": 0,
        "best_metric": None,
        "best_step": None,
        "best_epoch": None,
        "evaluations_without_improvement": 0,
        "history": [],
        "skipped_training_images": 0,
    }
    if args.resume_from_checkpoint:
        checkpoint = Path(args.resume_from_checkpoint)
        if not (checkpoint / STATE_FILE).is_file():
            raise ValueError(
                f"--resume-from-checkpoint {checkpoint}: not a checkpoint of this script (no {STATE_FILE})"
            )
        accelerator.load_state(str(checkpoint))
        state = json.loads((checkpoint / STATE_FILE).read_text())
        log(
            f"resumed from {checkpoint} at step {state['global_step']} "
            f"(epoch {state['epoch']}, batch {state['batches_in_epoch']})"
        )

    if args.report_to != "none":
        hparams = {k: (v if isinstance(v, (int, float, str, bool)) else str(v)) for k, v in args.to_dict().items()}
        accelerator.init_trackers("cage", config=hparams)

    log(
        f"{label_set} {args.objective}: {len(dataset['train'])} training / {len(dataset['validation'])} validation "
        f"examples, {accelerator.num_processes} process(es), per-device batch {args.batch_size}, "
        f"{total_steps} optimizer steps, selection by {selection}"
    )

    def save_checkpoint(name: str) -> None:
        path = output_dir / "checkpoints" / name
        accelerator.save_state(str(path))
        if accelerator.is_main_process:
            (path / STATE_FILE).write_text(json.dumps(state, indent=2))
        accelerator.wait_for_everyone()

    def validate() -> dict[str, Any]:
        predictions = predict_split(accelerator, model, val_loader, args.channels_last)
        metrics = metrics_for(config, predictions, "validation")
        metrics["loss"] = validation_loss(accelerator.unwrap_model(model), predictions, soft=soft)
        value = selection_value(metrics, selection)
        improved = _is_better(value, state["best_metric"], greater)
        state["history"].append(
            {"step": state["global_step"], "epoch": state["epoch"], selection: value, "loss": metrics["loss"],
             **throughput}
        )  # fmt: skip
        if improved:
            state.update(
                best_metric=value,
                best_step=state["global_step"],
                best_epoch=state["epoch"],
                evaluations_without_improvement=0,
            )
            accelerator.wait_for_everyone()
            if accelerator.is_main_process:
                save_model_folder(accelerator.unwrap_model(model), processor, output_dir / "best_model")
                write_metrics(metrics, output_dir / "best_model" / "metrics_validation.json")
        else:
            state["evaluations_without_improvement"] += 1
        accelerator.wait_for_everyone()
        speed = f", {throughput['images_per_second']:.0f} training images/s" if throughput.get("images_per_second") else ""
        log(
            f"step {state['global_step']}: validation {selection} = {value:.4f}, loss {metrics['loss']:.4f}{speed}"
            + (" (best)" if improved else "")
        )
        accelerator.log(
            {f"validation/{selection}": value, "validation/loss": metrics["loss"]}, step=state["global_step"]
        )
        return metrics

    failed_ids: set[str] = set()
    throughput: dict[str, float] = {}  # of the epoch just trained, for the log and the history
    progress = None
    if accelerator.is_main_process:
        from tqdm.auto import tqdm

        progress = tqdm(total=total_steps, initial=state["global_step"], desc="training", dynamic_ncols=True)
    stop = state["global_step"] >= total_steps
    while not stop and state["epoch"] < num_epochs:
        epoch = state["epoch"]
        train_loader.set_epoch(epoch)
        if sampler is not None:
            sampler.set_epoch(epoch)
        train_batch_transform.epoch = epoch
        model.train()
        loader = (
            accelerator.skip_first_batches(train_loader, state["batches_in_epoch"])
            if state["batches_in_epoch"]
            else train_loader
        )
        epoch_started, epoch_images = time.perf_counter(), 0
        for batch in loader:
            valid = batch["valid"]
            epoch_images += int(valid.sum())
            if batch["num_failed"]:
                failed_ids.update(str(i) for i in batch["failed_ids"])
                state["skipped_training_images"] += batch["num_failed"]
            with accelerator.accumulate(model):
                if bool(valid.any()):
                    pixel_values = batch["pixel_values"]
                    if args.channels_last:
                        pixel_values = pixel_values.contiguous(memory_format=torch.channels_last)
                    loss = forward(
                        pixel_values=pixel_values,
                        labels=(batch["soft_labels"] if soft else batch["labels"])[valid],
                        regression_labels=batch["regression_labels"][valid],
                    ).loss
                else:  # every image of this batch failed: a zero loss keeps processes in step (no placeholder)
                    loss = sum(p.sum() for p in model.parameters()) * 0.0
                accelerator.backward(loss)
                if accelerator.sync_gradients and args.max_grad_norm:
                    accelerator.clip_grad_norm_(model.parameters(), args.max_grad_norm)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad()
            state["batches_in_epoch"] += 1
            if not accelerator.sync_gradients:
                continue
            state["global_step"] += 1
            mean_loss = accelerator.reduce(loss.detach().float(), "mean").item()
            accelerator.log(
                {"train/loss": mean_loss, "train/learning_rate": scheduler.get_last_lr()[0]}, step=state["global_step"]
            )
            if progress is not None:
                progress.update(1)
                progress.set_postfix(loss=f"{mean_loss:.4f}", epoch=epoch)
            if args.checkpointing_steps and state["global_step"] % args.checkpointing_steps == 0:
                save_checkpoint(f"step_{state['global_step']}")
            if state["global_step"] >= total_steps:
                stop = True
                break
        epoch_done = not stop or state["batches_in_epoch"] >= len(train_loader)
        seconds = time.perf_counter() - epoch_started
        images = int(accelerator.reduce(torch.tensor(epoch_images, device=accelerator.device), "sum").item())
        throughput = {"train_seconds": round(seconds, 1), "images_per_second": round(images / seconds, 1) if seconds else None}
        validate()
        if epoch_done:
            state.update(epoch=epoch + 1, batches_in_epoch=0)
            save_checkpoint(f"epoch_{epoch + 1}")
        patience = args.early_stopping_patience
        if patience is not None and state["evaluations_without_improvement"] >= patience:
            log(f"early stopping: {patience} evaluation(s) without improvement of {selection}")
            stop = True
    if progress is not None:
        progress.close()

    # Skipped images, counted on every process.
    all_failed = (
        sorted(set().union(*gather_object([failed_ids]))) if accelerator.num_processes > 1 else sorted(failed_ids)
    )
    skipped_total = int(
        accelerator.reduce(torch.tensor(state["skipped_training_images"], device=accelerator.device), "sum").item()
    )
    if all_failed and accelerator.is_main_process:
        logger.warning(
            "skipped %d undecodable training images (%d distinct): %s", skipped_total, len(all_failed), all_failed[:20]
        )

    # The best model: reload its weights everywhere, evaluate, save the final folder.
    accelerator.wait_for_everyone()
    from safetensors.torch import load_file

    best_weights = load_file(str(output_dir / "best_model" / "model.safetensors"))
    unwrapped = accelerator.unwrap_model(model)
    unwrapped.load_state_dict(best_weights, strict=False)
    metrics = {"validation": json.loads((output_dir / "best_model" / "metrics_validation.json").read_text())}
    if args.evaluate_test and "test" in dataset:
        test_split, _ = with_cage_transform(dataset["test"], eval_transform(processor), config.regression_targets)
        test_loader = accelerator.prepare(
            make_loader(test_split, eval_batch_size, config.multi_label, num_workers=args.num_workers)
        )
        metrics["test"] = metrics_for(
            config, predict_split(accelerator, model, test_loader, args.channels_last), "test"
        )

    recipe = {
        "paper": PAPER,
        "arguments": args.to_dict(),
        "trunk_start": trunk_start,
        "data": {"source": args.data, "label_set": label_set, "splits": describe(dataset), **training_data},
        "label_mode": label_mode,
        "loss_weights": weights,
        "num_processes": accelerator.num_processes,
        "effective_batch_size": args.batch_size * accelerator.num_processes * args.gradient_accumulation_steps,
        "optimizer_steps": state["global_step"],
        "selection_metric": selection,
        "best_step": state["best_step"],
        "best_epoch": state["best_epoch"],
        "history": state["history"],
        "skipped_training_images": {"count": skipped_total, "distinct": all_failed},
        "metrics": metrics,
    }
    if accelerator.is_main_process:
        from ..evaluation.metrics import to_json_ready

        unwrapped.config.weights_status = "trained"
        unwrapped.config.training_recipe = to_json_ready(recipe)
        if args.channels_last:
            unwrapped.to(memory_format=torch.contiguous_format)
        save_model_folder(unwrapped, processor, output_dir)
        for split, split_metrics in metrics.items():
            write_metrics(split_metrics, output_dir / f"metrics_{split}.json")
        shutil.rmtree(output_dir / "best_model" / "__pycache__", ignore_errors=True)
        log(f"saved the best model (step {state['best_step']}, {selection} = {state['best_metric']}) to {output_dir}")
    accelerator.wait_for_everyone()
    if end_training:
        accelerator.end_training()
    else:
        for tracker in accelerator.trackers:
            tracker.finish()
    return recipe


def main(argv=None) -> int:
    """``scripts/train.py`` entry point: parse options, train, exit 0 (or 2 with a message on bad input)."""
    import sys

    from .arguments import parse_training_arguments

    args = parse_training_arguments(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    try:
        train(args)
    except (ValueError, FileNotFoundError) as error:
        print(f"cage train: {error}", file=sys.stderr)
        return 2
    return 0
