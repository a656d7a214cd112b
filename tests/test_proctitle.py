"""The SAS given in argv leaves the process list (``/proc/PID/cmdline``) of the driver and every worker.

AzCopy, and the original's users, pass the SAS as the fifth word of argv,
where ``ps`` shows it to every local user. The loader rewrites its command
line at start-up (:mod:`clfsload.proctitle`); worker processes must not show
it either. The test reads ``/proc/*/cmdline`` of every process in the load's
process group, as fast as it can, for the whole run.
"""

import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Tuple

import pytest

from _load import REPO
from azurite import azurite  # noqa: F401

#: the SAS must be gone this long after the interpreter is up (the brief: 100 ms of start-up)
BUDGET = 0.100


def _group_cmdlines(pgid: int) -> Dict[int, bytes]:
    """pid -> cmdline of every live process whose process group is ``pgid``."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % entry, "rb") as f:
                stat = f.read()
            # pid (comm) state ppid pgrp ...; comm may hold spaces and parentheses
            if int(stat[stat.rindex(b")") + 2:].split()[2]) != pgid:
                continue
            with open("/proc/%s/cmdline" % entry, "rb") as f:
                found[int(entry)] = f.read()
        except (OSError, ValueError, IndexError):
            continue  # gone meanwhile
    return found


def _interpreter_startup() -> float:
    """How long a bare ``python -c pass`` takes here now (the part of start-up that is not ours)."""
    times = []
    for _ in range(3):
        t0 = time.monotonic()
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        times.append(time.monotonic() - t0)
    return statistics.median(times)


def _tree(root: Path, dirs: int, files: int) -> Path:
    for d in range(dirs):
        sub = root / ("d%03d" % d)
        sub.mkdir(parents=True)
        for f in range(files):
            (sub / ("f%03d" % f)).write_bytes(b"%d.%d\n" % (d, f))
    return root


def _watch(argv: List[str]) -> Tuple[int, float, List[Tuple[float, int]], Dict[int, bytes], str]:
    """Run the loader, sampling its process group; returns (exit, startup, sightings, cmdlines seen, output)."""
    startup = _interpreter_startup()
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    t0 = time.monotonic()
    proc = subprocess.Popen([sys.executable, str(REPO / "CLFSLoad.py"), *argv], cwd=str(REPO), env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    sas = argv[4].encode()
    sightings: List[Tuple[float, int]] = []
    seen: Dict[int, bytes] = {}
    try:
        while proc.poll() is None:
            for pid, cmdline in _group_cmdlines(proc.pid).items():
                if cmdline:  # a zombie's is empty
                    seen[pid] = cmdline
                if sas in cmdline:
                    sightings.append((time.monotonic() - t0, pid))
        output = proc.communicate(timeout=300)[0].decode(errors="replace")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return proc.returncode, startup, sightings, seen, output


def test_the_sas_leaves_the_process_list_of_the_driver_and_its_workers(azurite, tmp_path):  # noqa: F811
    container = azurite.create_container()
    sas = azurite.make_sas(container)
    tree = _tree(tmp_path / "tree", dirs=40, files=40)
    argv = [str(tmp_path / "state"), str(tree), azurite.endpoint, container, sas, "--new", "--processes", "2"]
    code, startup, sightings, seen, output = _watch(argv)
    assert code == 0, output
    workers = [pid for pid, cmdline in seen.items() if b"CLFSLoad.py" not in cmdline]
    assert workers, "no worker process was seen: the test proves nothing (%s)" % seen
    assert any(b"REDACTED" in cmdline for cmdline in seen.values()), seen
    late = [(at, pid) for at, pid in sightings if at > startup + BUDGET]
    assert not late, "the SAS was in /proc/PID/cmdline %.0f ms after start-up (python itself: %.0f ms): %s" % (
        1000 * late[-1][0], 1000 * startup, late[:5])
    assert sas not in output
