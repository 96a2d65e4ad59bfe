"""``python -m supervisor``: run the CLI, then leave without interpreter teardown.

By the time ``main`` returns every replica is gone and reaped; flushing the
standard streams and calling ``os._exit`` skips a teardown that costs a
visible share of a fast shutdown.
"""

import os
import sys

from .cli import main

status = main()
for stream in (sys.stdout, sys.stderr):
    try:
        stream.flush()
    except (OSError, ValueError):
        status = status or 1
os._exit(status)
