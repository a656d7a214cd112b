"""Mount powercutfs over a durable image, cut the power, remount what survived.

    fs = PowerCutFS(store_dir, seed=7, tear=True)
    fs.mount()              # fs.mountpoint shows store_dir; all of it is durable now
    ...                     # programs read and write under fs.mountpoint
    fs.arm(writes=N)        # the power goes at the N-th write-like operation from now
    fs.stats()              # {'writes': .., 'fsyncs': .., 'dirsyncs': .., 'cut': False, ...}
    fs.cut()                # power loss: the daemon is killed, store_dir = the durable image
    fs.mount()              # the same mountpoint again, showing only what was durable
    fs.unmount()            # clean: everything written is kept (a shutdown, not a cut)

``with PowerCutFS(...) as fs:`` mounts and always unmounts (cleanly, or as a
cut if the power was already cut by ``arm``) on exit, even on failure.

While mounted, the daemon serves a private volatile copy of ``store_dir``
(``.<name>.powercutfs/live`` beside it, same file system) and records what
becomes durable in ``.<name>.powercutfs/meta`` (see ``powercutfs.c`` for
the rules and ``powercut_image.py`` for how the image is rebuilt).
``store_dir`` itself is not touched until ``cut`` or ``unmount`` swaps a
whole new image in with one atomic rename, so a test that crashes leaves it
whole; a leftover volatile copy is discarded at the next mount.
"""

import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Dict, Optional, Union

from . import daemon
from .mount import build, fuse_available
from .powercut_image import Records, build_image, swap_in, write_base

CONTROL = ".powercutfs"  # the control file at the root of the mount


class PowerCutFS:
    """powercutfs over ``store_dir``; a context manager (see the module docstring).

    ``seed``: makes torn writes reproducible. ``tear``: at a cut, a file with
    unsynced writes whose name is durable keeps a seeded prefix of its newer
    content (else exactly its durable content). ``mountpoint``: kept across
    remounts (default: a temporary directory made at the first mount,
    removed by ``unmount``). ``max_threads``: the daemon's thread pool.

    The daemon gets SIGTERM when the thread that mounted it ends
    (PR_SET_PDEATHSIG follows the creating thread), and ``auto_unmount``
    takes the mount away when it dies: mount from a thread that outlives it.
    """

    def __init__(self, store_dir: Union[str, os.PathLike], *, seed: int = 0, tear: bool = False,
                 mountpoint: Optional[os.PathLike] = None, max_threads: int = 64) -> None:
        self.store = Path(store_dir).resolve()
        self.seed = seed
        self.tear = tear
        self.max_threads = max_threads
        self._given_mountpoint = mountpoint
        self.mountpoint = Path()
        self.proc: Optional[subprocess.Popen] = None
        self._tmp: Optional[tempfile.TemporaryDirectory] = None
        self._stderr = None
        self._work = self.store.parent / (".%s.powercutfs" % self.store.name)
        # the mount table's first column: this process's mounts, apart from other sessions' ones
        self.fsname = daemon.own_fsname("powercutfs")

    # --- mount ------------------------------------------------------------------------

    def __enter__(self) -> "PowerCutFS":
        self.mount()
        return self

    def __exit__(self, *exc) -> None:
        self.unmount()

    def mount(self) -> None:
        """Mount: ``mountpoint`` shows ``store_dir``, all of it durable from now."""
        if self.proc is not None:
            raise RuntimeError("powercutfs is already mounted at %s" % self.mountpoint)
        why = fuse_available()
        if why:
            raise RuntimeError(why)
        if not self.store.is_dir():
            raise RuntimeError("powercutfs: %s is not a directory" % self.store)
        binary = build(name="powercutfs")
        if self._given_mountpoint is not None:
            self.mountpoint = Path(self._given_mountpoint).resolve()  # as /proc/self/mounts shows it
        elif self._tmp is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="powercutfs-")
            self.mountpoint = Path(self._tmp.name)
        if self._work.exists():
            shutil.rmtree(self._work)  # a crashed run's volatile copy: never durable
        live, meta = self._work / "live", self._work / "meta"
        for d in (self._work, meta, meta / "data", meta / "dirs"):
            d.mkdir()
        copied = subprocess.run(["cp", "-a", "--reflink=auto", "--", str(self.store), str(live)],
                                capture_output=True, text=True)
        if copied.returncode != 0:
            raise RuntimeError("powercutfs: copying %s failed: %s" % (self.store, copied.stderr.strip()))
        write_base(live, meta)
        options = ["meta=" + str(meta), "fsname=" + self.fsname, "auto_unmount", "max_threads=%d" % self.max_threads,
                   "max_idle_threads=%d" % self.max_threads]
        try:
            self.proc, self._stderr = daemon.start("powercutfs", binary, live, self.mountpoint, options)
        except RuntimeError:
            shutil.rmtree(self._work, ignore_errors=True)
            raise

    def _mounted(self) -> bool:
        return daemon.mounted(self.mountpoint, "powercutfs")

    def _output(self) -> str:
        return daemon.tail(self._stderr)

    # --- the control file ---------------------------------------------------------------

    def _command(self, text: str) -> None:
        fd = os.open(self.mountpoint / CONTROL, os.O_WRONLY)
        try:
            os.write(fd, text.encode() + b"\n")
        finally:
            os.close(fd)

    def stats(self) -> Dict[str, int]:
        """writes (write-like operations), fsyncs, dirsyncs, cut (bool), armed (left), lost_fsyncs, cut_at."""
        with open(self.mountpoint / CONTROL) as f:
            out: Dict[str, int] = {k: int(v) for k, v in (item.split("=") for item in f.read().split())}
        out["cut"] = bool(out["cut"])
        return out

    def arm(self, writes: int) -> None:
        """Cut the power at the ``writes``-th write-like operation from now (1: the next one)."""
        if writes < 1:
            raise ValueError("arm(writes=%r): at least 1" % writes)
        self._command("arm %d" % writes)

    # --- power cut and unmount ------------------------------------------------------------

    def cut(self) -> None:
        """Power loss now (if ``arm`` has not cut it already): kill the daemon, lazily unmount,
        make ``store_dir`` hold only the durable image. ``mount()`` shows it again."""
        if self.proc is None:
            raise RuntimeError("powercutfs is not mounted")
        try:
            self._command("cut")  # freeze first: nothing in flight becomes durable after this
        except OSError:
            pass
        self._kill()
        live, meta = self._work / "live", self._work / "meta"
        new = self._work / "image"
        build_image(Records(self.store, live, meta), new, seed=self.seed, tear=self.tear)
        swap_in(new, self.store)
        shutil.rmtree(self._work)

    def unmount(self) -> None:
        """Clean unmount, no loss: ``store_dir`` becomes everything written (a cut instead if the
        power was already cut by ``arm``). Removes a temporary mountpoint. Idempotent."""
        try:
            if self.proc is not None:
                try:
                    power_cut = self.stats()["cut"]
                except (OSError, ValueError, KeyError):
                    power_cut = False
                if power_cut:
                    self.cut()
                else:
                    self._stop()
                    swap_in(self._work / "live", self.store)
                    shutil.rmtree(self._work)
        finally:
            if self._tmp is not None and self.proc is None and not self._mounted():
                self._tmp.cleanup()
                self._tmp = None

    def _stop(self) -> None:
        """Unmount (lazily if busy) and reap the daemon, killing it if it lingers."""
        busy = subprocess.run(["fusermount3", "-u", str(self.mountpoint)], capture_output=True).returncode != 0
        if busy:  # a process still has a file open: detach now (-z)
            subprocess.run(["fusermount3", "-uz", str(self.mountpoint)], capture_output=True)
        try:
            # a lazily unmounted daemon serves the open files until they close: not waited for long
            self.proc.wait(timeout=1 if busy else 10)
        except subprocess.TimeoutExpired:
            pass
        self._kill()

    def _kill(self) -> None:
        """SIGKILL the daemon and wait until its mount is gone (auto_unmount, else ``fusermount3 -uz``).

        auto_unmount's watchdog (fusermount3) unmounts only a mount whose
        root answers ENOTCONN, so a late one leaves the next (live) mount at
        the same mountpoint alone; it is given 0.5 s first all the same. It
        sometimes exits without unmounting (it looked before the kernel had
        aborted the connection): then the lazy unmount here does it."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        deadline = time.monotonic() + 0.5
        while self._mounted() and time.monotonic() < deadline:
            time.sleep(0.02)
        if self._mounted():
            subprocess.run(["fusermount3", "-uz", str(self.mountpoint)], capture_output=True)
        self.proc = None
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None


__all__ = ["CONTROL", "PowerCutFS"]
