"""Train a CAGE model: ``accelerate launch scripts/train.py --data DIR --output-dir OUT ...``.

A thin wrapper around ``cage.training.main`` (also ``cage train``); ``--help`` lists the options.
"""

import sys

from cage.training import main

if __name__ == "__main__":
    sys.exit(main())
