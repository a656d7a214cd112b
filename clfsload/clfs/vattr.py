"""The VATTR attribute record (§8.3) and how it is sourced from ``lstat`` (§10)."""

import os
import stat
from typing import NamedTuple, Protocol, Tuple

from ..errors import EncodeError
from .constants import Btype, Ftype, FTYPE_TO_BTYPE

_TIME_LIMIT = 1 << 32


class VAttr(NamedTuple):
    """The variable fields of a VATTR record, in the order the encoders take them.

    ``used`` is not a field: the encoder writes ``size`` twice. ``flags``,
    ``spare``, ``dtime`` and ``haVersion`` are always 0 on target.
    """

    mode: int
    btype: int
    uid: int
    gid: int
    size: int
    mtime_sec: int
    mtime_nsec: int
    ctime_sec: int
    ctime_nsec: int
    atime_sec: int
    atime_nsec: int
    fsid: int
    fileid: int
    rdev_major: int
    rdev_minor: int
    nlink: int
    containerid: int


def split_time(t: float, what: str = "time") -> Tuple[int, int]:
    """Seconds and nanoseconds of a float stat time, exactly as the reference (§10.4).

    ``nsec = int((t - sec) * 1e9)`` in IEEE double, so 1700000000.123456789
    gives 123456716. Times before 1970 or at or after 2^32 s cannot be packed.
    """
    sec = int(t)
    if not 0 <= t < _TIME_LIMIT:
        raise EncodeError("%s %r is outside the CLFS range 1970..2106" % (what, t))
    return sec, int((t - sec) * 1e9)


def ftype_of_mode(mode: int) -> Ftype:
    """The Ftype of an ``st_mode``, tested in the reference's order (§2.5).

    Raises EncodeError for a file type CLFS cannot hold.
    """
    if stat.S_ISREG(mode):
        return Ftype.REG
    if stat.S_ISDIR(mode):
        return Ftype.DIR
    if stat.S_ISBLK(mode):
        return Ftype.BLK
    if stat.S_ISCHR(mode):
        return Ftype.CHR
    if stat.S_ISLNK(mode):
        return Ftype.LNK
    if stat.S_ISSOCK(mode):
        return Ftype.SOCK
    if stat.S_ISFIFO(mode):
        return Ftype.FIFO
    raise EncodeError("file type %o is not supported by CLFS" % stat.S_IFMT(mode))


class StatLike(Protocol):
    """What :func:`vattr_from_stat` reads of a stat: ``os.stat_result`` or the scan's ``EntryStat``."""

    @property
    def st_mode(self) -> int: ...
    @property
    def st_ino(self) -> int: ...
    @property
    def st_uid(self) -> int: ...
    @property
    def st_gid(self) -> int: ...
    @property
    def st_rdev(self) -> int: ...
    @property
    def st_atime(self) -> float: ...
    @property
    def st_mtime(self) -> float: ...
    @property
    def st_ctime(self) -> float: ...


def vattr_from_stat(
    st: StatLike, size: int, nlink: int, fsid: int, containerid: int
) -> VAttr:
    """Build the VATTR of an object from its ``lstat`` result (§10).

    ``size`` and ``nlink`` come from the caller because their rules depend on
    the object kind (§10.3, §10.5): bytes read for files, code points for
    symlinks, the entries-stream length for directories.
    """
    btype = FTYPE_TO_BTYPE[ftype_of_mode(st.st_mode)]
    msec, mnsec = split_time(st.st_mtime, "mtime")
    csec, cnsec = split_time(st.st_ctime, "ctime")
    asec, ansec = split_time(st.st_atime, "atime")
    rdev = st.st_rdev
    # Positional, in field order (a hot path: once per object).
    return VAttr(
        st.st_mode & 0xFFFF, int(btype), st.st_uid, st.st_gid, size,
        msec, mnsec, csec, cnsec, asec, ansec,
        fsid, st.st_ino, os.major(rdev) if rdev else 0, os.minor(rdev) if rdev else 0, nlink, containerid,
    )


__all__ = ["VAttr", "Btype", "split_time", "ftype_of_mode", "vattr_from_stat"]
