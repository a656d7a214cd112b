"""The sweep deletes exactly what earlier attempts left behind, and nothing live.

A real load into a local folder, then blobs an interrupted or repeated
attempt would have left are planted under the names the run's own id mint
makes: segments past a file's end, the inode and segments of an entry that
vanished, segments whose file never got its inode, a directory segment the
directory no longer uses. The sweep over the dirty directory must delete
every planted blob and leave the container canonical-equal to before.
"""

import functools
import sqlite3
from pathlib import Path

from clfsload._native import hashing
from clfsload.clfs.canonical import canonical_form, diff_canonical
from clfsload.clfs.constants import Btype, Ftype
from clfsload.clfs.container import Container, FolderSource
from clfsload.clfs.objects import Blob, seal
from clfsload.work.ids import IdMint
from clfsload.driver import sweep as sweep_module
from clfsload.driver.sweep import Sweeper
from clfsload.targets import open_target

from _load import cli


def _loaded(tmp_path: Path):
    src = tmp_path / "src" / "d"
    src.mkdir(parents=True)
    (src / "big.bin").write_bytes(b"x" * (16384 + 100))  # one data segment
    (src / "small.txt").write_bytes(b"small")
    out = tmp_path / "out"
    out.mkdir()
    done = cli("--new", str(tmp_path / "state"), str(tmp_path / "src"), "file:" + str(out), "c", "-")
    assert done.returncode == 0, done.stdout
    with sqlite3.connect(str(tmp_path / "state" / "state.db")) as db:
        meta = dict(db.execute("SELECT key, value FROM meta"))
    mint = IdMint(int(meta["containerid"]), bytes.fromhex(meta["id_secret"]))
    return out / "c", mint


def _plant(target, obj_id: bytes, btype: int, owner: bytes) -> str:
    """Store a leftover blob under the name ``obj_id`` of ``btype`` owned by ``owner``; returns the name."""
    sealed = seal(Blob(hashing.blob_name(obj_id, btype, owner), b"leftover"), False)
    target.put(sealed.name, sealed.payload)
    return sealed.name


def test_sweep_deletes_only_leftovers(tmp_path, monkeypatch):
    monkeypatch.setattr(sweep_module, "MAX_BLOCK_INDEX", 1 << 10)  # the collision below enumerates all
    folder, mint = _loaded(tmp_path)
    container = Container(FolderSource(str(folder)))
    before = canonical_form(container)
    d = container.lookup(b"d")
    big = container.lookup(b"d/big.bin")
    target = open_target("file:" + str(folder.parent), "c", "-")
    plant = functools.partial(_plant, target)
    planted = [
        # big.bin once had three segments: its 2nd and 3rd are past its end now
        plant(mint.block_id(big.fh, b"S", 2), Btype.SEGMENT, big.fh),
        plant(mint.block_id(big.fh, b"S", 3), Btype.SEGMENT, big.fh),
    ]
    # an entry of d that vanished: its inode (owned by d) and its segment (owned by it)
    gone = mint.fh(d.fh, Ftype.REG, (1 << 28) * 999 + 7)
    planted += [plant(gone, Btype.REG, d.fh), plant(mint.block_id(gone, b"S", 1), Btype.SEGMENT, gone)]
    # a file killed after its segments and before its inode: blocks no inode owns
    unborn = mint.fh(d.fh, Ftype.REG, (1 << 28) * 999 + 8)
    planted.append(plant(mint.block_id(unborn, b"S", 1), Btype.SEGMENT, unborn))
    # d once needed a directory segment
    planted.append(plant(mint.block_id(d.fh, b"S", 1), Btype.SEGMENT, d.fh))
    # a block owned by d's hash but not one of d's ids: a collision must never be deleted...
    # ...unless no inode owns it at all, which makes it an orphan; so give it a real owner instead
    keep = Blob(hashing.blob_name(b"\x01" * 16, Btype.SEGMENT, big.fh), b"not ours")
    sealed_keep = seal(keep, False)
    target.put(sealed_keep.name, sealed_keep.payload)

    deleted = []
    Sweeper(target, mint, str(tmp_path), log=deleted.append).run([d.fh])
    assert sorted(deleted) == sorted(planted)
    assert sealed_keep.name in set(target.list_names())  # not an id this run makes for big.bin
    target.delete(sealed_keep.name)
    after = Container(FolderSource(str(folder)))
    assert after.strays() == []
    assert diff_canonical(before, canonical_form(after)) == []
    assert not (tmp_path / "sweep-scratch.db").exists()


def test_sweep_deletes_blocks_written_out_of_order(tmp_path, monkeypatch):
    """A killed attempt can leave block k without blocks 1..k-1 (ranges, concurrent puts): still ours.

    The kill campaign met it: three-segments-in-ranges.bin's second range
    (segment 3) was stored, the first never was, then the file shrank.
    """
    folder, mint = _loaded(tmp_path)
    container = Container(FolderSource(str(folder)))
    before = canonical_form(container)
    d = container.lookup(b"d")
    big = container.lookup(b"d/big.bin")
    target = open_target("file:" + str(folder.parent), "c", "-")
    planted = []
    for index in (3, 40):  # big.bin names segment 1 only; 2 and 4..39 were never written
        sealed = seal(Blob(hashing.blob_name(mint.block_id(big.fh, b"S", index), Btype.SEGMENT, big.fh), b"left"), False)
        target.put(sealed.name, sealed.payload)
        planted.append(sealed.name)
    # a collision is still kept (a small bound: it enumerates every index up to it)
    monkeypatch.setattr(sweep_module, "MAX_BLOCK_INDEX", 1 << 10)
    keep = seal(Blob(hashing.blob_name(b"\x02" * 16, Btype.SEGMENT, big.fh), b"not ours"), False)
    target.put(keep.name, keep.payload)

    deleted = []
    Sweeper(target, mint, str(tmp_path), log=deleted.append).run([d.fh])
    assert sorted(deleted) == sorted(planted)
    target.delete(keep.name)
    after = Container(FolderSource(str(folder)))
    assert after.strays() == []
    assert diff_canonical(before, canonical_form(after)) == []


def test_sweep_deletes_objects_whose_owner_has_no_inode(tmp_path):
    """Entries stored under a directory fh that no inode has in the end (and what they own) go.

    The power-cut campaign met it on Azurite: a regular file's inode owned by
    a directory fh that no inode had, left after a run that succeeded.
    """
    folder, mint = _loaded(tmp_path)
    container = Container(FolderSource(str(folder)))
    before = canonical_form(container)
    d = container.lookup(b"d")
    target = open_target("file:" + str(folder.parent), "c", "-")
    plant = functools.partial(_plant, target)
    ghost = mint.dir_fh(d.fh, (1 << 28) * 999 + 1, 77)  # its inode was never stored
    child = mint.fh(ghost, Ftype.REG, (1 << 28) * 999 + 2)
    subdir = mint.dir_fh(ghost, (1 << 28) * 999 + 3, 78)
    grandchild = mint.fh(subdir, Ftype.REG, (1 << 28) * 999 + 4)
    planted = [
        plant(child, Btype.REG, ghost),
        plant(mint.block_id(child, b"S", 1), Btype.SEGMENT, child),
        plant(subdir, Btype.DIR, ghost),  # an orphan directory: what it owns is orphaned in turn
        plant(grandchild, Btype.REG, subdir),
    ]
    deleted = []
    Sweeper(target, mint, str(tmp_path), log=deleted.append).run([d.fh])
    assert sorted(deleted) == sorted(planted)
    after = Container(FolderSource(str(folder)))
    assert after.strays() == []
    assert diff_canonical(before, canonical_form(after)) == []
