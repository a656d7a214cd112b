"""Start one of this folder's FUSE daemons (latencyfs, powercutfs) and wait for its mount.

Both run in the foreground as a child of the benchmark or test, die with the
thread that started them (PR_SET_PDEATHSIG), and name their mounts
``NAME-PID`` in the mount table's first column, so a process finds its own
mounts apart from other sessions' ones (:func:`own_fsname`).
"""

import ctypes
import os
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import List, Optional, Tuple

#: seconds a daemon has to show its mount
MOUNT_TIMEOUT_S = 10


def own_fsname(name: str) -> str:
    """The mount table's first column for this process's mounts of ``name``."""
    return "%s-%d" % (name, os.getpid())


def die_with_parent() -> None:
    """PR_SET_PDEATHSIG(SIGTERM): runs in the child between fork and exec."""
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)


def mounted(mountpoint: Path, name: str) -> bool:
    """True if ``/proc/self/mounts`` shows a ``name`` file system (``fuse.NAME``) at ``mountpoint``."""
    mnt = str(mountpoint)
    with open("/proc/self/mounts") as f:
        return any(fields[1] == mnt and name in fields[2] for fields in (line.split() for line in f))


def tail(output) -> str:
    """The last 2,000 characters a daemon wrote to ``output`` (its stdout and stderr file)."""
    if output is None:
        return ""
    output.seek(0)
    return output.read().decode(errors="replace")[-2000:]


def start(name: str, binary: Path, source: Path, mountpoint: Path,
          options: List[str]) -> Tuple[subprocess.Popen, "tempfile._TemporaryFileWrapper"]:
    """Run ``binary SOURCE MOUNTPOINT -f -o OPTIONS`` and wait until ``name`` is mounted there.

    Returns the daemon and the file holding what it prints. RuntimeError if it
    exits or does not mount within :data:`MOUNT_TIMEOUT_S` (the daemon killed,
    its last output in the message).
    """
    output = tempfile.TemporaryFile()
    proc = subprocess.Popen([str(binary), str(source), str(mountpoint), "-f", "-o", ",".join(options)],
                            stdin=subprocess.DEVNULL, stdout=output, stderr=output, preexec_fn=die_with_parent)
    deadline = time.monotonic() + MOUNT_TIMEOUT_S
    while not mounted(mountpoint, name):
        exited: Optional[int] = proc.poll()
        if exited is not None or time.monotonic() > deadline:
            if exited is None:
                proc.kill()
                proc.wait()
            if mounted(mountpoint, name):  # it came up as it was killed: auto_unmount may not take it
                subprocess.run(["fusermount3", "-uz", str(mountpoint)], capture_output=True)
            why = "exited with %d" % exited if exited is not None else "did not mount within %d s" % MOUNT_TIMEOUT_S
            text = tail(output)
            output.close()
            raise RuntimeError("%s %s at %s: %s" % (name, why, mountpoint, text))
        time.sleep(0.02)
    return proc, output


__all__ = ["MOUNT_TIMEOUT_S", "die_with_parent", "mounted", "own_fsname", "start", "tail"]
