#!/usr/bin/env python3
"""The source-latency benchmark of issue 19: the loader against parallel reads, through a slow source.

usage: python bench/source_latency.py [--delays 0,0.5,2] [--cache off,on] [--sets small,large]
                                     [--small N] [--dirs N] [--large-files N] [--large-mib N]
                                     [--readahead-kib N] [--threads 64] [--repeat N] [--keep]
                                     [--baseline CHECKOUT] [--caps 1,8] [--no-single]
                                     [--copy-floor]

Builds its trees on /dev/shm and reads them through latencyfs (bench/fusefs),
which adds DELAY milliseconds to every operation, as an NFS filer or a
parallel file system costs a round trip per lstat, open, read. For every
set (small: N files of 1-8 KiB in DIRS directories; large: a few big files),
every delay and both attribute-cache modes (off: every lookup and getattr
reaches the file system; on: the kernel keeps entries and attributes 1 s,
about a third of the round trips), three measurements, each on a fresh mount
(so no cache carries over from one to the next):

* loader: ``CLFSLoad.py --new STATE MOUNT file:/dev/shm/... c -``, its whole
  process tree measured by bench/procwatch.py (forkserver workers included);
* floor, THREADS threads: the directories listed, then every file lstat'ed,
  opened, read to the end and closed (files above 1 MiB in 1 MiB preads of
  one descriptor each, so four big files still keep every thread busy);
* floor, 1 thread: the same, one call after another;
* with ``--copy-floor``, floor, THREADS threads, copying: the THREADS-thread
  floor also writing every byte it read to a file on tmpfs, as the loader
  writes its blobs: what storing the data costs at least, before the
  loader's framing, hashing and compression;
* with ``--baseline CHECKOUT``: the loader of another checkout (a worktree of
  ``main``), and with ``--caps 1,8`` this loader at those
  ``--source_concurrency`` caps, interleaved with the rest.

For each: files/s, MB/s, client CPU per file (the loader's process tree, or
this process for a floor), the FUSE daemon's CPU per file apart (it shares
the cores), the peak of operations in flight and the operations per file the
file system counted, and the mean number in flight (the operations' summed
durations over the wall time). Prints one markdown table.
"""

import argparse
import os
import random
import shutil
import signal
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, List, Optional, Tuple

from _common import REPO, compile_checkout
from fusefs.mount import LatencyFS, fuse_available
from load_small_files import make_tree
from procwatch import GroupUsage, run_measured

MIB = 1 << 20
#: seconds of rest on a fresh mount before a measurement: the previous one's teardown (its mount's
#: 256 daemon threads ending, its output removed, its processes exiting) goes on for a moment, and a
#: load started into it measured up to a quarter slower (5,000 small files at 0.5 ms, 1,900 files/s
#: against 2,700 after a pause), whichever side ran next
SETTLE_S = 1.0
CHUNK = MIB  # the floors' read size, and the size above which a file is read in chunks


@dataclass
class Result:
    """One measurement."""

    what: str
    files: int
    nbytes: int
    wall: float
    client_cpu: float
    fuse_cpu: float
    peak: int
    ops: int
    busy: float  # seconds of operations, summed: / wall = mean operations in flight


# --- trees ---------------------------------------------------------------------------


def make_large(root: Path, count: int, mib: int) -> None:
    """COUNT files of MIB MiB: half random, half a repeated text (LZ4 has work on both)."""
    root.mkdir(parents=True)
    rng = random.Random(count * mib)
    text = b"".join(rng.choice([b"alpha ", b"beta ", b"gamma\n", b"0123 "]) for _ in range(MIB // 5))[:MIB]
    for i in range(count):
        with open(root / ("big%02d.bin" % i), "wb") as f:
            for k in range(mib):
                f.write(os.urandom(MIB) if k % 2 == 0 else text)


def tree_size(root: Path) -> Tuple[int, int]:
    """(regular files, bytes) under root."""
    files = nbytes = 0
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            files += 1
            nbytes += os.lstat(os.path.join(dirpath, name)).st_size
    return files, nbytes


# --- the floors ------------------------------------------------------------------------


def parallel_read(mount: Path, dirs: List[str], files: List[Tuple[str, int]], threads: int,
                  copy_to: Optional[Path] = None) -> None:
    """List DIRS, then lstat + open + read + close every file, THREADS at a time.

    ``files`` are (relative path, size) from the backing tree: the floor does
    not wait for a listing to find them, which the loader must; the listing is
    done first, in parallel, and timed with the rest. With ``copy_to``, every
    byte read is also written to a file of the same name there (one flat
    folder, as the loader's blobs are): the least any tool that stores the
    data pays on top of reading it.
    """

    def listdir(rel: str) -> None:
        with os.scandir(mount / rel) as it:
            for _ in it:
                pass

    def copy_of(rel: str) -> int:
        assert copy_to is not None
        return os.open(copy_to / rel.replace("/", "_"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)

    def whole(rel: str) -> None:
        path = mount / rel
        os.lstat(path)
        fd = os.open(path, os.O_RDONLY)
        out = copy_of(rel) if copy_to is not None else -1
        try:
            while True:
                data = os.read(fd, CHUNK)
                if not data:
                    break
                if out >= 0:
                    os.write(out, data)
        finally:
            os.close(fd)
            if out >= 0:
                os.close(out)

    def chunk(fd: int, out: int, offset: int) -> None:
        data = os.pread(fd, CHUNK, offset)
        if out >= 0:
            os.pwrite(out, data, offset)

    pool = ThreadPoolExecutor(threads)
    small = [rel for rel, size in files if size <= CHUNK]
    big = [(rel, size) for rel, size in files if size > CHUNK]
    fds: List[int] = []
    outs: List[int] = []
    try:
        list(pool.map(listdir, dirs))
        for rel, _ in big:  # lstat + open, once per big file
            os.lstat(mount / rel)
            fds.append(os.open(mount / rel, os.O_RDONLY))
            outs.append(copy_of(rel) if copy_to is not None else -1)
        jobs: List[Callable[[], None]] = [lambda r=rel: whole(r) for rel in small]
        jobs += [lambda fd=fd, out=out, o=o: chunk(fd, out, o)
                 for fd, out, (_, size) in zip(fds, outs, big) for o in range(0, size, CHUNK)]
        if threads == 1:
            for job in jobs:
                job()
        else:
            list(pool.map(lambda job: job(), jobs))
    finally:
        pool.shutdown(cancel_futures=True)  # on ^C the queued reads are dropped; running ones end
        for fd in fds + [out for out in outs if out >= 0]:  # only once no job can use them
            os.close(fd)


def floor(fs: LatencyFS, dirs: List[str], files: List[Tuple[str, int]], threads: int,
          copy_to: Optional[Path] = None) -> Tuple[float, float]:
    """(wall, CPU of this process) for parallel_read (the copies removed after, untimed)."""
    if copy_to is not None:
        shutil.rmtree(copy_to, ignore_errors=True)
        copy_to.mkdir()
    cpu = time.process_time()
    start = time.perf_counter()
    try:
        parallel_read(fs.mountpoint, dirs, files, threads, copy_to)
        return time.perf_counter() - start, time.process_time() - cpu
    finally:
        if copy_to is not None:
            shutil.rmtree(copy_to, ignore_errors=True)


# --- the loader ------------------------------------------------------------------------------


def load_tree(source: Path, scratch: Path, repo: Path = REPO, options: Tuple[str, ...] = ()) -> GroupUsage:
    """One load of ``source`` by ``repo``'s loader into a fresh folder under ``scratch`` (on tmpfs), measured.

    ``repo``: the checkout whose loader runs (``--baseline``); ``options``: more loader options.
    """
    state, out = scratch / "state", scratch / "out"
    shutil.rmtree(state, ignore_errors=True)
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    env = dict(os.environ, PYTHONPATH=str(repo))
    # another checkout runs with its own venv and from its own directory: this one's editable
    # install, or a clfsload/ in the working directory (the forkserver imports from there), would win
    python = repo / ".venv" / "bin" / "python"
    python_exe = str(python) if repo != REPO and python.exists() else sys.executable
    usage = run_measured([python_exe, str(repo / "CLFSLoad.py"), "--new", str(state), str(source),
                          "file:" + str(out), "c", "-", *options], env=env, cwd=str(repo))
    if usage.returncode != 0:
        raise RuntimeError("load by %s failed:\n%s" % (repo, usage.output[-3000:]))
    shutil.rmtree(state, ignore_errors=True)
    shutil.rmtree(out, ignore_errors=True)
    return usage


def load(fs: LatencyFS, scratch: Path, repo: Path = REPO, options: Tuple[str, ...] = ()) -> Tuple[float, float]:
    """(wall, CPU of the loader's process tree) for one load of the mount (:func:`load_tree`)."""
    usage = load_tree(fs.mountpoint, scratch, repo, options)
    return usage.wall, usage.cpu


def make_sets(base: Path, args: argparse.Namespace) -> List[Tuple[str, Path]]:
    """The trees ``args.sets`` names (small, large), made under ``base``: (label, root) each."""
    sets = []
    if "small" in args.sets:
        make_tree(base / "small", args.small, args.dirs)
        sets.append(("small %d x 1-8 KiB" % args.small, base / "small"))
    if "large" in args.sets:
        make_large(base / "large", args.large_files, args.large_mib)
        sets.append(("large %d x %d MiB" % (args.large_files, args.large_mib), base / "large"))
    return sets


# --- one configuration ----------------------------------------------------------------------


def measure(tree: Path, delay_ms: float, cache: bool, readahead_kib: Optional[int], what: str,
            run: Callable[[LatencyFS], Tuple[float, float]], files: int, nbytes: int) -> Result:
    """Mount fresh, run, read the daemon's counters and CPU, unmount."""
    with LatencyFS(tree, delay_us=int(round(delay_ms * 1000)), cache=cache, readahead_kib=readahead_kib) as fs:
        time.sleep(SETTLE_S)
        fuse_cpu = fs.cpu()  # after the warm-up
        wall, client_cpu = run(fs)
        stats = fs.stats()
        return Result(what, files, nbytes, wall, client_cpu, fs.cpu() - fuse_cpu, stats["peak"], stats["total"],
                      stats["busy_us"] / 1e6)


def _rate(per_second: float) -> str:
    """1,074 or 3.1: a large file takes seconds, so below 10 a decimal says more."""
    return format(round(per_second), ",") if per_second >= 10 else "%.1f" % per_second


def table(rows: List[Tuple[str, str, str, Result]]) -> str:
    head = ("| set | attr cache | delay | what | files/s | MB/s | client CPU ms/file | FUSE CPU ms/file "
            "| ops in flight: mean / peak | ops/file | wall s |\n|---|---|---|---|---|---|---|---|---|---|---|")
    lines = [head]
    for name, cache, delay, r in rows:
        lines.append("| %s | %s | %s | %s | %s | %.1f | %.2f | %.2f | %.1f / %d | %.1f | %.1f |" % (
            name, cache, delay, r.what, _rate(r.files / r.wall), r.nbytes / r.wall / 1e6,
            1000 * r.client_cpu / r.files, 1000 * r.fuse_cpu / r.files, r.busy / r.wall, r.peak,
            r.ops / r.files, r.wall))
    return "\n".join(lines)


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt("signal %d" % signum)


def main(argv: Optional[List[str]] = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--delays", default="0,0.5,2", help="milliseconds per operation, comma-separated")
    p.add_argument("--cache", default="off,on", help="attribute/entry caching modes: off,on")
    p.add_argument("--sets", default="small,large", help="small,large")
    p.add_argument("--small", type=int, default=5000, help="small files (1-8 KiB)")
    p.add_argument("--dirs", type=int, default=50, help="directories of the small set")
    p.add_argument("--large-files", type=int, default=4)
    p.add_argument("--large-mib", type=int, default=128, help="MiB per large file")
    p.add_argument("--readahead-kib", type=int, default=None,
                   help="the mount's readahead window = the read size the file system sees (default: the "
                        "kernel's, 128 KiB; NFS reads up to rsize, often 1024 KiB, per round trip)")
    p.add_argument("--threads", type=int, default=64, help="threads of the parallel floor")
    p.add_argument("--repeat", type=int, default=1, help="runs of each measurement; the table shows the median")
    p.add_argument("--keep", action="store_true", help="keep the trees (under /dev/shm) for a look")
    p.add_argument("--baseline", type=Path, default=None, metavar="CHECKOUT",
                   help="also run the loader of this checkout (e.g. a worktree of main), interleaved, with "
                   "CHECKOUT/.venv/bin/python (this venv's editable install would shadow PYTHONPATH)")
    p.add_argument("--caps", default="", help="also run the loader with these --source_concurrency values, "
                   "comma-separated (what a low cap costs)")
    p.add_argument("--no-single", action="store_true", help="leave out the 1-thread floor (slow at 2 ms)")
    p.add_argument("--copy-floor", action="store_true",
                   help="also THREADS threads that write what they read to tmpfs: the least a tool storing "
                   "the data pays (the loader also frames, hashes and compresses it)")
    args = p.parse_args(argv)
    why = fuse_available()
    if why:
        sys.exit(why)
    compile_checkout()
    if args.baseline is not None:
        compile_checkout(args.baseline)
    # a SIGTERM unwinds like ^C, so every mount is unmounted on the way out
    signal.signal(signal.SIGTERM, _interrupt)
    delays = [float(d) for d in args.delays.split(",")]
    caches = [c.strip() == "on" for c in args.cache.split(",")]
    base = Path(tempfile.mkdtemp(prefix="source-latency-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None))
    rows: List[Tuple[str, str, str, Result]] = []
    load_before = os.getloadavg()[0]  # other work on the machine shows up as longer round trips
    try:
        sets = make_sets(base, args)
        scratch = base / "scratch"
        scratch.mkdir()
        for name, tree in sets:
            files, nbytes = tree_size(tree)
            dirs = sorted(str(Path(d).relative_to(tree)) for d, _, _ in os.walk(tree))
            listing = sorted((str(Path(d, f).relative_to(tree)), os.lstat(os.path.join(d, f)).st_size)
                             for d, _, fs in os.walk(tree) for f in fs)
            for cache in caches:
                for delay in delays:
                    runs = [("loader", lambda fs: load(fs, scratch))]
                    if args.baseline is not None:
                        runs.append(("loader (%s)" % args.baseline.name,
                                     lambda fs: load(fs, scratch, args.baseline.resolve())))
                    for cap in [c for c in args.caps.split(",") if c.strip()]:
                        runs.append(("loader, cap %s" % cap.strip(),
                                     lambda fs, cap=cap: load(fs, scratch, options=("--source_concurrency", cap.strip()))))
                    runs.append(("%d threads" % args.threads, lambda fs: floor(fs, dirs, listing, args.threads)))
                    if args.copy_floor:
                        runs.append(("%d threads, copying" % args.threads,
                                     lambda fs: floor(fs, dirs, listing, args.threads, scratch / "copy")))
                    if not args.no_single:
                        runs.append(("1 thread", lambda fs: floor(fs, dirs, listing, 1)))
                    seen: List[List[Result]] = [[] for _ in runs]
                    for _ in range(args.repeat):  # interleaved, so a busy spell hits every side alike
                        for (what, run), results in zip(runs, seen):
                            r = measure(tree, delay, cache, args.readahead_kib, what, run, files, nbytes)
                            results.append(r)
                            print("%s, cache %s, %g ms, %s: %.0f files/s, %.1f MB/s, peak %d" % (
                                name, "on" if cache else "off", delay, what, files / r.wall,
                                nbytes / r.wall / 1e6, r.peak), file=sys.stderr, flush=True)
                    for results in seen:  # the median run by wall time (the middle one of an odd count)
                        r = sorted(results, key=lambda x: x.wall)[(len(results) - 1) // 2]
                        rows.append((name, "on" if cache else "off", "%g ms" % delay, r))
    finally:
        if args.keep:
            print("trees kept in", base, file=sys.stderr)
        else:
            shutil.rmtree(base, ignore_errors=True)
        if rows:  # what was measured, even when interrupted
            print(table(rows))
    print("\n%d cores, load average %.1f before and %.1f after; latencyfs: 256 threads, max_background 64, "
          "readahead %s KiB; a fresh mount per measurement; median of %d." % (
              os.cpu_count(), load_before, os.getloadavg()[0], args.readahead_kib or "128 (kernel default)",
              args.repeat))


if __name__ == "__main__":
    main()
