"""``python -m cage`` is the ``cage`` command."""

import sys

from .cli import main

sys.exit(main())
