"""Does stage 2 keep a meaningful expression output? Stage 1 (combined) on a learnable synthetic task, then
stage 2 (valence_arousal from stage 1, class-balanced) with ``expression_loss_weight`` 0 (the paper) and 0.1
(``cage reproduce``'s default), side by side in one run; test accuracy / macro F1 and mean CCC of each.

Synthetic data (tests/fixtures_training.py): brightness encodes valence, a red-blue tint arousal, a stripe
pattern one of 8 classes; timm's ``test_byobnet`` at 32 px on CPU. Not AffectNet: it shows the mechanism
(drift of the expression output without its loss), not the size of the effect on faces.

    python scripts/stage2_expression.py --steps 150 --output scripts/results/stage2_expression.md
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "tests")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=150, help="optimizer steps per stage")
    parser.add_argument("--output", default=None, help="also write the Markdown table here")
    args = parser.parse_args()

    import torch
    from accelerate.state import AcceleratorState, GradientState
    from fixtures_training import write_synthetic_fixture

    from cage.training import TrainingArguments, train

    torch.set_num_threads(2)
    common = dict(backbone="test_byobnet", image_size=32, batch_size=16, learning_rate=2e-3, warmup_steps=10,
                  augmentation="none", num_workers=0, seed=0, max_steps=args.steps)  # fmt: skip

    def run(**overrides):
        try:
            return train(TrainingArguments(**{**common, **overrides}))["metrics"]["test"]
        finally:
            AcceleratorState._reset_state(reset_partial_state=True)
            GradientState._reset_state()

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        data = str(write_synthetic_fixture(Path(tmp) / "data", train=512, validation=96, test=96, size=32))
        stage1 = Path(tmp) / "stage1"
        rows.append(("stage 1: combined", run(data=data, output_dir=str(stage1), random_init=True)))
        for weight in (0.0, 0.1):
            rows.append((f"stage 2: valence_arousal, expression_loss_weight {weight}",
                         run(data=data, output_dir=str(Path(tmp) / f"stage2_{weight}"), init_from=str(stage1),
                             objective="valence_arousal", balanced=True, expression_loss_weight=weight)))  # fmt: skip
    lines = [
        f"Synthetic 8-class task, test n = {rows[0][1]['num_examples']}, {args.steps} steps per stage "
        "(test_byobnet, 32 px, CPU; scripts/stage2_expression.py).",
        "",
        "| model | expression accuracy | macro F1 | valence CCC | arousal CCC |",
        "|---|---|---|---|---|",
    ]
    for name, metrics in rows:
        e = metrics["expression"]
        lines.append(f"| {name} | {e['accuracy']:.3f} | {e['macro_f1']:.3f} | {metrics['valence']['ccc']:.3f} | "
                     f"{metrics['arousal']['ccc']:.3f} |")  # fmt: skip
    text = "\n".join(lines) + "\n"
    print(text)
    if args.output:
        Path(args.output).write_text(text)


if __name__ == "__main__":
    main()
