"""The sweep: delete what earlier attempts wrote and the finished tree does not use.

Every blob name is fixed by the work (:mod:`clfsload.work.ids`), so a unit run
twice over the same source overwrites its own blobs. Blobs are left behind
only when the source changed between two attempts, or within one (a file
read again): a file that shrank leaves segments past its new end, an entry
that vanished leaves its inode and segments, and a directory that lost
entries leaves directory segments. The state store lists every directory
and object that may have been written more than once (``sweep`` rows); this
module finds their leftovers from one container listing per level, the
names alone (each V2 name carries the hash of its owner, FMT §4.4), and
reads only the inodes of those objects.

Per directory ``d`` on the list:

* a segment or indirect block owned by ``d`` that its stored block map does
  not name is deleted;
* an inode owned by ``d`` whose fh is not among ``d``'s entries is a stray
  object: deleted, with everything it owns (recursively for a directory);
* a live non-directory entry owning blocks gets the segment check below.

Per object on the list (a hard-linked file stored again in RECONCILE, or an
entry of a swept directory): blocks it owns that its inode does not name are
deleted. Nothing is deleted unless its id is one this run could have made
for that owner, so a hash collision with a live object never deletes data.

Last, orphans. A file killed after some of its segments were stored and
before its inode (which goes last, FMT §11.5) owns blocks that no inode
names. Likewise entries stored under a directory fh that no inode has in the
end (the power-cut campaign met one on Azurite after a run that succeeded:
a directory stopped before its own inode whose fh the resume did not give
again; the exact path is not pinned down). So, to a fixpoint: an
inode this run made (not hard-linked, not owned by the root) whose owner
hash is the id hash of no inode is deleted; then any segment or indirect
block whose owner has no inode left. That check joins the whole listing, so
it runs in a scratch SQLite file next to the state (bounded memory on
containers of any size) and is deleted afterwards.
"""

import collections
import os
import sqlite3
import struct
from typing import Callable, DefaultDict, Dict, FrozenSet, Iterable, List, Optional, Set, Tuple

from .. import crashpoints
from .._native import hashing
from ..clfs.constants import ROOT_ID, TMP_PREFIX, Btype, Ftype
from ..clfs.handles import fh_word
from ..clfs.container import BlobName, parse_blob_name
from ..clfs.stored import directory_entries, find_inode_blob, read_inode
from ..errors import BlobNotFoundError
from ..work.ids import IdMint, is_linked
from ..targets.base import BlobTarget

_BLOCK_BTYPES = (Btype.SEGMENT, Btype.INDIRECT)


def _is_dir(fh: bytes) -> bool:
    return len(fh) > 6 and fh[6] == Ftype.DIR


Owned = Dict[int, List[BlobName]]  # owner hash -> the V2 names owned
SCRATCH_NAME = "sweep-scratch.db"
#: the highest block index the sweep recognises: 2**22 segments of 8 MiB is a 32 TiB file
MAX_BLOCK_INDEX = 1 << 22


def _signed(value: int) -> int:
    """A u64 hash as SQLite's signed 64-bit integer."""
    return value - (1 << 64) if value >= 1 << 63 else value


class Sweeper:
    """Finds and deletes leftover blobs for the directories and objects it is given."""

    def __init__(self, target: BlobTarget, mint: IdMint, scratch_dir: str,
                 log: Optional[Callable[[str], None]] = None):
        self.target = target
        self.scratch_dir = scratch_dir
        self.mint = mint
        self.log = log or (lambda blob: None)
        self.deleted = 0
        self._fh_word = struct.pack("<I", fh_word(mint.containerid))
        self._block_ids: Dict[Tuple[bytes, int], FrozenSet[bytes]] = {}  # (owner, btype) -> its names that are ours

    def run(self, dirs: Iterable[bytes], objects: Iterable[bytes] = (), strays: Iterable[bytes] = ()) -> int:
        """Sweep; ``strays`` are objects known to be dead (pruned entries). Returns blobs deleted."""
        dirs = [bytes(d) for d in dirs]
        check: Dict[bytes, Optional[str]] = {bytes(o): None for o in objects}  # fh -> its inode blob, if known
        dead: Set[bytes] = {bytes(s) for s in strays}
        if not dirs and not check and not dead:
            return 0
        owned, own_names = self._scan(set(dirs), dead)
        for d in dirs:
            self._sweep_dir(d, owned.get(hashing.hash64(d), []), check, dead)
        for fh in dead:
            for name in own_names.get(fh, []):
                self._delete(name.blob)
        # Level by level: the blocks of live objects, then everything the dead own.
        while check or dead:
            owned, _ = self._scan(set(check) | dead, set())
            for fh, blob in check.items():
                self._sweep_blocks(fh, blob, owned.get(hashing.hash64(fh), []))
            next_dead: Set[bytes] = set()
            for fh in dead:
                names = owned.get(hashing.hash64(fh), [])
                for name in names:
                    if name.btype in _BLOCK_BTYPES:
                        if self._made_for(fh, name, names):
                            self._delete(name.blob)
                    elif name.obj_id != fh and self._made_by_run(name.obj_id):
                        self._delete(name.blob)
                        if not is_linked(name.obj_id):
                            next_dead.add(name.obj_id)  # a linked object lives on under its other names
            check, dead = {}, next_dead
        self._sweep_orphans()
        return self.deleted

    def _sweep_orphans(self) -> None:
        """Delete every object and block whose owner has no inode at all (see the module notes).

        Inodes first, to a fixpoint: an inode this run made whose owner has
        no inode is an orphan (entries stored under a directory fh that no
        inode has in the end), and deleting an orphan directory orphans what
        it owned in turn. Hard-linked objects
        are left alone (they live on under their other names), and so is
        what the root owns. Then the blocks whose owner is left without an
        inode.
        """
        path = os.path.join(self.scratch_dir, SCRATCH_NAME)
        for leftover in (path, path + "-journal"):
            if os.path.exists(leftover):
                os.unlink(leftover)
        db = sqlite3.connect(path, isolation_level=None)
        root_hash = _signed(hashing.hash64(ROOT_ID))
        doomed: List[str] = []
        try:
            db.execute("PRAGMA journal_mode=OFF")
            db.execute("PRAGMA synchronous=OFF")
            db.execute("CREATE TABLE blocks (owner INTEGER NOT NULL, blob TEXT NOT NULL)")
            # one row per inode name; an id can have several (a linked object, a stale version)
            db.execute("CREATE TABLE inodes (id INTEGER NOT NULL, owner INTEGER NOT NULL, blob TEXT NOT NULL,"
                       " removable INTEGER NOT NULL)")
            db.execute("BEGIN")
            blocks: List[Tuple[int, str]] = []
            inodes: List[Tuple[int, int, str, int]] = []
            for blob in self.target.list_names():
                name = parse_blob_name(blob[len(TMP_PREFIX):] if blob.startswith(TMP_PREFIX) else blob)
                if name is None or name.name_version != 2:
                    continue
                assert name.owner_hash is not None
                if name.btype in _BLOCK_BTYPES:
                    blocks.append((_signed(name.owner_hash), blob))
                else:
                    removable = self._made_by_run(name.obj_id) and not is_linked(name.obj_id)
                    inodes.append((_signed(name.id_hash), _signed(name.owner_hash), blob, int(removable)))
                if len(blocks) + len(inodes) >= 10000:
                    self._flush(db, blocks, inodes)
            self._flush(db, blocks, inodes)
            db.execute("CREATE INDEX inodes_id ON inodes (id)")
            db.execute("COMMIT")
            while True:
                orphans = db.execute(
                    "SELECT rowid, blob FROM inodes WHERE removable AND owner != ? AND owner != id"
                    " AND owner NOT IN (SELECT id FROM inodes)", (root_hash,)).fetchall()
                if not orphans:
                    break
                db.executemany("DELETE FROM inodes WHERE rowid = ?", [(rowid,) for rowid, _ in orphans])
                doomed.extend(blob for _, blob in orphans)
            doomed.extend(r[0] for r in db.execute("SELECT blob FROM blocks WHERE owner NOT IN (SELECT id FROM inodes)"))
        finally:
            db.close()
            os.unlink(path)
        for blob in doomed:
            self._delete(blob)

    @staticmethod
    def _flush(db: sqlite3.Connection, blocks: List[Tuple[int, str]], inodes: List[Tuple[int, int, str, int]]) -> None:
        db.executemany("INSERT INTO blocks (owner, blob) VALUES (?, ?)", blocks)
        db.executemany("INSERT INTO inodes (id, owner, blob, removable) VALUES (?, ?, ?, ?)", inodes)
        blocks.clear()
        inodes.clear()

    # --- one listing pass ------------------------------------------------------

    def _scan(self, owners: Set[bytes], wanted: Set[bytes]) -> Tuple[Owned, Dict[bytes, List[BlobName]]]:
        """Names owned by ``owners`` (by owner hash), and every name of the ``wanted`` ids."""
        by_hash = {hashing.hash64(fh) for fh in owners}
        wanted_hash = {hashing.hash64(fh): fh for fh in wanted}
        owned: DefaultDict[int, List[BlobName]] = collections.defaultdict(list)
        own_names: DefaultDict[bytes, List[BlobName]] = collections.defaultdict(list)
        for blob in self.target.list_names():
            name = parse_blob_name(blob)
            if name is None or name.name_version != 2:
                continue
            if name.owner_hash in by_hash:
                owned[name.owner_hash].append(name)
            fh = wanted_hash.get(name.id_hash)
            if fh is not None and name.obj_id == fh:
                own_names[fh].append(name)
        return owned, own_names

    # --- directories -------------------------------------------------------------

    def _sweep_dir(self, d: bytes, owned: List[BlobName], check: Dict[bytes, Optional[str]], dead: Set[bytes]) -> None:
        inode_blob = find_inode_blob(self.target, d, want_dir=True)
        live: Set[bytes] = set()
        blocks: Set[str] = set()
        if inode_blob is not None:
            inode = read_inode(self.target.get, inode_blob, d)
            blocks = set(inode.block_names)
            live = {fh for _, fh in directory_entries(self.target.get, inode)}
        for name in owned:
            if name.obj_id == d:
                continue  # the root's own name: its owner is forced to the root (FMT §4.1)
            if name.btype in _BLOCK_BTYPES:
                if name.blob not in blocks and self._made_for(d, name, owned):
                    self._delete(name.blob)
            elif name.obj_id in live:
                if not _is_dir(name.obj_id) and not is_linked(name.obj_id):
                    check.setdefault(name.obj_id, name.blob)
            elif self._made_by_run(name.obj_id):
                self._delete(name.blob)
                if not is_linked(name.obj_id):
                    dead.add(name.obj_id)  # a linked object lives on under its other names

    # --- blocks of one object ------------------------------------------------------

    def _sweep_blocks(self, fh: bytes, blob: Optional[str], owned: List[BlobName]) -> None:
        if not any(n.btype in _BLOCK_BTYPES for n in owned):
            return
        blob = blob or find_inode_blob(self.target, fh)
        live: Set[str] = set()
        if blob is not None:
            try:
                live = set(read_inode(self.target.get, blob, fh).block_names)
            except BlobNotFoundError:
                return  # gone meanwhile: leave its blocks to a later sweep rather than guess
        for name in owned:
            if name.btype in _BLOCK_BTYPES and name.blob not in live and self._made_for(fh, name, owned):
                self._delete(name.blob)

    # --- guards and deletion -----------------------------------------------------

    def _made_for(self, owner: bytes, name: BlobName, owned: List[BlobName]) -> bool:
        """Is ``name``'s id a block id this run makes for ``owner`` (FMT §4.4 hashes can collide)?

        Block ids are numbered from 1 but not written in order: a file in
        ranges stores a later range while an earlier one is still pending,
        and one file's segments go up concurrently, so a killed attempt can
        leave block 3 without blocks 1 and 2. So the ids are made index by
        index until every one of the owner's names of that kind is matched,
        or the largest index a file can have (:data:`MAX_BLOCK_INDEX`) is
        passed; only a name that is not ours at all (a hash collision) costs
        the whole enumeration. Memory stays in the owner's own names.
        """
        key = (owner, name.btype)
        ours = self._block_ids.get(key)
        if ours is None:
            kind = b"S" if name.btype == Btype.SEGMENT else b"I"
            unmatched = {n.obj_id for n in owned if n.btype == name.btype}
            matched = set()
            index = 0
            while unmatched and index < MAX_BLOCK_INDEX:
                index += 1
                made = self.mint.block_id(owner, kind, index)
                if made in unmatched:
                    unmatched.discard(made)
                    matched.add(made)
            ours = self._block_ids[key] = frozenset(matched)
        return name.obj_id in ours

    def _made_by_run(self, fh: bytes) -> bool:
        """A filehandle this run generated: its first word holds the run's containerid (FMT §2.2)."""
        return len(fh) == 24 and fh[:4] == self._fh_word

    def _delete(self, blob: str) -> None:
        self.target.delete(blob)
        self.deleted += 1
        self.log(blob)
        crashpoints.reached("sweep")


__all__ = ["Sweeper"]
