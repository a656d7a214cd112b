"""Compare a CLFS container (or a local tree) with the directory tree it should hold.

:func:`compare_tree` checks a loaded container against its source;
:func:`compare_dirs` applies the same rules to two local trees (a restore
against its source). Both return :class:`Difference` records, empty when
everything matches.

What is compared, path by path, both ways (a path on one side only is
``missing`` from the container or ``extra`` in it; paths below a missing or
extra directory are implied and not listed again):

* the type, mode (all 16 bits), uid and gid;
* the size: bytes for regular files, code points of the target for symlinks
  (§10.3), ``st_size`` for FIFOs, sockets and devices; never for
  directories, whose CLFS size is the length of its entries stream;
* mtime, seconds and nanoseconds, after the float-time rule of §10.4: the
  source's ``st_mtime`` double split as the loader splits it, so
  1700000000.123456789 s matches a stored 1700000000 s + 123456716 ns;
* symlink targets (raw bytes) and device numbers (major, minor);
* nlink: for directories 2 + the number of subdirectories; for the rest the
  link structure below;
* link structure: with hard links preserved (``--preserve_hardlinks 1``),
  the paths sharing a container inode must be the paths sharing a source
  inode (links leading outside the tree do not count) and nlink their number;
  without, every non-directory must be its own inode with nlink 1. By default
  the mode is inferred: preserved when the container has any inode reached
  by several paths. So a preserved load that lost *every* hard link passes
  the inferred check; pass ``hardlinks=True`` to catch that;
* content of regular files of equal size (see below);
* with a container, its own health: every format problem the lenient reader
  finds (:meth:`Container.verify`) and every stray blob.

ctime, atime, inode numbers, the root's NAME and extended attributes are
never compared: CLFS does not keep them or they differ by nature (§16).

**Fast mode** (``deep=False``) reads no data segment. It proves: the tree
shape and every attribute above; the first min(size, 16 KiB) bytes of every
regular file, which live in the inode and are decoded by the walk; that
every inode, directory segment and indirect block reachable from the root
decodes and passes the reader's sanity checks (§17.2 step 9); that every
data segment a block map names exists under the right name and owner hash,
in the number the size calls for; that no blob is stray. It does **not**
prove that bytes past 16 KiB match, nor that data segments decode or carry
the right length and DATABACK: a flipped byte in a data segment, or a
source file rewritten past its first 16 KiB with its size and mtime kept,
goes unnoticed.

**Recorded checksums** (``checksums``, read from the load's state dir with
:func:`clfsload.work.checksum_log.read_checksums`; ``verify --state``): in fast mode,
each regular file with a checksum recorded at upload has its source file
hashed (XXH3-128; a file loaded in ranges, range by range, see
:mod:`clfsload.work.checksum_log`) and compared with it. That proves the bytes the load
stored (all of them, not only the first 16 KiB) equal the source now,
without downloading a data segment; that the stored blobs are intact is the
storage's own guarantee (Azure checks every Put Blob's MD5 itself).

**Deep mode** (``deep=True``) also streams every regular file of the
container and of the source and compares them byte for byte (the first
differing offset is reported), which decodes and checks every data segment.
"""

import os
import stat
from dataclasses import dataclass
from typing import Any, ClassVar, Dict, FrozenSet, Hashable, Iterable, Iterator, List, Optional, Set, Tuple, Union

from ..work.checksum_log import Recorded, matches
from ..work.prefetch import list_and_lstat
from ..work.source_reads import walk_reads
from ..clfs.constants import FIRST_SEGMENT_BYTES, FTYPE_TO_BTYPE, Btype
from ..clfs.container import Container, Inode
from ..clfs.vattr import ftype_of_mode, split_time
from ..errors import EncodeError, FormatError, TargetError

__all__ = ["Difference", "compare_tree", "compare_dirs", "display_path", "summarize"]

_READ_CHUNK = 1 << 20
_KIND_NAMES: Dict[int, str] = {
    Btype.REG: "regular file",
    Btype.DIR: "directory",
    Btype.LNK: "symbolic link",
    Btype.FIFO: "FIFO",
    Btype.SOCK: "socket",
    Btype.BLK: "block device",
    Btype.CHR: "character device",
}


def display_path(path: Optional[bytes]) -> str:
    """A container path for people: ``/`` + the path, undecodable bytes as ``\\xNN``; None is the container."""
    if path is None:
        return "(container)"
    return "/" + path.decode("utf-8", "backslashreplace")


def _kind(btype: int) -> str:
    return _KIND_NAMES.get(btype, "type %d" % btype)


def _show(value: Any) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, list):
        return "[%s]" % ", ".join(map(str, value))
    return str(value)


@dataclass(frozen=True)
class Difference:
    """One way the container (or the tree found) differs from what was expected.

    ``path`` is relative to the root, ``/``-separated, ``b""`` for the root,
    None for the container as a whole. ``what`` names the check (``missing``,
    ``extra``, ``type``, ``mode``, ``uid``, ``gid``, ``size``, ``mtime``,
    ``symlink target``, ``device``, ``nlink``, ``hard links``, ``content``,
    ``read error``, ``format``, ``stray``). ``expected`` is the source's
    value, ``found`` the container's; both are JSON-ready (str, int, list or
    None). For ``content``, ``read error``, ``format`` and ``stray``,
    ``expected`` is None and ``found`` says what is wrong.
    """

    path: Optional[bytes]
    what: str
    expected: Any = None
    found: Any = None

    #: checks whose ``found`` is a message rather than a value
    MESSAGES: ClassVar[FrozenSet[str]] = frozenset(("content", "read error", "format", "stray"))

    def __str__(self) -> str:
        where = display_path(self.path)
        if self.what in self.MESSAGES:
            return "%s: %s: %s" % (where, self.what, self.found)
        return "%s: %s: expected %s, found %s" % (where, self.what, _show(self.expected), _show(self.found))

    def to_json(self) -> Dict[str, Any]:
        """A JSON-ready dict; the path is text (``/``-rooted, undecodable bytes as ``\\xNN``) or None."""
        path = None if self.path is None else display_path(self.path)
        return {"path": path, "what": self.what, "expected": self.expected, "found": self.found}


@dataclass(frozen=True)
class _Node:
    """What is compared of one path, whichever side it comes from."""

    btype: int
    mode: int
    uid: int
    gid: int
    size: Optional[int]  # None: not comparable (directories)
    mtime: Optional[Tuple[int, int]]  # (sec, nsec) per §10.4; None: outside the CLFS range
    target: Optional[bytes]  # symlinks
    rdev: Optional[Tuple[int, int]]  # block and character devices
    nlink: int
    identity: Hashable  # equal for paths that are hard links of one object


def _rdev_text(rdev: Optional[Tuple[int, int]]) -> Optional[str]:
    return None if rdev is None else "%d,%d" % rdev


def _mtime_text(mtime: Optional[Tuple[int, int]]) -> str:
    return "out of the CLFS range" if mtime is None else "%d.%09d" % mtime


class _ReadFailure(Exception):
    """Reading one file's content failed on one side; the message names the side."""


def _guarded(label: str, chunks: Iterator[bytes]) -> Iterator[bytes]:
    """Pass ``chunks`` through, turning read failures into :class:`_ReadFailure`."""
    try:
        yield from chunks
    except OSError as exc:
        raise _ReadFailure("%s: %s" % (label, exc.strerror or exc)) from None
    except (FormatError, TargetError) as exc:  # a terminal error (access lost) stops the whole run
        raise _ReadFailure("%s: %s" % (label, exc)) from None


def _raised(st: Union[os.stat_result, OSError]) -> os.stat_result:
    """The stat, or raise the OSError that took its place."""
    if isinstance(st, OSError):
        raise st
    return st


class _TreeSide:
    """A local tree read with ``lstat`` (symlinks are never followed)."""

    def __init__(self, root: str, label: str) -> None:
        self.label = label
        self.root = os.fsencode(os.path.realpath(root))  # a symlinked root is followed, as the loader does
        self.nodes: Dict[bytes, _Node] = {}
        self.unlisted: Set[bytes] = set()  # directories that could not be listed
        self.errors: List[Difference] = []
        self.streamed: Set[Hashable] = set()
        top = os.lstat(self.root)
        if not stat.S_ISDIR(top.st_mode):
            raise NotADirectoryError("not a directory: %r" % root)
        stats = {b"": top}
        subdirs: Dict[bytes, int] = {}
        stack = [b""]
        # a pool of the default depth for this walk: its threads end with it
        with walk_reads() as reads:
            while stack:
                path = stack.pop()
                subdirs[path] = 0
                try:
                    # the listing, then its lstats many at a time (a filer costs a round trip each)
                    listed, failed = list_and_lstat(reads, self.local(path))
                    if failed is not None:
                        raise failed
                    children = [(name, _raised(st)) for name, _, st in listed]
                except OSError as exc:
                    self.unlisted.add(path)
                    self.errors.append(Difference(path, "read error", None,
                                                  "%s: cannot list: %s" % (label, exc.strerror)))
                    continue
                for name, st in children:
                    child = path + b"/" + name if path else name
                    stats[child] = st
                    if stat.S_ISDIR(st.st_mode):
                        subdirs[path] += 1
                        stack.append(child)
        groups: Dict[Hashable, int] = {}
        for st in stats.values():
            key = (st.st_dev, st.st_ino)
            groups[key] = groups.get(key, 0) + 1
        for path, st in stats.items():
            self.nodes[path] = self._node(path, st, subdirs.get(path, 0), groups)

    def local(self, path: bytes) -> bytes:
        """The local path of a tree path."""
        return os.path.join(self.root, path) if path else self.root

    def _node(self, path: bytes, st: os.stat_result, subdirs: int, groups: Dict[Hashable, int]) -> _Node:
        try:
            btype = int(FTYPE_TO_BTYPE[ftype_of_mode(st.st_mode)])
        except EncodeError:
            btype = 0  # a type CLFS cannot hold; never equal to a container's
        try:
            mtime: Optional[Tuple[int, int]] = split_time(st.st_mtime)
        except EncodeError:
            mtime = None
        size: Optional[int] = st.st_size
        target = None
        if btype == Btype.DIR:
            size = None
        elif btype == Btype.LNK:
            try:
                target = os.readlink(self.local(path))
                size = len(os.fsdecode(target))  # code points, as the loader counts (§10.3)
            except OSError as exc:
                self.errors.append(Difference(path, "read error", None, "%s: %s" % (self.label, exc.strerror)))
        identity = (st.st_dev, st.st_ino)
        return _Node(
            btype=btype,
            mode=st.st_mode & 0xFFFF,
            uid=st.st_uid,
            gid=st.st_gid,
            size=size,
            mtime=mtime,
            target=target,
            rdev=(os.major(st.st_rdev), os.minor(st.st_rdev)) if btype in (Btype.BLK, Btype.CHR) else None,
            nlink=subdirs + 2 if btype == Btype.DIR else groups[identity],  # links inside the tree only
            identity=identity,
        )

    def head(self, path: bytes, n: int) -> bytes:
        """The first ``n`` bytes of a file."""
        return next(self.chunks(path, n), b"")

    def chunks(self, path: bytes, size: int = _READ_CHUNK) -> Iterator[bytes]:
        """A file's bytes in chunks (O_NOFOLLOW and O_NONBLOCK: a swapped-in symlink or FIFO cannot hang us)."""
        flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
        fd = os.open(self.local(path), flags)
        try:
            while True:
                chunk = os.read(fd, size)
                if not chunk:
                    return
                yield chunk
        finally:
            os.close(fd)


class _ContainerSide:
    """A walked container; content comes from the inode DATA and the data segments."""

    def __init__(self, container: Container, label: str = "container") -> None:
        self.label = label
        self.container = container
        self.nodes: Dict[bytes, _Node] = {}
        self.unlisted: Set[bytes] = set()  # the lenient walk lists every directory it reaches
        self.errors: List[Difference] = []
        self.streamed: Set[Hashable] = set()
        #: blob name -> the first path of the object it belongs to (inode, segments, indirect blocks)
        self.blob_paths: Dict[str, bytes] = {}
        self._inodes: Dict[bytes, Inode] = {}
        for entry in container.walk():
            inode, attrs = entry.inode, entry.inode.vattr
            btype = attrs.btype
            self._inodes[entry.path] = inode
            for blob in [inode.blob] + [r.blob for r in inode.segments] + [r.blob for r in inode.indirects]:
                self.blob_paths.setdefault(blob, entry.path)
            self.nodes[entry.path] = _Node(
                btype=btype,
                mode=attrs.mode,
                uid=attrs.uid,
                gid=attrs.gid,
                size=None if btype == Btype.DIR else attrs.size,
                mtime=(attrs.mtime_sec, attrs.mtime_nsec),
                target=(inode.obj.data or b"") if btype == Btype.LNK else None,
                rdev=(attrs.rdev_major, attrs.rdev_minor) if btype in (Btype.BLK, Btype.CHR) else None,
                nlink=attrs.nlink,
                identity=entry.fh,
            )

    def head(self, path: bytes, n: int) -> bytes:
        """The inode DATA of a file, up to ``n`` bytes: already decoded by the walk."""
        return (self._inodes[path].obj.data or b"")[:n]

    def chunks(self, path: bytes) -> Iterator[bytes]:
        """A file's bytes: inode DATA, then every data segment, read and checked one at a time."""
        return self.container.iter_content(self._inodes[path])

    def drain_unstreamed(self) -> List[Difference]:
        """Read every regular file not streamed yet (deep mode), so every data segment is checked."""
        out = []
        for path, node in self.nodes.items():
            if node.btype != Btype.REG or node.identity in self.streamed:
                continue
            self.streamed.add(node.identity)
            try:
                for _ in _guarded(self.label, self.chunks(path)):
                    pass
            except _ReadFailure as exc:
                out.append(Difference(path, "read error", None, str(exc)))
        return out


def _parent(path: bytes) -> bytes:
    return path.rpartition(b"/")[0]


def _tree_order(path: bytes) -> List[bytes]:
    return path.split(b"/") if path else []


def _mismatch(a: memoryview, b: memoryview) -> int:
    """Index of the first differing byte of two unequal views of equal length."""
    lo, hi = 0, len(a)
    while hi - lo > 64:  # bisect on slice equality, then scan the last few bytes
        mid = (lo + hi) // 2
        if a[lo:mid] == b[lo:mid]:
            lo = mid
        else:
            hi = mid
    return next(i for i in range(lo, hi) if a[i] != b[i])


def _next_nonempty(chunks: Iterator[bytes]) -> memoryview:
    """The next non-empty chunk, or an empty view once the stream is exhausted."""
    for chunk in chunks:
        if chunk:
            return memoryview(chunk)
    return memoryview(b"")


def _first_difference(left: Iterator[bytes], right: Iterator[bytes]) -> Optional[int]:
    """The first offset where two chunked byte streams differ (or one ends first); None if equal.

    Equal streams are consumed to the end, so a reader's end-of-stream
    checks (the container's total against VATTR size) do run.
    """
    lv = rv = memoryview(b"")
    offset = 0
    while True:
        # invariant: lv and rv both start at byte `offset` of their stream
        if not lv:
            lv = _next_nonempty(left)
        if not rv:
            rv = _next_nonempty(right)
        if not lv or not rv:
            return None if not lv and not rv else offset
        n = min(len(lv), len(rv))
        if lv[:n] != rv[:n]:
            return offset + _mismatch(lv[:n], rv[:n])
        offset += n
        lv, rv = lv[n:], rv[n:]


class _Comparison:
    """Compare an expected side with a found side (each a _TreeSide or _ContainerSide)."""

    def __init__(self, expected: Any, found: Any, deep: bool, hardlinks: Optional[bool],
                 checksums: Optional[Dict[bytes, Recorded]] = None) -> None:
        self.expected, self.found, self.deep = expected, found, deep
        self.checksums = checksums or {}
        self.out: List[Difference] = list(expected.errors) + list(found.errors)
        found_groups = self._groups(found.nodes)
        if hardlinks is None:
            hardlinks = any(len(g) > 1 for g in found_groups.values())
        self.hardlinks = hardlinks
        self.groups = (self._groups(expected.nodes), found_groups)
        self.compared: Set[Tuple[Hashable, Hashable]] = set()

    @staticmethod
    def _groups(nodes: Dict[bytes, _Node]) -> Dict[bytes, Tuple[bytes, ...]]:
        """Path -> every non-directory path sharing its identity, sorted."""
        by_identity: Dict[Hashable, List[bytes]] = {}
        for path, node in nodes.items():
            if node.btype != Btype.DIR:
                by_identity.setdefault(node.identity, []).append(path)
        return {p: tuple(sorted(paths)) for paths in by_identity.values() for p in paths}

    def _listed_dir(self, side: Any, path: bytes) -> bool:
        node = side.nodes.get(path)
        return node is not None and node.btype == Btype.DIR and path not in side.unlisted

    def run(self) -> List[Difference]:
        exp, fnd = self.expected.nodes, self.found.nodes
        content: List[bytes] = []
        for path in sorted(set(exp) | set(fnd), key=_tree_order):
            e, f = exp.get(path), fnd.get(path)
            if e is None or f is None:
                parent = _parent(path)
                # report only the top of a missing or extra subtree, and nothing under an unlistable dir
                if self._listed_dir(self.expected, parent) and self._listed_dir(self.found, parent):
                    if f is None:
                        self.out.append(Difference(path, "missing", _kind(e.btype), None))
                    else:
                        self.out.append(Difference(path, "extra", None, _kind(f.btype)))
                continue
            if self._attributes(path, e, f) and e.btype == Btype.REG and e.size == f.size:
                content.append(path)
        for path in content:
            self._content(path)
        return self.out

    def _attributes(self, path: bytes, e: _Node, f: _Node) -> bool:
        """Compare one path's attributes; False when the types differ (nothing else is comparable)."""
        add = self.out.append
        if e.btype != f.btype:
            add(Difference(path, "type", _kind(e.btype), _kind(f.btype)))
            return False
        if e.mode != f.mode:
            add(Difference(path, "mode", "0o%o" % e.mode, "0o%o" % f.mode))
        for what, a, b in (("uid", e.uid, f.uid), ("gid", e.gid, f.gid)):
            if a != b:
                add(Difference(path, what, a, b))
        if e.size is not None and f.size is not None and e.size != f.size:
            add(Difference(path, "size", e.size, f.size))
        if e.mtime != f.mtime:
            add(Difference(path, "mtime", _mtime_text(e.mtime), _mtime_text(f.mtime)))
        if e.target != f.target:
            add(Difference(path, "symlink target", _text(e.target), _text(f.target)))
        if e.rdev != f.rdev:
            add(Difference(path, "device", _rdev_text(e.rdev), _rdev_text(f.rdev)))
        if e.btype == Btype.DIR:
            if e.nlink != f.nlink:
                add(Difference(path, "nlink", e.nlink, f.nlink))
        else:
            self._links(path, e, f)
        return True

    def _links(self, path: bytes, e: _Node, f: _Node) -> None:
        exp_group, found_group = self.groups[0][path], self.groups[1][path]
        exp_nodes, found_nodes = self.expected.nodes, self.found.nodes
        if self.hardlinks:
            # links whose partner is missing on the other side are reported as missing/extra already
            wanted = [p for p in exp_group if p in found_nodes]
            got = [p for p in found_group if p in exp_nodes]
            nlink = e.nlink
        else:
            wanted, got, nlink = [path], list(found_group), 1
        if wanted != got:
            self.out.append(Difference(path, "hard links", [display_path(p) for p in wanted],
                                       [display_path(p) for p in got]))  # fmt: skip
        if f.nlink != nlink:
            self.out.append(Difference(path, "nlink", nlink, f.nlink))

    def _content(self, path: bytes) -> None:
        """Compare the bytes of a regular file of equal size on both sides."""
        e, f = self.expected.nodes[path], self.found.nodes[path]
        pair = (e.identity, f.identity)
        if pair in self.compared:  # another link of the same two objects: already compared
            return
        self.compared.add(pair)
        try:
            if self.deep:
                self.found.streamed.add(f.identity)
                at = _first_difference(_guarded(self.expected.label, self.expected.chunks(path)),
                                       _guarded(self.found.label, self.found.chunks(path)))  # fmt: skip
            elif f.identity in self.checksums:
                if not matches(self.expected.local(path), self.checksums[f.identity]):
                    self.out.append(Difference(path, "content", None, "differs from the checksum recorded at upload"))
                return
            else:
                n = min(e.size or 0, FIRST_SEGMENT_BYTES)
                left = self.expected.head(path, n) if n else b""
                right = self.found.head(path, n) if n else b""
                at = None if left == right else _first_difference(iter([left]), iter([right]))
        except OSError as exc:  # fast mode reads the expected side outside _guarded
            self.out.append(Difference(path, "read error", None, "%s: %s" % (self.expected.label, exc.strerror)))
            return
        except _ReadFailure as exc:
            self.out.append(Difference(path, "read error", None, str(exc)))
            return
        if at is not None:
            self.out.append(Difference(path, "content", None, "first difference at byte %d" % at))


def _text(target: Optional[bytes]) -> Optional[str]:
    return None if target is None else target.decode("utf-8", "backslashreplace")


def _format_problems(container: Container, side: _ContainerSide, deep: bool) -> List[Difference]:
    """The container's own problems (lenient reader) and strays, as differences."""
    out = side.drain_unstreamed() if deep else []
    try:
        problems = container.verify(read_data=False)  # content was streamed above (deep) or is not read (fast)
        strays = set(container.strays())
    except FormatError as exc:  # e.g. no bucket object: reported, the rest still stands
        return out + [Difference(None, "format", None, str(exc))]
    for text in problems:
        blob = text.split(": ", 1)[0]
        if blob in strays:
            out.append(Difference(None, "stray", None, "%s: not reachable from the root" % blob))
        else:
            out.append(Difference(side.blob_paths.get(blob), "format", None, text))
    return out


def compare_tree(container: Container, source_dir: str, *, deep: bool,
                 hardlinks: Optional[bool] = None, checksums: Optional[Dict[bytes, Recorded]] = None) -> List[Difference]:
    """Every difference between ``container`` and the local tree ``source_dir``; empty when they match.

    ``expected`` values come from the source, ``found`` values from the
    container. ``deep`` streams every file (see the module docstring for what
    the fast mode proves and what it does not). ``hardlinks``: True if the
    load preserved hard links, False if not, None to infer it from the
    container. ``checksums``: filehandle -> XXH3-128 recorded at upload (fast
    mode compares whole files with them). A strict container is reopened leniently over the same source,
    so that one bad blob does not hide the rest.

    Raises :class:`~clfsload.errors.FormatError` (or
    :class:`~clfsload.clfs.container.UnfinishedTransferError`) when the
    container cannot be walked at all: no root, an unfinished transfer, an
    inode blob that does not decode. Raises OSError when ``source_dir``
    cannot be read and NotADirectoryError when it is not a directory. Target
    errors other than a missing or unreadable blob propagate.
    """
    if container.strict:
        container = Container(container.source, strict=False, allow_unfinished=container.allow_unfinished)
    source = _TreeSide(source_dir, "source")
    side = _ContainerSide(container)
    out = _Comparison(source, side, deep, hardlinks, checksums).run()
    return out + _format_problems(container, side, deep)


def compare_dirs(expected_dir: str, found_dir: str, *, deep: bool = True,
                 hardlinks: Optional[bool] = None) -> List[Difference]:
    """:func:`compare_tree`'s rules applied to two local trees, e.g. a restore and its source.

    Times follow the same §10.4 rule, so a tree restored from a container
    matches its source although the last nanosecond digits were lost in the
    container. ``hardlinks`` is about ``found_dir``: True if it must keep the
    expected tree's hard links, False if every path must be its own inode,
    None to infer it from ``found_dir``.
    """
    return _Comparison(_TreeSide(expected_dir, "expected"), _TreeSide(found_dir, "found"), deep, hardlinks).run()


def summarize(differences: Iterable[Difference]) -> Dict[str, int]:
    """How many differences of each kind, e.g. ``{"mode": 2, "missing": 1}``."""
    counts: Dict[str, int] = {}
    for d in differences:
        counts[d.what] = counts.get(d.what, 0) + 1
    return counts
