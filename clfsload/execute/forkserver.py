"""The forkserver the local pool's worker processes fork from (:mod:`.pool`).

Kept apart from :mod:`.pool` so the command line can start it before it
imports the driver: the forkserver's own start and imports (the whole worker
side, :data:`PRELOAD`) then run alongside the driver's, and are over, or
nearly, by the time TRANSFER asks for its first worker.
"""

import multiprocessing
import multiprocessing.forkserver

#: what the forkserver imports once, before it forks anything: the worker side (so every worker
#: starts with it loaded) and the forkserver's quick exit (:mod:`.forkserver_preload`)
PRELOAD = ["clfsload.execute.forkserver_preload"]


def start_forkserver() -> "multiprocessing.context.ForkServerContext":
    """Start the forkserver the workers fork from, if not running; returns its context.

    Returns at once: the forkserver imports :data:`PRELOAD` in its own
    process, and the first worker started waits for that to end. Idempotent.
    """
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(PRELOAD)
    multiprocessing.forkserver.ensure_running()
    return context  # type: ignore[return-value]
