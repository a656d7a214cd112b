"""What a power cut leaves: the durable image rebuilt from powercutfs' records.

powercutfs (``powercutfs.c``) runs on a private volatile copy (``live``) of
the durable image (``store``) and records in ``meta`` what became durable
since the mount: ``data/<oid>`` a file's content at its last fsync,
``dirs/<oid>`` a directory's entries at its last fsyncdir, ``created`` the
inodes it made. ``base`` (written by the mounter before the daemon starts)
names the inodes that were in ``live`` at mount: ``INO\\0PATH\\0`` records,
PATH relative to the root (``.``), so ``i<INO>`` is the file or directory
``store/PATH``.

``build_image`` walks the durable entries from the root and writes the
image a remount shows:

* a directory's entries are its last fsyncdir listing, else (an inode from
  the mount) its entries in ``store``, else (created since) none;
* a file's content is its last fsync copy, else (from the mount) its
  content in ``store``, else empty;
* ``tear=True``: a file whose inode still exists in ``live`` with content
  different from its durable content is torn: the first K bytes of the live
  content over the durable content (``live[:K] + durable[K:]``, byte for
  byte in place), K drawn uniformly from ``0..len(live)`` by
  ``random.Random("<seed>:<path in the image>")``, so the same seed and the
  same operations give the same bytes (an unsynced truncation never tears);
* an inode reached under several names is hard-linked (a rename durable in
  both directories, or a real hard link); a directory reached twice is
  written once, at its first path (a cycle cannot arise on a real disk
  either).

``swap_in`` replaces ``store`` by the new image with one
``renameat2(RENAME_EXCHANGE)``, so a crash of the caller at any moment
leaves ``store`` whole (old or new); the old image is removed afterwards.
"""

import ctypes
import os
import random
import shutil
import stat
from pathlib import Path
from typing import Dict, List, NamedTuple, Optional, Set, Tuple


class Entry(NamedTuple):
    """One durable directory entry."""

    kind: str  # "d", "f" or "l"
    mode: int
    oid: str
    name: str
    target: str  # a symlink's target, else ""


def write_base(live: Path, meta: Path) -> None:
    """Record the inode of every path in ``live`` (the durable image just copied) in ``meta/base``."""
    out = bytearray(b"%d\0.\0" % os.lstat(live).st_ino)
    for dirpath, dirnames, filenames in os.walk(live):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            out += b"%d\0" % os.lstat(path).st_ino + os.fsencode(str(path.relative_to(live))) + b"\0"
    (meta / "base").write_bytes(bytes(out))


def _fields(blob: bytes) -> List[str]:
    return [os.fsdecode(f) for f in blob.split(b"\0")[:-1]]


class Records:
    """The durable records of one mount: ``meta`` read after the daemon died."""

    def __init__(self, store: Path, live: Path, meta: Path) -> None:
        self.store = store
        self.meta = meta
        fields = _fields((meta / "base").read_bytes())
        self.base_path: Dict[str, str] = {}  # oid -> path in store
        self.base_oid: Dict[str, str] = {}  # path in store -> oid
        for ino, path in zip(fields[0::2], fields[1::2]):
            self.base_path.setdefault("i" + ino, path)
            self.base_oid[path] = "i" + ino
        self.root = self.base_oid["."]
        created: Dict[int, str] = {}
        created_file = meta / "created"
        if created_file.exists():
            for line in created_file.read_text().splitlines():
                ino, counter = line.split()
                created[int(ino)] = "n" + counter  # the last line for an inode wins
        self.live_path: Dict[str, Path] = {}  # oid -> a path of that regular file in live, now
        for dirpath, _dirnames, filenames in os.walk(live):
            for name in filenames:
                path = Path(dirpath) / name
                st = os.lstat(path)
                if stat.S_ISREG(st.st_mode):
                    self.live_path.setdefault(created.get(st.st_ino, "i%d" % st.st_ino), path)

    def entries(self, oid: str) -> List[Entry]:
        """The durable entries of directory ``oid``."""
        listing = self.meta / "dirs" / oid
        if listing.exists():
            f = _fields(listing.read_bytes())
            out = []
            for i in range(0, len(f), 3):
                kind, mode, child = f[i].split(" ")
                out.append(Entry(kind, int(mode, 8), child, f[i + 1], f[i + 2]))
            return out
        if oid not in self.base_path:
            return []  # created since the mount and never fsynced
        out = []
        here = self.base_path[oid]
        for name in sorted(os.listdir(self.store / here)):
            path = os.path.normpath(os.path.join(here, name))
            st = os.lstat(self.store / path)
            kind = "d" if stat.S_ISDIR(st.st_mode) else "l" if stat.S_ISLNK(st.st_mode) else "f"
            if kind == "f" and not stat.S_ISREG(st.st_mode):
                continue
            target = os.readlink(self.store / path) if kind == "l" else ""
            out.append(Entry(kind, stat.S_IMODE(st.st_mode), self.base_oid[path], name, target))
        return out

    def durable_source(self, oid: str) -> Optional[Path]:
        """The file holding the content file ``oid`` has after the cut (before any tearing); None: empty."""
        copy = self.meta / "data" / oid
        if copy.exists():
            return copy
        if oid in self.base_path:
            return self.store / self.base_path[oid]
        return None

    def live_data(self, oid: str) -> Optional[bytes]:
        """The content file ``oid`` has in the volatile copy now, None if its inode is gone."""
        path = self.live_path.get(oid)
        return path.read_bytes() if path is not None else None


def torn(durable: bytes, live: bytes, rng: random.Random) -> bytes:
    """The first K bytes of ``live`` over ``durable`` in place, K uniform in 0..len(live)."""
    k = rng.randint(0, len(live))
    return live[:k] + durable[k:]  # k <= len(live): every byte stays at its offset


def build_image(records: Records, out: Path, *, seed: int, tear: bool) -> None:
    """Write into the new directory ``out`` the tree a remount after the cut shows."""
    out.mkdir()
    written: Dict[str, Path] = {}  # file oid -> its first path in out (later names are hard links)
    seen_dirs: Set[str] = {records.root}
    pending: List[Tuple[str, Path, str]] = [(records.root, out, "")]  # (dir oid, its path, relative)
    while pending:
        oid, where, rel = pending.pop()
        for e in records.entries(oid):
            path, rel_path = where / e.name, os.path.join(rel, e.name)
            if e.kind == "d":
                if e.oid in seen_dirs:
                    continue
                seen_dirs.add(e.oid)
                path.mkdir()
                os.chmod(path, e.mode)
                pending.append((e.oid, path, rel_path))
            elif e.kind == "l":
                os.symlink(e.target, path)
            elif e.oid in written:
                os.link(written[e.oid], path)
            else:
                _write_file(records, e.oid, path, tear and random.Random("%d:%s" % (seed, rel_path)))
                os.chmod(path, e.mode)
                written[e.oid] = path


def _write_file(records: Records, oid: str, path: Path, tear_rng) -> None:
    """Put file ``oid``'s content after the cut at ``path``, torn with ``tear_rng`` unless it is False.

    Without tearing the content is moved (a record in meta, used once: other
    names of the inode are hard links) or hard-linked (a file of the old
    image, deleted after the swap), never copied."""
    source = records.durable_source(oid)
    if tear_rng:
        data = source.read_bytes() if source is not None else b""
        live = records.live_data(oid)
        if live is not None and live != data:
            path.write_bytes(torn(data, live, tear_rng))
            return
    if source is None:
        path.write_bytes(b"")
    elif source.is_relative_to(records.meta):
        os.rename(source, path)
    else:
        os.link(source, path)


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def swap_in(new: Path, store: Path) -> None:
    """Make ``new`` the directory at ``store`` atomically, then delete the old one."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.renameat2(_AT_FDCWD, os.fsencode(str(new)), _AT_FDCWD, os.fsencode(str(store)), _RENAME_EXCHANGE) != 0:
        err = ctypes.get_errno()
        raise OSError(err, "renameat2(RENAME_EXCHANGE) %s <-> %s: %s" % (new, store, os.strerror(err)))
    shutil.rmtree(new)  # now the old image

