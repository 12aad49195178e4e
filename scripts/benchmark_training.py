"""Training throughput (images/s) of CAGE's MaxViT-T at 224 px on this machine's CPU: this package's model
and training step vs the authors' way (torchvision ``maxvit_t`` with their head, their plain loop), each in
eager fp32, channels-last and bf16 autocast, measured in the same run, interleaved round by round.

Not a test: numbers depend on the machine and its load. Example (short):

    python scripts/benchmark_training.py --rounds 2 --steps 2 --threads 1

Prints a Markdown table (median images/s over rounds).
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn

NUM_LABELS = 8
ALPHA = 5.0  # paper: CE + 5 MSE


def cage_model(image_size: int, backbone: str) -> nn.Module:
    from cage.modeling_cage import CageForExpressionInference
    from cage.presets import make_config

    return CageForExpressionInference(make_config("affectnet8", backbone=backbone, image_size=image_size))


def authors_model() -> nn.Module:
    """torchvision's maxvit_t with the CAGE head as the authors build it: the runtime benchmark's reference."""
    from cage.runtimes.benchmark import build_authors_network

    return build_authors_network(NUM_LABELS + 2)


def cage_step(model, optimizer, images, labels, targets):
    loss = model(pixel_values=images, labels=labels, regression_labels=targets).loss
    loss.backward()
    optimizer.step()
    optimizer.zero_grad()


def authors_step(model, optimizer, images, labels, targets, weights):
    outputs = model(images)
    loss = F.cross_entropy(outputs[:, :NUM_LABELS], labels, weight=weights) + ALPHA * F.mse_loss(
        outputs[:, NUM_LABELS:], targets
    )
    loss.backward()
    optimizer.step()
    optimizer.zero_grad()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (median reported)")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per configuration and round")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps per configuration before the rounds")
    parser.add_argument("--backbone", default="maxvit_t", help="cage's trunk (default: %(default)s, cage's default)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    weights = torch.full((NUM_LABELS,), 1 / NUM_LABELS)
    configurations = []
    ours_name = f"cage ({args.backbone})"
    for implementation in (ours_name, "authors (torchvision maxvit_t)"):
        for mode in ("eager fp32", "channels-last", "bf16 autocast"):
            model = cage_model(args.image_size, args.backbone) if implementation.startswith("cage") else authors_model()
            if mode == "channels-last":
                model = model.to(memory_format=torch.channels_last)
            model.train()
            optimizer = torch.optim.AdamW(model.parameters(), lr=5e-5)
            step = (
                cage_step
                if implementation.startswith("cage")
                else (lambda m, o, x, y, t: authors_step(m, o, x, y, t, weights))
            )
            configurations.append((implementation, mode, model, optimizer, step))

    images = torch.randn(args.batch_size, 3, args.image_size, args.image_size)
    labels = torch.randint(0, NUM_LABELS, (args.batch_size,))
    targets = torch.rand(args.batch_size, 2) * 2 - 1

    def run(configuration, steps: int) -> float:
        _, mode, model, optimizer, step = configuration
        x = images.contiguous(memory_format=torch.channels_last) if mode == "channels-last" else images
        autocast = torch.autocast("cpu", dtype=torch.bfloat16) if mode == "bf16 autocast" else contextlib.nullcontext()
        started = time.perf_counter()
        for _ in range(steps):
            with autocast:
                step(model, optimizer, x, labels, targets)
        return steps * args.batch_size / (time.perf_counter() - started)

    for configuration in configurations:
        run(configuration, args.warmup)
    results: dict[int, list[float]] = {i: [] for i in range(len(configurations))}
    for _ in range(args.rounds):
        for index, configuration in enumerate(configurations):
            results[index].append(run(configuration, args.steps))

    print(f"\nMaxViT-T training throughput, {args.image_size} px, batch {args.batch_size}, CPU, "
          f"{torch.get_num_threads()} thread(s), median of {args.rounds} rounds x {args.steps} steps (images/s)\n")  # fmt: skip
    print(f"| mode | {ours_name} | authors (torchvision maxvit_t) |")
    print("|---|---|---|")
    for mode_index, mode in enumerate(("eager fp32", "channels-last", "bf16 autocast")):
        ours = statistics.median(results[mode_index])
        theirs = statistics.median(results[3 + mode_index])
        print(f"| {mode} | {ours:.2f} | {theirs:.2f} |")


if __name__ == "__main__":
    main()
