"""Failures on the way out of a run: one line for a failure of the local disk (the state database,
or a file beside it), and releasing what a run holds when a step of it fails."""

import errno
import logging
import sqlite3
from typing import Callable, Iterable, Optional

log = logging.getLogger("clfsload")


def describe_local_failure(exc: BaseException, state_dir: str) -> str:
    """One line for a failure of the local disk: the state database or a file beside it."""
    full = isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
    full = full or (isinstance(exc, sqlite3.Error) and "full" in str(exc))
    if full:
        return (
            "the state directory '%s' is full (%s): free space there and run the same command to resume"
            % (state_dir, exc.strerror if isinstance(exc, OSError) else exc)
        )
    if isinstance(exc, sqlite3.Error):
        return "the state database in '%s' failed: %s; run the same command to resume" % (state_dir, exc)
    where = getattr(exc, "filename", None)
    return "%s%s; fix it and run the same command to resume" % ("'%s': " % where if where else "", exc.strerror or exc)


def release_all(steps: Iterable[Callable[[], None]]) -> None:
    """Run every step, in order, even if one before it fails; raise the first failure after them.

    The later failures are logged. A run releases its state's lock this way
    whatever went wrong before, so a library caller's next load can open it.
    """
    failure: Optional[BaseException] = None
    for step in steps:
        try:
            step()
        except Exception as exc:  # noqa: BLE001 - released in order, the first failure raised last
            if failure is None:
                failure = exc
            else:
                log.warning("while closing the run: %s", exc)
    if failure is not None:
        raise failure


__all__ = ["describe_local_failure", "release_all"]
