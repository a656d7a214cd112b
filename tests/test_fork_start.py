"""The command line's forked start of multiprocessing's resource tracker and forkserver (:mod:`clfsload.execute.fork_start`).

Each check runs in a fresh interpreter (a fork start needs a process with one
thread and neither server running, which the test process is not).
"""

import os
import subprocess
import sys
import textwrap

import pytest

from _load import REPO

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the forked start is Linux-only")


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=str(REPO), capture_output=True,
                          text=True, timeout=120)


def test_the_forkserver_and_tracker_are_forks_that_run_workers_and_leave_with_the_parent():
    done = _run("""
        import multiprocessing.forkserver as fs, multiprocessing.resource_tracker as rt, os, sys
        from clfsload.execute import fork_start
        from clfsload.execute.forkserver import start_forkserver

        expected = fork_start.can_fork()
        context = start_forkserver(fork=True)
        server, tracker = fs._forkserver._forkserver_pid, rt._resource_tracker._pid
        queue = context.SimpleQueue()  # named semaphores: registered with the forked tracker
        worker = context.Process(target=os.getpid)
        worker.start()
        worker.join()  # the forkserver answered: it has set its title before it listened
        titles = [open("/proc/%d/cmdline" % pid, "rb").read() for pid in (server, tracker)]
        print(expected, worker.exitcode, server, tracker, [t.split(b"\\0")[0].decode() for t in titles])
        sys.stdout.flush()
    """)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    expected, exitcode, server, tracker, titles = done.stdout.split(" ", 4)
    if sys.implementation.name == "cpython" and (3, 9) <= sys.version_info[:2] <= (3, 13):
        assert expected == "True"
        assert "clfsload: forkserver" in titles and "clfsload: resource tracker" in titles, titles
    assert exitcode == "0"
    for pid in (int(server), int(tracker)):  # both gone once their parent is (they are reaped by init)
        for _ in range(200):
            try:
                with open("/proc/%d/stat" % pid, "rb") as f:
                    state = f.read().rsplit(b")", 1)[1].split()[0]
            except OSError:
                break
            if state == b"Z":
                break
            import time

            time.sleep(0.05)
        else:
            pytest.fail("process %d outlived its parent" % pid)


def test_no_fork_in_a_process_that_runs_a_thread():
    done = _run("""
        import threading
        from clfsload.execute import fork_start

        stop = threading.Event()
        threading.Thread(target=stop.wait).start()
        print(fork_start.can_fork(), fork_start.fork_servers([]))
        stop.set()
    """)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "False"]


def test_no_fork_where_setproctitle_cannot_title_the_children():
    """A fork keeps the command line it was forked from (the SAS): without setproctitle, multiprocessing's start."""
    done = _run("""
        import sys
        from clfsload.execute import fork_start

        before = fork_start.can_fork()
        sys.modules["setproctitle"] = None  # what an interpreter without it sees: ImportError
        print(before, fork_start.can_fork(), fork_start.fork_servers([]))
    """)
    assert done.returncode == 0, done.stderr
    if sys.implementation.name == "cpython" and (3, 9) <= sys.version_info[:2] <= (3, 13):
        assert done.stdout.split() == ["True", "False", "False"]


def test_a_closed_stdin_or_stdout_is_no_reason_to_lose_the_forked_tracker():
    """With fd 0 and 1 closed the tracker's pipe takes fd 0: it is kept, not replaced by /dev/null."""
    code = textwrap.dedent("""
        import os, sys, multiprocessing.resource_tracker as rt
        from clfsload.execute.forkserver import start_forkserver

        context = start_forkserver(fork=True)
        tracker = rt._resource_tracker._pid
        queue = context.SimpleQueue()  # a named semaphore: registered with the tracker
        worker = context.Process(target=os.getpid)
        worker.start()
        worker.join()
        assert rt._resource_tracker._pid == tracker  # not relaunched
        os.write(2, b"ok %d\\n" % worker.exitcode)
    """)
    done = subprocess.run([sys.executable, "-c", code], cwd=str(REPO), stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=120,
                          preexec_fn=lambda: (os.close(0), os.close(1)))
    assert done.returncode == 0, done.stderr
    assert done.stderr == "ok 0\n"  # and no "resource_tracker: process died unexpectedly, relaunching"
