"""Where the time of one MaxViT-T batch goes on this machine (the profile behind README's "Speed" notes).

    python scripts/profile_inference.py [--batch-size 32] [--variant bf16_channels_last|fp32] [--rows 14]

Builds an untrained MaxViT-T at 224 px (seed 0), runs one warm-up and one profiled forward pass with
``torch.profiler`` and prints the operators sorted by self CPU time.
"""

from __future__ import annotations

import argparse

import torch
from torch.profiler import ProfilerActivity, profile

from cage import CageForExpressionInference
from cage.presets import make_config
from cage.runtimes import TorchRunner


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--variant", choices=["bf16_channels_last", "fp32"], default="bf16_channels_last")
    parser.add_argument("--rows", type=int, default=14)
    args = parser.parse_args()
    torch.manual_seed(0)
    model = CageForExpressionInference(make_config()).eval()
    if args.variant == "fp32":
        runner = TorchRunner(model)
    else:
        runner = TorchRunner(model, channels_last=True, autocast_dtype=torch.bfloat16)
    inputs = torch.randn(args.batch_size, 3, 224, 224)
    runner(pixel_values=inputs)
    with profile(activities=[ProfilerActivity.CPU]) as profiler:
        runner(pixel_values=inputs)
    print(profiler.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.rows, max_name_column_width=40))


if __name__ == "__main__":
    main()
