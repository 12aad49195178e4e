"""Build the model bundled with cage (``src/cage/pretrained/<name>/``) from a ``cage train`` output folder.

    python scripts/build_bundled_model.py --run runs/r10t48 --data data/ferplus \
        --train-log train.log --hardware "2-core AMD EPYC (AVX2), no GPU"

What it writes (everything the package ships for the model; no Python files, no pickles):
- ``model.safetensors``, ``config.json`` (without ``auto_map``/``custom_pipelines``: the package's own classes
  load it; ``cage push`` adds the remote code when publishing) and ``preprocessor_config.json`` (framing for
  YuNet and dlib, gray, 48 px source resolution) copied from the run;
- ``evaluation.json``: ``cage evaluate`` on the whole FER2013Valid (the FER+ protocol's majority faces) and on
  the fixed slice the tests re-measure (the first ``--slice`` rows of FER2013Valid/label.csv);
- ``README.md``: the model card (``cage.hub.card.render_model_card``) with a "How this model was trained"
  section: data, the exact commands, hardware, wall time, both accuracies.

The run's ``training_recipe`` gains ``data.dataset``/``data.terms`` from the prepared data's stats where the
run predates their recording.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SLICE_FOLDER = "FER2013Valid"


def fer_slice_metrics(model_dir: Path, ferplus_root: Path, count: int) -> dict:
    """``cage evaluate`` metrics of ``model_dir`` on the first ``count`` rows of FER2013Valid (FER+ protocol)."""
    from cage.data.ferplus import copy_ferplus_subset, prepare_ferplus
    from cage.evaluation.runner import evaluate_model

    with tempfile.TemporaryDirectory() as scratch:
        root = copy_ferplus_subset(ferplus_root, Path(scratch) / "FERPlus", {"FER2013Train": 32, SLICE_FOLDER: count})
        prepare_ferplus(root, Path(scratch) / "data", calibrate=False)
        return evaluate_model(model_dir, Path(scratch) / "data", split="validation")


def training_section(config: dict, metrics: dict, slice_metrics: dict, slice_rows: int, hardware: str,
                     wall_time: str, throughput: str) -> str:  # fmt: skip
    from cage.training.arguments import TrainingArguments

    recipe = config["training_recipe"]
    arguments = TrainingArguments(**recipe["arguments"])
    arguments.data, arguments.output_dir = "data/ferplus", "runs/my-ferplus-model"
    expression, sliced = metrics["expression"], slice_metrics["expression"]
    splits = recipe["data"]["splits"]
    return f"""## How this model was trained

Trained by cage's own `cage train` on FER+ (Barsoum et al., ICMI 2016: FER2013's faces, each relabelled by 10
crowd annotators), from random initialisation (no pre-trained weights could be fetched where it was trained).

- **Data.** FER2013Train prepared by `cage prepare ferplus`: {splits['train']} training faces (the FER+ paper's
  cross-entropy mode: faces without a clear vote, or where unknown/not-a-face leads, dropped); target = the
  vote distribution over the 8 emotions, mapped to AffectNet-8 by name. Every choice (recipe, checkpoint) was
  made on FER2013Valid ({splits['validation']} faces); the FER+ test split (FER2013Test) was not available.
- **Recipe.** `{arguments.backbone}` at {arguments.image_size} x {arguments.image_size} px (gray faces at
  their native 48 px), {arguments.epochs} epochs, batch {arguments.batch_size}, AdamW learning rate
  {arguments.learning_rate} with {arguments.warmup_steps} warm-up steps then cosine decay, weight decay
  {arguments.weight_decay}, augmentation `{arguments.augmentation}` (flip, small affine jitter,
  brightness/contrast, random erasing), soft-label cross-entropy plus the CAGE valence/arousal loss
  (objective `{arguments.objective}`) on the derived targets, no class weights; checkpoint kept: the best
  FER2013Valid accuracy (after epoch {recipe['best_epoch'] + 1} of {arguments.epochs}, step {recipe['best_step']}).
- **Hardware and time.** {hardware}: {wall_time} wall time for the training command, {throughput}.
- **Commands** (from a cage checkout beside `../shared`; the second is recorded in `config.training_recipe`):

```bash
cage prepare ferplus ../shared/datasets/ferplus --out data/ferplus
{arguments.to_command()}
cage evaluate --model runs/my-ferplus-model --data data/ferplus --split validation --plots plots/
```

- **FER2013Valid, FER+ protocol (majority mode).** Accuracy **{100 * expression['accuracy']:.2f} %** on the
  {expression['num_examples']} faces with a majority emotion (of {metrics['num_examples']} prepared), macro F1
  {expression['macro_f1']:.3f}, weighted F1 {expression['weighted_f1']:.3f}. On the fixed check slice (the first
  {slice_rows} rows of FER2013Valid/label.csv, {sliced['num_examples']} faces with a majority emotion), which
  cage's tests re-measure: **{100 * sliced['accuracy']:.2f} %**. For scale: the FER+ paper's VGG13 from scratch
  at 64 px reaches about 84-85 % on FER2013Test; face-pretrained methods 88-92 %.
- **Valence and arousal** are trained on and compared with DERIVED targets (the vote shares times AffectNet's
  class centroids), so their CCC/RMSE above measure agreement with the expression mix, not with human
  valence/arousal ratings.
"""


def wall_time_of(log_text: str) -> tuple[str, str]:
    """(wall time, throughput) from a ``cage train`` log: the progress bar's last elapsed time, and the
    range of per-epoch training images/s."""
    text = log_text.replace("\r", "\n")
    elapsed = re.findall(r"\| (\d+)/(\d+) \[(\d+(?::\d+)+)<", text)
    speeds = [float(v) for v in re.findall(r", (\d+(?:\.\d+)?) training images/s", text)]
    if not elapsed or not speeds:
        raise SystemExit("the training log has no progress bar or no images/s lines: pass the `cage train` log")
    parts = [int(p) for p in elapsed[-1][2].split(":")]
    seconds = sum(p * 60**i for i, p in enumerate(reversed(parts)))
    wall = f"{seconds // 3600} h {seconds % 3600 // 60} min" if seconds >= 3600 else f"{seconds // 60} min"
    return wall, f"{min(speeds):.0f}-{max(speeds):.0f} training images/s per epoch"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", required=True, type=Path, help="the `cage train` output folder (best model on top)")
    parser.add_argument("--data", required=True, type=Path, help="the prepared FER+ folder the run trained on")
    parser.add_argument("--ferplus-root", type=Path, default=REPO.parent / "shared" / "datasets" / "ferplus")
    parser.add_argument("--train-log", required=True, type=Path, help="the run's log (stdout+stderr of cage train)")
    parser.add_argument("--hardware", required=True, help="where it was trained, in words")
    parser.add_argument("--slice", type=int, default=500, help="rows of the FER2013Valid check slice")
    parser.add_argument("--out", type=Path, default=None, help="default: the package's bundled model folder")
    args = parser.parse_args(argv)

    from cage.evaluation.runner import evaluate_model
    from cage.hub.card import render_model_card
    from cage.model_folder import BUNDLED_MODEL_DIR, BUNDLED_MODEL_NAME

    out = args.out or BUNDLED_MODEL_DIR
    config = json.loads((args.run / "config.json").read_text(encoding="utf-8"))
    if config.get("weights_status") != "trained":
        raise SystemExit(f"{args.run} holds no trained model (weights_status {config.get('weights_status')!r})")
    stats = json.loads((args.data / "cage_stats.json").read_text(encoding="utf-8"))
    for key in ("auto_map", "custom_pipelines"):
        config.pop(key, None)
    data = config["training_recipe"]["data"]
    data.setdefault("dataset", stats.get("dataset"))
    data.setdefault("terms", stats.get("terms"))

    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".bundled-", dir=out.parent))  # renamed into place when complete
    staging.chmod(0o755)
    shutil.copyfile(args.run / "model.safetensors", staging / "model.safetensors")
    shutil.copyfile(args.run / "preprocessor_config.json", staging / "preprocessor_config.json")
    (staging / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")

    print("evaluating on FER2013Valid ...", file=sys.stderr)
    metrics = evaluate_model(staging, args.data, split="validation")
    print(f"evaluating on the first {args.slice} rows of FER2013Valid ...", file=sys.stderr)
    slice_metrics = fer_slice_metrics(staging, args.ferplus_root, args.slice)
    evaluation = {
        "validation": metrics,
        "check_slice": {"rows": f"the first {args.slice} rows of FER2013Valid/label.csv", "count": args.slice,
                        "metrics": slice_metrics},  # fmt: skip
    }
    (staging / "evaluation.json").write_text(json.dumps(evaluation, indent=2) + "\n", encoding="utf-8")
    metrics_path = staging / "metrics_validation.json"
    metrics_path.write_text(json.dumps(metrics), encoding="utf-8")
    wall, throughput = wall_time_of(args.train_log.read_text(encoding="utf-8", errors="replace"))
    section = training_section(config, metrics, slice_metrics, args.slice, args.hardware, wall, throughput)
    from cage.hub.card import load_metrics

    card = render_model_card(staging, f"cage/{BUNDLED_MODEL_NAME}", metrics=load_metrics(metrics_path),
                             reproduction=section)  # fmt: skip
    metrics_path.unlink()
    card.save(staging / "README.md")
    if out.exists():
        shutil.rmtree(out)
    staging.rename(out)
    expression = metrics["expression"]
    print(f"wrote {out}: FER2013Valid accuracy {100 * expression['accuracy']:.2f} % "
          f"({expression['num_examples']} faces), check slice {100 * slice_metrics['expression']['accuracy']:.2f} %")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
