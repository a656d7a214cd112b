"""One line for a failure of the local disk (the state database, or a file beside it), as the run's message."""

import errno
import sqlite3


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


__all__ = ["describe_local_failure"]
