"""The state store (clfsload.driver.state) built directly, without a load.

Each test opens a :class:`StateStore` in a fresh folder and drives it through
its public methods only, as the driver does: opening and the lock, the meta
values and counters, units (add, pending, complete, fail, retry), the run-wide
directory counter, hard links, the ranges of huge files, the sweep list,
problems, pruned entries, and what survives a close or a killed process.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from clfsload.driver.state import DONE, FAILED, FORMAT_VERSION, PENDING, SWEEP_DIR, SWEEP_OBJECT, StateError, StateStore
from clfsload.work.scan import EntryStat, Problem
from clfsload.work.units import DeferredDir, DirResult, LinkRef, SubDir

from _load import REPO

IDENTITY = {"containerid": "1234", "source_root": "/src", "target": "file:/out/c"}


def fh(n: int) -> bytes:
    """A distinct 24-byte handle per ``n`` (the store treats handles as opaque keys)."""
    return b"\x31\x00\x00\x00\x00\x00\x02\x00" + n.to_bytes(8, "little") + bytes(8)


def dir_stat(nlink: int) -> bytes:
    """A directory's packed EntryStat with ``nlink`` links (so ``nlink - 2`` subdirectories)."""
    return EntryStat(0o40755, 10, 20, nlink, 0, 0, 4096, 1.0, 2.0, 3.0, 0, 2_000_000_000, 3_000_000_000).pack()


ROOT = fh(1)


@pytest.fixture
def state_dir(tmp_path: Path) -> str:
    return str(tmp_path / "state")


@pytest.fixture
def store(state_dir: str):
    opened = StateStore.create(state_dir, IDENTITY)
    yield opened
    opened.close()


def add_root(store: StateStore, nlink: int = 2) -> int:
    return store.add_unit(b"/src", ROOT, b"\x00" * 16, b"", dir_stat(nlink))


def reopen(store: StateStore) -> StateStore:
    store.close()
    return StateStore.open(store.path)


# --- create, open, lock --------------------------------------------------------------


def test_create_makes_a_private_directory_with_the_identity(state_dir):
    store = StateStore.create(state_dir, IDENTITY)
    try:
        assert os.stat(state_dir).st_mode & 0o777 == 0o700
        assert store.get("containerid") == "1234" and store.get("target") == "file:/out/c"
        assert store.get("format_version") == FORMAT_VERSION
        assert store.phase == "INIT"
        assert store.get("missing") is None and store.get("missing", "x") == "x"
    finally:
        store.close()


def test_create_refuses_an_existing_directory_or_a_file(tmp_path):
    (tmp_path / "there").mkdir()
    with pytest.raises(StateError, match="already exists; resume without --new"):
        StateStore.create(str(tmp_path / "there"), IDENTITY)
    (tmp_path / "afile").write_bytes(b"x")
    with pytest.raises(StateError, match="is a file, not a state directory"):
        StateStore.create(str(tmp_path / "afile"), IDENTITY)
    with pytest.raises(StateError, match="its parent '.*nowhere' does not exist"):
        StateStore.create(str(tmp_path / "nowhere" / "state"), IDENTITY)


def test_open_refuses_what_is_not_a_state_directory(tmp_path):
    with pytest.raises(StateError, match="does not exist; start a transfer with --new"):
        StateStore.open(str(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(StateError, match="holds no clfsload state"):
        StateStore.open(str(tmp_path / "empty"))
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "lock").write_bytes(b"")
    with pytest.raises(StateError, match="stopped while it was being created"):
        StateStore.open(str(tmp_path / "half"))


def test_a_second_open_of_a_busy_state_dir_fails_naming_the_holder(state_dir):
    first = StateStore.create(state_dir, IDENTITY)
    try:
        with pytest.raises(StateError) as caught:
            StateStore.open(state_dir)
        assert str(caught.value) == (
            "state directory '%s' is in use by another clfsload run (pid %d); wait for it or stop it"
            % (state_dir, os.getpid())
        )
    finally:
        first.close()
    StateStore.open(state_dir).close()  # the lock went with the close


def test_another_format_version_is_refused(store):
    store.set("format_version", "1")
    path = store.path
    store.close()
    with pytest.raises(StateError, match="has format version '1', this clfsload reads '%s'" % FORMAT_VERSION):
        StateStore.open(path)


# --- meta, phase, commit -----------------------------------------------------------


def test_counters_phase_and_meta_survive_close_and_open(store):
    store.add_counter("objects", 5)
    store.add_counter("objects", -2)
    store.add_counter("untouched", 0)
    store.set("options", "{}")
    store.set_phase("TRANSFER")
    store = reopen(store)
    try:
        assert store.counter("objects") == 3 and store.counter("untouched") == 0
        assert store.get("options") == "{}"
        assert store.phase == "TRANSFER" and float(store.get("phase_started")) > 0
    finally:
        store.close()


_CRASH = """
import os, sys
sys.path.insert(0, sys.argv[2])
from clfsload.driver.state import StateStore
store = StateStore.open(sys.argv[1])
store.set("kept", "1")
store.add_unit(b"/src/kept", bytes(24), bytes(24), b"kept", None)
store.commit()
store.set("lost", "1")
store.add_unit(b"/src/lost", bytes(23) + b"x", bytes(24), b"lost", None)
os._exit(0)  # killed before the next commit: no close, no checkpoint
"""


def test_a_killed_writer_loses_only_its_uncommitted_batch(store):
    path = store.path
    store.close()
    done = subprocess.run([sys.executable, "-c", _CRASH, path, str(REPO)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    store = StateStore.open(path)  # the lock died with the process
    try:
        assert store.get("kept") == "1" and store.get("lost") is None
        assert [t.path for t in store.pending_units(0, 10)] == [b"/src/kept"]
    finally:
        store.close()


def test_batch_size_counts_results_until_commit(store):
    unit = add_root(store)
    assert store.batch_size == 0  # scheduling is not a result
    store.complete_unit(DirResult(unit, objects=1))
    assert store.batch_size == 1
    store.commit()
    assert store.batch_size == 0


# --- units and the directory counter ---------------------------------------------------


def test_units_are_numbered_in_order_and_listed_pending_after_a_cursor(store):
    units = [store.add_unit(b"/src/d%d" % i, fh(10 + i), ROOT, b"d%d" % i, dir_stat(2)) for i in range(5)]
    assert units == [1, 2, 3, 4, 5]
    tasks = store.pending_units(0, 3)
    assert [t.unit for t in tasks] == [1, 2, 3]
    first = tasks[0]
    assert (first.path, first.fh, first.parent_fh, first.name) == (b"/src/d0", fh(10), ROOT, b"d0")
    assert first.stat == dir_stat(2) and first.known_subdirs is None
    assert [t.unit for t in store.pending_units(3, 10)] == [4, 5]
    assert store.count_units(PENDING) == 5 and store.count_units(FAILED) == 0


def test_the_drain_is_handed_committed_units_only(store):
    """A unit runs once its row is durable: a resume that lost the row would name its subdirectories anew."""
    first = [store.add_unit(b"/src/d%d" % i, fh(10 + i), ROOT, b"d%d" % i, dir_stat(2)) for i in range(3)]
    store.commit()
    assert not store.units_to_commit
    later = [store.add_unit(b"/src/e%d" % i, fh(20 + i), ROOT, b"e%d" % i, dir_stat(2)) for i in range(2)]
    assert store.units_to_commit
    assert [t.unit for t in store.pending_units(0, 10, committed_only=True)] == first
    assert [t.unit for t in store.pending_units(0, 10)] == first + later  # the connection sees its own rows
    store.commit()
    assert not store.units_to_commit
    assert [t.unit for t in store.pending_units(first[-1], 10, committed_only=True)] == later


def test_each_unit_reserves_its_subdirectories_on_the_directory_counter(store):
    first = store.add_unit(b"/a", fh(2), ROOT, b"a", dir_stat(5))  # 3 subdirectories: values 1..3
    second = store.add_unit(b"/b", fh(3), ROOT, b"b", dir_stat(4))  # 2: values 4..5
    none = store.add_unit(b"/c", fh(4), ROOT, b"c", None)  # no stat (the root): nothing reserved
    tasks = {t.unit: t for t in store.pending_units(0, 10)}
    assert (tasks[first].dmid_base, tasks[first].dmid_count) == (0, 3)
    assert (tasks[second].dmid_base, tasks[second].dmid_count) == (3, 2)
    assert (tasks[none].dmid_base, tasks[none].dmid_count) == (5, 0)
    assert store.take_dir_counter(0) == 5  # a peek takes nothing
    assert store.take_dir_counter(4) == 5 and store.take_dir_counter(0) == 9
    store = reopen(store)  # the counter is written with the commit of close
    try:
        assert store.take_dir_counter(1) == 9
        assert store.add_unit(b"/d", fh(5), ROOT, b"d", dir_stat(3)) == 4
        assert store.pending_units(3, 1)[0].dmid_base == 10
    finally:
        store.close()


def test_a_completed_unit_is_reaped_and_schedules_its_subdirectories(store):
    unit = add_root(store, nlink=3)
    sub = SubDir(b"sub", b"/src/sub", fh(2), dir_stat(2))
    store.complete_unit(DirResult(unit, subdirs=[sub], objects=3, source_bytes=100))
    tasks = store.pending_units(0, 10)
    assert [(t.path, t.fh, t.parent_fh, t.name) for t in tasks] == [(b"/src/sub", fh(2), ROOT, b"sub")]
    assert tasks[0].unit > unit
    assert store.counter("objects") == 4  # its 3 objects and the directory itself
    assert store.counter("source_bytes") == 100
    assert store.count_units(PENDING) == 1 and store.count_units(FAILED) == 0
    assert list(store.problems()) == []


def test_a_unit_with_problems_is_kept_failed_and_retried_under_a_new_number(store):
    unit = add_root(store, nlink=3)
    sub = SubDir(b"sub", b"/src/sub", fh(2), dir_stat(2))
    bad = Problem(b"/src/bad", "permission denied")
    store.complete_unit(DirResult(unit, subdirs=[sub], kept_subdirs={b"old": fh(3)}, problems=[bad],
                                  objects=2, source_bytes=50))
    assert store.count_units(FAILED) == 1 and store.count_problems() == 1
    assert list(store.problems()) == [bad]
    assert store.counter("objects") == 3 and store.counter("source_bytes") == 50
    assert store.failed_entries() == []  # it stored its directory: only the entry is missing
    subdir_unit = store.pending_units(0, 10)[0].unit
    assert store.retry_failed() == (1, 0)
    assert store.count_units(FAILED) == 0 and store.count_problems() == 0
    assert store.counter("objects") == 0 and store.counter("source_bytes") == 0  # counted again when redone
    retried = [t for t in store.pending_units(0, 10) if t.fh == ROOT]
    assert len(retried) == 1 and retried[0].unit > subdir_unit  # renumbered after what it scheduled
    assert retried[0].known_subdirs == {b"sub": fh(2), b"old": fh(3)}


def test_a_failed_unit_is_a_missing_entry_until_retried(store):
    sub = store.add_unit(b"/src/sub", fh(2), ROOT, b"sub", dir_stat(2))
    store.record_range(sub, fh(9), 0, 3, b"st", b"head", b"digest", 4096)
    store.fail_unit(sub, Problem(b"/src/sub", "cannot list"))
    assert store.count_units(FAILED) == 1
    assert [p.reason for p in store.problems()] == ["cannot list"]
    assert store.failed_entries() == [(ROOT, b"sub", fh(2))]
    assert store.stored_ranges(fh(9)) == []  # its ranges are redone with it
    store.fail_unit(sub, Problem(b"/src/sub", "cannot list again"))
    assert [p.reason for p in store.problems()] == ["cannot list again"]  # one problem per unit
    assert store.retry_failed() == (1, 0)
    assert [t.unit for t in store.pending_units(0, 10)] == [sub]  # never loaded: keeps its number
    assert store.failed_entries() == []


def test_a_vanished_unit_is_gone_from_its_parent(store):
    sub = store.add_unit(b"/src/sub", fh(2), ROOT, b"sub", dir_stat(2))
    store.complete_unit(DirResult(sub, vanished=True))
    assert store.count_units(PENDING) == 0 and store.counter("objects") == 0
    assert store.gone_entries() == [(ROOT, b"sub", fh(2))]
    store.clear_gone()
    assert store.gone_entries() == []


def test_a_deferred_directory_waits_for_the_driver(store):
    unit = add_root(store)
    listing = [(b"a", fh(5)), (b"link", fh(6))]
    store.complete_unit(DirResult(unit, deferred=DeferredDir(dir_stat(2), listing, 0), objects=2))
    assert store.count_deferred_dirs() == 1
    [(task, stat, children, count)] = store.deferred_dirs(10)
    assert (task.fh, task.path, task.parent_fh) == (ROOT, b"/src", b"\x00" * 16)
    assert stat == dir_stat(2) and children == listing and count == 0
    assert store.deferred_dirs(10, after=ROOT) == []
    store.complete_deferred_dir(ROOT)
    assert store.count_deferred_dirs() == 0


# --- hard links ----------------------------------------------------------------------


def test_links_are_recorded_once_settled_and_stored(store):
    key, final = fh(40), fh(41)
    first = store.add_unit(b"/src/a", fh(2), ROOT, b"a", dir_stat(2))
    second = store.add_unit(b"/src/b", fh(3), ROOT, b"b", dir_stat(2))
    store.complete_unit(DirResult(first, links=[LinkRef(key, fh(2), b"x", b"/src/a/x", b"st")]))
    store.complete_unit(DirResult(second, links=[LinkRef(key, fh(3), b"y", b"/src/b/y", b"st")]))
    assert store.count_links(PENDING) == 1
    assert store.unsettled_links() == [(key, fh(2))]  # the first parent names its dmid
    with pytest.raises(StateError, match="not settled before RECONCILE"):
        store.pending_links(10)
    store.settle_links([(key, final)])
    assert store.unsettled_links() == [] and store.link_handles([key, fh(99)]) == {key: final}
    [task] = store.pending_links(10)
    assert (task.fh, task.path, task.name, task.stat, task.key) == (final, b"/src/a/x", b"x", b"st", key)
    assert task.backpointers == (fh(2), fh(3))
    assert store.pending_links(10, after=key) == []
    objects = store.counter("objects")
    store.complete_link(key, None)
    assert store.count_links(PENDING) == 0 and store.count_links(DONE) == 1
    assert store.counter("objects") == objects + 1
    assert store.link_handles([key]) == {key: final}  # kept: a directory loaded again names the same handle


def test_a_failed_link_is_missing_under_every_path_until_retried(store):
    key, final = fh(40), fh(41)
    unit = add_root(store)
    store.complete_unit(DirResult(unit, links=[LinkRef(key, ROOT, b"x", b"/src/x", b"st"),
                                               LinkRef(key, ROOT, b"y", b"/src/y", b"st")]))
    store.settle_links([(key, final)])
    store.complete_link(key, Problem(b"/src/x", "read error"))
    assert store.count_links(FAILED) == 1 and store.count_problems() == 1
    assert store.failed_entries() == [(ROOT, b"x", final), (ROOT, b"y", final)]
    assert store.retry_failed() == (0, 1)
    assert store.count_links(PENDING) == 1 and store.count_problems() == 0


def test_links_no_path_names_any_more_are_dropped(store):
    unit = add_root(store)
    store.complete_unit(DirResult(unit, links=[LinkRef(fh(40), ROOT, b"x", b"/src/x", b"st")]))
    assert store.drop_pathless_links() == 0
    store.settle_links([(fh(40), fh(41))])
    store.complete_link(fh(40), None)  # stored: its paths are reaped, the row stays DONE
    assert store.drop_pathless_links() == 0 and store.count_links(DONE) == 1


# --- ranges, sweep, pruned entries ---------------------------------------------------------


def test_ranges_of_a_huge_file_are_kept_in_order_until_forgotten(store):
    unit = add_root(store)
    store.record_range(unit, fh(7), 4, 7, b"st", b"", b"d2", 4096)
    store.record_range(unit, fh(7), 0, 3, b"st", b"head", b"d1", 4096)
    store.record_range(unit, fh(8), 0, 1, b"st", b"h", b"d3", 10)
    assert store.stored_ranges(fh(7)) == [(0, 3, b"st", b"head", b"d1", 4096), (4, 7, b"st", b"", b"d2", 4096)]
    store.record_range(unit, fh(7), 0, 3, b"st2", b"head", b"d1b", 4096)  # read again: replaced
    assert store.stored_ranges(fh(7))[0] == (0, 3, b"st2", b"head", b"d1b", 4096)
    store = reopen(store)
    try:
        assert len(store.stored_ranges(fh(7))) == 2
        store.forget_ranges(fh(7))
        assert store.stored_ranges(fh(7)) == [] and len(store.stored_ranges(fh(8))) == 1
        store.drop_ranges()
        assert store.stored_ranges(fh(8)) == []
    finally:
        store.close()


def test_a_completed_unit_drops_the_ranges_of_its_files(store):
    unit = add_root(store)
    store.record_range(unit, fh(7), 0, 3, b"st", b"head", b"d1", 4096)
    store.complete_unit(DirResult(unit))
    assert store.stored_ranges(fh(7)) == []


def test_the_sweep_list_holds_directories_and_objects_once(store):
    store.add_sweep(fh(3))
    store.add_sweep(fh(3))
    store.add_sweep(fh(2), SWEEP_DIR)
    store.add_sweep(fh(9), SWEEP_OBJECT)
    assert store.sweep_list() == ([fh(2), fh(3)], [fh(9)])
    store.clear_sweep()
    assert store.sweep_list() == ([], [])


def test_a_dirty_unit_goes_on_the_sweep_list(store):
    unit = add_root(store)
    store.complete_unit(DirResult(unit, dirty=True))
    assert store.sweep_list() == ([ROOT], [])


def test_a_resume_sweeps_every_unfinished_unit_and_settled_link(store):
    unit = add_root(store)
    store.add_unit(b"/src/never", fh(5), ROOT, b"never", dir_stat(2))
    store.complete_unit(DirResult(unit, links=[LinkRef(fh(40), ROOT, b"x", b"/src/x", b"st"),
                                               LinkRef(fh(42), ROOT, b"y", b"/src/y", b"st")]))
    store.settle_links([(fh(40), fh(41))])  # fh(42) is not settled: nothing of it can be in the container
    store.mark_resumed()
    assert store.sweep_list() == ([fh(5)], [fh(41)])


def test_pruned_entries_come_back_once_their_object_loads(store):
    sub = store.add_unit(b"/src/sub", fh(2), ROOT, b"sub", dir_stat(2))
    store.fail_unit(sub, Problem(b"/src/sub", "cannot list"))
    other = (ROOT, b"gone", fh(3))
    store.add_pruned([(ROOT, b"sub", fh(2)), other])
    assert store.pruned_to_restore() == [other]  # sub still failed: stays out
    store.retry_failed()
    store.complete_unit(DirResult(sub))
    assert sorted(store.pruned_to_restore()) == sorted([(ROOT, b"sub", fh(2)), other])
    store.drop_pruned([other])
    assert store.pruned_to_restore() == [(ROOT, b"sub", fh(2))]


def test_problems_are_listed_in_the_order_found(store):
    first = store.add_unit(b"/src/a", fh(2), ROOT, b"a", dir_stat(2))
    second = store.add_unit(b"/src/b", fh(3), ROOT, b"b", dir_stat(2))
    store.complete_unit(DirResult(second, problems=[Problem(b"/src/b/1", "one"), Problem(b"/src/b/2", "two")]))
    store.fail_unit(first, Problem(b"/src/a", "three"))
    store = reopen(store)
    try:
        assert [(p.path, p.reason) for p in store.problems()] == [
            (b"/src/b/1", "one"), (b"/src/b/2", "two"), (b"/src/a", "three")]
        assert store.count_problems() == 3
    finally:
        store.close()


def test_each_commit_runs_the_before_commit_hook_first(store):
    seen = []
    store.before_commit = lambda: seen.append(store.get("k"))
    store.set("k", "v")
    store.commit()
    assert seen == ["v"]  # called inside the batch, before COMMIT
    store.commit()
    assert seen == ["v"]  # nothing to commit: no hook


def test_the_state_commits_with_synchronous_full(store):
    assert store._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL: every commit durable


def test_a_failing_before_commit_hook_rolls_the_batch_back(state_dir):
    """What the batch records may not be durable: no later commit (the error path's, close's) may record it."""
    store = StateStore.create(state_dir, IDENTITY)
    store.set("k", "kept")
    store.commit()

    def fails():
        raise OSError("fsync failed")

    store.before_commit = fails
    store.set("k", "not durable")
    with pytest.raises(OSError):
        store.commit()
    store.before_commit = None
    store.commit()  # what drain's error path does
    with pytest.raises(OSError):
        store.before_commit = fails
        store.set("k", "not durable either")
        store.close()  # raises the hook's error, after releasing the database and the lock
    reopened = StateStore.open(state_dir)
    try:
        assert reopened.get("k") == "kept"
    finally:
        reopened.close()
