"""Filehandles as the reference assigns them (FMT §2.2): dmids, seqs, the directory spread.

The canonical form maps handles to paths, so these rules are checked
separately, here and on every container the end-to-end tests produce
(``tests/_load.py``, the kill campaign, the Dask tests).
"""

import collections
import os
from pathlib import Path

import pytest

import clfsload
from clfsload.work import scan
from clfsload.clfs.canonical import canonical_form, diff_canonical
from clfsload.clfs.constants import DIRMGR_COUNT, ROOT_ID, Ftype
from clfsload.clfs.container import Container, FolderSource
from clfsload.clfs.fh_rules import dmid_histogram, even_spread, handle_rule_violations, spread_violation
from _trees import GOLDEN  # noqa: E402 - CLFSLOAD_SHARED, or ../shared beside the checkout
from clfsload.work.ids import LINKED_SEQ_BIT, MAX_UNIT, MIN_SEQ, UNIT_SHIFT, IdMint, seq_of

GOLDENS = sorted(p.name for p in GOLDEN.iterdir() if p.is_dir()) if GOLDEN.is_dir() else []


@pytest.mark.parametrize("name", GOLDENS)
def test_the_reference_keeps_every_rule(name):
    """The checker is right about the original tool's own containers: no violation in any of them."""
    container = Container(FolderSource(str(GOLDEN / name)))
    assert handle_rule_violations(container) == []
    counts = dmid_histogram(container)
    assert counts == even_spread(sum(counts.values()))


def test_spread_violation_names_an_uneven_spread():
    assert spread_violation(even_spread(500)) is None
    skewed = even_spread(500)
    skewed[16] += 6
    skewed[17] -= 6
    assert "min" in spread_violation(skewed)
    assert spread_violation(skewed, tolerance=0.05) is not None  # 6 off a share of 10.4
    assert spread_violation(skewed, tolerance=0.7) is None
    assert spread_violation(collections.Counter({48: 1})) is not None


# --- the mint -------------------------------------------------------------------


def _mint():
    return IdMint(0x1234567, bytes(range(16)))


def test_seqs_stay_in_the_reference_range():
    mint = _mint()
    assert mint.child_seq(1, 0) >= MIN_SEQ
    top = mint.child_seq(MAX_UNIT, (1 << UNIT_SHIFT) - 2)
    assert top < LINKED_SEQ_BIT  # directory-unit seqs never reach the linked bit
    with pytest.raises(ValueError):
        mint.child_seq(MAX_UNIT + 1, 0)
    for ino in range(200):
        seq = mint.linked_seq(5, ino, Ftype.REG)
        assert seq & LINKED_SEQ_BIT and MIN_SEQ <= seq < 1 << 63


def test_directory_handles_follow_the_counter_and_children_their_parent():
    mint = _mint()
    parent = mint.dir_fh(ROOT_ID, mint.child_seq(1, 0), 1)
    assert (parent[4], parent[5]) == (0, 1)
    sub = mint.dir_fh(parent, mint.child_seq(2, 3), 48 * 7 + 5)
    assert (sub[4], sub[5]) == (1, 5)
    child = mint.fh(sub, Ftype.REG, mint.child_seq(3, 0))
    assert (child[4], child[5]) == (5, 5)
    with pytest.raises(ValueError):
        mint.fh(sub, Ftype.DIR, 5000)
    with pytest.raises(ValueError):
        mint.dir_fh(sub, 5000, 0)


def test_a_linked_handle_settles_on_its_first_parent():
    mint = _mint()
    key = mint.linked_fh(7, 99, Ftype.REG)
    parent = mint.dir_fh(ROOT_ID, mint.child_seq(1, 0), 29)
    settled = mint.settled_linked_fh(key, parent)
    assert (settled[4], settled[5], settled[6]) == (29, 29, Ftype.REG)
    assert seq_of(settled) == seq_of(key)
    assert mint.settled_linked_fh(key, ROOT_ID)[4:6] == b"\0\0"
    assert mint.settled_linked_fh(key, parent) == settled  # the same from every run


# --- loads ----------------------------------------------------------------------


def _fanout_tree(root: Path, dirs: int, links: bool = False) -> Path:
    """``dirs`` directories, ten to a parent, three levels deep, a file in each; hard links across them."""
    made = [root]
    root.mkdir(parents=True)
    index = 0
    while len(made) - 1 < dirs:
        parent = made[index]
        for k in range(10):
            if len(made) - 1 >= dirs:
                break
            sub = parent / ("d%02d" % k)
            sub.mkdir()
            (sub / "f.txt").write_bytes(b"%s\n" % str(sub).encode())
            made.append(sub)
        index += 1
    if links:
        for k, sub in enumerate(made[1:]):
            if k % 3 == 0:  # one file linked from a directory two levels away and from the root
                other = made[(k * 7) % len(made)]
                os.link(sub / "f.txt", other / ("link-%d" % k))
    return root


def _load(tmp_path: Path, tree: Path, tag: str, **options) -> Container:
    out = tmp_path / ("out-" + tag)
    out.mkdir()
    result = clfsload.load(str(tmp_path / ("state-" + tag)), str(tree), "file:" + str(out), "c", new=True, **options)
    assert result.ok, result.message
    container = Container(FolderSource(str(out / "c")))
    assert container.finished and container.strays() == []
    return container


@pytest.mark.parametrize("processes", [0, 2])
def test_a_tree_of_many_directories_is_spread_as_the_reference_spreads_it(tmp_path, processes):
    """300 directories over several units and processes: exactly k mod 48 for k = 1..300."""
    tree = _fanout_tree(tmp_path / "tree", 300)
    container = _load(tmp_path, tree, "p%d" % processes, processes=processes)
    assert handle_rule_violations(container) == []
    counts = dmid_histogram(container)
    assert sum(counts.values()) == 300 and set(counts) == set(range(DIRMGR_COUNT))


def test_hard_links_take_the_dmid_of_their_first_parent(tmp_path):
    """--preserve_hardlinks 1 on a tree with links between directories of different dmids."""
    tree = _fanout_tree(tmp_path / "tree", 120, links=True)
    container = _load(tmp_path, tree, "links", preserve_hardlinks=True, processes=2)
    assert handle_rule_violations(container) == []
    linked = [e for e in container.walk() if not e.inode.is_dir and len(container.links(e.fh)) > 1]
    assert len({e.fh for e in linked}) >= 30
    assert any(e.fh[4] != 0 for e in linked)  # settled on directories below the root, not all on dmid 0


def test_directory_link_counts_that_do_not_count_subdirectories(tmp_path, monkeypatch):
    """A source that reports nlink 1 for every directory (btrfs): the driver mints the handles, spread exactly."""
    real = scan.EntryStat.of

    def btrfs_like(st):
        entry = real(st)
        return entry._replace(st_nlink=1) if entry.st_mode & 0o170000 == 0o040000 else entry

    tree = _fanout_tree(tmp_path / "tree", 150, links=True)
    clean = _load(tmp_path, tree, "clean", processes=0, preserve_hardlinks=True)
    monkeypatch.setattr(scan.EntryStat, "of", staticmethod(btrfs_like))
    ours = _load(tmp_path, tree, "btrfs", processes=0, preserve_hardlinks=True)
    monkeypatch.undo()
    assert handle_rule_violations(ours) == []
    assert diff_canonical(canonical_form(clean), canonical_form(ours)) == []


def test_link_counts_too_low_for_some_directories(tmp_path, monkeypatch):
    """Some counts right, some short by one: the spread stays exact, reservations and driver values together."""
    real = scan.EntryStat.of

    def short(st):
        entry = real(st)
        if entry.st_mode & 0o170000 == 0o040000 and entry.st_ino % 2 and entry.st_nlink > 2:
            return entry._replace(st_nlink=entry.st_nlink - 1)
        return entry

    tree = _fanout_tree(tmp_path / "tree", 200)
    monkeypatch.setattr(scan.EntryStat, "of", staticmethod(short))
    ours = _load(tmp_path, tree, "short", processes=0)
    monkeypatch.undo()
    assert handle_rule_violations(ours) == []
