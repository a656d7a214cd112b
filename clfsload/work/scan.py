"""Reading the source tree: directory scans with ``lstat``, names kept as bytes.

Symlinks are never followed. An entry that cannot be examined is not
skipped silently, as the reference did (behaviour spec §12 item 12): it
becomes a :class:`Problem` that names the path and the reason, and counts
against the error budget.
"""

import errno
import os
import stat
import struct
from typing import Dict, List, NamedTuple, Optional, Protocol, Tuple, Union

from .._native import sourceio
from ..clfs.constants import Ftype
from ..clfs.vattr import ftype_of_mode
from ..errors import EncodeError


#: This process's device number of a filesystem -> the driver's number for it.
#: Nodes of a cluster may number one shared filesystem differently, and device
#: numbers name hard-linked inodes and identify directories across units; a
#: Dask worker sets this when it joins a run (:mod:`clfsload.execute.dask_worker`).
DEVICE_ALIASES: Dict[int, int] = {}


class EntryStat(NamedTuple):
    """The ``lstat`` fields the loader keeps, named like ``os.stat_result``'s.

    Times are the float values (``st_mtime``), which the format needs
    (FMT §10.4); ``*_ns`` are kept to detect a file changing while read.
    """

    st_mode: int
    st_ino: int
    st_dev: int
    st_nlink: int
    st_uid: int
    st_gid: int
    st_size: int
    st_atime: float
    st_mtime: float
    st_ctime: float
    st_rdev: int
    st_mtime_ns: int
    st_ctime_ns: int

    @classmethod
    def of(cls, st: os.stat_result) -> "EntryStat":
        """Keep the fields of a stat result (the device number as the driver knows it)."""
        dev = DEVICE_ALIASES.get(st.st_dev, st.st_dev) if DEVICE_ALIASES else st.st_dev
        return cls(
            st.st_mode, st.st_ino, dev, st.st_nlink, st.st_uid, st.st_gid, st.st_size,
            st.st_atime, st.st_mtime, st.st_ctime, st.st_rdev, st.st_mtime_ns, st.st_ctime_ns,
        )  # fmt: skip

    _PACK = struct.Struct("<IQQQIIQdddQqq")

    def pack(self) -> bytes:
        """Compact bytes for the state store."""
        return self._PACK.pack(*self)

    @classmethod
    def unpack(cls, data: bytes) -> "EntryStat":
        """Inverse of :meth:`pack`."""
        return cls(*cls._PACK.unpack(data))

    def same_content(self, other: "EntryStat") -> bool:
        """True if nothing suggests the file changed between the two stats."""
        return same_content(self, other)


def same_content(before: Union["EntryStat", os.stat_result], after: Union["EntryStat", os.stat_result]) -> bool:
    """True if nothing suggests the file changed between two stats (EntryStat or raw ``os.stat_result``).

    Same inode, size, mtime and ctime; the hot path compares raw results
    without copying them into EntryStat first.
    """
    return (
        before.st_ino == after.st_ino
        and before.st_size == after.st_size
        and before.st_mtime_ns == after.st_mtime_ns
        and before.st_ctime_ns == after.st_ctime_ns
    )


class Problem(NamedTuple):
    """A source entry that could not be loaded: its path and a one-line reason."""

    path: bytes
    reason: str

    def line(self) -> str:
        """``'<path>': <reason>``, the path decoded for display (undecodable bytes escaped)."""
        return "'%s': %s" % (os.fsdecode(self.path).encode("utf-8", "backslashreplace").decode(), self.reason)


class Entry(NamedTuple):
    """One child found by a scan."""

    name: bytes
    path: bytes
    stat: EntryStat
    ftype: Ftype


def describe_oserror(exc: OSError) -> str:
    """A short reason for an OSError, without the path (the caller names it).

    An OSError raised here with a reason of its own (``OSError(errno, text)``)
    keeps that text.
    """
    if exc.errno is not None and exc.strerror and exc.strerror != os.strerror(exc.errno):
        return exc.strerror
    if exc.errno == errno.EACCES:
        return "permission denied"
    if exc.errno == errno.EPERM:
        return "operation not permitted"
    if exc.errno == errno.ENOENT:
        return "vanished while loading (no such file or directory)"
    if exc.errno is not None:
        return os.strerror(exc.errno)
    return str(exc)


class Scanner(Protocol):
    """How a scan reads through the pipeline (:class:`clfsload.work.prefetch.ParallelScan`)."""

    def listing(self, path: bytes) -> Tuple[List[Tuple[bytes, bytes]], Optional[OSError]]:
        """``(name, path)`` in readdir order, and the OSError that cut the listing short (None if none)."""

    def lstat_all(self, paths: List[bytes]) -> List[Union[os.stat_result, OSError]]:
        """The lstat of each path, or the OSError it raised, in order."""


def scan_directory(path: bytes, scanner: Optional[Scanner] = None) -> Tuple[List[Entry], List[Problem]]:
    """List a directory in readdir order with each child's ``lstat``.

    Raises OSError if the directory itself cannot be read; problems with
    single children are returned, not raised. With a ``scanner`` the listing
    is read first, then the children's lstats run many at a time
    (:class:`clfsload.work.prefetch.ParallelScan`); entries, problems and
    their order are the same.
    """
    entries: List[Entry] = []
    problems: List[Problem] = []
    if scanner is not None:
        listed, failed = scanner.listing(path)
        for (name, child), raw in zip(listed, scanner.lstat_all([child for _, child in listed])):
            _add_entry(name, child, raw, entries, problems)
        if failed is not None:
            problems.append(Problem(path, "directory listing failed part way: %s" % describe_oserror(failed)))
        return entries, problems
    with os.scandir(path) as it:
        while True:
            try:
                dirent = next(it)
            except StopIteration:
                break
            except OSError as exc:  # a readdir error part way: keep what we have
                problems.append(Problem(path, "directory listing failed part way: %s" % describe_oserror(exc)))
                break
            try:
                raw: Union[os.stat_result, OSError] = dirent.stat(follow_symlinks=False)
            except OSError as exc:
                raw = exc
            _add_entry(dirent.name, dirent.path, raw, entries, problems)
    return entries, problems


def _add_entry(name: bytes, child: bytes, raw: Union[os.stat_result, OSError], entries: List[Entry],
               problems: List[Problem]) -> None:
    """One child of a scan: an Entry, or the Problem that keeps it out."""
    if isinstance(raw, OSError):
        problems.append(Problem(child, describe_oserror(raw)))
        return
    try:
        st = EntryStat.of(raw)
        ftype = ftype_of_mode(st.st_mode)
    except EncodeError as exc:
        problems.append(Problem(child, str(exc)))
        return
    entries.append(Entry(name, child, st, ftype))


def check_directory_readable(path: bytes) -> Optional[str]:
    """None if ``path`` can be opened and listed as a directory, else the reason."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError as exc:
        return describe_oserror(exc)
    os.close(fd)
    if not os.access(path, os.R_OK | os.X_OK):
        return "permission denied (cannot list or enter the directory)"
    return None


def open_for_reading(path: bytes) -> Tuple[int, os.stat_result]:
    """Open a regular file without following symlinks and, where allowed, without touching its atime.

    Returns the descriptor and its ``fstat``; raises OSError (EINVAL) if the
    path is no longer a regular file.
    """
    # O_NONBLOCK: a FIFO put in the file's place since the scan must not block
    # the open (the fstat below then refuses it); no effect on regular files.
    # The same open as clfsload._native.sourceio.open_read (the small-file chain of the pipeline).
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    noatime = getattr(os, "O_NOATIME", 0)
    fd = -1
    if noatime:
        try:
            fd = os.open(path, flags | noatime)
        except PermissionError:
            pass  # O_NOATIME needs ownership of the file (or CAP_FOWNER)
    if fd < 0:
        fd = os.open(path, flags)
    opened = os.fstat(fd)
    if not stat.S_ISREG(opened.st_mode):
        os.close(fd)
        raise OSError(errno.EINVAL, "no longer a regular file: it became %s since the scan" % sourceio.kind_of_mode(opened.st_mode))
    return fd, opened


__all__ = [
    "Entry",
    "EntryStat",
    "Problem",
    "check_directory_readable",
    "describe_oserror",
    "open_for_reading",
    "same_content",
    "scan_directory",
]
