"""Writing one blob file of the ``file:`` target in one call: the pure-Python twin (the specification).

A blob of the local-folder target is a temp file written whole and renamed
over its name (:mod:`clfsload.targets.local`): four calls, each releasing
and taking back the GIL. The compiled twin makes the chain one release, so
the thread storing a unit's blobs does not queue for the GIL behind the
read pipeline's threads four times per blob.
"""

import os
from typing import Sequence, Union

from .. import durable

__all__ = ["fsync_files", "write_file"]

#: open(2) flags of the temp file: a new file, never one that exists
WRITE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)


def _unlink_quietly(path) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def write_file(tmp: Union[str, bytes], path: Union[str, bytes], payload, durable: bool = False) -> None:
    """Write ``payload`` (any bytes-like object) to the new file ``tmp`` (mode 0o666 less the umask),
    ``fsync`` it if ``durable``, close it and rename it over ``path``.

    Raises the OSError of the call that failed. A failure after the open
    removes ``tmp`` (quietly) before raising; a failed open leaves nothing.
    """
    view = memoryview(payload).cast("B")
    fd = os.open(tmp, WRITE_FLAGS, 0o666)
    try:
        try:
            while view:
                written = os.write(fd, view)
                view = view[written:]
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError:
        _unlink_quietly(tmp)
        raise


def fsync_files(paths: Sequence[Union[str, bytes]]) -> None:
    """``fsync`` each file of ``paths`` in order (open, fsync, close); one gone since it was written is skipped.

    Raises the first OSError and goes no further: an open's with the path,
    an fsync's (before a close's, if both fail) or a close's without it (as
    ``os.open``, ``os.fsync`` and ``os.close`` raise them): the loop of
    :func:`clfsload.durable.fsync_files`. The compiled twin runs the whole
    list with the GIL released once, not three times a file.
    """
    durable.fsync_files(paths)  # type: ignore[arg-type]
