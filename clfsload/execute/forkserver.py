"""The forkserver the local pool's worker processes fork from (:mod:`.pool`).

Kept apart from :mod:`.pool` so the command line can start it before it
imports the driver: the forkserver's own start and imports (the whole worker
side, :data:`PRELOAD`) then run alongside the driver's, and are over, or
nearly, by the time TRANSFER asks for its first worker.

The command line starts it by forking itself (``start_forkserver(fork=True)``,
:mod:`.fork_start`) rather than by running a new interpreter: the forkserver
and multiprocessing's resource tracker then start with the interpreter, the
command line's modules and multiprocessing already loaded, where two fresh
interpreters cost 60-70 ms of CPU before they did anything. A library caller
(whose process may run threads, which a fork does not carry) gets
multiprocessing's own start.
"""

import multiprocessing
import multiprocessing.forkserver

#: what the forkserver imports once, before it forks anything: the worker side (so every worker
#: starts with it loaded) and the forkserver's quick exit (:mod:`.forkserver_preload`)
PRELOAD = ["clfsload.execute.forkserver_preload"]
#: what the driver imports too of the worker side (the pool, and under it the units, ids, encoders,
#: source pipeline, uploaders; multiprocessing's locks and forkserver client, which the pool's start
#: and every worker's bootstrap load): a forked start loads it before it forks, once for both processes
SHARED = ["clfsload.execute.pool", "multiprocessing.synchronize", "multiprocessing.popen_forkserver"]


def start_forkserver(fork: bool = False) -> "multiprocessing.context.ForkServerContext":
    """Start the forkserver the workers fork from, if not running; returns its context.

    Returns at once: the forkserver imports :data:`PRELOAD` in its own
    process, and the first worker started waits for that to end. Idempotent.
    ``fork``: start it (and the resource tracker) as forks of this process
    where that is safe (:func:`.fork_start.fork_servers`), with :data:`SHARED`
    imported first: only the command line asks, before it has started a
    thread or set up its logging.
    """
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(PRELOAD)
    if fork:
        from .fork_start import fork_servers

        fork_servers(PRELOAD, SHARED)
    multiprocessing.forkserver.ensure_running()  # a no-op once fork_servers started both
    return context  # type: ignore[return-value]
