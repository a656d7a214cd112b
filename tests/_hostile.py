"""Hostile containers: seeded single mutations of the golden containers, run through the read commands.

Shared by ``tests/test_hostile_containers.py`` (a few hundred mutations in
CI) and ``tests/soak/hostile_campaign.py`` (as many as asked). Each mutation
copies one golden container into a work folder, damages it in one way
(:data:`KINDS`), then runs ``verify``, ``verify --deep``, ``ls -R -l``,
``cat`` and ``get`` on it, each as a child process under resource limits
(:data:`MEMORY_LIMIT` of address space, :data:`OUTPUT_LIMIT` per written
file, :data:`TIME_LIMIT` of wall time). A run breaks a rule
(:attr:`Result.violations`) when a command prints a traceback, dies or
overruns a limit, when ``get`` writes anything outside its destination or
exits 0 on a partial tree, or when a restore that differs from the pristine
one goes unnoticed by ``verify --deep`` (or, for a changed shape or
attribute, by plain ``verify``).

Crafted objects (hostile names, symlink targets, attributes, a
self-referencing indirect block) are built with the project's own encoders
(:mod:`clfsload._native.records`, :mod:`clfsload._native.dirents`), so the
container is valid except for the hostile field.

Unreadable blobs: the tests run as root, for whom ``chmod 000`` changes
nothing, and the ``file:`` target lists regular files only (a blob turned
into a folder or a symlink is simply gone). So the ``unreadable`` kind
starts the command through :data:`CHILD`, which makes the local target's
``get`` raise ``PermissionError`` for the one blob named in
``$CLFSLOAD_FUZZ_UNREADABLE``, as a blob the account may not read would.
"""

import collections
import dataclasses
import hashlib
import os
import random
import resource
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

from clfsload._native import dirents, envelope, hashing, records
from clfsload.clfs.constants import NULL_ID, ROOT_ID, Btype
from clfsload.clfs.container import Container, FolderSource, parse_blob_name
from clfsload.clfs.decode import decode_payload
from clfsload.clfs.vattr import VAttr

REPO = Path(__file__).resolve().parents[1]
#: the child launcher: ``python CHILD COMMAND ARGS...`` runs one read command
CHILD = Path(__file__).resolve().parent / "_hostile_child.py"
#: address-space limit of every command (RLIMIT_AS); the pristine commands need about a quarter
MEMORY_LIMIT = 1 << 30
#: largest file a command may write (RLIMIT_FSIZE): its stdout and every restored file
OUTPUT_LIMIT = 256 << 20
#: wall-clock seconds a command may take (the pristine ones take well under 2)
TIME_LIMIT = 30.0
#: the commands every mutation goes through
COMMANDS = ("verify", "verify-deep", "ls", "cat", "get")
#: how a command ended
OUTCOMES = ("clean error", "exit 0", "traceback", "timeout")
#: golden folder -> source tree (tests/_trees.GOLDEN_RUNS without the test fixtures)
SOURCES = {
    "basic": "basic", "basic-nocompress": "basic", "basic-preserve": "basic", "hardlinks": "hardlinks",
    "hardlinks-preserve": "hardlinks", "bigdir": "bigdir", "boundaries": "boundaries", "special": "special",
}  # fmt: skip
#: how often each golden container is picked (the two big ones cost most per run)
WEIGHTS = {"basic": 3, "basic-nocompress": 2, "basic-preserve": 2, "hardlinks": 3, "hardlinks-preserve": 3,
           "bigdir": 1, "boundaries": 1, "special": 3}  # fmt: skip


@dataclasses.dataclass
class Work:
    """One mutation's folders: the container copy and the sandbox ``get`` writes into."""

    rng: random.Random
    golden: str  # the golden container's name
    folder: Path  # the copy: one file per blob
    sandbox: Path  # holds dest/ (get's DEST) and canary/ (must stay as it is)
    token: str  # unique per mutation: crafted absolute names carry it
    env: Dict[str, str] = dataclasses.field(default_factory=dict)  # extra environment for the commands
    absolute: List[Path] = dataclasses.field(default_factory=list)  # absolute paths crafted names point to

    @property
    def dest(self) -> Path:
        return self.sandbox / "dest"

    @property
    def canary(self) -> Path:
        return self.sandbox / "canary"

    def blobs(self) -> List[str]:
        return sorted(os.listdir(self.folder))

    def container(self) -> Container:
        return Container(FolderSource(str(self.folder)), strict=False)

    def read(self, blob: str) -> bytes:
        return (self.folder / blob).read_bytes()

    def write(self, blob: str, payload: bytes) -> None:
        (self.folder / blob).write_bytes(payload)

    def pick(self, btypes: Tuple[int, ...]) -> Optional[str]:
        """A random blob whose name has one of ``btypes`` (None if there is none)."""
        found = [b for b in self.blobs() if (parse_blob_name(b) or _NO_NAME).btype in btypes]
        return self.rng.choice(found) if found else None


_INODES = (Btype.REG, Btype.DIR, Btype.LNK, Btype.BLK, Btype.CHR, Btype.FIFO, Btype.SOCK)


class _Unnamed:
    """Stands for the parsed name of a blob that has no CLFS name."""

    btype = None


_NO_NAME = _Unnamed()


# --- re-encoding with the project's encoders -------------------------------------------


def _reencode(obj, attrs: VAttr, *, dir_entries=None, data=b"\x00keep", fh: Optional[bytes] = None) -> bytes:
    """The body of an inode like ``obj`` with ``attrs`` (and other entries or DATA when given)."""
    fh = fh if fh is not None else obj.bmap.direct[0]
    segs, roots = obj.bmap.direct[1:], obj.bmap.tree_roots
    if attrs.btype == Btype.DIR or obj.dirents is not None:
        entries = dirents.pack_entries(dir_entries if dir_entries is not None else obj.dirents)
        return records.encode_dir_inode(attrs, fh, segs, roots, obj.name or b"", entries, obj.extattrs)
    body_data = obj.data if data == b"\x00keep" else data
    return records.encode_file_inode(attrs, fh, segs, roots, obj.back or [], obj.name or b"", body_data)


def _new_fh(rng: random.Random, template: bytes, ftype: int) -> bytes:
    """A fresh 24-byte filehandle shaped like ``template`` with Ftype ``ftype`` (§2.2)."""
    base = bytearray(template if len(template) == 24 else bytes.fromhex("512E3748000001000000000000000000") + bytes(8))
    base[6] = ftype
    base[8:16] = rng.getrandbits(63).to_bytes(8, "little")
    base[16:24] = (rng.getrandbits(63) | 1).to_bytes(8, "little")
    return bytes(base)


def _dir_size(entries) -> int:
    return 4 + sum(6 + len(n) + len(f) for n, f in entries)


class _Crafter:
    """Adds new, well-formed objects under one directory of a container copy."""

    def __init__(self, work: Work, prefer_root: bool = False) -> None:
        self.work = work
        container = work.container()
        entries = list(container.walk())
        dirs = [e for e in entries if e.inode.is_dir and not e.inode.segments]
        self.dir = dirs[0] if prefer_root or work.rng.random() < 0.5 else work.rng.choice(dirs)
        files = [e for e in entries if e.inode.btype == Btype.REG and not e.inode.segments]
        self.file_template = files[0].inode if files else None
        self.dir_template = self.dir.inode
        self.obj = self.dir.inode.obj
        self.compress = self.obj.compression == 1
        self.added: List[Tuple[bytes, bytes]] = []
        self.subdirs = 0

    def _put(self, body: bytes, name: str) -> None:
        self.work.write(name, envelope.wrap(body, self.compress))

    def file(self, parent: bytes, data: bytes = b"escape\n") -> bytes:
        """A new regular file listed in ``parent`` (not added to any listing yet)."""
        tpl = self.file_template
        attrs = tpl.vattr._replace(size=len(data), nlink=1)
        fh = _new_fh(self.work.rng, tpl.fh, 2)
        body = records.encode_file_inode(attrs, fh, (), (), [parent], b"escape", data)
        self._put(body, hashing.blob_name(fh, Btype.REG, parent))
        return fh

    def symlink(self, parent: bytes, target: bytes) -> bytes:
        tpl = self.file_template
        size = len(os.fsdecode(target))
        attrs = tpl.vattr._replace(mode=stat.S_IFLNK | 0o777, btype=Btype.LNK, size=size, nlink=1)
        fh = _new_fh(self.work.rng, tpl.fh, 3)
        body = records.encode_file_inode(attrs, fh, (), (), [parent], b"link", target)
        self._put(body, hashing.blob_name(fh, Btype.LNK, parent))
        return fh

    def new_dir_fh(self) -> bytes:
        return _new_fh(self.work.rng, self.file_template.fh, 1)

    def directory(self, parent: bytes, children: List[Tuple[bytes, bytes]], fh: Optional[bytes] = None) -> bytes:
        """A new directory listed in ``parent`` holding ``children`` (made with :meth:`new_dir_fh` as parent)."""
        tpl = self.dir_template
        fh = fh or self.new_dir_fh()
        entries = [(b".", fh), (b"..", parent)] + children
        attrs = tpl.vattr._replace(size=_dir_size(entries), nlink=2)
        body = records.encode_dir_inode(attrs, fh, (), (), b"sub", dirents.pack_entries(entries))
        self._put(body, hashing.blob_name(fh, Btype.DIR, parent))
        return fh

    def add(self, name: bytes, fh: bytes, is_dir: bool = False) -> None:
        self.added.append((name, fh))
        self.subdirs += is_dir

    def commit(self) -> None:
        """Rewrite the chosen directory's inode with the added entries."""
        obj = self.obj
        entries = list(obj.dirents) + self.added
        attrs = self.dir.inode.vattr
        attrs = attrs._replace(size=attrs.size + _dir_size(self.added) - 4, nlink=attrs.nlink + self.subdirs)
        self._put(_reencode(obj, attrs, dir_entries=entries), self.dir.inode.blob)


# --- the mutations ---------------------------------------------------------------------


def _any_blob(w: Work) -> str:
    blobs = w.blobs()
    inodes = [b for b in blobs if (parse_blob_name(b) or _NO_NAME).btype in _INODES]
    return w.rng.choice(inodes if inodes and w.rng.random() < 0.7 else blobs)


def m_bitflip(w: Work) -> str:
    blob = _any_blob(w)
    data = bytearray(w.read(blob))
    flips = w.rng.randint(1, 4)
    for _ in range(flips):
        i = w.rng.randrange(len(data))
        data[i] ^= 1 << w.rng.randrange(8)
    w.write(blob, bytes(data))
    return "%d bit(s) flipped in %s" % (flips, blob)


def m_truncate(w: Work) -> str:
    blob = _any_blob(w)
    data = w.read(blob)
    cut = w.rng.randrange(len(data))
    w.write(blob, data[:cut])
    return "%s cut to %d of %d bytes" % (blob, cut, len(data))


def m_append(w: Work) -> str:
    blob = _any_blob(w)
    extra = w.rng.randbytes(w.rng.choice((1, 7, 64, 4096)))
    w.write(blob, w.read(blob) + extra)
    return "%d bytes appended to %s" % (len(extra), blob)


def m_random(w: Work) -> str:
    blob = _any_blob(w)
    size = len(w.read(blob))
    head = w.read(blob)[:4] if w.rng.random() < 0.5 else b""  # keep the envelope half of the time
    w.write(blob, head + w.rng.randbytes(max(0, size - len(head))))
    return "%s replaced by random bytes" % blob


def m_delete(w: Work) -> str:
    blob = _any_blob(w)
    (w.folder / blob).unlink()
    return "%s deleted" % blob


def m_junk(w: Work) -> str:
    kind = w.rng.randrange(3)
    if kind == 0:  # a CLFS-named blob nothing points to
        seg_id = w.rng.randbytes(16)
        name = hashing.blob_name(seg_id, Btype.SEGMENT, ROOT_ID)
    elif kind == 1:  # a second version of an existing inode, full of junk
        parsed = parse_blob_name(w.pick(_INODES))
        name = parsed.blob.replace(".%011d." % parsed.version, ".%011d." % (parsed.version + 1))
    else:
        name = "junk-%d.txt" % w.rng.randrange(1000)
    w.write(name, w.rng.randbytes(w.rng.choice((0, 3, 100, 5000))))
    return "junk blob %s" % name


def m_swap(w: Work) -> str:
    btype = w.rng.choice((Btype.SEGMENT, Btype.REG, Btype.DIR, Btype.SEGMENT))
    found = [b for b in w.blobs() if (parse_blob_name(b) or _NO_NAME).btype == btype]
    if len(found) < 2:
        found = w.blobs()
    a, b = w.rng.sample(found, 2)
    da, db = w.read(a), w.read(b)
    w.write(a, db)
    w.write(b, da)
    return "%s and %s swapped" % (a, b)


def m_rename_version(w: Work) -> str:
    blob = _any_blob(w)
    parsed = parse_blob_name(blob)
    if parsed is None:
        new = blob + ".old"
    else:
        version = w.rng.choice((0, 8, 10, 11, 99999999999))
        new = blob.replace(".%011d." % parsed.version, ".%011d." % version)
    os.rename(w.folder / blob, w.folder / new)
    return "%s renamed %s" % (blob, new)


def m_to_folder(w: Work) -> str:
    blob = _any_blob(w)
    (w.folder / blob).unlink()
    (w.folder / blob).mkdir()
    ((w.folder / blob) / "inside").write_bytes(b"x")
    return "%s turned into a folder" % blob


def m_to_symlink(w: Work) -> str:
    blob = _any_blob(w)
    (w.folder / blob).unlink()
    target = w.rng.choice([str(w.canary / "keep.txt"), "/etc/passwd", w.rng.choice(w.blobs()), blob])
    os.symlink(target, w.folder / blob)
    return "%s turned into a symlink to %s" % (blob, target)


def m_unreadable(w: Work) -> str:
    blob = _any_blob(w)
    w.env["CLFSLOAD_FUZZ_UNREADABLE"] = blob
    return "%s unreadable (permission denied)" % blob


def _hostile_names(w: Work) -> List[bytes]:
    absolute = w.sandbox.parent / ("escape-" + w.token)
    root_abs = Path("/clfsload-fuzz-" + w.token)
    w.absolute += [absolute, root_abs]
    return [
        os.fsencode(root_abs),  # "/NAME": a single component after the root
        os.fsencode(absolute),
        b"", b".", b"..", b"../canary", b"../../escape-" + w.token.encode(), b"a/b", b"x\x00y", b"\x00",
        b"n" * 256, b"n" * 4000,
    ]  # fmt: skip


def m_crafted_entry(w: Work) -> str:
    """A new file, directory or symlink (with a file under the directory) listed under a hostile name."""
    names = _hostile_names(w)
    root_level = w.rng.random() < 0.35  # "/NAME" in the root: the one that escaped DEST before issue 17
    name = names[0] if root_level else w.rng.choice(names)
    c = _Crafter(w, prefer_root=root_level or (name.startswith(b"/") and w.rng.random() < 0.7))
    shape = w.rng.choice(("file", "dir", "dup-symlink"))
    parent = c.dir.fh
    if shape == "file":
        c.add(name, c.file(parent))
    elif shape == "dir":  # a directory holding a file: the whole subtree would go where the name points
        d = c.new_dir_fh()
        c.add(name, c.directory(parent, [(b"inner", c.file(d))], fh=d), True)
    else:  # a symlink, then a directory of the same name holding a file (written through the link?)
        target = os.fsencode(w.sandbox.parent / ("via-link-" + w.token))
        w.absolute.append(Path(os.fsdecode(target)))
        name = w.rng.choice((b"twin", name))
        c.add(name, c.symlink(parent, target))
        d = c.new_dir_fh()
        c.add(name, c.directory(parent, [(b"inner", c.file(d))], fh=d), True)
    c.commit()
    return "%s entry %r in %s" % (shape, name[:40], c.dir.inode.blob)


def m_crafted_symlink(w: Work) -> str:
    c = _Crafter(w)
    target = w.rng.choice([
        b"a\x00b", b"\x00", b"t" * 1024, b"t" * 5000, b"/" + b"d/" * 2100, b"",
        os.fsencode(w.canary), b"../../canary",
    ])  # fmt: skip
    c.add(b"hostile-link", c.symlink(c.dir.fh, target))
    c.commit()
    return "symlink to %r... (%d bytes) in %s" % (target[:20], len(target), c.dir.inode.blob)


_EXTREMES = {
    "mode": (0xFFFF, 0, 0o170777, stat.S_IFDIR | 0o7777, stat.S_IFSOCK | 0o777),
    "btype": (0, 8, 9, 255),
    "uid": (2**32 - 1, 2**31),
    "gid": (2**32 - 1,),
    "size": (2**64 - 1, 2**63, 0, 1 << 40),
    "mtime_sec": (2**32 - 1, 0),
    "mtime_nsec": (2**32 - 1, 10**9),
    "atime_nsec": (2**32 - 1,),
    "rdev_major": (2**32 - 1,),
    "rdev_minor": (2**32 - 1,),
    "nlink": (0, 2**32 - 1),
}


def m_extreme_attrs(w: Work) -> str:
    blob = w.pick(_INODES)
    payload = w.read(blob)
    obj = decode_payload(payload, blob)
    field = w.rng.choice(sorted(_EXTREMES))
    value = w.rng.choice(_EXTREMES[field])
    attrs = obj.vattr.vattr._replace(**{field: value})
    w.write(blob, envelope.wrap(_reencode(obj, attrs), obj.compression == 1))
    return "%s=%d in %s" % (field, value, blob)


def m_self_indirect(w: Work) -> str:
    """A file's block map points at an indirect block that lists itself (a cycle)."""
    container = w.container()
    files = [e.inode for e in container.walk() if e.inode.btype == Btype.REG]
    inode = w.rng.choice(files)
    obj = inode.obj
    tree = w.rng.randrange(4)
    block = w.rng.randbytes(16)
    pointers = w.rng.choice((1, 2, 4096))
    body = records.encode_indirect_block([block] * pointers, inode.vattr.ctime_sec, tree << 16, inode.fh)
    w.write(hashing.blob_name(block, Btype.INDIRECT, inode.fh), envelope.wrap(body, True))
    roots = [NULL_ID] * 4
    for t in range(tree + 1):
        roots[t] = block
    obj_roots = dataclasses.replace(obj.bmap, tree_roots=roots)
    obj.bmap = obj_roots
    w.write(inode.blob, envelope.wrap(_reencode(obj, inode.vattr), obj.compression == 1))
    return "tree %d of %s: indirect block listing itself %d times" % (tree, inode.blob, pointers)


#: kind -> mutation (applied to a fresh copy; returns a one-line description)
KINDS: Dict[str, Callable[[Work], str]] = {
    "bitflip": m_bitflip,
    "truncate": m_truncate,
    "append": m_append,
    "random": m_random,
    "delete": m_delete,
    "junk": m_junk,
    "swap": m_swap,
    "rename-version": m_rename_version,
    "to-folder": m_to_folder,
    "to-symlink": m_to_symlink,
    "unreadable": m_unreadable,
    "crafted-entry": m_crafted_entry,
    "crafted-symlink": m_crafted_symlink,
    "extreme-attrs": m_extreme_attrs,
    "self-indirect": m_self_indirect,
}


# --- running the commands --------------------------------------------------------------


def _limits() -> None:  # runs in the child between fork and exec
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))
    resource.setrlimit(resource.RLIMIT_FSIZE, (OUTPUT_LIMIT, OUTPUT_LIMIT))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


@dataclasses.dataclass
class Ran:
    """How one command ended."""

    outcome: str  # one of OUTCOMES
    code: Optional[int]
    err: str
    seconds: float


def run_command(args: List[str], cwd: Path, env: Dict[str, str], out_file: Path) -> Ran:
    """Run ``python CHILD ARGS`` under the limits; stdout goes to ``out_file`` (bounded by RLIMIT_FSIZE)."""
    full_env = dict(os.environ)
    full_env["PYTHONPATH"] = str(REPO) + os.pathsep + full_env.get("PYTHONPATH", "")
    full_env.update(env)
    started = time.monotonic()
    with open(out_file, "wb") as out:
        try:
            proc = subprocess.run([sys.executable, str(CHILD), *args], cwd=str(cwd), env=full_env, stdout=out,
                                  stderr=subprocess.PIPE, timeout=TIME_LIMIT, preexec_fn=_limits)  # fmt: skip
        except subprocess.TimeoutExpired as exc:
            err = (exc.stderr or b"")[-2000:].decode("utf-8", "replace")
            return Ran("timeout", None, err, time.monotonic() - started)
    seconds = time.monotonic() - started
    err = proc.stderr[-20000:].decode("utf-8", "replace")
    with open(out_file, "rb") as f:
        head = f.read(1 << 16)
        f.seek(max(0, os.path.getsize(out_file) - (1 << 16)))
        tail = f.read()
    if "Traceback" in err or "internal error" in err or b"Traceback" in head + tail or proc.returncode < 0 or proc.returncode > 2:
        # a signal (SIGXFSZ: output past the limit; SIGKILL; SIGSEGV) or an uncaught exception
        return Ran("traceback", proc.returncode, err, seconds)
    return Ran("exit 0" if proc.returncode == 0 else "clean error", proc.returncode, err, seconds)


def snapshot(root: Path) -> Dict[str, tuple]:
    """What a restored tree holds: per relative path, (type, mode, uid, gid, size, mtime ns, target, rdev, sha256)."""
    out: Dict[str, tuple] = {}
    if not os.path.lexists(root):
        return out
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [""] + dirnames + filenames if dirpath == str(root) else dirnames + filenames:
            path = os.path.join(dirpath, name) if name else dirpath
            st = os.lstat(path)
            rel = os.path.relpath(path, root)
            target = os.readlink(path) if stat.S_ISLNK(st.st_mode) else None
            digest = None
            if stat.S_ISREG(st.st_mode):
                with open(path, "rb") as f:
                    digest = hashlib.sha256(f.read()).hexdigest()
            rdev = st.st_rdev if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode) else None
            size = None if stat.S_ISDIR(st.st_mode) else st.st_size
            out[rel] = (stat.S_IFMT(st.st_mode), st.st_mode, st.st_uid, st.st_gid, size, st.st_mtime_ns, target,
                        rdev, digest)  # fmt: skip
    return out


def _shape(tree: Dict[str, tuple]) -> Dict[str, tuple]:
    """A snapshot without the content digests: what plain verify must see."""
    return {path: value[:-1] for path, value in tree.items()}


def _outside(sandbox: Path) -> Dict[str, tuple]:
    """Everything in the sandbox except dest/ (the canary folder and anything that escaped into it)."""
    tree = snapshot(sandbox)
    return {p: v for p, v in tree.items() if p != "dest" and not p.startswith("dest/") and p != "."}


@dataclasses.dataclass
class Result:
    """One mutation and what the commands did with it."""

    kind: str
    golden: str
    detail: str
    ran: Dict[str, Ran]
    violations: List[str]
    escaped: int  # paths written outside DEST


class Pristine:
    """Per golden container: the pristine restore, a regular file for ``cat``, the source tree."""

    def __init__(self, golden: Path, trees: Path, work: Path) -> None:
        self.golden, self.trees, self.work = golden, trees, work
        self._restored: Dict[str, Dict[str, tuple]] = {}
        self._cat: Dict[str, str] = {}

    def prepare(self, name: str) -> None:
        container = Container(FolderSource(str(self.golden / name)), strict=False)
        files = sorted((e for e in container.walk() if e.inode.btype == Btype.REG), key=lambda e: -e.inode.vattr.size)
        self._cat[name] = "/" + os.fsdecode(files[0].path)  # the biggest: segments and all
        dest = self.work / ("pristine-" + name)
        ran = run_command(["get", "file:" + str(self.golden), name, "/", str(dest)], self.work, {},
                          self.work / ("pristine-%s.out" % name))  # fmt: skip
        assert ran.outcome == "exit 0", "pristine get of %s: %s" % (name, ran.err)
        self._restored[name] = snapshot(dest)

    def restored(self, name: str) -> Dict[str, tuple]:
        return self._restored[name]

    def cat_path(self, name: str) -> str:
        return self._cat[name]


def run_mutation(pristine: Pristine, base: Path, seed: int, index: int, kind: str, golden: str) -> Result:
    """Copy ``golden``, apply one ``kind`` mutation (seeded by ``seed`` and ``index``), run every command."""
    rng = random.Random("%d/%d" % (seed, index))
    top = Path(tempfile.mkdtemp(prefix="m%04d-" % index, dir=base))
    account = top / "account"
    folder = account / golden
    shutil.copytree(pristine.golden / golden, folder)
    for path in folder.iterdir():
        path.chmod(0o644)
    folder.chmod(0o755)
    sandbox = top / "sandbox"
    (sandbox / "canary").mkdir(parents=True)
    (sandbox / "canary" / "keep.txt").write_bytes(b"canary\n")
    work = Work(rng, golden, folder, sandbox, "%d-%d" % (seed, index))
    detail = KINDS[kind](work)
    before = _outside(sandbox)
    existed = {p: p.exists() or p.is_symlink() for p in work.absolute}
    acct = "file:" + str(account)
    source = str(pristine.trees / SOURCES[golden])
    argv = {
        "verify": ["verify", acct, golden, source],
        "verify-deep": ["verify", acct, golden, source, "--deep"],
        "ls": ["ls", acct, golden, "-R", "-l"],
        "cat": ["cat", acct, golden, pristine.cat_path(golden)],
        "get": ["get", acct, golden, "/", str(work.dest)],
    }
    ran = {cmd: run_command(argv[cmd], top, work.env, top / ("%s.out" % cmd)) for cmd in COMMANDS}
    violations = []
    for cmd, r in ran.items():
        if r.outcome in ("traceback", "timeout"):
            violations.append("%s: %s (%s)" % (cmd, r.outcome, r.err.strip().splitlines()[-1:] or r.code))
    escaped = [p for p, v in _outside(sandbox).items() if before.get(p) != v]
    for p in work.absolute:
        if (p.exists() or p.is_symlink()) and not existed[p]:
            escaped.append(str(p))
            (shutil.rmtree if p.is_dir() and not p.is_symlink() else os.unlink)(p)
    for p in escaped:
        violations.append("get wrote outside DEST: %s" % p)
    restored = snapshot(work.dest)
    expected = pristine.restored(golden)
    if ran["get"].outcome == "exit 0":
        missing = sorted(set(expected) - set(restored))
        if missing:
            violations.append("get exited 0 on a partial tree (%d paths missing, e.g. %s)" % (len(missing), missing[0]))
    changed = restored != expected
    if changed and ran["verify-deep"].outcome == "exit 0":
        violations.append("verify --deep exit 0, yet the restore differs from the pristine one")
    if _shape(restored) != _shape(expected) and ran["get"].outcome == "exit 0" and ran["verify"].outcome == "exit 0":
        violations.append("plain verify exit 0, yet the restored shape or attributes differ")
    shutil.rmtree(top, ignore_errors=True)
    return Result(kind, golden, detail, ran, violations, len(escaped))


def plan(seed: int, count: int) -> List[Tuple[int, str, str]]:
    """``count`` (index, kind, golden) jobs: kinds in turn, containers drawn by :data:`WEIGHTS`."""
    rng = random.Random(seed)
    names = sorted(WEIGHTS)
    weights = [WEIGHTS[n] for n in names]
    kinds = sorted(KINDS)
    return [(i, kinds[i % len(kinds)], rng.choices(names, weights)[0]) for i in range(count)]


def run_campaign(golden: Path, trees: Path, base: Path, seed: int, count: int, workers: int = 0,
                 kinds: Optional[List[str]] = None) -> List[Result]:  # fmt: skip
    """Run ``count`` mutations in parallel (``workers``: default the CPU count) and return their results."""
    jobs = plan(seed, count)
    if kinds:
        jobs = [(i, kinds[i % len(kinds)], g) for i, _, g in jobs]
    pristine = Pristine(golden, trees, base)
    for name in sorted({g for _, _, g in jobs}):
        pristine.prepare(name)
    with ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 2) as pool:
        return list(pool.map(lambda job: run_mutation(pristine, base, seed, *job), jobs))


def table(results: List[Result]) -> str:
    """Mutations per kind and, per command, how many ended each way (clean error / exit 0 / traceback / timeout)."""
    lines = ["%-16s %4s  %s" % ("kind", "n", "  ".join("%-15s" % c for c in COMMANDS))]
    by_kind: Dict[str, List[Result]] = collections.defaultdict(list)
    for r in results:
        by_kind[r.kind].append(r)
    for kind in sorted(by_kind) + ["TOTAL"]:
        group = results if kind == "TOTAL" else by_kind[kind]
        cells = []
        for cmd in COMMANDS:
            counts = collections.Counter(r.ran[cmd].outcome for r in group)
            cells.append("%-15s" % "/".join(str(counts[o]) for o in OUTCOMES))
        lines.append("%-16s %4d  %s" % (kind, len(group), "  ".join(cells)))
    lines.append("cells: clean error/exit 0/traceback/timeout; writes outside DEST: %d; runs breaking a rule: %d"
                 % (sum(r.escaped for r in results), sum(1 for r in results if r.violations)))  # fmt: skip
    return "\n".join(lines)
