"""``python -m topology``: show this machine's topology and places."""

import sys

from .cli import main

sys.exit(main())
