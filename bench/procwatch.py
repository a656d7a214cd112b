"""Run a command in its own process group and measure the whole group: CPU and peak memory.

``RUSAGE_CHILDREN`` misses processes that are not reaped by their parents
before the run ends (the loader's forkserver workers), so the group is
sampled from ``/proc`` instead, every ``interval`` seconds: for every process
of the group, the last user + system CPU seen, and the sum of the resident
sets of all of them at each sample (its maximum is the peak RSS). What a
process uses between its last sample and its exit is not seen: at most
``interval`` seconds of CPU per process.
"""

import os
import subprocess
import threading
import time
from dataclasses import dataclass
from typing import Dict, List, Optional

_TICK = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")


@dataclass
class GroupUsage:
    """What a command's process group used."""

    wall: float
    cpu: float  # user + system seconds, every process of the group
    peak_rss: int  # bytes, the largest sum of resident sets seen at one time
    processes: int
    returncode: int
    output: str


def _sample(pgid: int, cpu: Dict[int, float]) -> int:
    """Update ``cpu`` (pid -> seconds) for the group's processes; return their total RSS."""
    rss = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % entry, "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        # after the command name: state ppid pgrp ...; utime stime at 12, 13; rss (pages) at 22
        if int(fields[2]) != pgid:
            continue
        cpu[int(entry)] = (int(fields[11]) + int(fields[12])) / _TICK
        rss += int(fields[21]) * _PAGE
    return rss


def run_measured(args: List[str], env: Optional[dict] = None, interval: float = 0.05,
                 cwd: Optional[str] = None) -> GroupUsage:
    """Run ``args`` as a new session; sample its group until it exits."""
    start = time.perf_counter()
    proc = subprocess.Popen(args, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    cpu: Dict[int, float] = {}
    peak = [0]
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], _sample(proc.pid, cpu))
            done.wait(interval)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    output, _ = proc.communicate()
    wall = time.perf_counter() - start
    done.set()
    watcher.join()
    return GroupUsage(wall, sum(cpu.values()), peak[0], len(cpu), proc.returncode, output.decode(errors="replace"))


__all__ = ["GroupUsage", "run_measured"]
