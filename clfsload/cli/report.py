"""Rendering the end of a load for the command line: the ``--output json`` summary and the exit code.

The driver returns a :class:`~clfsload.driver.result.LoadResult` and has
already logged how the run ended (and AzCopy's summary line); this module
only turns the result into what the command prints and returns.
"""

import json
import os
from typing import Dict

from .._native import BACKEND
from ..driver.result import LoadResult
from ..settings import Settings


def summary(result: LoadResult, status: str) -> Dict[str, object]:
    """The end of a run as plain values (``--output json``)."""
    return {
        "status": status,
        "exit_code": result.exit_code,
        "published": result.published,
        "phase": result.phase,
        "objects": result.objects,
        "source_bytes": result.source_bytes,
        "problems": result.problems,
        "problem_paths": [os.fsdecode(p.path) for p in result.problem_list[:1000]],
        "elapsed_seconds": round(result.elapsed, 3),
        "message": result.message,
        "backend": BACKEND,
    }


def render(result: LoadResult, settings: Settings) -> int:
    """Print the result as ``--output`` asks (JSON: one object on stdout); returns the exit code (0 done, 1 failed)."""
    if settings.output == "json":
        print(json.dumps(summary(result, result.status), sort_keys=True), flush=True)
    return result.exit_code


__all__ = ["render", "summary"]
