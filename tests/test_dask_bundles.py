"""The Dask driver's bundles of units (clfsload.execute.dask_driver.DaskUnitPool), without a cluster.

A stand-in client records the tasks submitted and lets each test say how
each task ended; the pool's coroutine that collects a bundle runs on a
private event loop. What is checked: units go several to a task once their
time is known, every unit gets its own outcome, and the faults stay per
unit (a KilledWorker bundle is sent again one unit to a task, NotJoined
rejoins, a lost scheduler is a DaskError, a unit's own exception is its own).
"""

import asyncio
from concurrent.futures import Future
from dataclasses import dataclass
from typing import ClassVar, List, Optional

import pytest
from distributed import KilledWorker

from clfsload.execute import dask_driver
from clfsload.execute.dask_driver import DaskError, DaskRun
from clfsload.execute.dask_worker import NotJoined, UnitFailed
from clfsload.work.scan import Problem


@dataclass(frozen=True)
class Task:
    """A unit as the pool sees it: a Dask key part and a path."""

    n: int
    bundled: ClassVar[bool] = True  # a directory: may share a Dask task

    @property
    def path(self) -> bytes:
        return b"/src/d%d" % self.n

    def dask_key(self) -> str:
        return "d%d" % self.n


class DaskFuture:
    """What client.submit returns; the test ends it with ``finish``."""

    def __init__(self, tasks: List[Task]):
        self.tasks = tasks
        self.status = "pending"
        self._value: object = None

    def finish(self, status: str, value: object) -> None:
        self.status, self._value = status, value

    async def _result(self, raiseit: bool = True):
        if self.status == "error":
            return (type(self._value), self._value, None)
        return self._value


class Client:
    def __init__(self):
        self.submitted: List[DaskFuture] = []
        self.pending: list = []  # (coroutine function, args) added to the loop
        self.loop = self
        self.scheduler = type("Scheduler", (), {"address": "tcp://scheduler:8786"})()

    def subscribe_topic(self, topic, handler) -> None:
        pass

    def unsubscribe_topic(self, topic) -> None:
        pass

    def scheduler_info(self):
        return {"workers": {"tcp://w1": {"nthreads": 1}, "tcp://w2": {"nthreads": 1}}}

    def submit(self, function, token, tasks, key: str, pure: bool) -> DaskFuture:
        future = DaskFuture(list(tasks))
        future.key = key
        self.submitted.append(future)
        return future

    def add_callback(self, function, *args) -> None:
        self.pending.append((function, args))

    def collect(self) -> None:
        """Run the collecting coroutines of the tasks that ended."""
        waiting = []
        for function, args in self.pending:
            if args[0].status == "pending":
                waiting.append((function, args))
            else:
                asyncio.run(function(*args))
        self.pending = waiting


@pytest.fixture
def run():
    client = Client()
    made = DaskRun(client, owned=False, transfer="0123456789abcdef")
    made.offload = lambda function, *args: function(*args)  # the helper thread's work, here and now
    yield made
    made.close()


def _submit(pool, tasks) -> List[Future]:
    futures = [pool.submit(t) for t in tasks]
    pool.flush()
    return futures


def test_one_unit_a_task_until_the_units_time_is_known_then_bundles_of_it(run):
    assert run.bundle_size() == 1
    run.timed(10, 0.01)  # 1 ms a unit: about BUNDLE_SECONDS of work a bundle, capped
    assert run.bundle_size() == dask_driver.MAX_BUNDLE
    run.timed(1, 10.0)
    assert run.bundle_size() == 1  # a slow unit brings it down at once
    run._unit_s = dask_driver.BUNDLE_SECONDS / 5
    assert run.bundle_size() == 5
    assert run.capacity() == 2 * dask_driver.BUNDLES_PER_THREAD * 5  # bundles per worker thread


def test_each_unit_of_a_bundle_gets_its_own_outcome(run):
    run._unit_s = dask_driver.BUNDLE_SECONDS / 3
    pool = run.pool()
    futures = _submit(pool, [Task(i) for i in range(7)])
    client = run.client
    assert [[t.n for t in f.tasks] for f in client.submitted] == [[0, 1, 2], [3, 4, 5], [6]]
    assert all(f.key.startswith("clfsload-") for f in client.submitted)
    failure = RuntimeError("unit 4 failed")
    client.submitted[0].finish("finished", (["r0", "r1", "r2"], 0.3))
    client.submitted[1].finish("finished", (["r3", UnitFailed(failure), "r5"], 0.3))
    client.collect()
    assert [f.result() for f in futures[:4]] == ["r0", "r1", "r2", "r3"]
    assert futures[4].exception() is failure and futures[5].result() == "r5"
    assert not futures[6].done()
    assert not any(pool.repeated(f) for f in futures[:6])


@dataclass(frozen=True)
class Range(Task):
    """A unit that is not a directory (a range of a huge file): never bundled."""

    bundled: ClassVar[bool] = False


def test_units_other_than_directories_go_one_to_a_task(run):
    run._unit_s = dask_driver.BUNDLE_SECONDS / 3
    pool = run.pool()
    futures = _submit(pool, [Task(0), Range(1), Task(2), Range(3), Task(4)])
    assert sorted([t.n for t in f.tasks] for f in run.client.submitted) == [[0, 2, 4], [1], [3]]
    assert len(futures) == 5


def test_a_killed_bundle_is_sent_again_one_unit_to_a_task_and_only_a_killer_is_a_problem(run):
    run._unit_s = dask_driver.BUNDLE_SECONDS / 3
    pool = run.pool()
    futures = _submit(pool, [Task(i) for i in range(3)])
    client = run.client
    client.submitted[0].finish("error", KilledWorker("clfsload-d0+2", "tcp://w1", 3))
    client.collect()
    assert not any(f.done() for f in futures)
    singles = client.submitted[1:]
    assert [[t.n for t in f.tasks] for f in singles] == [[0], [1], [2]]
    singles[0].finish("finished", (["r0"], 0.1))
    singles[1].finish("error", KilledWorker("clfsload-d1", "tcp://w2", 3))
    singles[2].finish("finished", (["r2"], 0.1))
    client.collect()
    assert futures[0].result() == "r0" and futures[2].result() == "r2"
    problem = futures[1].result()
    assert isinstance(problem, Problem) and problem.path == b"/src/d1" and "died each time" in problem.reason
    # the killed attempts may have stored some of what each unit writes: all go on the sweep list
    assert all(pool.repeated(f) for f in futures)


def test_a_bundle_that_reached_a_worker_not_joined_rejoins_it_and_goes_again(run):
    joined: List[str] = []
    run.rejoin = joined.append
    run._unit_s = dask_driver.BUNDLE_SECONDS / 2
    pool = run.pool()
    futures = _submit(pool, [Task(1), Task(2)])
    client = run.client
    client.submitted[0].finish("error", NotJoined("tcp://w9"))
    client.collect()
    assert joined == ["tcp://w9"]
    assert [t.n for t in client.submitted[1].tasks] == [1, 2]
    client.submitted[1].finish("finished", (["a", "b"], 0.1))
    client.collect()
    assert [f.result() for f in futures] == ["a", "b"]


def test_a_worker_that_never_joins_fails_its_units_after_the_rejoins(run, monkeypatch):
    monkeypatch.setattr(dask_driver, "REJOINS", 2)
    run.rejoin = lambda address: None
    pool = run.pool()
    (future,) = _submit(pool, [Task(1)])
    client = run.client
    for _ in range(3):
        client.submitted[-1].finish("error", NotJoined("tcp://w9"))
        client.collect()
    assert isinstance(future.exception(), DaskError) and "did not join" in str(future.exception())


@pytest.mark.parametrize("status", ["cancelled", "lost"])
def test_a_lost_scheduler_is_a_clear_error_for_every_unit(run, status):
    run._unit_s = dask_driver.BUNDLE_SECONDS / 2
    pool = run.pool()
    futures = _submit(pool, [Task(1), Task(2)])
    client = run.client
    if status == "cancelled":
        client.submitted[0].finish("cancelled", asyncio.CancelledError())
    else:
        client.submitted[0].finish("error", OSError("connection closed"))
    client.collect()
    for future in futures:
        error: Optional[BaseException] = future.exception()
        if status == "cancelled":
            assert isinstance(error, DaskError) and "lost the Dask scheduler" in str(error)
        else:
            assert isinstance(error, OSError)


def test_units_on_a_lost_worker_are_reported_repeated(run):
    run._unit_s = dask_driver.BUNDLE_SECONDS / 2
    pool = run.pool()
    futures = _submit(pool, [Task(1), Task(2)])
    client = run.client
    key = client.submitted[0].key
    run._on_event((0.0, {"action": "remove-worker", "worker": "tcp://w1", "processing-tasks": [key]}))
    client.submitted[0].finish("finished", (["a", "b"], 0.1))  # Dask ran it again elsewhere
    client.collect()
    assert [f.result() for f in futures] == ["a", "b"]
    assert all(pool.repeated(f) for f in futures)
