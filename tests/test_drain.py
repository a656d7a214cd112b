"""The drain's feeding of a pool (clfsload.driver.recording._feed): committed units only, and a commit only
when the pool would otherwise wait for the units the open batch schedules."""

from concurrent.futures import Future
from pathlib import Path
from typing import List

import pytest

from clfsload.driver import recording
from clfsload.driver.state import StateStore

from test_state import IDENTITY, ROOT, dir_stat, fh


class Pool:
    """Takes units and keeps them (their futures never finish); counts flushes."""

    def __init__(self, capacity: int):
        self.capacity = capacity
        self.submitted: List[int] = []
        self.flushes = 0

    def submit(self, task) -> Future:
        self.submitted.append(task.unit)
        return Future()

    def flush(self) -> None:
        self.flushes += 1


class Recorder:
    def __init__(self, state: StateStore):
        self.state = state
        self.commits = 0

    def commit(self) -> None:
        self.commits += 1
        self.state.commit()


@pytest.fixture
def store(tmp_path: Path):
    opened = StateStore.create(str(tmp_path / "state"), IDENTITY)
    yield opened
    opened.close()


def _fetch(store: StateStore):
    return lambda cursor, n: [(t.unit, t) for t in store.pending_units(cursor or 0, n, committed_only=True)]


def _add(store: StateStore, first: int, count: int) -> List[int]:
    return [store.add_unit(b"/src/d%d" % i, fh(first + i), ROOT, b"d%d" % i, dir_stat(2)) for i in range(count)]


def test_committed_units_fill_the_pool_without_a_commit(store):
    committed = _add(store, 10, 6)
    store.commit()
    _add(store, 20, 3)  # a result's subdirectories, in the open batch
    pool, recorder = Pool(capacity=4), Recorder(store)
    cursor = recording._feed(pool, recorder, _fetch(store), [], {}, None)
    assert pool.submitted == committed[:4] and cursor == committed[3]
    assert recorder.commits == 0 and store.units_to_commit
    assert pool.flushes == 1  # what the pool held goes out at the end of each round


def test_a_pool_short_of_committed_units_commits_the_batch_that_schedules_more(store):
    committed = _add(store, 10, 2)
    store.commit()
    scheduled = _add(store, 20, 3)
    pool, recorder = Pool(capacity=4), Recorder(store)
    in_flight: dict = {}
    cursor = recording._feed(pool, recorder, _fetch(store), [], in_flight, None)
    assert recorder.commits == 1 and not store.units_to_commit
    assert pool.submitted == committed + scheduled[:2] and cursor == scheduled[1]
    in_flight.clear()  # they came back; nothing new scheduled: no commit
    recording._feed(pool, recorder, _fetch(store), [], in_flight, cursor)
    assert recorder.commits == 1 and pool.submitted[-1] == scheduled[2]


def test_a_pool_without_flush_is_fed_as_before(store):
    _add(store, 10, 3)
    store.commit()

    class Plain:
        capacity = 8
        submitted: List[int] = []

        def submit(self, task) -> Future:
            self.submitted.append(task.unit)
            return Future()

    pool = Plain()
    recording._feed(pool, Recorder(store), _fetch(store), [], {}, None)
    assert pool.submitted == [1, 2, 3]
