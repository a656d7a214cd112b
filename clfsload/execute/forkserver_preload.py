"""What the forkserver imports before it forks anything (:data:`.forkserver.PRELOAD`); nothing else imports it.

* The worker side, whole (:mod:`.pool`): every worker is forked with it loaded,
  with what each worker's start loads besides: :mod:`ctypes` (its
  ``prctl``) and the local-folder target (a few milliseconds each, once here
  instead of in every worker, before its first unit).
* A quick exit: the forkserver leaves when the driver has exited (its "alive"
  pipe closes), and whoever waits for the load to end (a shell pipe, AzCopy,
  ``subprocess.run``) waits for the forkserver too, since it holds the same
  stdout and stderr. Its interpreter's teardown (every module of the worker
  side, tens of milliseconds) serves nobody: an exit handler flushes its
  streams and ends the process at once. Registered only when this module is
  imported by the forkserver itself; its workers never run exit handlers
  (the forkserver ends each with ``os._exit``).
"""

import atexit
import ctypes  # noqa: F401 - each worker's _die_with_parent
import multiprocessing.forkserver
import multiprocessing.popen_forkserver  # noqa: F401 - each worker's bootstrap (its Process object)
import multiprocessing.synchronize  # noqa: F401 - each worker's bootstrap (the pool's report queue's locks)
import os
import sys

from . import pool  # noqa: F401 - imported for the workers forked from here
from ..work import transfer  # noqa: F401 - what pool imports on first use (pool._runner_type)
from ..targets import local  # noqa: F401 - a worker's uploader for a file: target


def _in_forkserver() -> bool:
    """True when imported by :func:`multiprocessing.forkserver.main` (the forkserver's preload)."""
    target = multiprocessing.forkserver.main.__code__
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_code is target:
            return True
        frame = frame.f_back
    return False


def _exit_now() -> None:
    """The forkserver's last exit handler to run: flush its streams, then exit without the teardown."""
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(0)


if _in_forkserver():
    atexit.register(_exit_now)  # run first (last registered): the forkserver registers nothing it needs at exit
