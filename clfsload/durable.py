"""Making local files and folder entries durable: the fsync helpers the local target and the state share.

POSIX makes nothing durable on its own: a file's bytes reach the disk at an
``fsync`` of that file, and a name created, renamed or removed in a folder
at an ``fsync`` of the folder. ``syncfs`` is no substitute: some file systems
(FUSE ones among them) do nothing for it. So the loader fsyncs the files it
wrote, then their folder, in that order: a name made durable never points at
bytes that are not.
"""

import os
import time
from concurrent.futures import Executor
from typing import Callable, Optional, Sequence

__all__ = ["fsync_dir", "fsync_files", "fsync_paths", "makedirs_durable"]

_O_DIR = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0)
_O_FILE = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0)

#: an fsync shorter than this did not wait for a disk (tmpfs, or nothing to write): the rest go in one thread
_QUICK_S = 50e-6
#: files per thread at least, when the fsyncs are shared out
_PER_THREAD = 4


def fsync_dir(path: str) -> None:
    """fsync the folder ``path``: the names created, renamed or removed in it are durable after it."""
    fd = os.open(path, _O_DIR)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_one(path: str) -> None:
    """fsync one file; one gone since it was written (deleted, renamed over) is skipped."""
    try:
        fd = os.open(path, _O_FILE)
    except FileNotFoundError:
        return  # deleted since: its removal is the folder's to make durable
    try:
        os.fsync(fd)
    except OSError:
        try:
            os.close(fd)
        except OSError:
            pass  # the fsync's error is the one raised
        raise
    os.close(fd)


def fsync_files(paths: Sequence[str]) -> None:
    """fsync each file of ``paths`` in order, one gone since it was written skipped; raises the first OSError."""
    for path in paths:
        _fsync_one(path)


def fsync_paths(paths: Sequence[str], executor: Optional[Executor] = None, threads: int = 32,
                each: Callable[[Sequence[str]], None] = fsync_files) -> None:
    """fsync every file of ``paths``; on a disk, many at once in up to ``threads`` threads of ``executor``.

    An fsync on a journalling disk waits for a journal commit, and
    concurrent ones share commits, so a batch in many threads costs a
    fraction of the same fsyncs one after another. Where an fsync returns at
    once (tmpfs, or the data already on disk), a hand-off to a thread would
    cost more than the fsync: the first one is timed, and if it was quick the
    rest run here. Each thread takes one chunk (no hand-off per file).
    Raises the first OSError.
    """
    if not paths:
        return
    started = time.perf_counter()
    _fsync_one(paths[0])
    rest = paths[1:]
    if executor is None or len(rest) < 2 * _PER_THREAD or time.perf_counter() - started < _QUICK_S:
        each(rest)
        return
    count = min(threads, len(rest) // _PER_THREAD)
    futures = [executor.submit(each, rest[k::count]) for k in range(1, count)]
    error: Optional[BaseException] = None
    try:
        each(rest[0::count])
    except OSError as exc:
        error = exc
    for future in futures:
        failed = future.exception()
        if failed is not None and error is None:
            error = failed
    if error is not None:
        raise error


def makedirs_durable(path: str) -> None:
    """``os.makedirs(path, exist_ok=True)``, each folder it creates durable in its parent.

    Raises what :func:`os.makedirs` raises.
    """
    missing = []
    head = os.path.abspath(path)
    while not os.path.isdir(head):
        missing.append(head)
        parent = os.path.dirname(head)
        if parent == head:
            break
        head = parent
    os.makedirs(path, exist_ok=True)
    for created in reversed(missing):  # top down: each entry once its parent's is durable
        fsync_dir(os.path.dirname(created))
    if missing:
        fsync_dir(path)
