"""Run a CAGE model over a prepared split with Accelerate and compute its metrics.

One code path for the validation pass inside training and for ``cage evaluate``: batches are sharded over
processes, predictions are collected with ``Accelerator.gather_for_metrics`` (which removes the samples
Accelerate duplicates to even out the last batch), and examples whose image could not be decoded are
dropped after gathering and counted.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .metrics import compute_metrics, to_json_ready

logger = logging.getLogger(__name__)


def predict_split(accelerator, model, loader, channels_last: bool = False) -> dict[str, Any]:
    """Predictions for every example of a prepared loader, gathered on every process.

    Args:
        accelerator: the ``accelerate.Accelerator`` that prepared ``model`` and ``loader``.
        model: a (possibly wrapped) ``CageForExpressionInference``.
        loader: a loader built by ``cage.data.loading.make_loader`` (batches with ``valid`` masks).

    Returns:
        numpy arrays over the N decodable examples of the split, in sampler order: ``logits`` ``(N, L)``,
        ``regression`` ``(N, R)``, ``labels`` ``(N,)`` (-1: no class) or ``(N, L)``, ``regression_labels``
        ``(N, R)``, ``soft_labels`` ``(N, L)`` where the data has soft labels (FER+); and ``num_failed``
        (examples dropped because their image could not be decoded).
    """
    config = accelerator.unwrap_model(model).config
    num_labels, num_targets = config.num_labels, len(config.regression_targets)
    model.eval()
    keys = ["logits", "regression", "labels", "regression_labels", "valid"]
    parts: dict[str, list[torch.Tensor]] = {k: [] for k in keys}
    with torch.no_grad():
        for batch in loader:
            valid = batch["valid"]
            size = valid.shape[0]
            logits = torch.full((size, num_labels), math.nan, device=valid.device)
            regression = torch.full((size, num_targets), math.nan, device=valid.device)
            if bool(valid.any()):
                pixel_values = batch["pixel_values"]
                if channels_last:
                    pixel_values = pixel_values.contiguous(memory_format=torch.channels_last)
                with accelerator.autocast():
                    output = model(pixel_values=pixel_values)
                logits[valid] = output.logits.float()
                regression[valid] = output.regression.float()
            values = [logits, regression, batch["labels"], batch["regression_labels"], valid]
            if "soft_labels" in batch:
                parts.setdefault("soft_labels", [])
                values.append(batch["soft_labels"])
            gathered = accelerator.gather_for_metrics(tuple(values))
            for key, value in zip(parts, gathered):
                parts[key].append(value.cpu())
    arrays = {key: torch.cat(values).numpy() for key, values in parts.items()}
    valid = arrays.pop("valid").astype(bool)
    result = {key: value[valid] for key, value in arrays.items()}
    result["num_failed"] = int((~valid).sum())
    return result


def validation_loss(model, predictions: dict[str, np.ndarray], soft: bool = False) -> float:
    """The objective's loss over a whole split: the model's own ``compute_loss`` (one formula for training and
    validation) over all gathered predictions at once, with an UNWEIGHTED CE/BCE (``class_weighted=False``:
    the authors validated unweighted; AffectNet's validation set is balanced). CCC over the whole split, 1/n
    moments.

    Args:
        model: the unwrapped ``CageForExpressionInference`` (only its ``compute_loss`` and config are used).
        predictions: the output of [`predict_split`].
        soft: the CE against the soft labels (when the predictions have them), as a soft-label run trains;
            else against the class labels (rows labelled -1 left out).

    Returns:
        The loss as a Python float (computed in float32, as in training).
    """
    labels = predictions["soft_labels"] if soft and "soft_labels" in predictions else predictions["labels"]
    loss = model.compute_loss(
        torch.as_tensor(predictions["logits"]),
        torch.as_tensor(predictions["regression"]),
        torch.as_tensor(labels),
        torch.as_tensor(predictions["regression_labels"]),
        class_weighted=False,
    )
    return float(loss)


def metrics_for(config, predictions: dict[str, np.ndarray], split: str) -> dict[str, Any]:
    """The metrics JSON (see ``cage.evaluation.metrics``) of gathered ``predictions``, plus ``skipped_images``."""
    if len(predictions["logits"]) == 0:
        raise ValueError(f"split {split!r} has no decodable examples to evaluate")
    metrics = compute_metrics(
        split=split,
        logits=predictions["logits"],
        regression=predictions["regression"],
        labels=predictions["labels"],
        regression_labels=predictions["regression_labels"],
        id2label={int(k): v for k, v in config.id2label.items()},
        regression_targets=config.regression_targets,
        multi_label=config.multi_label,
    )
    metrics["skipped_images"] = predictions["num_failed"]
    if getattr(config, "regression_source", "annotated") == "derived":
        # said with every number computed against them: they are not human ratings
        metrics["regression_targets"] = {"source": "derived", "note": config.regression_note}
    return metrics


def evaluate_model(
    model: str | Path | None,
    data: str | Path,
    split: str = "test",
    batch_size: int = 64,
    num_workers: int = 0,
    output: str | Path | None = None,
    plots: str | Path | None = None,
    mixed_precision: str = "no",
    trust_remote_code: bool = False,
) -> dict[str, Any]:
    """Evaluate a saved CAGE model on a split of a prepared dataset (one or many processes).

    Run plainly for one process, or under ``accelerate launch`` for several; the metrics are the same.
    ``model`` ``None`` is the model bundled with cage; ``trust_remote_code`` lets its folder run its own code.
    The images are transformed with the evaluation transform built from the model's saved processor.

    Returns:
        The metrics dict (layout in ``cage.evaluation.metrics``); also written to ``output`` (JSON) and
        plotted into ``plots`` by the main process when given.

    Raises:
        cage.model_folder.ModelLoadError: the model cannot be loaded.
        cage.extras.MissingExtraError: ``plots`` is given but the ``plots`` extra (matplotlib) is not installed.
        ValueError / FileNotFoundError: the data or split is missing, or its labels do not match the model's.
    """
    from accelerate import Accelerator

    from ..data.loading import load_prepared_dataset, make_loader, with_cage_transform
    from ..data.transforms import eval_transform
    from ..extras import require_extra
    from ..model_folder import default_model, load_model_and_processor

    model = default_model(model)
    if plots is not None:  # before any work
        require_extra("plots", "cage evaluate --plots")

    accelerator = Accelerator(mixed_precision=mixed_precision)
    network, processor = load_model_and_processor(model, trust_remote_code=trust_remote_code)
    dataset = load_prepared_dataset(data)
    if split not in dataset:
        raise ValueError(f"{data}: no split {split!r} (has {', '.join(dataset)})")
    check_labels_match(network.config, dataset[split], str(data))
    transformed, _ = with_cage_transform(dataset[split], eval_transform(processor), network.config.regression_targets)
    loader = make_loader(transformed, batch_size, network.config.multi_label, num_workers=num_workers)
    network, loader = accelerator.prepare(network, loader)
    predictions = predict_split(accelerator, network, loader)
    metrics = metrics_for(accelerator.unwrap_model(network).config, predictions, split)
    metrics["model"] = str(model)
    if accelerator.is_main_process:
        if output is not None:
            write_metrics(metrics, output)
        if plots is not None:
            from .plots import plot_all

            plot_all(predictions, accelerator.unwrap_model(network).config, plots)
    accelerator.wait_for_everyone()
    return metrics


def check_labels_match(config, split, data_name: str) -> None:
    """Raise ``ValueError`` unless the split's label names equal the model's ``id2label`` (same order)."""
    from ..configuration_cage import LABEL_SETS
    from ..data.loading import label_set_of

    names = tuple(config.id2label[i] for i in range(config.num_labels))
    if LABEL_SETS[label_set_of(split)].labels != names:
        raise ValueError(f"{data_name}: the dataset's labels ({label_set_of(split)}) differ from the model's {names}")


def write_metrics(metrics: dict[str, Any], path: str | Path) -> Path:
    """Write ``metrics`` as strict JSON (NaN -> null)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(to_json_ready(metrics), indent=2, allow_nan=False) + "\n")
    return path
