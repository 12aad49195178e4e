"""Inference benchmark (issues 8, 14): same as `cage bench`.

    python scripts/benchmark.py --output-dir benchmark-results            # untrained networks at 224 (README, Speed)
    python scripts/benchmark.py --model DIR --batch-sizes 1,32 --rounds 7

Prints a Markdown table (ratios to the authors' implementation first) and writes benchmark.json/.md.
"""

import sys

from cage.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", *sys.argv[1:]]))
