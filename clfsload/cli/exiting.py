"""The end of the program (``CLFSLoad.py``, ``python -m clfsload``, the ``clfsload`` script): exit handlers, no teardown.

A normal exit runs the exit handlers (the log's flush, multiprocessing's
clean-up of its temporary folder), then tears the interpreter down: every
module of the driver freed one object at a time, 10-15 ms of CPU and wall
time at the end of every run, for memory the process gives back anyway.
:func:`exit_program` runs the exit handlers, flushes stdout and stderr, and
ends the process without the teardown.

Only when nothing else is left to run: with a thread still alive (a
non-daemon one is waited for at a normal exit) or a stream that cannot be
flushed (a closed pipe: the interpreter reports it and exits 120), it exits
normally instead.
"""

import atexit
import os
import sys
import threading
from typing import NoReturn

__all__ = ["exit_program"]


def exit_program(code: int) -> NoReturn:
    """End the program with exit status ``code``: exit handlers and flushed streams, then ``os._exit``."""
    if isinstance(code, int) and threading.active_count() == 1:
        atexit._run_exitfuncs()  # each runs once: a normal exit after this finds none left
        try:
            for stream in (sys.stdout, sys.stderr):
                if stream is not None:
                    stream.flush()
        except (OSError, ValueError):
            pass  # the normal exit below reports it as the interpreter does
        else:
            os._exit(code)
    sys.exit(code)
