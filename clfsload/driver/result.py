"""What a load returns (:class:`LoadResult`) and the two ways it stops early (:class:`LoadError`, :class:`Interrupted`).

The driver fills a :class:`LoadResult`; :mod:`clfsload.cli.report` renders it
for the command line and :func:`clfsload.load` returns it as it is.
"""

from typing import List

from ..errors import ClfsLoadError
from ..work.scan import Problem


class LoadError(ClfsLoadError):
    """The load cannot go on; the message says what is wrong and what to do."""


class Interrupted(ClfsLoadError):
    """Ctrl-C or SIGTERM: the state is saved and the same command resumes."""


#: at most this many problems are carried in LoadResult.problem_list (all are in problems.txt)
PROBLEM_LIST_MAX = 100000


class LoadResult:
    """What a run did: exit code, counts, problems."""

    def __init__(self) -> None:
        #: 0: the container is complete; 1: it is not (the state is kept, run again to resume)
        self.exit_code = 1
        #: the root is published under its final name
        self.published = False
        #: objects stored (over every run of this transfer)
        self.objects = 0
        #: bytes read from the source (over every run of this transfer)
        self.source_bytes = 0
        #: how many entries could not be loaded
        self.problems = 0
        #: those entries (the first PROBLEM_LIST_MAX), each with its path and reason
        self.problem_list: List[Problem] = []
        self.elapsed = 0.0
        #: why the run stopped, when it did not complete
        self.message = ""
        #: the phase the transfer is in (DONE once finished)
        self.phase = "INIT"
        #: how the run ended, as its summary says it: ``Completed``, ``Failed`` or ``Aborted``
        self.status = "Failed"

    @property
    def ok(self) -> bool:
        """True when the container is complete and published without problems."""
        return self.exit_code == 0

    def __repr__(self) -> str:
        return "LoadResult(exit_code=%d, published=%s, objects=%d, problems=%d, phase=%s)" % (
            self.exit_code, self.published, self.objects, self.problems, self.phase)


__all__ = ["Interrupted", "LoadError", "LoadResult", "PROBLEM_LIST_MAX"]
