"""Start multiprocessing's resource tracker and forkserver as forks of this process, not new interpreters.

:func:`multiprocessing.forkserver.ensure_running` starts each of them by
running a new Python (``python -c "from multiprocessing... import main;
main(...)"``): an interpreter's start, ``site`` and the imports of
multiprocessing again, 30-35 ms of CPU each before they do anything, on a
run whose whole fixed cost is a few times that. Forked, they start with all
of it loaded. They then run the same ``main`` functions, on the same
descriptors, as multiprocessing's start would give them, and record
themselves where multiprocessing looks (so ``ensure_running`` and every
later worker start use them as if multiprocessing had started them).

Only where that is known to be safe, else nothing is done and multiprocessing
starts them as usual: Linux, CPython 3.9-3.13 (whose ``ensure_running`` and
``main`` this mirrors; 3.14 adds an authentication handshake, so a ``main``
taking its key is refused too), ``setproctitle`` importable (the children
are titled with it: a fork keeps the command line, SAS included, that
:func:`clfsload.proctitle.hide_secrets` could not rewrite), a process
running no other thread (a fork carries only the calling thread, and a lock
another thread held would stay held for ever; so no lock is held across the
forks either), and neither started yet.

Each child closes every descriptor but those multiprocessing's start would
pass it, and ends with ``os._exit``: it never runs the exit handlers or the
interpreter teardown of the process it was forked from. The tracker's stdin
and stdout are ``/dev/null`` (it writes neither; a reader of the load's
stdout waits for every holder of it to exit). The forkserver ignores SIGINT
from its start (multiprocessing's ignores it once its preload is imported;
a Ctrl-C reaches the whole process group and is the driver's business), and
its workers inherit that. What the parent registered to run at its exit
(multiprocessing's finalizers) is tied to the parent's pid and never runs in
them.
"""

import importlib
import os
import signal
import socket
import sys
import threading
from multiprocessing import connection, forkserver, resource_tracker, spawn, util
from typing import Iterable, List

__all__ = ["can_fork", "fork_servers"]

#: what the forked processes' titles start with
PROCESS_TITLE = "clfsload"
#: the signals multiprocessing blocks while it starts the tracker (its ``main`` ignores them)
_TRACKER_SIGNALS = {signal.SIGINT, signal.SIGTERM}


def can_fork() -> bool:
    """True where :func:`fork_servers` may fork this process (see the module's text)."""
    if not sys.platform.startswith("linux") or sys.implementation.name != "cpython":
        return False
    if not (3, 9) <= sys.version_info[:2] <= (3, 13):
        return False
    if threading.active_count() != 1:
        return False
    if "authkey_r" in forkserver.main.__code__.co_varnames:
        return False  # 3.14's authentication handshake, backported: not the main() this mirrors
    try:
        # A fork keeps the command line it was forked from: without setproctitle to title the
        # children, the SAS hide_secrets rewrote out of this process would not be out of them.
        import setproctitle
    except ImportError:
        return False
    del setproctitle  # _set_title imports it again in the child
    tracker = getattr(resource_tracker, "_resource_tracker", None)
    server = getattr(forkserver, "_forkserver", None)
    return (
        getattr(tracker, "_fd", 0) is None
        and getattr(tracker, "_pid", 0) is None
        and getattr(server, "_forkserver_pid", 0) is None
        and getattr(server, "_forkserver_alive_fd", 0) is None
    )


def fork_servers(preload: List[str], shared: Iterable[str] = ()) -> bool:
    """Import ``shared``, then fork the resource tracker and the forkserver (which imports ``preload``); True if both run.

    ``shared``: modules this process needs too, imported once before the
    forks rather than in both processes (the rest of ``preload`` is
    imported by the forkserver while this process goes on). Nothing is done
    where :func:`can_fork` says no. A fork that fails (out of processes)
    leaves the rest to multiprocessing's own start, which says why if it
    fails too.
    """
    if not can_fork():
        return False
    for stream in (sys.stdout, sys.stderr):  # what they buffer would be written twice
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError):
            pass
    try:
        _fork_tracker()  # first: it needs none of the modules below
        for name in shared:
            importlib.import_module(name)
        if threading.active_count() != 1:  # an import started a thread: multiprocessing's start instead
            return False
        _fork_forkserver(preload)
    except OSError:
        return False
    return True


def _fork_tracker() -> None:
    """The resource tracker, as :meth:`ResourceTracker.ensure_running` starts it: ``main(r)``, the rest ours."""
    tracker = resource_tracker._resource_tracker  # type: ignore[attr-defined]
    r, w = os.pipe()
    try:
        old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, _TRACKER_SIGNALS)  # main() ignores, then unblocks
        try:
            pid = os.fork()
            if pid == 0:  # pragma: no cover - the child
                _child(lambda: resource_tracker.main(r), keep=(2, r), null=(0, 1), title="resource tracker")
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
    except BaseException:
        os.close(w)
        raise
    finally:
        os.close(r)
    tracker._fd = w
    tracker._pid = pid


def _fork_forkserver(preload: List[str]) -> None:
    """The forkserver, as :meth:`ForkServer.ensure_running` starts it: ``main(listener, alive_r, preload, ...)``."""
    server = forkserver._forkserver  # type: ignore[attr-defined]
    data = {key: value for key, value in spawn.get_preparation_data("ignore").items()
            if key in ("main_path", "sys_path")}
    with socket.socket(socket.AF_UNIX) as listener:
        address = connection.arbitrary_address("AF_UNIX")
        listener.bind(address)
        if not util.is_abstract_socket_namespace(address):
            os.chmod(address, 0o600)
        listener.listen()
        # every client holds the write end of the "alive" pipe: the forkserver ends at its EOF
        alive_r, alive_w = os.pipe()
        try:
            pid = os.fork()
            if pid == 0:  # pragma: no cover - the child
                fd = listener.fileno()

                def serve() -> None:
                    # A fresh interpreter's tracker state: each worker gets the tracker's pipe from its request.
                    resource_tracker._resource_tracker._fd = None  # type: ignore[attr-defined]
                    resource_tracker._resource_tracker._pid = None  # type: ignore[attr-defined]
                    # Ctrl-C reaches the whole process group; it is the driver's business. main() ignores it
                    # only once it has imported the preload, and its workers inherit what it found.
                    signal.signal(signal.SIGINT, signal.SIG_IGN)
                    forkserver.main(fd, alive_r, preload, **data)

                _child(serve, keep=(0, 1, 2, fd, alive_r), title="forkserver")
        except BaseException:
            os.close(alive_w)
            raise
        finally:
            os.close(alive_r)
    server._forkserver_address = address
    server._forkserver_alive_fd = alive_w
    server._forkserver_pid = pid


def _child(run, keep: Iterable[int], null: Iterable[int] = (), title: str = "") -> None:  # pragma: no cover
    """A forked child: keep only the descriptors ``keep`` (``null`` ones on /dev/null), ``run()``, exit at once.

    Its process title says what it is (``clfsload: forkserver``; its workers
    inherit it) rather than repeating the command line it was forked from.
    """
    code = 0
    try:
        _close_all_but(set(keep))
        _set_title("%s: %s" % (PROCESS_TITLE, title))
        for fd in null:
            if fd in keep:  # stdin or stdout was closed, and the pipe took its number: keep the pipe
                continue
            devnull = os.open(os.devnull, os.O_RDWR)
            os.dup2(devnull, fd)
            os.close(devnull)
        run()
    except SystemExit as exc:  # the forkserver's end: its clients are gone
        code = exc.code if isinstance(exc.code, int) else 0
    except BaseException:  # noqa: BLE001 - say it on stderr as the interpreter would, then go
        code = 1
        try:
            import traceback

            traceback.print_exc()
        except BaseException:  # noqa: BLE001
            pass
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                if stream is not None:
                    stream.flush()
            except BaseException:  # noqa: BLE001
                pass
        os._exit(code)


def _set_title(title: str) -> None:  # pragma: no cover - runs in the child
    """This process's title (``ps``, ``/proc/PID/cmdline``), if ``setproctitle`` (a dependency) loads."""
    try:
        import setproctitle
    except ImportError:
        return
    setproctitle.setproctitle(title)


def _close_all_but(keep: set) -> None:  # pragma: no cover - runs in the child
    """Close every open descriptor not in ``keep`` (as ``spawnv_passfds`` does with ``close_fds``)."""
    try:
        fds = [int(name) for name in os.listdir("/proc/self/fd")]
    except OSError:
        fds = list(range(3, 1024))
    for fd in fds:
        if fd not in keep:
            try:
                os.close(fd)
            except OSError:
                pass
