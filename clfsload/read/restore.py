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

A container is data, and a damaged or hostile one must not write outside
the destination (the tar/zip path-traversal class). So:

* the walk (:class:`~clfsload.clfs.container.Container`) refuses names that
  are empty, ``.`` or ``..``, hold ``/`` or NUL, are longer than
  :data:`~clfsload.clfs.constants.CLFS_NAME_MAX` bytes or repeat a name
  already listed in the directory; such entries never become paths;
* every object is created relative to an open descriptor of its parent
  directory (``openat`` and friends), and every directory on the way is
  opened from the destination down with ``O_NOFOLLOW | O_DIRECTORY``: a
  symlink restored earlier (or put there by anyone) is never followed, and a
  file is created with ``O_EXCL | O_NOFOLLOW``;
* a path is restored only inside a directory restored by this call, and a
  hard link only to a file restored by this call.

Whatever cannot be restored (a refused name, an inode that does not decode,
a write that fails) is listed in :attr:`RestoreReport.failures` and the
restore goes on; the directories restored get their final modes and times
even then.
"""

import os
import stat
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Set, Tuple

from ..clfs.constants import SYMLINK_TARGET_MAX, Btype
from ..clfs.container import Container, Inode, WalkEntry, bad_name
from ..errors import ClfsLoadError
from .verify import display_path

__all__ = ["RestoreReport", "DestinationExistsError", "restore"]

_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_O_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | _CLOEXEC
_O_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | _CLOEXEC


class DestinationExistsError(ClfsLoadError, FileExistsError):
    """A path the restore would write already exists (checked before anything is written)."""


class _Refused(Exception):
    """One entry cannot be restored; the message says why (it becomes a failure line)."""


@dataclass
class RestoreReport:
    """What :func:`restore` made, and what it could not."""

    directories: int = 0
    files: int = 0
    symlinks: int = 0
    specials: int = 0  # FIFOs and device nodes
    hard_links: int = 0  # further paths of an inode, made with os.link
    content_bytes: int = 0  # file content written
    #: (container path, what happened) for everything skipped by design or only partly restored
    notes: List[Tuple[bytes, str]] = field(default_factory=list)
    #: files whose content the (lenient) container reported faults for; they may hold wrong bytes
    damaged: List[bytes] = field(default_factory=list)
    #: (container path, why) for every entry that was not restored: the restore is incomplete
    failures: List[Tuple[bytes, str]] = field(default_factory=list)
    #: format problems the walk found in the restored subtree's blobs: the tree may not be the one stored
    problems: List[str] = field(default_factory=list)

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
        if self.failures:
            text += "; %d entries NOT restored" % len(self.failures)
        return text + ("; %d notes" % len(self.notes) if self.notes else "")

    def note_lines(self) -> List[str]:
        """The notes as ``/path: what happened`` lines."""
        return ["%s: %s" % (display_path(path), what) for path, what in self.notes]

    def failure_lines(self) -> List[str]:
        """The failures as ``/path: not restored: why`` lines."""
        return ["%s: not restored: %s" % (display_path(path), why) for path, why in self.failures]

    @property
    def complete(self) -> bool:
        """True when every entry was restored with undamaged content from a subtree without format problems."""
        return not self.failures and not self.damaged and not self.problems


def _ns(sec: int, nsec: int) -> int:
    return sec * 1_000_000_000 + nsec


def _open_dir(root_fd: int, parts: Tuple[bytes, ...]) -> int:
    """A new descriptor of ``root/parts...``, never following a symlink on the way (ELOOP/ENOTDIR if one is)."""
    fd = os.dup(root_fd)
    try:
        for part in parts:
            child = os.open(part, _O_DIR, dir_fd=fd)
            os.close(fd)
            fd = child
    except BaseException:
        os.close(fd)
        raise
    return fd


def _lstat_at(dir_fd: int, name: bytes) -> Optional[os.stat_result]:
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None


class _Restorer:
    """One restore run: the plan, then the objects, then the directories' attributes."""

    def __init__(self, container: Container, owners: bool, overwrite: bool) -> None:
        self.container = container
        self.owners = owners
        self.overwrite = overwrite
        self.report = RestoreReport()
        #: fh -> (parent parts, name) of its first restored path (None: not restored)
        self.first_link: Dict[bytes, Optional[Tuple[Tuple[bytes, ...], bytes]]] = {}
        #: (container path, inode, parts below the destination), walk order
        self.dirs: List[Tuple[bytes, Inode, Tuple[bytes, ...]]] = []
        self.root_fd = -1
        self._parent: Tuple[Optional[Tuple[bytes, ...]], int] = (None, -1)  # one cached parent descriptor

    # --- plan ----------------------------------------------------------------

    @staticmethod
    def plan(container: Container, top: WalkEntry) -> List[Tuple[WalkEntry, Tuple[bytes, ...]]]:
        """(entry, path parts below the destination) of ``top`` and everything under it, parents first."""
        prefix = top.path + b"/" if top.path else b""
        out: List[Tuple[WalkEntry, Tuple[bytes, ...]]] = [(top, ())]
        if top.inode.is_dir:
            for entry in container.walk():
                if entry.path.startswith(prefix) and entry.path != top.path:
                    out.append((entry, tuple(entry.path[len(prefix):].split(b"/"))))
        return out

    def check_destinations(self, plan: List[Tuple[WalkEntry, Tuple[bytes, ...]]], dest: bytes) -> None:
        """Refuse, before writing anything, paths that exist and may not be replaced."""
        refused: List[Tuple[bytes, bool]] = []  # (local path, is a directory)
        for entry, parts in plan:
            local = os.path.join(dest, *parts) if parts else dest
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

    # --- descriptors -------------------------------------------------------------

    def parent_fd(self, parts: Tuple[bytes, ...]) -> int:
        """The (cached) descriptor of the restored directory ``parts``; do not close it."""
        cached, fd = self._parent
        if cached != parts:
            self.close_parent()
            fd = _open_dir(self.root_fd, parts)
            self._parent = (parts, fd)
        return fd

    def close_parent(self) -> None:
        cached, fd = self._parent
        if cached is not None:
            os.close(fd)
        self._parent = (None, -1)

    # --- objects ---------------------------------------------------------------

    def _clear(self, dir_fd: int, name: bytes) -> None:
        """Remove a non-directory in the way (only reached with overwrite; checked up front)."""
        st = _lstat_at(dir_fd, name)
        if st is not None and not stat.S_ISDIR(st.st_mode):
            os.unlink(name, dir_fd=dir_fd)

    def _attributes(self, path: bytes, inode: Inode, fd: Optional[int] = None,
                    at: Optional[Tuple[int, bytes]] = None) -> None:  # fmt: skip
        """Owner, then mode (chown clears set-id bits), then times; by descriptor or by (dir fd, name)."""
        attrs = inode.vattr
        if self.owners:
            try:
                if fd is not None:
                    os.fchown(fd, attrs.uid, attrs.gid)
                else:
                    assert at is not None
                    os.chown(at[1], attrs.uid, attrs.gid, dir_fd=at[0], follow_symlinks=False)
            except (OSError, OverflowError) as exc:
                why = getattr(exc, "strerror", None) or str(exc)
                self.report.notes.append((path, "owner %d:%d not set: %s" % (attrs.uid, attrs.gid, why)))
        times = (_ns(attrs.atime_sec, attrs.atime_nsec), _ns(attrs.mtime_sec, attrs.mtime_nsec))
        if fd is not None:
            os.fchmod(fd, stat.S_IMODE(attrs.mode))
            os.utime(fd, ns=times)
            return
        assert at is not None
        if attrs.btype != Btype.LNK:  # an object just made here, not a symlink: chmod may follow
            os.chmod(at[1], stat.S_IMODE(attrs.mode), dir_fd=at[0])
        os.utime(at[1], ns=times, dir_fd=at[0], follow_symlinks=False)

    def _file(self, path: bytes, inode: Inode, dir_fd: int, name: bytes) -> None:
        fd = os.open(name, _O_CREATE, 0o600, dir_fd=dir_fd)
        before = len(self.container.problems)
        try:
            for chunk in self.container.iter_content(inode):
                view = memoryview(chunk)
                while view:
                    view = view[os.write(fd, view):]
                self.report.content_bytes += len(chunk)
            self._attributes(path, inode, fd=fd)
        except BaseException:
            os.close(fd)
            os.unlink(name, dir_fd=dir_fd)  # no half-written file is left behind
            raise
        os.close(fd)
        # a lenient container records content faults instead of raising
        faults = self.container.problems[before:]
        for problem in faults:
            self.report.notes.append((path, "content may be damaged: " + problem))
        if faults:
            self.report.damaged.append(path)
        self.report.files += 1

    def _object(self, path: bytes, inode: Inode, dir_fd: int, name: bytes) -> bool:
        """Create one non-directory; False when it was skipped by design (with a note)."""
        attrs = inode.vattr
        btype = attrs.btype
        if btype == Btype.REG:
            self._file(path, inode, dir_fd, name)
            return True
        if btype == Btype.LNK:
            target = inode.obj.data or b""
            if b"\0" in target:
                raise _Refused("symlink target holds a NUL byte (%s)" % inode.blob)
            if len(target) > SYMLINK_TARGET_MAX:
                raise _Refused("symlink target of %d bytes is longer than %d (%s)"
                               % (len(target), SYMLINK_TARGET_MAX, inode.blob))  # fmt: skip
            os.symlink(target, name, dir_fd=dir_fd)
            self.report.symlinks += 1
        elif btype == Btype.FIFO:
            os.mkfifo(name, 0o600, dir_fd=dir_fd)
            self.report.specials += 1
        elif btype in (Btype.BLK, Btype.CHR):
            kind = stat.S_IFBLK if btype == Btype.BLK else stat.S_IFCHR
            try:
                device = os.makedev(attrs.rdev_major, attrs.rdev_minor)
            except (OverflowError, ValueError):
                raise _Refused("device number %d,%d out of range (%s)"
                               % (attrs.rdev_major, attrs.rdev_minor, inode.blob)) from None  # fmt: skip
            try:
                os.mknod(name, kind | 0o600, device, dir_fd=dir_fd)
            except PermissionError:
                self.report.notes.append((path, "device %d,%d not created: mknod needs root"
                                          % (attrs.rdev_major, attrs.rdev_minor)))  # fmt: skip
                return False
            self.report.specials += 1
        elif btype == Btype.SOCK:
            self.report.notes.append((path, "socket not restored: a socket is made by a listening process"))
            return False
        else:
            raise _Refused("object of type %d (%s)" % (btype, inode.blob))
        self._attributes(path, inode, at=(dir_fd, name))
        return True

    def entry(self, entry: WalkEntry, parts: Tuple[bytes, ...]) -> None:
        """Restore one walk entry below the destination (its parent directory is restored already)."""
        inode = entry.inode
        dir_fd = self.parent_fd(parts[:-1])
        name = parts[-1]
        if inode.is_dir:
            st = _lstat_at(dir_fd, name)
            if st is None or not stat.S_ISDIR(st.st_mode):
                self._clear(dir_fd, name)
                os.mkdir(name, 0o700, dir_fd=dir_fd)  # private while filling; the real mode is set at the end
            self.dirs.append((entry.path, inode, parts))
            self.report.directories += 1
            return
        self._clear(dir_fd, name)
        if entry.fh in self.first_link:
            first = self.first_link[entry.fh]
            if first is None:
                raise _Refused("hard link to an object that was not restored")
            src_fd = _open_dir(self.root_fd, first[0])
            try:  # link the object itself (a symlink stays a symlink)
                os.link(first[1], name, src_dir_fd=src_fd, dst_dir_fd=dir_fd, follow_symlinks=False)
            finally:
                os.close(src_fd)
            self.report.hard_links += 1
            return
        self.first_link[entry.fh] = None
        if self._object(entry.path, inode, dir_fd, name):
            self.first_link[entry.fh] = (parts[:-1], name)

    def finish_directories(self) -> None:
        """Set directory owners, modes and times, deepest first, so later writes cannot touch them."""
        self.close_parent()
        for path, inode, parts in reversed(self.dirs):
            try:
                fd = _open_dir(self.root_fd, parts)
                try:
                    self._attributes(path, inode, fd=fd)
                finally:
                    os.close(fd)
            except OSError as exc:
                self.report.failures.append((path, "attributes not set: %s" % (exc.strerror or exc)))


def _under(path: bytes, top: bytes) -> bool:
    return not top or path == top or path.startswith(top + b"/")


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

    Nothing is written outside ``dest`` (see the module docstring). Entries
    that cannot be restored, including those the walk refused or could not
    decode, are listed in :attr:`RestoreReport.failures` and the rest goes
    on. Raises FileNotFoundError for a path the container does not hold,
    OSError when ``dest`` itself cannot be made, and
    :class:`~clfsload.errors.FormatError` or target errors when the
    container cannot be walked at all.
    """
    if owners is None:
        owners = os.geteuid() == 0
    top = container.lookup(bytes(path_in_container).strip(b"/"))
    restorer = _Restorer(container, owners, overwrite)
    report = restorer.report
    plan = restorer.plan(container, top)
    dest_b = os.fsencode(dest)
    restorer.check_destinations(plan, dest_b)
    blobs = {b for entry, _ in plan for b in [entry.inode.blob] + [r.blob for r in entry.inode.segments]
             + [r.blob for r in entry.inode.indirects]}  # fmt: skip
    # problems the walk found (content faults come later, as notes on damaged files)
    report.problems = [p for p in container.problems if not top.path or p.split(": ", 1)[0] in blobs]
    for skipped in container.skipped:
        if _under(skipped.path, top.path):
            report.failures.append((skipped.path, skipped.reason))
    if top.inode.is_dir:
        if not os.path.isdir(dest_b):
            if os.path.lexists(dest_b):
                os.unlink(dest_b)  # overwrite: a file in the way (checked up front)
            os.mkdir(dest_b, 0o700)
        restorer.root_fd = os.open(dest_b, os.O_RDONLY | os.O_DIRECTORY | _CLOEXEC)
        restorer.dirs.append((top.path, top.inode, ()))
        report.directories += 1
        plan = plan[1:]
    else:
        parent, name = os.path.split(dest_b.rstrip(b"/") or dest_b)
        restorer.root_fd = os.open(parent or b".", os.O_RDONLY | os.O_DIRECTORY | _CLOEXEC)
        plan = [(top, (name,))]
    restored_dirs: Set[bytes] = {top.path}
    try:
        for entry, parts in plan:
            parent_path = entry.path.rpartition(b"/")[0]
            if entry.path != top.path and parent_path not in restored_dirs:
                report.failures.append((entry.path, "its directory was not restored"))
                continue
            why = bad_name(parts[-1]) if parts else None  # the walk refuses these already: a second guard
            if why is not None:
                report.failures.append((entry.path, why))
                continue
            try:
                restorer.entry(entry, parts)
            except _Refused as exc:
                report.failures.append((entry.path, str(exc)))
                continue
            except (OSError, ClfsLoadError, ValueError, OverflowError) as exc:
                why = (getattr(exc, "strerror", None) or str(exc)) if isinstance(exc, OSError) else str(exc)
                report.failures.append((entry.path, "%s (%s)" % (why, entry.inode.blob)))
                continue
            if entry.inode.is_dir:
                restored_dirs.add(entry.path)
    finally:
        restorer.finish_directories()  # final modes even when the restore stopped half-way
        os.close(restorer.root_fd)
    return report
