"""Making local files and folder entries durable: the fsync helpers the local target and the state share.

POSIX makes nothing durable on its own: a file's bytes reach the disk at an
``fsync`` of that file, and a name created, renamed or removed in a folder
at an ``fsync`` of the folder. ``syncfs`` is no substitute: some file systems
(FUSE ones among them) do nothing for it. So the loader fsyncs the files it
wrote, then their folder, in that order: a name made durable never points at
bytes that are not.
"""

import os
from concurrent.futures import Executor
from typing import List, Optional, Sequence

__all__ = ["fsync_dir", "fsync_paths", "makedirs_durable"]

_O_DIR = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0)
_O_FILE = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0)

#: below this many files one thread fsyncs them all; above, ``threads`` share them in chunks
_SERIAL_MAX = 32


def fsync_dir(path: str) -> None:
    """fsync the folder ``path``: the names created, renamed or removed in it are durable after it."""
    fd = os.open(path, _O_DIR)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_some(paths: Sequence[str]) -> None:
    """fsync each file of ``paths``; one gone since it was written (deleted, renamed over) is skipped."""
    for path in paths:
        try:
            fd = os.open(path, _O_FILE)
        except FileNotFoundError:
            continue  # deleted since: its removal is the folder's to make durable
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def fsync_paths(paths: Sequence[str], executor: Optional[Executor] = None, threads: int = 8) -> None:
    """fsync every file of ``paths``; many at once share ``threads`` threads of ``executor``.

    An fsync of a file on a journalling disk waits for a journal commit;
    concurrent ones share commits, so a batch in threads costs a fraction of
    the same fsyncs one after another. Each thread takes one chunk (no hand-off
    per file). Raises the first OSError.
    """
    if executor is None or len(paths) <= _SERIAL_MAX:
        _fsync_some(paths)
        return
    count = min(threads, (len(paths) + _SERIAL_MAX - 1) // _SERIAL_MAX)
    chunks: List[Sequence[str]] = [paths[k::count] for k in range(count)]
    futures = [executor.submit(_fsync_some, chunk) for chunk in chunks[1:]]
    error: Optional[BaseException] = None
    try:
        _fsync_some(chunks[0])
    except OSError as exc:
        error = exc
    for future in futures:
        exc = future.exception()
        if exc is not None and error is None:
            error = exc
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
