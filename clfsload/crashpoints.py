"""A test hook that kills the loader at a chosen point: the kill -9 campaign.

Set ``CLFSLOAD_TEST_CRASH=POINT@N`` in the loader's environment and the
process (driver or worker) that reaches ``POINT`` for the ``N``-th time
sends SIGKILL to the loader's whole process group, as a power cut or an OOM
kill would. With ``POINT@N:driver`` only the driver is killed, which checks
that no worker outlives it. Counting is per process, so with
``--processes 1`` the worker-side points are deterministic up to the order in
which its uploads complete and its unit threads take turns.

Points (see the call sites):

* ``init``: after the bucket object is written in INIT;
* ``commit``: after a state transaction is committed (driver);
* ``phase``: after a phase switch is committed (driver);
* ``file-segment``, ``dir-segment``: a data segment of a regular file, or a
  segment of a directory, was handed to the uploader (worker);
* ``inode``: an inode was handed to the uploader (worker);
* ``put-partial``: the local-folder target wrote half of a blob's temp file;
* ``link``: a hard-linked object was stored in RECONCILE (worker);
* ``sweep``: the sweep deleted a blob (driver, FINALIZE);
* ``finalize``: after each step of FINALIZE (driver).

``CLFSLOAD_TEST_CRASH_TICKETS=DIR`` arms the processes of a Dask cluster
(set in the workers' environment only, never the driver's): points are
counted across all of them (each reach appends a byte to ``DIR/.count-POINT``
and its position is the global count), and a file ``DIR/POINT@N`` is a
ticket: the process that reaches ``POINT`` for the ``N``-th time overall
takes it (deletes it) and SIGKILLs itself alone. A test writes tickets
between loads on one long-lived cluster, and a restarted worker dies
again only if a ticket is left.

With ``CLFSLOAD_TEST_CRASH_LOG=DIR`` every process also appends each point
it reaches to ``DIR/<pid>``, so a campaign can learn how many of each a load
has and draw counts that land inside the work left.

The driver refuses to run with the hook unless it leads its own process
group (the test starts it with ``start_new_session``), so a kill can never
reach the process that started it. Without the variable every call is a
dictionary lookup and nothing else.
"""

import os
import signal
import threading
from typing import Dict, Optional, Tuple

ENV = "CLFSLOAD_TEST_CRASH"
LOG_ENV = "CLFSLOAD_TEST_CRASH_LOG"
TICKETS_ENV = "CLFSLOAD_TEST_CRASH_TICKETS"

_plan: Optional[Tuple[str, int, str]] = None
_counts: Dict[str, int] = {}
_parsed = False
_log_dir: Optional[str] = None
_tickets = False
_log_fd = -1
_log_pid = 0
_log_lock = threading.Lock()
_count_lock = threading.Lock()


def _load() -> Optional[Tuple[str, int, str]]:
    global _plan, _parsed, _log_dir, _tickets
    if not _parsed:
        _parsed = True
        # Read here, not at the edge: a test hook armed in the environment of whichever process reaches a point.
        spec = os.environ.get(ENV, "").strip()
        if spec:
            point, _, rest = spec.partition("@")
            count, _, mode = rest.partition(":")
            _plan = (point, int(count), mode)
        _log_dir = os.environ.get(LOG_ENV) or None
        _tickets = bool(os.environ.get(TICKETS_ENV))
    return _plan


def enabled() -> bool:
    """True when a crash point is armed in this process."""
    return _load() is not None


def active() -> bool:
    """True when a crash point is armed or points are logged: split steps so they can be hit."""
    return _load() is not None or _log_dir is not None or _tickets


def _log(point: str) -> None:
    global _log_fd, _log_pid
    if _log_pid != os.getpid():  # first use in this process (workers are forked)
        with _log_lock:
            if _log_pid != os.getpid():
                assert _log_dir is not None, "points are logged only once a log folder is set"
                path = os.path.join(_log_dir, str(os.getpid()))
                _log_fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
                _log_pid = os.getpid()  # set last: other threads use the fd once this matches
    os.write(_log_fd, point.encode() + b"\n")


def check_process_group() -> None:
    """Refuse an armed hook unless this process leads its own group (driver start-up)."""
    if enabled() and os.getpgrp() != os.getpid():
        raise RuntimeError("%s is set but the loader does not lead its process group" % ENV)


def _ticket(point: str) -> None:
    """Ticket mode: count ``point`` across processes; die if a ticket names this count."""
    folder = os.environ[TICKETS_ENV]
    fd = os.open(os.path.join(folder, ".count-" + point), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        os.write(fd, b".")
        count = os.lseek(fd, 0, os.SEEK_CUR)  # where this append landed: the global count
    finally:
        os.close(fd)
    try:
        os.unlink(os.path.join(folder, "%s@%d" % (point, count)))
    except FileNotFoundError:
        return
    os.kill(os.getpid(), signal.SIGKILL)
    signal.pause()


def reached(point: str) -> None:
    """Count ``point``; at the armed count, kill the loader (never returns then)."""
    plan = _plan if _parsed else _load()
    if _log_dir is not None:
        _log(point)
    if _tickets:
        _ticket(point)
    if plan is None or plan[0] != point:
        return
    with _count_lock:  # a worker's unit threads reach points at once: each count once
        count = _counts[point] = _counts.get(point, 0) + 1
    if count == plan[1]:
        if plan[2] == "driver":
            driver = os.getpgrp()  # the driver leads the group (check_process_group)
            os.kill(driver, signal.SIGKILL)
            if os.getpid() != driver:
                return  # a worker that killed its driver goes on until PDEATHSIG reaches it
        else:
            os.killpg(os.getpgrp(), signal.SIGKILL)
        signal.pause()  # the signal is on its way


__all__ = ["ENV", "check_process_group", "enabled", "reached"]
