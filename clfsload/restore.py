"""Restore a file or a subtree of a CLFS container to local disk.

What comes back: directories, regular files (streamed segment by segment,
never held whole), symbolic links, FIFOs, block and character devices
(``mknod`` needs privilege; without it they are skipped with a note), hard
links (every further path of an inode becomes an ``os.link`` of the first
one restored), modes including set-id bits, owners (when asked; by default
when running as root), and mtime and atime to the nanosecond stored.
Directory times are set after their children are in place.

What cannot come back: sockets (a socket file is made by a listening
process, not copied; skipped with a note); ctime (the kernel sets it);
nanoseconds lost by the loader's float-time rule (§10.4: the container
holds 123456716 ns for a source time of ...123456789 ns, and the restore
writes what the container holds); extended attributes and ACLs, which CLFS
does not carry.

Paths are checked as they are restored: every path must sit in a directory
restored by this call and no name may be empty, ``.``, ``..`` or hold a NUL,
so a damaged container cannot write outside the destination.
"""

import os
import stat
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Set, Tuple

from .clfs.constants import Btype
from .clfs.container import Container, Inode, WalkEntry
from .errors import ClfsLoadError
from .verify import display_path

__all__ = ["RestoreReport", "DestinationExistsError", "restore"]

_O_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
_BAD_NAMES = frozenset((b"", b".", b".."))


class DestinationExistsError(ClfsLoadError, FileExistsError):
    """A path the restore would write already exists (checked before anything is written)."""


@dataclass
class RestoreReport:
    """What :func:`restore` made, and what it could not."""

    directories: int = 0
    files: int = 0
    symlinks: int = 0
    specials: int = 0  # FIFOs and device nodes
    hard_links: int = 0  # further paths of an inode, made with os.link
    content_bytes: int = 0  # file content written
    #: (container path, what happened) for everything skipped or only partly restored
    notes: List[Tuple[bytes, str]] = field(default_factory=list)
    #: files whose content the (lenient) container reported faults for; they may hold wrong bytes
    damaged: List[bytes] = field(default_factory=list)

    def summary(self) -> str:
        """One line, e.g. ``restored 3 directories, 10 files (4096 bytes), 1 symlink, ...``."""
        parts = [
            "%d directories" % self.directories,
            "%d files (%d bytes)" % (self.files, self.content_bytes),
            "%d symlinks" % self.symlinks,
            "%d special files" % self.specials,
            "%d hard links" % self.hard_links,
        ]
        text = "restored " + ", ".join(parts)
        return text + ("; %d notes" % len(self.notes) if self.notes else "")

    def note_lines(self) -> List[str]:
        """The notes as ``/path: what happened`` lines."""
        return ["%s: %s" % (display_path(path), what) for path, what in self.notes]


def _ns(sec: int, nsec: int) -> int:
    return sec * 1_000_000_000 + nsec


class _Restorer:
    """One restore run: the plan, then the objects, then the directories' attributes."""

    def __init__(self, container: Container, owners: bool, overwrite: bool) -> None:
        self.container = container
        self.owners = owners
        self.overwrite = overwrite
        self.report = RestoreReport()
        self.first_link: Dict[bytes, Optional[bytes]] = {}  # fh -> first local path (None: not restored)
        self.dirs: List[Tuple[bytes, Inode, bytes]] = []  # (container path, inode, local path), walk order

    # --- plan ----------------------------------------------------------------

    @staticmethod
    def plan(container: Container, top: WalkEntry, dest: bytes) -> List[Tuple[WalkEntry, bytes]]:
        """(entry, local path) of ``top`` and everything under it, parents first (walk order)."""
        prefix = top.path + b"/" if top.path else b""
        out = [(top, dest)]
        if top.inode.is_dir:
            for entry in container.walk():
                if entry.path.startswith(prefix) and entry.path != top.path:
                    out.append((entry, os.path.join(dest, entry.path[len(prefix):])))
        return out

    def check_destinations(self, plan: List[Tuple[WalkEntry, bytes]]) -> None:
        """Refuse, before writing anything, paths that exist and may not be replaced."""
        refused: List[Tuple[bytes, bool]] = []  # (local path, is a directory)
        for entry, local in plan:
            if not os.path.lexists(local):
                continue
            is_dir = stat.S_ISDIR(os.lstat(local).st_mode)
            if is_dir and entry.inode.is_dir:
                continue  # an existing directory is reused (its attributes are set at the end)
            if is_dir or not self.overwrite:  # a directory is never removed, even with overwrite
                refused.append((local, is_dir))
        if refused:
            local, is_dir = refused[0]
            more = " (and %d more)" % (len(refused) - 1) if len(refused) > 1 else ""
            kind = "is a directory" if is_dir else "already exists"
            raise DestinationExistsError("'%s' %s%s; nothing was restored" % (os.fsdecode(local), kind, more))

    # --- objects ---------------------------------------------------------------

    def _clear(self, local: bytes) -> None:
        """Remove a non-directory in the way (only reached with overwrite; checked up front)."""
        if os.path.lexists(local) and not stat.S_ISDIR(os.lstat(local).st_mode):
            os.unlink(local)

    def _attributes(self, path: bytes, inode: Inode, local: bytes, fd: Optional[int] = None) -> None:
        """Owner, then mode (chown clears set-id bits), then times; symlinks keep their mode."""
        attrs = inode.vattr
        target = fd if fd is not None else local
        if self.owners:
            try:
                if fd is not None:
                    os.fchown(fd, attrs.uid, attrs.gid)
                else:
                    os.chown(local, attrs.uid, attrs.gid, follow_symlinks=False)
            except OSError as exc:
                self.report.notes.append((path, "owner %d:%d not set: %s" % (attrs.uid, attrs.gid, exc.strerror)))
        if attrs.btype != Btype.LNK:
            os.chmod(target, stat.S_IMODE(attrs.mode))
        times = (_ns(attrs.atime_sec, attrs.atime_nsec), _ns(attrs.mtime_sec, attrs.mtime_nsec))
        if fd is not None:
            os.utime(fd, ns=times)
        else:
            os.utime(local, ns=times, follow_symlinks=False)

    def _file(self, path: bytes, inode: Inode, local: bytes) -> None:
        fd = os.open(local, _O_CREATE, 0o600)
        before = len(self.container.problems)
        try:
            for chunk in self.container.iter_content(inode):
                view = memoryview(chunk)
                while view:
                    view = view[os.write(fd, view):]
                self.report.content_bytes += len(chunk)
            self._attributes(path, inode, local, fd)
        except BaseException:
            os.close(fd)
            os.unlink(local)  # no half-written file is left behind
            raise
        os.close(fd)
        # a lenient container records content faults instead of raising
        faults = self.container.problems[before:]
        for problem in faults:
            self.report.notes.append((path, "content may be damaged: " + problem))
        if faults:
            self.report.damaged.append(path)
        self.report.files += 1

    def _object(self, path: bytes, inode: Inode, local: bytes) -> bool:
        """Create one non-directory; False when it was skipped (with a note)."""
        attrs = inode.vattr
        btype = attrs.btype
        if btype == Btype.REG:
            self._file(path, inode, local)
            return True
        if btype == Btype.LNK:
            os.symlink(inode.obj.data or b"", local)
            self.report.symlinks += 1
        elif btype == Btype.FIFO:
            os.mkfifo(local, 0o600)
            self.report.specials += 1
        elif btype in (Btype.BLK, Btype.CHR):
            kind = stat.S_IFBLK if btype == Btype.BLK else stat.S_IFCHR
            try:
                os.mknod(local, kind | 0o600, os.makedev(attrs.rdev_major, attrs.rdev_minor))
            except PermissionError:
                self.report.notes.append((path, "device %d,%d not created: mknod needs root"
                                          % (attrs.rdev_major, attrs.rdev_minor)))  # fmt: skip
                return False
            self.report.specials += 1
        elif btype == Btype.SOCK:
            self.report.notes.append((path, "socket not restored: a socket is made by a listening process"))
            return False
        else:
            self.report.notes.append((path, "object of type %d not restored" % btype))
            return False
        self._attributes(path, inode, local)
        return True

    def entry(self, entry: WalkEntry, local: bytes) -> None:
        """Restore one walk entry (its parent directory exists already)."""
        inode = entry.inode
        if inode.is_dir:
            if not os.path.isdir(local) or os.path.islink(local):
                self._clear(local)
                os.mkdir(local, 0o700)  # private while filling; the real mode is set at the end
            self.dirs.append((entry.path, inode, local))
            self.report.directories += 1
            return
        self._clear(local)
        if entry.fh in self.first_link:
            first = self.first_link[entry.fh]
            if first is None:
                self.report.notes.append((entry.path, "hard link to an object that was not restored: skipped"))
                return
            os.link(first, local, follow_symlinks=False)  # link the symlink itself, not its target
            self.report.hard_links += 1
            return
        self.first_link[entry.fh] = local if self._object(entry.path, inode, local) else None

    def finish_directories(self) -> None:
        """Set directory owners, modes and times, deepest first, so later writes cannot touch them."""
        for path, inode, local in reversed(self.dirs):
            self._attributes(path, inode, local)


def _safe(entry: WalkEntry, top: bytes, restored_dirs: Set[bytes]) -> bool:
    """True when the entry's path stays inside the destination (see the module docstring)."""
    if entry.path == top:
        return True
    parent, _, name = entry.path.rpartition(b"/")
    return name not in _BAD_NAMES and b"\0" not in name and parent in restored_dirs


def restore(container: Container, path_in_container: bytes, dest: str, *, owners: Optional[bool] = None,
            overwrite: bool = False) -> RestoreReport:
    """Restore ``path_in_container`` (a file or a directory; ``b""`` or ``b"/"`` is the root) as ``dest``.

    ``dest`` becomes the restored object: its parent must exist; an existing
    directory is reused for a directory. Any other path that already exists
    makes the call raise :class:`DestinationExistsError` before anything is
    written, unless ``overwrite`` is true: then files, symlinks and special
    files in the way are replaced (directories never are).

    ``owners``: set uid and gid from the container; None (the default) means
    "when running as root". Hard links are restored among the paths restored
    by this call; a link whose other paths lie outside the subtree becomes a
    plain copy.

    Raises FileNotFoundError for a path the container does not hold, OSError
    when writing fails (a file being written is removed), and
    :class:`~clfsload.errors.FormatError` or target errors when the
    container cannot be read (in strict mode, also for content faults; a
    lenient container records them and they come back as notes).
    """
    if owners is None:
        owners = os.geteuid() == 0
    top = container.lookup(bytes(path_in_container).strip(b"/"))
    restorer = _Restorer(container, owners, overwrite)
    plan = restorer.plan(container, top, os.fsencode(dest))
    restorer.check_destinations(plan)
    restored_dirs: Set[bytes] = set()
    for entry, local in plan:
        if not _safe(entry, top.path, restored_dirs):
            restorer.report.notes.append((entry.path, "unsafe name: not restored"))
            continue
        restorer.entry(entry, local)
        if entry.inode.is_dir:
            restored_dirs.add(entry.path)
    restorer.finish_directories()
    return restorer.report
