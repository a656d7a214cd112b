"""Reading a small source file whole in one call: the pure-Python twin (the specification).

Through a slow source (an NFS filer, a FUSE file system) a small file costs
five calls: open, fstat, read, fstat, close. Each releases and takes back
the GIL on a thread of the read pipeline; the compiled twin makes the whole
chain one release. The calls, their flags, the results and the exceptions
are exactly these, but for one: the compiled twin's first fstat is a
``statx(AT_STATX_DONT_SYNC)``, the same answer on a local file system and
no round trip of its own on FUSE or NFS (the attributes the open's lookup
brought back, a state of the opened inode from before the read, so the
torn-read rule holds as it does here).
"""

import errno
import os
import stat
import time
from typing import Any, List, Optional, Sequence, Tuple

__all__ = ["kind_of_mode", "open_read", "run_ahead"]

#: run_ahead runs its operations in parallel on threads of its own (here: one by one, as they are taken)
RUNS_IN_PARALLEL = False

#: open(2) flags of a source file: never follow a symlink; O_NONBLOCK so that a FIFO put in the
#: file's place since the scan does not block the open (the fstat then refuses it); no effect on
#: regular files
OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
#: tried first where it exists: reading does not touch the file's atime
NOATIME = getattr(os, "O_NOATIME", 0)


def kind_of_mode(mode: int) -> str:
    """``"a directory"``, ``"a symlink"``, ``"a regular file"`` or ``"a special file"``."""
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISLNK(mode):
        return "a symlink"
    if stat.S_ISREG(mode):
        return "a regular file"
    return "a special file"


def _open(path: bytes) -> int:
    if NOATIME:
        try:
            return os.open(path, OPEN_FLAGS | NOATIME)
        except PermissionError:
            pass  # O_NOATIME needs ownership of the file (or CAP_FOWNER)
    return os.open(path, OPEN_FLAGS)


def open_read(path: bytes, limit: int) -> Tuple[int, os.stat_result, Optional[bytes]]:
    """Open a regular file (``OPEN_FLAGS``, with O_NOATIME where allowed) and, if smaller than ``limit``, read it whole.

    Returns ``(fd, opened, data)``: ``opened`` is the ``fstat`` taken just
    after the open. ``data`` is the whole content, and ``fd`` -1 (closed),
    when the file was smaller than ``limit`` bytes, one read of ``limit``
    bytes returned exactly ``opened.st_size`` bytes and a second ``fstat``
    shows the same inode, size, mtime and ctime (the torn-read rule);
    otherwise ``data`` is None and ``fd`` is left open at offset 0 or past
    the one read, for the caller's stream path (which seeks). Raises the
    OSError of the call that failed, the descriptor closed; OSError(EINVAL)
    if the path is no longer a regular file.
    """
    fd = _open(path)
    try:
        opened = os.fstat(fd)
        if not stat.S_ISREG(opened.st_mode):
            raise OSError(errno.EINVAL, "no longer a regular file: it became %s since the scan"
                          % kind_of_mode(opened.st_mode))
        if opened.st_size < limit:
            data = os.read(fd, limit)
            if len(data) == opened.st_size:
                after = os.fstat(fd)
                whole = (after.st_ino == opened.st_ino and after.st_size == opened.st_size
                         and after.st_mtime_ns == opened.st_mtime_ns and after.st_ctime_ns == opened.st_ctime_ns)
                if whole:
                    fd, closing = -1, fd
                    os.close(closing)  # its error raised as is: the descriptor is gone either way
                    return -1, opened, data
    except BaseException:
        if fd >= 0:  # never closed twice: another thread may have that number by now
            os.close(fd)
        raise
    return fd, opened, None


class _Run:
    """A run of source operations started by :func:`run_ahead`, taken in order by one consumer."""

    def __init__(self, kind: str, paths: Sequence[bytes], limit: int, slots: Any) -> None:
        self._call = {"lstat": os.lstat, "open+read": lambda path: open_read(path, limit)}[kind]
        self._paths = tuple(paths)
        self._slots = slots
        self._taken = 0
        self._closed = False
        self._running: Optional[Tuple[bytes, float]] = None
        self._fastest: Optional[float] = None

    def take(self, index: int) -> Any:
        """Item ``index``'s result, or its OSError raised (items before it not taken are dropped).

        For ``"lstat"`` what ``os.lstat(path)`` returns or raises; for
        ``"open+read"`` what :func:`open_read` does. Items are taken in
        increasing order: one before the last taken raises IndexError, and
        so does a take after :meth:`close` (ValueError).
        """
        if self._closed:
            raise ValueError("the run is closed")
        if index < self._taken or index >= len(self._paths):
            raise IndexError("item %d is not among those still to take" % index)
        self._taken = index + 1
        path = self._paths[index]
        if self._slots is not None:
            self._slots.acquire()
        try:
            start = time.monotonic()
            self._running = (path, start)
            try:
                return self._call(path)
            finally:
                self._running = None
                took = time.monotonic() - start
                if self._fastest is None or took < self._fastest:
                    self._fastest = took
        finally:
            if self._slots is not None:
                self._slots.release()

    def close(self) -> None:
        """Drop every item not taken: nothing more starts; descriptors left open are closed."""
        self._closed = True

    def in_flight(self) -> List[Tuple[bytes, float]]:
        """``(path, started)`` of each item running now, ``started`` on ``time.monotonic``'s clock."""
        running = self._running
        return [running] if running is not None else []

    def inline(self) -> bool:
        """True if the consumer runs the items itself now (here always: they run as they are taken)."""
        return True

    def fastest(self) -> Optional[float]:
        """Seconds the fastest operation of the run took, or None before one ended."""
        return self._fastest


def run_ahead(kind: str, paths: Sequence[bytes], limit: int, threads: int, slots: Any, window: int,
              slot_run: int, fast: float = 0.0, inline: bool = False) -> _Run:
    """Start ``kind`` on every path, in parallel and in order, ahead of a consumer that takes the results in order.

    ``kind`` is ``"lstat"`` (each result as :func:`os.lstat` gives or raises
    it) or ``"open+read"`` (as :func:`open_read` with ``limit``). The compiled
    twin runs the operations on a process-wide pool of at least ``threads``
    plain threads that never take the GIL, at most ``window`` items started
    and not yet taken, each holding one of the node's ``slots`` (a
    multiprocessing semaphore, or None) while it runs, a thread keeping its
    slot for up to ``slot_run`` operations in a row; the consumer takes each
    result with :meth:`_Run.take` (waiting, the GIL released, if it is not
    back) and runs an item itself when no thread has started it. One
    thread takes and closes a run (its consumer). With
    ``fast`` (seconds), the run times its operations: when most of the first
    eight (and of each eight after a change) took less, it goes inline, the
    consumer running each item itself as it takes it (a hand-over to a
    thread would cost more than the operation); inline, one that takes
    ``fast`` or more sends the rest back to the threads. ``inline`` starts
    the run in that mode (as the last run of its kind ended: ``inline()``).
    This twin
    runs each operation on the consumer's thread as it is taken: the same
    results and exceptions, one at a time (``RUNS_IN_PARALLEL`` tells the
    two apart; the pipeline uses its own Python threads instead of it).
    Paths are bytes without NUL (TypeError, ValueError otherwise, as
    ``os.lstat`` raises for a NUL).
    """
    if kind not in ("lstat", "open+read"):
        raise KeyError(kind)
    paths = tuple(paths)
    for path in paths:
        if not isinstance(path, bytes):
            raise TypeError("run_ahead takes paths as bytes, not %s" % type(path).__name__)
        if b"\0" in path:
            raise ValueError("embedded null byte")
    return _Run(kind, paths, limit, slots)
