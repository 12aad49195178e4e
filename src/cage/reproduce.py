"""``cage reproduce affectnet|emotic ROOT --out RUN_DIR``: from a dataset copy to a staged (or pushed) Hub repo.

One resumable command chains the library functions the separate commands call:

1. ``data``: ``prepare_affectnet`` / ``prepare_emotic`` into ``RUN_DIR/data`` (main process only);
2. ``stage1``: the paper's ``combined`` objective from ImageNet trunk weights (``--backbone-weights``) or, on
   purpose, a random trunk (``--random-init``) -> ``RUN_DIR/stage1``;
3. ``stage2``: ``valence_arousal`` from the stage-1 model, class-balanced sampling (AffectNet), with the
   expression CE kept at ``--expression-loss-weight`` (default 0.1) so that the published model still gives a
   meaningful expression -> ``RUN_DIR/stage2``;
4. ``evaluate``: both stages on ``test`` (checkpoints were selected on ``validation`` only) ->
   ``RUN_DIR/eval/stage{1,2}_test.json`` and plots;
5. ``card``: the model card of the stage-2 model with both stages' numbers beside the paper's, the circumplex
   plot of its test predictions and the full recipe -> ``RUN_DIR/card/``;
6. ``hub``: the upload folder (``RUN_DIR/hub``, what ``cage push --dry-run`` writes, plus the plot); ``push``:
   with ``--push``, that folder in one commit.

``RUN_DIR/reproduce.json`` records the options, the hardware, the estimate and, per stage, its status
(``done``/``running``/``failed``), start and end times (UTC, ISO 8601), wall time and results. A rerun skips
every stage that is ``done`` and whose output is present, resumes an interrupted training stage from its
newest complete checkpoint (``checkpoints/*`` with ``cage_training_state.json``), redoes every stage after
one that ran again (their outputs came from older inputs), and refuses options that differ from the
recorded ones in anything that changes the result.

Several processes: ``accelerate launch -m cage reproduce ...``; every process runs this module, the main
process alone prepares data and writes files, the others wait at barriers. ``RUN_DIR`` must be on a file
system all processes see.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import logging
import math
import platform
import shutil
import sys
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

RECORD_FILE = "reproduce.json"
STAGES = ("data", "stage1", "stage2", "evaluate", "card", "hub", "push")
DATASETS = ("affectnet", "emotic")
# Published split sizes (../shared/reference/cage.md), for an estimate before the data is prepared.
KNOWN_TRAIN_SIZES = {"affectnet": 287_651, "emotic": 23_266}
# Options that do not change the result: a rerun may change them.
NOT_RECIPE = {"push", "private", "repo_id", "num_workers", "num_proc", "estimate_only", "estimate_steps", "root", "out"}
STATE_FILE = "cage_training_state.json"  # = cage.training.loop.STATE_FILE (not imported: keeps --help light)


class ReproduceError(RuntimeError):
    """A run that cannot go on; the message is one line saying why and what to do."""


@dataclass
class ReproduceOptions:
    """Everything ``cage reproduce`` does; recorded in ``reproduce.json`` and the model card.

    Training defaults are the paper's recipe (``cage.training.TrainingArguments``); ``max_steps`` /
    ``epochs`` apply to both stages unless ``stage2_*`` are given. ``expression_loss_weight`` is the weight of
    the expression CE inside stage 2's valence-arousal objective (0 = the paper, whose stage 2 ignores it).
    """

    dataset: str
    root: str
    out: str
    classes: int = 8
    repo_id: str = "cage/maxvit-va"
    push: bool = False
    private: bool = False
    backbone: str | None = None  # None: CageConfig's default trunk (torchvision maxvit_t, the paper's)
    backbone_weights: str | None = None
    random_init: bool = False
    image_size: int = 224
    val_fraction: float = 0.05
    data_seed: int = 0
    layout: str = "auto"
    images: str | None = None
    num_proc: int | None = None
    crop_format: str = "jpeg"
    calibrate: bool = True
    calibration_sample: int = 500
    detector: str = "auto"
    detector_model: str | None = None
    epochs: int = 20
    max_steps: int | None = None
    stage2_epochs: int | None = None
    stage2_max_steps: int | None = None
    batch_size: int = 128
    learning_rate: float = 5e-5
    mixed_precision: str = "no"
    seed: int = 42
    num_workers: int = 4
    checkpointing_steps: int | None = 500
    expression_loss_weight: float = 0.1
    augmentation: str = "paper"
    estimate_steps: int = 3
    estimate_only: bool = False

    def __post_init__(self) -> None:
        if self.backbone is None:
            from .configuration_cage import DEFAULT_BACKBONE

            self.backbone = DEFAULT_BACKBONE

    def recipe(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k not in NOT_RECIPE}


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def latest_checkpoint(output_dir: Path) -> Path | None:
    """The complete checkpoint of a training output folder with the highest optimizer step, or ``None``.

    A checkpoint is complete when its ``cage_training_state.json`` exists (the loop writes it after
    ``save_state``)."""
    best, best_step = None, -1
    for state_file in (output_dir / "checkpoints").glob(f"*/{STATE_FILE}"):
        try:
            step = int(json.loads(state_file.read_text())["global_step"])
        except (ValueError, KeyError, json.JSONDecodeError):
            continue
        if step > best_step:
            best, best_step = state_file.parent, step
    return best


def hardware() -> dict[str, Any]:
    """The machine this process runs on: CPU, GPUs, library versions."""
    import torch

    info: dict[str, Any] = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu_count": __import__("os").cpu_count(),
        "cuda_devices": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())],
    }
    try:
        import accelerate
        import timm
        import transformers

        info.update(transformers=transformers.__version__, timm=timm.__version__, accelerate=accelerate.__version__)
    except ImportError:  # pragma: no cover
        pass
    return info


class Run:
    """The record of one run directory (``reproduce.json``), written by the main process only."""

    def __init__(self, options: ReproduceOptions, state):
        self.options = options
        self.state = state  # accelerate.PartialState
        self.dir = Path(options.out)
        self.path = self.dir / RECORD_FILE
        self.record: dict[str, Any] = {}
        if self.path.is_file():
            self.record = json.loads(self.path.read_text())
            self._check_same_recipe()
        self.record.setdefault("stages", {})
        self.record["dataset"] = options.dataset
        self.record["options"] = asdict(options)
        self.record.setdefault("runs", [])
        self.record["runs"].append({"started": _now(), "command": sys.argv, "processes": state.num_processes})

    def _check_same_recipe(self) -> None:
        before = {k: v for k, v in self.record.get("options", {}).items() if k not in NOT_RECIPE}
        now = self.options.recipe()
        changed = sorted(k for k in set(before) | set(now) if before.get(k) != now.get(k))
        if changed:
            detail = ", ".join(f"{k}: {before.get(k)!r} -> {now.get(k)!r}" for k in changed)
            raise ReproduceError(
                f"{self.dir} was started with other options ({detail}); rerun with the recorded options "
                f"(see {self.path}) or choose a new --out"
            )

    def stage(self, name: str) -> dict[str, Any]:
        return self.record["stages"].setdefault(name, {"status": "pending"})

    def done(self, name: str) -> bool:
        return self.record["stages"].get(name, {}).get("status") == "done"

    def save(self) -> None:
        if self.state.is_main_process:
            self.dir.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(".json.tmp")
            from .evaluation.metrics import to_json_ready

            tmp.write_text(json.dumps(to_json_ready(self.record), indent=2) + "\n")
            tmp.replace(self.path)

    def log(self, message: str) -> None:
        if self.state.is_main_process:
            print(f"[cage reproduce] {message}", flush=True)


def _run_stage(run: Run, name: str, complete, body, stale: bool = False, output: Path | None = None) -> bool:
    """Run ``body()`` (returns a dict merged into the stage's record) unless the stage is done and
    ``complete()`` says its output is present; record status and times; return whether it ran.

    ``stale``: an earlier stage ran in this invocation, so this stage's output (``output``, removed first)
    was made from older inputs and is redone. Every process takes the same branch: the decision is made
    from files all processes see, after a barrier.
    """
    if stale and output is not None and run.state.is_main_process:
        shutil.rmtree(output, ignore_errors=True)
    run.state.wait_for_everyone()
    entry = run.stage(name)
    if run.done(name) and not stale and complete():
        entry["skipped_runs"] = entry.get("skipped_runs", 0) + 1
        run.log(f"{name}: complete, skipped")
        run.save()
        return False
    if stale and run.done(name):
        run.log(f"{name}: redone (an earlier stage ran again)")
    kept = {k: entry[k] for k in ("attempts", "skipped_runs") if k in entry}  # results of earlier attempts go
    entry.clear()
    entry.update(kept, status="running", started=_now(), attempts=kept.get("attempts", 0) + 1)
    run.save()
    start = time.perf_counter()
    try:
        result = body() or {}
    except BaseException as error:
        entry.update(status="failed", error=f"{type(error).__name__}: {error}".splitlines()[0], finished=_now())
        run.save()
        raise
    run.state.wait_for_everyone()
    entry.update(result)
    entry.update(status="done", finished=_now(), wall_time_s=round(time.perf_counter() - start, 1))
    run.save()
    run.log(f"{name}: done in {entry['wall_time_s']} s")
    return True


# ----------------------------------------------------------------------------------------------- stages


def _prepare(run: Run) -> dict[str, Any]:
    options = run.options
    data_dir = run.dir / "data"
    result: dict[str, Any] = {}
    with run.state.main_process_first():
        if run.state.is_main_process:
            from .data.stats import REPORT_FILE

            kwargs: dict[str, Any] = dict(num_proc=options.num_proc, crop_format=options.crop_format, overwrite=True)
            if options.dataset == "affectnet":
                from .data.affectnet import prepare_affectnet

                loaded, stats, problems = prepare_affectnet(
                    options.root, data_dir, classes=options.classes, val_fraction=options.val_fraction,
                    seed=options.data_seed, layout=options.layout, calibrate=options.calibrate,
                    calibration_sample=options.calibration_sample, detector=options.detector,
                    detector_model=options.detector_model, **kwargs,
                )  # fmt: skip
            else:
                from .data.emotic import prepare_emotic

                loaded, stats, problems = prepare_emotic(
                    options.root, data_dir, layout=options.layout, images=options.images, **kwargs
                )
            print(problems.summary({k: len(v) for k, v in loaded.items()}), file=sys.stderr)
            result = {
                "output": str(data_dir),
                "splits": {k: len(v) for k, v in loaded.items()},
                "problem_counts": stats.get("problems", {}).get("counts"),
                "report": str(data_dir / REPORT_FILE),
            }
    return result


def _data_complete(run: Run) -> bool:
    from .data.stats import STATS_FILE

    data_dir = run.dir / "data"
    return (data_dir / STATS_FILE).is_file() and (data_dir / "dataset_dict.json").is_file()


def _model_complete(folder: Path) -> bool:
    config = folder / "config.json"
    if not (config.is_file() and (folder / "model.safetensors").is_file()):
        return False
    return json.loads(config.read_text()).get("weights_status") == "trained"


def _label_set_name(options: ReproduceOptions) -> str:
    """The run's label set, a name in ``configuration_cage.LABEL_SETS``: ``affectnet8``/``affectnet7`` by
    ``--classes`` for AffectNet, ``emotic`` for EMOTIC."""
    from .configuration_cage import LABEL_SETS, affectnet_label_set

    return affectnet_label_set(options.classes).name if options.dataset == "affectnet" else LABEL_SETS[options.dataset].name


def training_arguments(options: ReproduceOptions, run_dir: Path, stage: int):
    """The ``TrainingArguments`` of stage 1 (``combined``) or stage 2 (``valence_arousal`` from stage 1)."""
    from .configuration_cage import LABEL_SETS
    from .training.arguments import TrainingArguments

    common = dict(
        data=str(run_dir / "data"), output_dir=str(run_dir / f"stage{stage}"), backbone=options.backbone,
        image_size=options.image_size, batch_size=options.batch_size, learning_rate=options.learning_rate,
        mixed_precision=options.mixed_precision, seed=options.seed, num_workers=options.num_workers,
        checkpointing_steps=options.checkpointing_steps, augmentation=options.augmentation, evaluate_test=False,
    )  # fmt: skip
    if stage == 1:
        return TrainingArguments(
            objective="combined", backbone_weights=options.backbone_weights, random_init=options.random_init,
            epochs=options.epochs, max_steps=options.max_steps, **common,
        )  # fmt: skip
    return TrainingArguments(
        objective="valence_arousal", init_from=str(run_dir / "stage1"), balanced=not LABEL_SETS[_label_set_name(options)].multi_label,
        expression_loss_weight=options.expression_loss_weight,
        epochs=options.stage2_epochs or options.epochs,
        max_steps=options.stage2_max_steps if options.stage2_max_steps is not None else options.max_steps,
        **common,
    )  # fmt: skip


def _train_stage(run: Run, stage: int) -> dict[str, Any]:
    from .training.loop import train

    args = training_arguments(run.options, run.dir, stage)
    checkpoint = latest_checkpoint(Path(args.output_dir))
    result: dict[str, Any] = {"output": args.output_dir, "objective": args.objective}
    if checkpoint is not None:
        args.resume_from_checkpoint = str(checkpoint)
        run.log(f"stage{stage}: resuming from {checkpoint}")
        result["resumed_from"] = str(checkpoint)
    if stage == 2:
        weights = run.dir / "stage1" / "model.safetensors"
        result["init_from"] = {"folder": str(run.dir / "stage1"), "model_sha256": _sha256(weights)}
    recipe = train(args, end_training=False)  # the process group serves the next stages too
    result.update(
        arguments=args.to_dict(), optimizer_steps=recipe["optimizer_steps"], best_step=recipe["best_step"],
        selection_metric=recipe["selection_metric"], validation=recipe["metrics"]["validation"],
        effective_batch_size=recipe["effective_batch_size"], num_processes=recipe["num_processes"],
    )  # fmt: skip
    return result


def _evaluate(run: Run) -> dict[str, Any]:
    from .evaluation.runner import evaluate_model

    result = {}
    for stage in (1, 2):
        output = run.dir / "eval" / f"stage{stage}_test.json"
        metrics = evaluate_model(
            run.dir / f"stage{stage}", run.dir / "data", split="test", batch_size=run.options.batch_size,
            output=output, plots=run.dir / "eval" / f"stage{stage}_plots", mixed_precision=run.options.mixed_precision,
        )  # fmt: skip
        result[f"stage{stage}"] = {"metrics_file": str(output), "test": metrics}
    return result


# --------------------------------------------------------------------------------------------------- card

CARD_METRICS = (
    ("expression", "accuracy"), ("expression", "weighted_f1"), ("expression", "macro_f1"),
    ("valence", "rmse"), ("valence", "ccc"), ("arousal", "rmse"), ("arousal", "ccc"),
    ("dominance", "rmse"), ("dominance", "ccc"),
    ("pooled_valence_arousal", "rmse"), ("pooled_valence_arousal", "ccc"),
    ("multilabel", "mean_average_precision"), ("multilabel", "top3_accuracy"),
)  # fmt: skip


def _fmt(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def reproduction_markdown(run: Run) -> str:
    """The card's "Reproduction" section: both stages on ``test`` beside the paper, the circumplex plot, data
    statistics, framing, seeds, hardware, wall times and every option."""
    from .data.stats import load_stats
    from .hub.card import METRIC_NAMES, METRIC_SECTIONS, dataset_name
    from .hub.paper_results import PAPER_PER_DIMENSION_AFFECTNET8, PAPER_RESULTS
    from .configuration_cage import LABEL_SETS, CageConfig

    record, options = run.record, run.options
    stages = record["stages"]
    evaluation = stages["evaluate"]
    dataset = dataset_name(CageConfig.from_pretrained(run.dir / "stage2"))
    test = {s: evaluation[f"stage{s}"]["test"] for s in (1, 2)}
    columns = [
        (f"stage 1: combined (this run, test n = {test[1]['num_examples']})", test[1]),
        ("paper: combined", PAPER_RESULTS.get((dataset, "combined"), {})),
        (f"stage 2: valence-arousal, published (this run, test n = {test[2]['num_examples']})", test[2]),
        ("paper: valence-arousal", PAPER_RESULTS.get((dataset, "valence_arousal"), {})),
    ]
    if dataset == LABEL_SETS["affectnet8"].title:
        columns += list(PAPER_PER_DIMENSION_AFFECTNET8.items())
    shown = [(section, name) for section, name in CARD_METRICS
             if any(test[s].get(section, {}).get(name) is not None for s in (1, 2))]  # fmt: skip
    # Paper columns without a single number for these metrics are left out.
    columns = [(title, column) for i, (title, column) in enumerate(columns)
               if i in (0, 2) or any(column.get(sec, {}).get(n) is not None for sec, n in shown)]  # fmt: skip
    rows = []
    for section, name in shown:
        values = [column.get(section, {}).get(name) for _, column in columns]
        title = f"{METRIC_SECTIONS[section]} {METRIC_NAMES.get(name, name)}"
        rows.append(f"| {title} | " + " | ".join(map(_fmt, values)) + " |")
    header = "| metric | " + " | ".join(name for name, _ in columns) + " |"
    lines = [
        "## Reproduction (`cage reproduce`)",
        "",
        f"These weights were made by `cage reproduce {options.dataset}` in one resumable run: data preparation, "
        "stage 1 (the paper's `combined` objective), stage 2 (`valence_arousal` from the stage-1 model"
        + (", class-balanced sampling" if options.dataset == "affectnet" else "")
        + f", the expression cross-entropy kept with weight {options.expression_loss_weight} so that the expression "
        "output stays meaningful; the paper's stage 2 drops it), evaluation of both stages on `test`. Checkpoints "
        "were selected on `validation` (a hold-out of the training set) only. The paper's columns are its "
        "published numbers; `–`: not reported. F1 (weighted) is the paper's F1.",
        "",
        header,
        "|" + "---|" * (len(columns) + 1),
        *rows,
        "",
        "![Stage 2 predictions (orange) and labels (blue) on the circumplex, test split](circumplex.png)",
        "",
        "### Data",
        "",
    ]
    stats = load_stats(run.dir / "data")
    lines.append("| split | examples | classes (counts) |")
    lines.append("|---|---|---|")
    counts = stats.get("class_counts") or stats.get("category_counts") or {}
    for split, size in stats.get("num_examples", {}).items():
        lines.append(f"| {split} | {size} | {json.dumps(counts.get(split, {}))} |")
    problems = stats.get("problems", {}).get("counts", {})
    lines += ["", "Problems found while preparing (dropped or fixed, listed in `cage_report.jsonl`): "
              f"{json.dumps(problems)}.", ""]  # fmt: skip
    processor = json.loads((run.dir / "stage2" / "preprocessor_config.json").read_text())
    framing_keys = ("crop_target", "crop_margin", "size", "resample", "image_mean", "image_std")
    framing = {k: v for k, v in processor.items() if k in framing_keys or "calib" in k or "framing" in k}
    lines += ["### Framing", "", f"Saved processor: `{json.dumps(framing)}`.", ""]
    lines += ["### Stages", "",
              "| stage | status | optimizer steps | best step (validation) | started | finished | wall time (s) |",
              "|---|---|---|---|---|---|---|"]  # fmt: skip
    for name in ("data", "stage1", "stage2", "evaluate"):
        entry = stages.get(name, {})
        lines.append(f"| {name} | {entry.get('status', '–')} | {entry.get('optimizer_steps', '–')} | "
                     f"{entry.get('best_step', '–')} | {entry.get('started', '–')} | "
                     f"{entry.get('finished', '–')} | "
                     f"{entry.get('wall_time_s', '–')} |")  # fmt: skip
    hw = record.get("hardware", {})
    lines += [
        "",
        f"Hardware: {record['runs'][-1]['processes']} process(es); GPUs {hw.get('cuda_devices') or 'none (CPU)'}; "
        f"torch {hw.get('torch')}, transformers {hw.get('transformers')}, timm {hw.get('timm')}, "
        f"accelerate {hw.get('accelerate')}; {hw.get('platform')}. Seeds: data split {options.data_seed}, "
        f"training {options.seed}. Stage 2 started from the stage-1 weights with SHA-256 "
        f"`{stages['stage2'].get('init_from', {}).get('model_sha256', '–')}`.",
        "",
        "Every option of the run (`reproduce.json` in this repository has the full record):",
        "",
        "```json",
        json.dumps(options.recipe(), indent=2),
        "```",
    ]
    return "\n".join(lines)


def _card(run: Run) -> dict[str, Any]:
    if run.state.is_main_process:
        from .hub.card import load_metrics, render_model_card

        card_dir = run.dir / "card"
        shutil.rmtree(card_dir, ignore_errors=True)
        card_dir.mkdir(parents=True)
        shutil.copyfile(run.dir / "eval" / "stage2_plots" / "circumplex.png", card_dir / "circumplex.png")
        card = render_model_card(
            run.dir / "stage2", run.options.repo_id, load_metrics(run.dir / "eval" / "stage2_test.json"),
            reproduction=reproduction_markdown(run),
        )  # fmt: skip
        card.save(card_dir / "README.md")
    return {"output": str(run.dir / "card")}


def _hub(run: Run) -> dict[str, Any]:
    if run.state.is_main_process:
        from .hub.push import stage_model_folder

        hub_dir = run.dir / "hub"
        shutil.rmtree(hub_dir, ignore_errors=True)
        stage_model_folder(
            run.dir / "stage2", hub_dir, run.options.repo_id, metrics=run.dir / "eval" / "stage2_test.json",
            reproduction=reproduction_markdown(run), extra_files=[run.dir / "card" / "circumplex.png"],
        )  # fmt: skip
        shutil.copyfile(run.path, hub_dir / RECORD_FILE)
    return {"output": str(run.dir / "hub"), "repo_id": run.options.repo_id}


def _push(run: Run) -> dict[str, Any]:
    url = None
    if run.state.is_main_process:
        from .hub.push import upload_staged_folder

        url = upload_staged_folder(run.dir / "hub", run.options.repo_id, private=run.options.private,
                                   commit_message=f"cage reproduce {run.options.dataset}")  # fmt: skip
        run.log(f"pushed {run.dir / 'hub'} to {url}")
    return {"commit_url": url, "repo_id": run.options.repo_id}


# ----------------------------------------------------------------------------------------------- estimate


def measure_throughput(options: ReproduceOptions, label_set: str, steps: int = 3) -> dict[str, Any]:
    """Training images/s of one process on this machine's accelerator: ``steps`` timed forward/backward/AdamW
    steps (after one warm-up step) of the configured model on random inputs, batch ``min(batch_size, 8)`` on
    CPU and ``batch_size`` on GPU, with the run's mixed precision. Data loading is not included."""
    import torch

    from .modeling_cage import CageForExpressionInference
    from .presets import make_config

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    batch = options.batch_size if device.type == "cuda" else min(options.batch_size, 8)
    config = make_config(label_set, backbone=options.backbone, image_size=options.image_size)
    model = CageForExpressionInference(config).to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=options.learning_rate)
    generator = torch.Generator().manual_seed(0)
    pixels = torch.randn(batch, 3, options.image_size, options.image_size, generator=generator).to(device)
    if config.multi_label:
        labels = (torch.rand(batch, config.num_labels, generator=generator) > 0.5).float().to(device)
    else:
        labels = torch.randint(0, config.num_labels, (batch,), generator=generator).to(device)
    targets = (torch.rand(batch, len(config.regression_targets), generator=generator) * 2 - 1).to(device)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(options.mixed_precision)

    def step() -> None:
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            loss = model(pixel_values=pixels, labels=labels, regression_labels=targets).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()

    step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    return {"images_per_s": batch * steps / seconds, "device": str(device), "batch": batch, "steps": steps,
            "mixed_precision": options.mixed_precision}  # fmt: skip


def estimate(options: ReproduceOptions, throughput: float, num_processes: int, splits: dict[str, int] | None) -> dict:
    """GPU-time estimate per training stage: images seen / (throughput x processes), assuming linear scaling
    over processes; validation (once per epoch) counted at a third of a training image. ``splits`` (sizes)
    from the prepared data, else the published training-set size."""
    if splits:
        train, validation = splits.get("train", 0), splits.get("validation", 0)
        source = "prepared data"
    else:
        total = KNOWN_TRAIN_SIZES[options.dataset]
        validation = round(total * options.val_fraction) if options.dataset == "affectnet" else 3_315
        train = total - (validation if options.dataset == "affectnet" else 0)
        source = "published dataset size (data not prepared yet)"
    steps_per_epoch = math.ceil(train / (options.batch_size * num_processes))
    result = {"train_examples": train, "validation_examples": validation, "sizes_from": source,
              "images_per_s_per_process": throughput, "num_processes": num_processes}  # fmt: skip
    for stage, epochs, max_steps in (
        ("stage1", options.epochs, options.max_steps),
        ("stage2", options.stage2_epochs or options.epochs,
         options.stage2_max_steps if options.stage2_max_steps is not None else options.max_steps),
    ):  # fmt: skip
        steps = max_steps if max_steps else epochs * steps_per_epoch
        epochs_run = math.ceil(steps / steps_per_epoch)
        images = steps * options.batch_size * num_processes + epochs_run * validation / 3
        result[stage] = {"optimizer_steps": steps, "hours": images / (throughput * num_processes) / 3600}
        result[stage]["hours_on_8"] = images / (throughput * 8) / 3600
    return result


def _print_estimate(run: Run, est: dict[str, Any], measured: dict[str, Any]) -> None:
    run.log(
        f"ESTIMATE (not a measurement of the run): {measured['steps']} timed training steps of "
        f"{run.options.backbone} at {run.options.image_size} px, batch {measured['batch']}, "
        f"mixed precision {measured['mixed_precision']} on {measured['device']} give "
        f"{est['images_per_s_per_process']:.1f} images/s per process (random inputs, no data loading); "
        f"{est['train_examples']} training / {est['validation_examples']} validation examples ({est['sizes_from']}); "
        f"scaling over processes assumed linear"
    )
    for stage in ("stage1", "stage2"):
        run.log(
            f"  {stage}: {est[stage]['optimizer_steps']} optimizer steps ~ {est[stage]['hours']:.2f} h on "
            f"{est['num_processes']} process(es), ~ {est[stage]['hours_on_8']:.2f} h on 8 like this one"
        )


# ------------------------------------------------------------------------------------------------- driver


def reproduce(options: ReproduceOptions) -> dict[str, Any]:
    """Run (or resume) every stage of ``options`` into ``options.out``; return the ``reproduce.json`` record.

    Raises:
        ReproduceError: bad options, or a run directory started with other options.
        cage.extras.MissingExtraError: the ``plots`` extra (matplotlib) is not installed.
        cage.data.PrepareError, ValueError, FileNotFoundError: from preparation and training (also recorded
            as the stage's ``error``).
        cage.hub.HubPushError: from staging or ``--push``.
    """
    from accelerate import PartialState

    if options.dataset not in DATASETS:
        raise ReproduceError(f"dataset must be one of {DATASETS}, got {options.dataset!r}")
    if not options.backbone_weights and not options.random_init:
        raise ReproduceError(
            f"no trunk weights: pass --backbone-weights PATH (ImageNet weights of {options.backbone}: torchvision's "
            "maxvit_t-bc5ab103.pth for maxvit_t, or a timm checkpoint such as model.safetensors from the Hub repo "
            "timm/<name>), or --backbone-weights download (online); --random-init trains a random trunk on purpose"
        )
    weights_file = options.backbone_weights not in (None, "download")
    if weights_file and not Path(options.backbone_weights).is_file():
        raise ReproduceError(f"--backbone-weights {options.backbone_weights} does not exist")
    if not Path(options.root).is_dir():
        raise ReproduceError(f"{options.root} is not a folder (the {options.dataset} copy)")
    from .extras import require_extra

    require_extra("plots", "cage reproduce (evaluation plots, the card's circumplex figure)")  # before any stage
    if options.push:
        from huggingface_hub import is_offline_mode

        from .hub.push import check_repo_id

        check_repo_id(options.repo_id)
        if is_offline_mode():
            raise ReproduceError("--push needs the network but HF_HUB_OFFLINE=1 is set (unset it, or drop --push)")
    from accelerate.utils import parse_flag_from_env

    # As AcceleratorState does: `accelerate launch` on CPUs sets ACCELERATE_USE_CPU (gloo processes).
    state = PartialState(cpu=parse_flag_from_env("ACCELERATE_USE_CPU"))
    run = Run(options, state)
    run.record["hardware"] = hardware()
    run.save()

    # The estimate, before any training.
    if not run.done("stage2") or options.estimate_only:
        label_set = _label_set_name(options)
        measured = measure_throughput(options, label_set, options.estimate_steps)
        splits = run.stage("data").get("splits") if run.done("data") else None
        est = estimate(options, measured["images_per_s"], state.num_processes, splits)
        run.record["estimate"] = {**est, "measured": measured}
        _print_estimate(run, est, measured)
        run.save()
        if options.estimate_only:
            return run.record

    ran = _run_stage(run, "data", lambda: _data_complete(run), lambda: _prepare(run))
    for stage in (1, 2):
        folder = run.dir / f"stage{stage}"
        ran |= _run_stage(run, f"stage{stage}", lambda: _model_complete(folder), lambda: _train_stage(run, stage),
                          stale=ran, output=folder)  # fmt: skip
    evaluated = lambda: all((run.dir / "eval" / f"stage{s}_test.json").is_file() for s in (1, 2))  # noqa: E731
    ran |= _run_stage(run, "evaluate", evaluated, lambda: _evaluate(run), stale=ran, output=run.dir / "eval")
    ran |= _run_stage(run, "card", lambda: (run.dir / "card" / "README.md").is_file(), lambda: _card(run), stale=ran)
    ran |= _run_stage(run, "hub", lambda: (run.dir / "hub" / "README.md").is_file(), lambda: _hub(run), stale=ran)
    if options.push:  # pushed once per staged folder
        _run_stage(run, "push", lambda: bool(run.stage("push").get("commit_url")), lambda: _push(run), stale=ran)
    run.record["runs"][-1]["finished"] = _now()
    run.save()
    pushed = "" if options.push else " (not pushed: --push)"
    run.log(f"finished: {run.path}; upload folder {run.dir / 'hub'}{pushed}")
    state.wait_for_everyone()
    state.destroy_process_group()
    return run.record


def options_from_namespace(namespace) -> ReproduceOptions:
    names = {f.name for f in fields(ReproduceOptions)}
    return ReproduceOptions(**{k: v for k, v in vars(namespace).items() if k in names})


# ---------------------------------------------------------------------------------------------------- CLI


def add_reproduce_parser(subparsers) -> None:
    """Register ``cage reproduce affectnet|emotic ROOT --out RUN_DIR [...]``."""
    parser = subparsers.add_parser(
        "reproduce",
        help="prepare -> stage 1 -> stage 2 -> evaluate -> card -> Hub upload, in one resumable command",
        description="From a licensed AffectNet or EMOTIC copy to a staged (or, with --push, uploaded) Hub model "
        "repository: prepare the data, train stage 1 (combined) and stage 2 (valence_arousal from stage 1, "
        "class-balanced), evaluate both on test, render the card, stage the upload. Rerun the same command to "
        "resume: finished stages are skipped, an interrupted training stage continues from its last checkpoint. "
        "Several GPUs: `accelerate launch -m cage reproduce ...`. Progress: RUN_DIR/reproduce.json.",
    )
    add = parser.add_argument
    add("dataset", choices=DATASETS)
    add("root", help="the dataset folder (any layout `cage prepare` reads)")
    add("--out", required=True, help="the run directory (created; rerun with the same one to resume)")
    add("--classes", type=int, default=8, choices=[8, 7], help="AffectNet-8 or -7")
    add("--repo-id", default="cage/maxvit-va", help="Hub repository of the upload (default: %(default)s)")
    add("--push", action="store_true", help="upload RUN_DIR/hub in one commit at the end (default: stage only)")
    add("--private", action="store_true", help="create the --push repository private")
    weights = parser.add_mutually_exclusive_group()
    weights.add_argument(
        "--backbone-weights",
        default=None,
        help="ImageNet weights of the trunk: torchvision's maxvit_t-bc5ab103.pth for the default maxvit_t, a timm "
        "checkpoint (.safetensors) for a timm trunk, or 'download' (online)",
    )
    weights.add_argument("--random-init", action="store_true", help="train stage 1 from a RANDOM trunk (rehearsals)")
    add("--backbone", default=None, help="trunk: maxvit_t (torchvision's, the paper's; the default) or a timm model name")
    add("--image-size", type=int, default=224)
    add("--val-fraction", type=float, default=0.05, help="AffectNet hold-out for selection (default: %(default)s)")
    add("--data-seed", type=int, default=0, help="seed of the hold-out split")
    add("--layout", default="auto", help="dataset layout (see `cage prepare`; default: detect)")
    add("--images", default=None, help="EMOTIC: folder the annotations' paths are relative to")
    add("--num-proc", type=int, default=None, help="processes preparing the data")
    add("--crop-format", default="jpeg", choices=["jpeg", "png"])
    add("--no-calibrate", dest="calibrate", action="store_false", help="AffectNet: skip the framing calibration")
    add("--calibration-sample", type=int, default=500, help="training crops the framing calibration detects on")
    add("--detector", default="auto", choices=["auto", "yunet", "dlib"],
        help="detector(s) the framing is calibrated for (auto: YuNet where its model file can be had, and dlib)")
    add("--detector-model", default=None, help="YuNet's ONNX file")
    add("--epochs", type=int, default=20, help="epochs of each stage (default: %(default)s, the paper's)")
    add("--max-steps", type=int, default=None, help="optimizer steps of each stage; overrides --epochs")
    add("--stage2-epochs", type=int, default=None, help="stage 2 only (default: --epochs)")
    add("--stage2-max-steps", type=int, default=None, help="stage 2 only (default: --max-steps)")
    add("--batch-size", type=int, default=128, help="per device (default: %(default)s)")
    add("--learning-rate", type=float, default=5e-5)
    add("--mixed-precision", default="no", choices=["no", "bf16", "fp16"], help="the paper used fp16 on GPU")
    add("--seed", type=int, default=42, help="training seed")
    add("--num-workers", type=int, default=4, help="data loader workers (0: bit-exact resume)")
    add("--checkpointing-steps", type=int, default=500, help="save a resumable checkpoint every N steps")
    add(
        "--expression-loss-weight",
        type=float,
        default=0.1,
        help="weight of the expression CE in stage 2 (0: the paper's stage 2, whose expression output drifts)",
    )
    add("--augmentation", default="paper", choices=["paper", "none"])
    add("--estimate-steps", type=int, default=3, help="timed training steps for the GPU-time estimate")
    add("--estimate-only", action="store_true", help="print the GPU-time estimate and stop")
    parser.set_defaults(handler=run_reproduce)


def run_reproduce(args) -> int:
    """``cage reproduce`` handler: 0 when every stage is done, 2 with one line on stderr otherwise."""
    try:
        reproduce(options_from_namespace(args))
    except (ReproduceError, ValueError, FileNotFoundError, OSError, RuntimeError) as error:
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        logger.debug("cage reproduce failed", exc_info=True)  # the traceback with `cage -v`
        print(f"cage reproduce: error: {message}", file=sys.stderr)
        return 2
    return 0
