"""Build, mount, drive and always unmount latencyfs (``latencyfs.c`` next to this file).

    with LatencyFS(source_dir, delay_us=2000, cache=False) as fs:
        os.listdir(fs.mountpoint)           # SOURCE, 2 ms per operation
        fs.stats()                          # {'inflight': 0, 'peak': 3, 'total': 7, ...}
        fs.reset()
        fs.hold("dir/file", ops=("read",))  # reads of dir/file block ...
        fs.release()                        # ... until now

The binary is built into a cache directory named after a hash of the C source
(so an edited source is rebuilt, an unchanged one never). The daemon runs in
the foreground as a child of this process and dies with it (PR_SET_PDEATHSIG)
and ``-o auto_unmount`` makes fusermount3 unmount when the daemon dies, so a
killed benchmark leaves no mount behind either; ``__exit__`` unmounts on any
exception, KeyboardInterrupt included.

``PowerCutFS`` (the power-cut file system, powercut.py) is importable from
here too: ``from fusefs.mount import PowerCutFS``.
"""

import hashlib
import os
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import Dict, Iterable, Optional

from . import daemon

HERE = Path(__file__).resolve().parent
SOURCE = HERE / "latencyfs.c"
CONTROL = ".latencyfs"  # the control file at the root of the mount
APT_LINE = "apt-get install -y libfuse3-dev fuse3 pkg-config gcc"


def fuse_available() -> Optional[str]:
    """None if FUSE mounts can work here, else one line saying why not."""
    if not os.path.exists("/dev/fuse"):
        return "no /dev/fuse on this machine: FUSE file systems cannot be mounted"
    return None


def build(cache_dir: Optional[Path] = None, name: str = "latencyfs") -> Path:
    """Return the path of a ``name`` binary (latencyfs, powercutfs) built from the current source."""
    digest = hashlib.sha256((HERE / (name + ".c")).read_bytes()).hexdigest()[:16]
    cache = cache_dir or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "clfsload-bench"
    binary = cache / ("%s-%s" % (name, digest))
    if binary.exists():
        return binary
    cache.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["bash", str(HERE / "build.sh"), name, str(binary)], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError("building %s failed (needs: %s):\n%s" % (name, APT_LINE, done.stderr[-3000:]))
    return binary


class LatencyFS:
    """A mounted latencyfs mirroring ``source``; a context manager.

    ``delay_us``: added to every operation. ``cache``: False sets the kernel's
    attribute, entry and negative caches to 0 s, True to 1 s (libfuse's
    default). ``max_threads``: the daemon's thread pool, warmed up before
    ``__enter__`` returns. ``max_background``: the kernel's cap on
    asynchronous requests (readahead) in flight. ``readahead_kib``: the
    mount's readahead window, which is also the size of the reads the daemon
    gets for buffered reads (None: the kernel's 128 KiB; an NFS client reads
    up to its rsize, often 1 MiB, per round trip). ``readonly``: the tree
    refuses changes (EROFS); the control file stays writable.

    The daemon gets SIGTERM when the thread that entered the context ends
    (PR_SET_PDEATHSIG follows the creating thread): enter it in a thread that
    outlives the mount, normally the main one.
    """

    def __init__(self, source: os.PathLike, *, delay_us: int = 0, cache: bool = False,
                 readonly: bool = True, max_threads: int = 256, max_background: int = 64,
                 readahead_kib: Optional[int] = None, mountpoint: Optional[os.PathLike] = None, warm_up: bool = True) -> None:
        self.source = Path(source).resolve()
        self.delay_us = delay_us
        self.cache = cache
        self.readonly = readonly
        self.max_threads = max_threads
        self.max_background = max_background
        self.readahead_kib = readahead_kib
        self._given_mountpoint = mountpoint
        self._warm = warm_up
        self.mountpoint = Path()
        self.proc: Optional[subprocess.Popen] = None
        self._tmp: Optional[tempfile.TemporaryDirectory] = None
        self._stderr = None
        #: the mount table's first column: this process's mounts, apart from other sessions' ones
        self.fsname = daemon.own_fsname("latencyfs")

    # --- mount / unmount --------------------------------------------------------

    def __enter__(self) -> "LatencyFS":
        try:
            self._mount()
            if self.readahead_kib is not None:
                # the mount's own backing-device info: it goes with the mount
                st = os.stat(self.mountpoint)
                bdi = "/sys/class/bdi/%d:%d/read_ahead_kb" % (os.major(st.st_dev), os.minor(st.st_dev))
                with open(bdi, "w") as f:
                    f.write(str(self.readahead_kib))
            if self._warm:
                self.warm_up()
            self.reset()
        except BaseException:
            self.unmount()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.unmount()

    def _mount(self) -> None:
        why = fuse_available()
        if why:
            raise RuntimeError(why)
        binary = build()
        if self._given_mountpoint is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="latencyfs-")
            self.mountpoint = Path(self._tmp.name)
        else:
            self.mountpoint = Path(self._given_mountpoint).resolve()  # as /proc/self/mounts shows it
        timeout = "1" if self.cache else "0"
        options = ["delay_us=%d" % self.delay_us, "max_threads=%d" % self.max_threads,
                   "max_idle_threads=%d" % self.max_threads, "max_background=%d" % self.max_background,
                   "attr_timeout=" + timeout, "entry_timeout=" + timeout, "negative_timeout=" + timeout,
                   "auto_unmount"]
        if self.readonly:
            options.append("readonly")
        options.append("fsname=" + self.fsname)
        self.proc, self._stderr = daemon.start("latencyfs", binary, self.source, self.mountpoint, options)

    def _mounted(self) -> bool:
        return daemon.mounted(self.mountpoint, "latencyfs")

    def _output(self) -> str:
        return daemon.tail(self._stderr)

    def unmount(self) -> None:
        """Let held operations go, unmount (lazily if busy), reap the daemon. Idempotent."""
        if self.proc is None:
            return
        try:
            if self._mounted():
                try:
                    self._command("release")
                except OSError:
                    pass
                for flags in ("-u", "-uz"):  # -z: lazy, when a process still has a file open
                    if subprocess.run(["fusermount3", flags, str(self.mountpoint)],
                                      capture_output=True).returncode == 0:
                        break
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        finally:
            self.proc = None
            if self._stderr is not None:
                self._stderr.close()
                self._stderr = None
            if self._tmp is not None and not self._mounted():
                self._tmp.cleanup()
                self._tmp = None

    def warm_up(self) -> None:
        """Make the daemon start all its threads (libfuse starts them one per busy request).

        ``max_threads`` threads each look up names that do not exist at a
        moment when the others do too; every lookup costs at least the delay,
        so the daemon runs out of idle threads and starts new ones. Repeated
        (with a 20 ms delay meanwhile) until the pool is full or 10 rounds.
        """
        saved = self.delay_us
        self._command("delay 20000")
        try:
            for attempt in range(10):
                if self.threads() >= self.max_threads:
                    break
                barrier = threading.Barrier(self.max_threads)

                def probe(i: int) -> None:
                    barrier.wait()
                    try:
                        os.lstat(self.mountpoint / (".latencyfs-warm-%d-%d" % (attempt, i)))
                    except FileNotFoundError:
                        pass

                workers = [threading.Thread(target=probe, args=(i,)) for i in range(self.max_threads)]
                for w in workers:
                    w.start()
                for w in workers:
                    w.join()
        finally:
            self._command("delay %d" % saved)

    # --- the control file ---------------------------------------------------------

    def _command(self, text: str) -> None:
        fd = os.open(self.mountpoint / CONTROL, os.O_WRONLY)
        try:
            os.write(fd, text.encode() + b"\n")
        finally:
            os.close(fd)

    def stats(self) -> Dict[str, int]:
        """The daemon's counters: inflight, peak (since reset), total, held, and one per operation."""
        with open(self.mountpoint / CONTROL) as f:
            return {k: int(v) for k, v in (item.split("=") for item in f.read().split())}

    def reset(self) -> None:
        """Zero the totals; peak restarts from the operations in flight now."""
        self._command("reset")

    def hold(self, path: str, ops: Iterable[str] = ("open", "read")) -> None:
        """Block ``ops`` on ``path`` (relative to the mount) until ``release()``."""
        self._command("hold %s %s" % (",".join(ops), path))

    def release(self) -> None:
        """Let every held operation go on."""
        self._command("release")

    # --- the daemon process ---------------------------------------------------------

    def threads(self) -> int:
        """How many threads the daemon runs now."""
        assert self.proc is not None
        return len(os.listdir("/proc/%d/task" % self.proc.pid))

    def cpu(self) -> float:
        """The daemon's CPU seconds so far (user + system, all its threads)."""
        assert self.proc is not None
        with open("/proc/%d/stat" % self.proc.pid, "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def __getattr__(name: str):
    """``PowerCutFS`` (powercut.py) is importable from here too, loaded on first use (it imports this module)."""
    if name == "PowerCutFS":
        from .powercut import PowerCutFS
        return PowerCutFS
    raise AttributeError("module %r has no attribute %r" % (__name__, name))


__all__ = ["APT_LINE", "LatencyFS", "PowerCutFS", "build", "fuse_available"]
