"""Model cards for CAGE models: metadata and prose rendered from the saved config and a metrics JSON.

Every number in a card comes from the model folder (``config.json``, ``preprocessor_config.json``,
``model.safetensors``), from the metrics JSON written by ``cage evaluate``, or from the cited paper table in
[`cage.hub.paper_results`]. The template is ``hub_card/model_card.md`` (Jinja, rendered by
``huggingface_hub.ModelCard.from_template``).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from ..configuration_cage import LABEL_SETS, CageConfig, label_set_of_labels
from .paper_results import (
    AFFECTNET_CLASS_MEDIANS,
    CAGE_BIBTEX,
    PAPER_PER_DIMENSION_AFFECTNET8,
    PAPER_RESULTS,
    PAPER_TITLE,
    PAPER_URL,
)

TEMPLATE_PATH = Path(__file__).parent / "hub_card" / "model_card.md"

# Sections of the ``cage evaluate`` metrics JSON, in card order, with their display names.
METRIC_SECTIONS = {
    "expression": "Expression",
    "valence": "Valence",
    "arousal": "Arousal",
    "dominance": "Dominance",
    "pooled_valence_arousal": "Pooled valence+arousal",
    "multilabel": "Categories",
}
METRIC_NAMES = {
    "accuracy": "accuracy",
    "macro_precision": "precision (macro)",
    "macro_recall": "recall (macro)",
    "macro_f1": "F1 (macro)",
    "weighted_precision": "precision (weighted; the paper's P)",
    "weighted_recall": "recall (weighted; the paper's R)",
    "weighted_f1": "F1 (weighted; the paper's F1)",
    "rmse": "RMSE",
    "mse": "MSE",
    "mae": "MAE",
    "pcc": "PCC",
    "ccc": "CCC",
    "sagr": "SAGR",
    "mean_average_precision": "mean average precision",
    "top3_accuracy": "top-3 accuracy",
}
NON_METRIC_KEYS = {"labels", "confusion_matrix", "per_class_recall", "support", "num_examples"}
PER_CLASS_KEYS = ("per_class_recall", "support")  # label -> number (or null): checked and rendered per class


class MetricsFileError(ValueError):
    """A metrics JSON that does not have the layout ``cage evaluate`` writes."""


def load_metrics(path: str | Path) -> dict[str, Any]:
    """Read and check a metrics JSON written by ``cage evaluate``.

    Layout: ``{"split": str, "num_examples": int, "<section>": {"<metric>": float or null, ...}, ...}`` with sections
    from ``METRIC_SECTIONS`` (each optional); ``expression`` may also hold ``labels``, ``confusion_matrix`` and the
    per-class maps ``per_class_recall`` and ``support`` (label -> number or null).

    Raises:
        FileNotFoundError: the file does not exist.
        MetricsFileError: not JSON, or a field missing or of the wrong type (the message names file and field).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"metrics file {path} does not exist")
    try:
        metrics = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise MetricsFileError(f"{path}: not valid JSON ({error})") from error
    if not isinstance(metrics, dict):
        raise MetricsFileError(f"{path}: expected a JSON object")
    if not isinstance(metrics.get("split"), str) or not metrics["split"]:
        raise MetricsFileError(f"{path}: 'split' (the evaluated split's name) is missing")
    if not isinstance(metrics.get("num_examples"), int) or metrics["num_examples"] <= 0:
        raise MetricsFileError(f"{path}: 'num_examples' must be a positive integer")
    sections = [name for name in METRIC_SECTIONS if name in metrics]
    if not sections:
        raise MetricsFileError(f"{path}: no metric sections (expected some of {', '.join(METRIC_SECTIONS)})")
    for section in sections:
        values = metrics[section]
        if not isinstance(values, dict):
            raise MetricsFileError(f"{path}: '{section}' must be an object of metric -> value")
        for name, value in values.items():
            if name in PER_CLASS_KEYS:
                if not isinstance(value, dict) or not all(
                    v is None or (isinstance(v, (int, float)) and not isinstance(v, bool)) for v in value.values()
                ):
                    raise MetricsFileError(f"{path}: '{section}.{name}' must be an object of label -> number or null")
                continue
            if name in NON_METRIC_KEYS or value is None:  # null: not computable (NaN), as cage evaluate writes it
                continue
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                raise MetricsFileError(f"{path}: '{section}.{name}' must be a number or null, got {value!r}")
    return metrics


# Titles of prepared datasets whose labels alone do not name them (FER+ uses AffectNet-8's names and order).
DATASET_TITLES = {"ferplus": "FER+"}


def dataset_name(config: CageConfig) -> str | None:
    """The dataset a model's labels come from: ``training_recipe["dataset"]``, else inferred from the labels."""
    recipe = config.training_recipe or {}
    if isinstance(recipe.get("dataset"), str):
        return recipe["dataset"]
    prepared = (recipe.get("data") or {}).get("dataset")  # the prepared dataset's id (cage prepare's stats)
    if prepared in DATASET_TITLES:
        return DATASET_TITLES[prepared]
    labels = [config.id2label[i] for i in range(config.num_labels)]
    label_set = label_set_of_labels(labels, config.multi_label)
    return None if label_set is None else label_set.title


def _dataset_id(name: str | None) -> str:
    return (name or "unknown").split("-")[0].lower().replace("+", "plus")


def _number(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def eval_results(metrics: dict[str, Any], dataset: str | None) -> list[EvalResult]:
    """One ``EvalResult`` per reported metric (every numeric entry of every section; ``null``/NaN, i.e. not
    computable, is left out), for ``model-index``."""
    results = []
    for section, title in METRIC_SECTIONS.items():
        for name, value in metrics.get(section, {}).items():
            if name in NON_METRIC_KEYS or value is None or (isinstance(value, float) and math.isnan(value)):
                continue
            results.append(
                EvalResult(
                    task_type="image-classification",
                    task_name="Facial expression recognition" if section in ("expression", "multilabel")
                    else "Valence and arousal estimation",
                    dataset_type=_dataset_id(dataset),
                    dataset_name=dataset or "unknown",
                    dataset_split=metrics["split"],
                    metric_type=name if section in ("expression", "multilabel") else f"{section}_{name}",
                    metric_name=f"{title} {METRIC_NAMES.get(name, name)}",
                    metric_value=float(value),
                )
            )  # fmt: skip
    return results


def _paper_entries(dataset: str | None, objective: str) -> list[tuple[str, dict]]:
    """Paper results on the same dataset: the matching objective first."""
    entries = [(key, value) for key, value in PAPER_RESULTS.items() if key[0] == dataset]
    entries.sort(key=lambda item: item[0][1] != objective)
    return [(f"{value['name']}{' ◀ same objective' if key[1] == objective else ''}", value) for key, value in entries]


def evaluation_tables(metrics: dict[str, Any] | None, config: CageConfig) -> list[dict[str, Any]]:
    """Tables for the card's evaluation section: this model's numbers beside the paper's, named clearly.

    Each table: ``{"title", "note", "columns": [...], "rows": [[...], ...]}``.
    """
    dataset = dataset_name(config)
    paper = _paper_entries(dataset, config.objective)
    ours = metrics or {}
    label = f"this model ({ours['split']}, n = {ours['num_examples']})" if metrics else "this model (not evaluated)"
    tables = []

    def table(title: str, note: str, section_metrics: list[tuple[str, str]], extra_columns=()) -> None:
        columns = ["metric", label] + [name for name, _ in paper] + [name for name, _ in extra_columns]
        rows = []
        for section, name in section_metrics:
            paper_values = [entry.get(section, {}).get(name) for _, entry in paper]
            extra_values = [entry.get(section, {}).get(name) for _, entry in extra_columns]
            value = ours.get(section, {}).get(name)
            if value is None and all(v is None for v in paper_values + extra_values):
                continue
            rows.append([f"{METRIC_SECTIONS[section]} {METRIC_NAMES.get(name, name)}", _number(value)]
                        + [_number(v) for v in paper_values + extra_values])  # fmt: skip
        # Drop comparison columns without a single number in this table.
        keep = [i for i in range(len(columns)) if i < 2 or any(row[i] != "–" for row in rows)]
        if rows:
            tables.append({"title": title, "note": note, "columns": [columns[i] for i in keep],
                           "rows": [[row[i] for i in keep] for row in rows]})  # fmt: skip

    if config.num_labels and not config.multi_label:
        names = ["accuracy", "macro_precision", "macro_recall", "macro_f1",
                 "weighted_precision", "weighted_recall", "weighted_f1"]  # fmt: skip
        table(
            "Expression",
            "Macro averages weigh every class equally; weighted averages weigh classes by their support "
            "(the paper's P, R and F1 are weighted)." + (
                f" Over the {ours['expression']['num_examples']} examples with a class label (FER+: the protocol's "
                "majority faces)." if ours.get("expression", {}).get("num_examples") not in (None, ours.get("num_examples"))
                else ""),
            [("expression", n) for n in names],
        )
    per_dimension_extra = list(PAPER_PER_DIMENSION_AFFECTNET8.items()) if dataset == LABEL_SETS["affectnet8"].title else []
    table(
        "Per dimension",
        "Each of valence, arousal (and dominance) on its own, on the [-1, 1] scale. PCC: Pearson correlation; "
        "CCC: Lin's concordance correlation; SAGR: fraction of predictions with the label's sign.",
        [(dim, n) for dim in config.regression_targets for n in ("rmse", "mae", "pcc", "ccc", "sagr")],
        extra_columns=per_dimension_extra,
    )
    if {"valence", "arousal"} <= set(config.regression_targets):
        table(
            "Pooled valence and arousal (the paper's table)",
            "Valence and arousal predictions concatenated into one series before computing the metric, as in "
            "the paper's results table; not comparable with the per-dimension numbers above.",
            [("pooled_valence_arousal", n) for n in ("rmse", "mse", "mae", "ccc")],
        )
    if config.multi_label:
        table("Categories (multi-label)", "", [("multilabel", n) for n in ("mean_average_precision", "top3_accuracy")])
    recall, support = ours.get("expression", {}).get("per_class_recall"), ours.get("expression", {}).get("support")
    if isinstance(recall, dict) and recall:
        support = support if isinstance(support, dict) else {}
        tables.append({
            "title": "Per class",
            "note": "Recall of each expression (the share of its examples predicted as it) and its support.",
            "columns": ["expression", "recall", "support"],
            "rows": [[name, _number(value), str(support.get(name, "–"))] for name, value in recall.items()],
        })  # fmt: skip
    return tables


def confusion_table(metrics: dict[str, Any] | None) -> dict[str, Any] | None:
    """The expression confusion matrix (rows: true label, columns: predicted), if the metrics have one."""
    expression = (metrics or {}).get("expression", {})
    labels, matrix = expression.get("labels"), expression.get("confusion_matrix")
    if not labels or not matrix or len(matrix) != len(labels):
        return None
    return {"columns": ["true \\ predicted"] + list(labels),
            "rows": [[label] + [str(v) for v in row] for label, row in zip(labels, matrix)]}  # fmt: skip


def circumplex_diagram(points: dict[str, tuple[float, float]], width: int = 41, height: int = 17) -> str:
    """A text plot of labelled (valence, arousal) points on the circumplex: valence right, arousal up."""
    grid = [[" "] * width for _ in range(height)]
    cx, cy = width // 2, height // 2
    for x in range(width):
        grid[cy][x] = "-"
    for y in range(height):
        grid[y][cx] = "|"
    grid[cy][cx] = "+"
    for name, (valence, arousal) in points.items():
        x = round((valence + 1) / 2 * (width - 1))
        y = round((1 - arousal) / 2 * (height - 1))
        tag = name[:3]
        x = min(max(x - 1, 0), width - len(tag))
        grid[y][x : x + len(tag)] = list(tag)
    lines = ["".join(row).rstrip() for row in grid]
    return "\n".join(
        ["arousal +1 (excited, alert)".center(width)] + lines + ["arousal -1 (calm, sleepy)".center(width)]
        + ["valence -1 (unpleasant) ... valence +1 (pleasant)"]
    )  # fmt: skip


def _flatten(record: dict[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    rows = []
    for key, value in record.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            rows += _flatten(value, name + ".")
        else:
            rows.append((name, value if isinstance(value, str) else json.dumps(value)))
    return rows


def _parameter_count(model_dir: Path) -> int | None:
    from safetensors import safe_open

    files = sorted(model_dir.glob("*.safetensors"))
    if not files:
        return None
    total = 0
    for file in files:
        with safe_open(str(file), framework="np") as handle:
            for key in handle.keys():
                if key.endswith(("running_mean", "running_var", "num_batches_tracked", "relative_position_index")):
                    continue  # statistics and indices are buffers, not parameters
                total += math.prod(handle.get_slice(key).get_shape())
    return total


def _base_model(config: CageConfig) -> str | None:
    recipe = config.training_recipe or {}
    if isinstance(recipe.get("base_model"), str):
        return recipe["base_model"]
    if config.weights_status == "untrained" or config.backbone_library != "timm":
        return None  # random weights derive from nothing; torchvision weights are not a Hub repo
    if recipe.get("trunk_start") == "random":
        return None  # trained from a random trunk (--random-init): no ImageNet checkpoint behind it
    import timm

    pretrained_cfg = timm.models.get_pretrained_cfg(config.backbone)
    return getattr(pretrained_cfg, "hf_hub_id", None) if pretrained_cfg is not None else None


def default_license(config: CageConfig) -> str:
    """``training_recipe["license"]`` if recorded; Apache-2.0 (the code's) for untrained models; else "other"."""
    recipe = config.training_recipe or {}
    if isinstance(recipe.get("license"), str):
        return recipe["license"]
    return "apache-2.0" if config.weights_status == "untrained" else "other"


def render_model_card(
    model_dir: str | Path,
    repo_id: str,
    metrics: dict[str, Any] | None = None,
    license: str | None = None,
    reproduction: str | None = None,
) -> ModelCard:
    """Render the model card of the model folder ``model_dir`` as it will be published at ``repo_id``.

    Args:
        model_dir: a folder written by [`cage.model_folder.save_model_folder`].
        repo_id: the Hub repository (used in the usage snippets).
        metrics: the output of [`load_metrics`] (``cage evaluate``'s JSON), or ``None`` (not evaluated).
        license: Hub license id; default from [`default_license`].
        reproduction: Markdown of a "Reproduction" section (written by ``cage reproduce``: both stages'
            numbers beside the paper's, the circumplex plot, the recipe), placed before "Limitations and bias".

    Returns:
        A ``huggingface_hub.ModelCard`` whose YAML holds library_name, pipeline_tag, tags, license, datasets
        (trained models), base_model (when the trunk came from a Hub checkpoint) and ``model-index`` with
        every metric in ``metrics`` and its split.

    Raises:
        FileNotFoundError: ``model_dir`` has no ``config.json``/``preprocessor_config.json``.
        ValueError: the config is not a valid ``CageConfig``.
    """
    import jinja2  # noqa: F401  (huggingface_hub renders templates with jinja2; fail early with its name)

    model_dir = Path(model_dir)
    for name in ("config.json", "preprocessor_config.json"):
        if not (model_dir / name).is_file():
            raise FileNotFoundError(f"{model_dir} has no {name}; is it a model folder written by cage?")
    config = CageConfig.from_pretrained(model_dir)
    processor = json.loads((model_dir / "preprocessor_config.json").read_text(encoding="utf-8"))
    dataset = dataset_name(config)
    trained = config.weights_status == "trained"
    license = license or default_license(config)

    tags = ["cage", "facial-expression-recognition", "valence-arousal", "affective-computing", "custom_code"]
    if "maxvit" in config.backbone:
        tags.append("maxvit")
    if dataset:
        tags.append(_dataset_id(dataset))
    if not trained:
        tags.append("untrained")
    card_data = ModelCardData(
        library_name="transformers",
        pipeline_tag="image-classification",
        tags=tags,
        license=license,
        license_name="cage-model-terms" if license == "other" else None,
        datasets=[_dataset_id(dataset)] if trained and dataset else None,
        base_model=_base_model(config),
        model_name=repo_id.split("/")[-1] if metrics else None,  # names the model-index entry
        eval_results=eval_results(metrics, dataset) if metrics else None,
    )
    labels = [config.id2label[i] for i in range(config.num_labels)]
    affectnet = (dataset or "").startswith("AffectNet")
    medians = {label: AFFECTNET_CLASS_MEDIANS[label] for label in labels if affectnet and label in AFFECTNET_CLASS_MEDIANS}
    if affectnet:
        paper_note = (
            "on AffectNet's official validation set (3,999 images), which the paper also used to select "
            "checkpoints, so they are optimistic"
        )
    elif dataset == "EMOTIC":
        paper_note = "on EMOTIC, with dimensions mapped from 1..10 to [-1, 1] by (x - 5.5) / 4.5"
    else:
        paper_note = "on a different dataset; no comparison is made"
    parameters = _parameter_count(model_dir)
    from ..pipeline_cage import TASK  # the custom transformers pipeline task of CAGE models

    return ModelCard.from_template(
        card_data,
        template_path=str(TEMPLATE_PATH),
        repo_id=repo_id,
        config=config,
        processor=processor,
        dataset=dataset,
        weights_status=config.weights_status,
        labels=labels,
        medians=medians,
        circumplex=circumplex_diagram(medians) if medians else None,
        regression_targets=list(config.regression_targets),
        parameters=f"{parameters / 1e6:.1f} M" if parameters else "unknown",
        # the history and final metrics are in config.json and the evaluation tables; the rest, row by row
        recipe_rows=_flatten({k: v for k, v in (config.training_recipe or {}).items() if k not in ("history", "metrics")}),
        metrics=metrics,
        tables=evaluation_tables(metrics, config),
        confusion=confusion_table(metrics),
        paper_note=paper_note,
        paper_title=PAPER_TITLE,
        paper_url=PAPER_URL,
        bibtex=CAGE_BIBTEX,
        pipeline_task=TASK,
        license=license,
        reproduction=reproduction,
    )


__all__ = ["MetricsFileError", "load_metrics", "render_model_card", "eval_results", "evaluation_tables"]
