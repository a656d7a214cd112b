"""Hostile containers: seeded single mutations of the golden containers through the read commands.

Every kind of damage in :data:`tests._hostile.KINDS` (bit flips, truncation,
appended and random bytes, deleted and junk blobs, swapped blobs, renamed
versions, blobs turned into folders or symlinks, unreadable blobs, crafted
directory entries and symlink targets, extreme attributes, a
self-referencing indirect block) is applied to a copy of a golden
container, then ``verify``, ``verify --deep``, ``ls -R -l``, ``cat`` and
``get`` run on it as child processes under a memory, output and time bound.
No command may print a traceback or overrun a bound, ``get`` may write
nothing outside its destination and may not exit 0 on a partial tree, and
``verify --deep`` must fail whenever the restore differs from the pristine
one (plain ``verify`` too when the shape or an attribute differs). See
tests/_hostile.py; tests/soak/hostile_campaign.py runs as many as asked.
"""

import os
import shutil
import time

import pytest

import _hostile
from _trees import GOLDEN, source_trees  # noqa: F401

#: mutations in the compiled pass (the slow part); the quick part runs one of each kind in both passes
CI_COUNT = int(os.environ.get("CLFSLOAD_HOSTILE_COUNT", "210"))
SEED = 17


def _check(results) -> None:
    print("\n" + _hostile.table(results))
    broken = ["%s on %s (%s): %s" % (r.kind, r.golden, r.detail, "; ".join(r.violations)) for r in results if r.violations]
    assert not broken, "\n".join(broken)
    assert sum(r.escaped for r in results) == 0


def test_every_kind_once(source_trees, tmp_path):
    """One mutation of each kind: quick enough for both twin passes."""
    kinds = sorted(_hostile.KINDS)
    results = _hostile.run_campaign(GOLDEN, source_trees, tmp_path, SEED, len(kinds), kinds=kinds)
    assert sorted(r.kind for r in results) == kinds
    _check(results)


@pytest.mark.slow
def test_hostile_campaign(source_trees, tmp_path):
    """A few hundred mutations, every kind, every golden container."""
    started = time.monotonic()
    results = _hostile.run_campaign(GOLDEN, source_trees, tmp_path, SEED, CI_COUNT)
    print("%d mutations in %.0f s" % (len(results), time.monotonic() - started))
    assert {r.kind for r in results} == set(_hostile.KINDS)
    assert {r.golden for r in results} == set(_hostile.WEIGHTS)
    _check(results)


def test_the_limits_leave_room_for_the_pristine_commands(source_trees, tmp_path):
    """The bounds are not what makes a command fail: every command passes on an undamaged copy."""
    pristine = _hostile.Pristine(GOLDEN, source_trees, tmp_path)
    for name in ("bigdir", "boundaries"):
        pristine.prepare(name)
        account = "file:" + str(GOLDEN)
        source = str(source_trees / _hostile.SOURCES[name])
        for argv in (["verify", account, name, source, "--deep"], ["ls", account, name, "-R", "-l"],
                     ["cat", account, name, pristine.cat_path(name)]):  # fmt: skip
            ran = _hostile.run_command(argv, tmp_path, {}, tmp_path / "out")
            assert ran.outcome == "exit 0", (argv, ran.err)


def test_plain_verify_sees_swapped_segments_by_their_listed_sizes(source_trees, tmp_path, capsys):
    """Two data segments of different lengths swapped: the fast check (no data read) reports it, from the listing."""
    from clfsload.cli import commands
    from clfsload.clfs.container import Container, FolderSource

    folder = tmp_path / "account" / "boundaries"
    shutil.copytree(GOLDEN / "boundaries", folder)
    inode = Container(FolderSource(str(folder))).lookup(b"rand-8404993").inode
    first, last = (folder / ref.blob for ref in inode.segments)  # 8 MiB of random bytes, then 1 byte
    data_first, data_last = first.read_bytes(), last.read_bytes()
    first.write_bytes(data_last)
    last.write_bytes(data_first)
    problems = Container(FolderSource(str(folder)), strict=False).verify(read_data=False)
    assert any("cannot hold the 8388608 bytes block 1 of rand-8404993" in p for p in problems), problems
    assert any("cannot hold the 1 bytes block 2 of rand-8404993" in p for p in problems), problems
    code = commands.main(["verify", "file:" + str(tmp_path / "account"), "boundaries", str(source_trees / "boundaries")])
    out = capsys.readouterr().out
    assert code == 1 and "cannot hold the 1 bytes block 2" in out, out
