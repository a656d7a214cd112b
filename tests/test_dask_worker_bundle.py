"""A bundle on a Dask worker (clfsload.execute.dask_worker._Run.run_all), without a cluster.

Stand-in directory units record which thread ran them and leave their
directory's PUT where the worker's DirectoryWriter says (unwaited, or
waited for at once). What is checked: the units run on several threads
where the run has several unit threads, the outcomes come back in the
bundle's order, the bundle returns only once every directory PUT is
answered, and each failure stays its own unit's (a failed PUT is the
unit's Problem, a TerminalError its UnitFailed, what a unit raised its
UnitFailed).
"""

import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import List

import pytest

from clfsload.errors import TerminalError
from clfsload.execute import dask_worker
from clfsload.execute.dask_worker import UnitFailed
from clfsload.execute.pool import WorkerConfig
from clfsload.settings import Switches
from clfsload.targets.credentials import Credential
from clfsload.work.directories import directory_stored
from clfsload.work.scan import Problem
from clfsload.work.units import RunParams

AZURE = "http://127.0.0.1:9/devstoreaccount1"  # never reached: no uploader is opened here
SAS = Credential.sas("sv=2022-11-02&sr=c&sp=racwdl&sig=c2lnbmF0dXJl")


@dataclass
class Dir:
    """A directory unit: its outcome, and the future of its directory's PUT."""

    n: int
    put: "Future[None]" = field(default_factory=Future)
    raises: BaseException = None  # type: ignore[assignment]
    threads: List[int] = field(default_factory=list)
    meet: "threading.Barrier | None" = None  # held until another thread runs a unit too

    @property
    def path(self) -> bytes:
        return b"/src/d%d" % self.n

    def run(self, runner):
        self.threads.append(threading.get_ident())
        if self.meet is not None:
            self.meet.wait(timeout=30)  # broken (an error) if no other thread ever comes
        time.sleep(0.01)  # long enough for the other threads to take units meanwhile
        if self.raises is not None:
            raise self.raises
        writer = runner.directories
        if writer.unwaited is not None:
            writer.unwaited.append((self.path, [self.put]))
        else:
            directory_stored(self.path, [self.put])
        return "outcome %d" % self.n


def _run(threads: int) -> dask_worker._Run:
    params = RunParams(containerid=5, fsid=6, secret=b"\0" * 16, compress=False, preserve_hardlinks=False)
    return dask_worker._Run("transfer", WorkerConfig(AZURE, "cont1", SAS, params, 8, Switches(unit_threads=threads)))


@pytest.fixture(autouse=True)
def stand_in_directories(monkeypatch):
    monkeypatch.setattr(dask_worker, "DirTask", Dir)  # the worker leaves only directory units' PUTs unwaited


def _answer_later(units: List[Dir], errors=None, after: float = 0.2) -> threading.Thread:
    errors = errors or {}

    def answer():
        time.sleep(after)
        for unit in units:
            if unit.n in errors:
                unit.put.set_exception(errors[unit.n])
            else:
                unit.put.set_result(None)

    thread = threading.Thread(target=answer)
    thread.start()
    return thread


@pytest.mark.parametrize("threads", [1, 4])
def test_a_bundle_runs_its_units_at_once_and_returns_them_in_order_once_stored(threads):
    run = _run(threads)
    units = [Dir(n) for n in range(12)]
    if threads > 1:  # the first two units wait for each other: they must run at once
        units[0].meet = units[1].meet = threading.Barrier(2)
    answering = _answer_later(units)
    try:
        outcomes = run.run_all(units, uploader=None)
    finally:
        answering.join()
        run.close()
    assert outcomes == ["outcome %d" % n for n in range(12)]
    assert all(unit.put.done() for unit in units)  # not back before every directory is stored
    ran_on = {ident for unit in units for ident in unit.threads}
    assert threading.get_ident() in ran_on  # the Dask thread takes units too
    assert len(ran_on) <= threads and (len(ran_on) > 1) == (threads > 1)


def test_each_failure_stays_its_own_units():
    run = _run(4)
    denied = TerminalError("the credential was rejected")
    units = [Dir(0), Dir(1), Dir(2), Dir(3, raises=ValueError("broken unit")), Dir(4)]
    answering = _answer_later(units, {1: OSError("connection reset"), 2: denied}, after=0.05)
    try:
        outcomes = run.run_all(units, uploader=None)
    finally:
        answering.join()
        run.close()
    assert outcomes[0] == "outcome 0" and outcomes[4] == "outcome 4"
    assert isinstance(outcomes[1], Problem) and outcomes[1].path == b"/src/d1"
    assert outcomes[2] == UnitFailed(denied)
    assert isinstance(outcomes[3], UnitFailed) and isinstance(outcomes[3].error, ValueError)


@dataclass
class Slow(Dir):
    """A directory unit that takes a while (another bundle's, holding the run's unit threads)."""

    def run(self, runner):
        time.sleep(0.2)
        return super().run(runner)


def test_a_short_bundle_is_not_held_up_behind_another_bundles_queued_helpers():
    # Two Dask threads of one worker run two bundles of the same run at once: the long one
    # occupies the run's three unit threads, and the short one's helper jobs queue behind its.
    # The short bundle's own thread takes all its units; it must not then wait for its
    # queued helper jobs to get a thread (0.2 s x 12 / 4 later).
    run = _run(4)
    long_units = [Slow(n) for n in range(12)]
    short_units = [Dir(100 + n) for n in range(2)]
    for unit in long_units + short_units:
        unit.put.set_result(None)
    took = {}

    def bundle(name, units):
        started = time.monotonic()
        run.run_all(units, uploader=None)
        took[name] = time.monotonic() - started

    first = threading.Thread(target=bundle, args=("long", long_units))
    first.start()
    time.sleep(0.05)  # the long bundle's helpers hold the unit threads
    try:
        bundle("short", short_units)
    finally:
        first.join()
        run.close()
    assert took["short"] < took["long"] / 2, took  # 0.02 s of work; held up, it ended with the long one
