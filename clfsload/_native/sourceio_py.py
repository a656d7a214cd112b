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
from typing import Optional, Tuple

__all__ = ["kind_of_mode", "open_read"]

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
