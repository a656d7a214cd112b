"""driver.failures.release_all: every release step runs, the first failure is raised, the others logged."""

import logging

import pytest

from clfsload.driver.failures import release_all


def test_every_step_runs_and_the_first_failure_is_raised(caplog: pytest.LogCaptureFixture) -> None:
    ran = []

    def step(name, error=None):
        def run():
            ran.append(name)
            if error is not None:
                raise error
        return run

    with caplog.at_level(logging.WARNING, logger="clfsload"):
        with pytest.raises(OSError, match="first"):
            release_all([step("log"), step("dask", OSError("first")), step("target", RuntimeError("second")),
                         step("state")])
    assert ran == ["log", "dask", "target", "state"]  # the state's lock released after the failures
    assert [r.getMessage() for r in caplog.records] == ["while closing the run: second"]


def test_nothing_raised_when_every_step_succeeds() -> None:
    ran = []
    release_all([lambda: ran.append(1), lambda: ran.append(2)])
    assert ran == [1, 2]
