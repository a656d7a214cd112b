"""The phase sequence in-process (clfsload.driver.engine.Loader), and the units' one dispatch (clfsload.work.units).

Every other load test goes through the command line or ``clfsload.load``;
these build a :class:`Loader` on a small tree with a ``file:`` target, so a
phase run twice, skipped, or run out of order fails here first.
"""

import json
import logging
import os
import pickle
import re

import pytest

from clfsload.cli.report import render, summary
from clfsload.clfs.canonical import canonical_form, diff_canonical
from clfsload.clfs.constants import FIRST_SEGMENT_BYTES, OTHER_SEGMENT_BYTES, ROOT_ID
from clfsload.clfs.container import Container, FolderSource
from clfsload.driver.assembly import Assembly
from clfsload.driver.engine import Interrupted, LoadError, Loader, run_load
from clfsload.driver.state import StateStore
from clfsload.settings import Settings, Switches
from clfsload.targets.credentials import Credential
from clfsload.work.scan import EntryStat, Problem
from clfsload.work.units import DirResult, DirTask, DirWrite, EntryBatch, FileRange, LinkTask, UnitFailed

PHASES = ("_init", "_transfer", "_reconcile", "_finalize")


def make_tree(root):
    """A small tree that reaches every phase's work: a huge directory, a ranged file, hard links, a symlink."""
    root.mkdir()
    (root / "a.txt").write_bytes(b"alpha\n")
    (root / "empty").write_bytes(b"")
    (root / "big.bin").write_bytes(bytes(range(256)) * ((FIRST_SEGMENT_BYTES + OTHER_SEGMENT_BYTES + 300) // 256))
    many = root / "many"
    many.mkdir()
    for i in range(7):
        (many / ("f%d" % i)).write_bytes(b"%d\n" % i)
    (root / "sub").mkdir()
    (root / "sub" / "deep").mkdir()
    (root / "sub" / "deep" / "x").write_bytes(b"x" * 5000)
    os.link(root / "a.txt", root / "sub" / "a-link.txt")
    os.symlink("a.txt", root / "to-a")


#: batches of 3 entries and ranges of 1 segment, as the edge reads them from CLFSLOAD_* variables (the
#: rest of the environment too: the conftest's CLFSLOAD_HISTORY keeps the user's history file out of it)
SMALL_UNITS = Switches.from_environ(dict(os.environ, CLFSLOAD_BATCH_ENTRIES="3", CLFSLOAD_RANGE_SEGMENTS="1"))


@pytest.fixture
def tree(tmp_path, monkeypatch):
    """The source tree, with batches of 3 entries and ranges of 1 segment."""
    make_tree(tmp_path / "src")
    (tmp_path / "out").mkdir()
    return tmp_path


def settings(base, name="run", new=True, **kwargs):
    """Settings of an in-process load of ``base/src`` into ``file:base/out``, container ``name``."""
    return Settings(
        state_dir=str(base / ("state-" + name)), source=str(base / "src"), account="file:" + str(base / "out"),
        container=name, credential=Credential.parse("-"), new=new, preserve_hardlinks=True if new else None,
        processes=0, live_progress=False, switches=SMALL_UNITS, **kwargs)


def spy_phases(monkeypatch, stop_at=None):
    """Record the phase methods a Loader calls, in order; ``stop_at`` raises LoadError as that phase starts."""
    calls = []
    for name in PHASES:
        real = getattr(Loader, name)

        def phase(self, _real=real, _name=name):
            calls.append(_name)
            if _name == stop_at:
                raise LoadError("stopped before %s" % _name)
            return _real(self)

        monkeypatch.setattr(Loader, name, phase)
    return calls


def run_loader(s):
    """Run a Loader to its end; its result, the log detached."""
    loader = Loader(s)
    try:
        return loader.run()
    finally:
        loader.close_log()


def canonical(base, name):
    return canonical_form(Container(FolderSource(str(base / "out" / name))))


def test_a_new_load_runs_every_phase_once_in_order_and_publishes(tree, monkeypatch, caplog):
    caplog.set_level(logging.INFO, logger="clfsload")
    calls = spy_phases(monkeypatch)
    result = run_loader(settings(tree))
    assert calls == list(PHASES)
    assert "many: 7 entries, loaded in 3 batches" in caplog.text
    assert re.search(r"big\.bin: \d+ bytes, loaded in 2 ranges of up to 1 segments\n", caplog.text)
    assert result.ok and result.published and result.phase == "DONE"
    assert result.problems == 0 and result.problem_list == []
    assert result.objects >= 16  # 13 entries, 3 directories
    # TRANSFER counts what it read: the files of one link and the symlink's target (RECONCILE's linked
    # object counts as an object only)
    unlinked = [p for p in (tree / "src").rglob("*") if p.is_file() and not p.is_symlink() and p.stat().st_nlink == 1]
    assert result.source_bytes == sum(p.stat().st_size for p in unlinked) + len("a.txt")
    state = StateStore.open(str(tree / "state-run"))
    try:
        assert state.phase == "DONE" and state.count_units() == 0 and state.count_links() == 0
    finally:
        state.close()
    ours = Container(FolderSource(str(tree / "out" / "run")))
    assert ours.finished and ours.strays() == []


def test_a_done_transfer_runs_no_phase_again(tree, monkeypatch):
    assert run_loader(settings(tree)).ok
    calls = spy_phases(monkeypatch)
    result = run_loader(settings(tree, new=False))
    assert calls == []
    assert result.ok and result.published and result.phase == "DONE"


@pytest.mark.parametrize("stop_at", ["_transfer", "_reconcile", "_finalize"])
def test_a_run_stopped_before_a_phase_resumes_there_and_gives_the_clean_container(tree, monkeypatch, stop_at):
    calls = spy_phases(monkeypatch, stop_at)
    with pytest.raises(LoadError, match="stopped before"):
        run_loader(settings(tree))
    first = list(calls)
    assert first == list(PHASES[:PHASES.index(stop_at) + 1])
    monkeypatch.undo()
    calls = spy_phases(monkeypatch)
    result = run_loader(settings(tree, new=False))
    assert calls == list(PHASES[PHASES.index(stop_at):])
    assert result.ok and result.published
    assert run_loader(settings(tree, name="clean")).ok
    assert diff_canonical(canonical(tree, "clean"), canonical(tree, "run")) == []


def test_an_interrupted_transfer_keeps_its_recorded_units_and_resumes_the_rest(tree, monkeypatch):
    real = Assembly.record_unit
    seen = []

    def record_then_interrupt(self, task, outcome):
        seen.append(task.path)
        if len(seen) == 3:
            raise KeyboardInterrupt
        return real(self, task, outcome)

    monkeypatch.setattr(Assembly, "record_unit", record_then_interrupt)
    with pytest.raises(Interrupted):
        run_loader(settings(tree))
    state = StateStore.open(str(tree / "state-run"))
    try:
        assert state.phase == "TRANSFER"
        assert 0 < state.count_units()  # the interrupted directory and those after it are still pending
    finally:
        state.close()
    monkeypatch.setattr(Assembly, "record_unit", real)
    calls = spy_phases(monkeypatch)
    result = run_loader(settings(tree, new=False))
    assert calls == ["_transfer", "_reconcile", "_finalize"]
    assert result.ok, result.message
    assert run_loader(settings(tree, name="clean")).ok
    assert diff_canonical(canonical(tree, "clean"), canonical(tree, "run")) == []


def test_run_load_returns_the_result_and_the_cli_renders_it(tree, capsys):
    result = run_load(settings(tree, output="json"))
    assert result.ok and result.status == "Completed"
    assert capsys.readouterr().out == ""  # the driver prints nothing: the CLI renders
    assert render(result, settings(tree, output="json")) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads(json.dumps(summary(result, "Completed")))
    assert printed["status"] == "Completed" and printed["published"] is True
    again = run_load(settings(tree))  # --new into the same state dir
    assert not again.ok and again.status == "Failed" and again.exit_code == 1
    assert render(again, settings(tree)) == 1
    assert capsys.readouterr().out == ""  # text output: the log said it


# --- the units' one dispatch -------------------------------------------------------------


class FakeRunner:
    """Answers each kind of unit with its name, as :class:`clfsload.work.units.Runs` is called."""

    def run(self, task):
        if task.path == b"/fails":
            raise UnitFailed(Problem(task.path, "cannot list directory: boom"))
        return "run"

    def run_batch(self, batch):
        return "run_batch"

    def store_range(self, task):
        return "store_range"

    def write_directory(self, write):
        return "write_directory"

    def store_linked(self, task):
        return "store_linked"


class FakeRecords:
    """Answers each record call with its name."""

    def __getattr__(self, name):
        return lambda task, outcome: (name, outcome)


STAT = EntryStat.of(os.lstat("."))
UNITS = [
    (DirTask(3, b"/d", b"F" * 8, ROOT_ID, b"d"), "run", "record_unit", "dir-3", (b"F" * 8, True)),
    (EntryBatch(3, 1, b"F" * 8, b"/d", ()), "run_batch", "record_batch", "dir-3-batch1", (b"F" * 8, True)),
    (FileRange(3, b"G" * 8, b"F" * 8, b"/d/f", STAT, 5, 6, 1), "store_range", "record_range",
     "dir-3-file-%s-seg5" % (b"G" * 8).hex(), (b"F" * 8, True)),
    (DirWrite(DirTask(0, b"/d", b"F" * 8, ROOT_ID, b"d"), b"", (), 0), "write_directory", "record_dir_write",
     "dirwrite-%s" % (b"F" * 8).hex(), None),
    (LinkTask(b"L" * 8, b"/d/l", b"l", b"", (b"F" * 8,), b"K" * 8), "store_linked", "record_link", "link",
     (b"L" * 8, False)),
]


@pytest.mark.parametrize("unit, runs, records, key, sweep", UNITS, ids=[type(u[0]).__name__ for u in UNITS])
def test_each_unit_dispatches_itself_and_survives_pickling(unit, runs, records, key, sweep):
    assert unit.run(FakeRunner()) == runs
    assert unit.record(FakeRecords(), "outcome") == (records, "outcome")
    assert unit.dask_key() == key
    repeat = unit.repeat_sweep()
    assert (None if repeat is None else (repeat.fh, repeat.directory)) == sweep
    copy = pickle.loads(pickle.dumps(unit))
    assert copy == unit and copy.dask_key() == key


def test_a_directory_that_fails_outright_comes_back_as_its_problem():
    outcome = DirTask(1, b"/fails", ROOT_ID, ROOT_ID, b"").run(FakeRunner())
    assert isinstance(outcome, Problem) and outcome.path == b"/fails"
    assert not isinstance(outcome, DirResult)
