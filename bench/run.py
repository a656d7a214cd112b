#!/usr/bin/env python3
"""The throughput benchmark of issue 5: every target, its floor and the ratio, in one run.

usage: python bench/run.py [--only small,azurite,large,sparse,million] [--million N]
                          [--small N] [--repeat N] [--keep] [--dir DIR]

Builds its trees under /dev/shm (tmpfs; ``--dir`` for another file system,
such as a real disk, where the loader's fsyncs cost what they cost) and runs ``CLFSLoad.py`` as a user
would, measuring the loader's whole process tree (bench/procwatch.py):
wall time, client CPU (user + sys of every process of the loader) and peak
RSS. Next to each measurement, in the same run, its floor:

* small files, local folder: a minimal loop (scandir + lstat + read + LZ4
  compress + write, one file at a time, one process);
* small files, Azurite: a bare aiohttp loop PUTting the very blobs the loader
  stores (names and payloads taken from a load of the same tree into a local
  folder), in a random order, 64 in flight, into a fresh Azurite. The same
  names matter: Azurite takes about 25% longer per Put Blob for random hex
  names like CLFS's than for sequential ones. Azurite also slows down as it
  fills, so every measurement gets a fresh, identical instance; and its
  speed varies by about 20% between identical runs, so ``--repeat N``
  alternates the two sides N times and compares medians;
* large files: the slower of reading the bytes and LZ4-compressing them on
  all cores;
* the 9 GiB sparse file: loaded, then read back byte for byte (verify --deep);
* 1,000,000 empty files: rate, peak RSS and the state dir's size at the end.

Prints one table: what, measured, floor, ratio, goal. Goals are checked
here, never in timed unit tests.
"""

import argparse
import multiprocessing
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import List, Optional, Tuple

from _common import NO_AZURITE, REPO, compile_checkout, find_azurite, start_azurite
from load_small_files import bare_upload_loop, make_tree
from procwatch import GroupUsage, run_measured

MIB = 1 << 20
GIB = 1 << 30
Row = Tuple[str, str, str, str, str]  # what, measured, floor, ratio, goal


def loader(*args: str, env: Optional[dict] = None) -> GroupUsage:
    """CLFSLoad.py ARGS, measured; exits the benchmark if the load fails."""
    full_env = dict(os.environ, PYTHONPATH=str(REPO), **(env or {}))
    usage = run_measured([sys.executable, str(REPO / "CLFSLoad.py"), *args], env=full_env)
    if usage.returncode != 0:
        sys.exit("load failed:\n" + usage.output[-3000:])
    return usage


def _ratio(measured: float, floor: float) -> str:
    return "%.2f" % (measured / floor) if floor else "-"


# --- small files ---------------------------------------------------------------


def minimal_loop(tree: Path, out: Path) -> float:
    """scandir + lstat + read + LZ4 + write per file, one process; returns files/s."""
    import lz4.frame

    out.mkdir()
    count = 0
    start = time.perf_counter()
    stack = [str(tree)]
    while stack:
        with os.scandir(stack.pop()) as entries:
            for entry in entries:
                st = entry.stat(follow_symlinks=False)
                if entry.is_dir(follow_symlinks=False):
                    stack.append(entry.path)
                    continue
                with open(entry.path, "rb") as f:
                    data = f.read(st.st_size + 1)
                fd = os.open(out / ("%d" % count), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
                os.write(fd, lz4.frame.compress(data))
                os.close(fd)
                count += 1
    return count / (time.perf_counter() - start)


def small_local(base: Path, tree: Path, files: int, objects: int, repeat: int) -> List[Row]:
    """The loader and the minimal loop, alternating ``repeat`` times; medians."""
    rates, floors, cpus, peaks = [], [], [], []
    for k in range(repeat):
        out = base / ("out-small" if k == 0 else "out-small-%d" % k)  # the first is the Azurite section's reference
        out.mkdir()
        usage = loader("--new", str(base / ("state-small-%d" % k)), str(tree), "file:" + str(out), "c", "-")
        floors.append(minimal_loop(tree, base / ("minimal-out-%d" % k)))
        rates.append(files / usage.wall)
        cpus.append(usage.cpu)
        peaks.append(usage.peak_rss)
    rate, floor = statistics.median(rates), statistics.median(floors)
    return [
        ("small files, local folder: files/s" + _runs(repeat), "%.0f" % rate, "%.0f" % floor, _ratio(rate, floor),
         ">= 10,000 and ratio >= 0.50"),
        ("small files, local folder: client CPU ms/object", "%.3f" % (1000 * statistics.median(cpus) / objects),
         "", "", ""),
        ("small files, local folder: peak RSS MiB", "%.0f" % (max(peaks) / MIB), "", "", "< 1024"),
    ]


def _runs(repeat: int) -> str:
    return " (median of %d)" % repeat if repeat > 1 else ""


def small_azurite(base: Path, tree: Path, objects: int, repeat: int) -> List[Row]:
    """The bare loop and the loader, alternating ``repeat`` times, each into a fresh Azurite; medians.

    Azurite's own speed varies by about 20% between identical runs, so one
    run of each side does not settle a ratio near the goal.
    """
    binary = find_azurite()
    if binary is None:
        sys.exit(NO_AZURITE)

    reference = base / "out-small" / "c"
    if not reference.is_dir():  # the small section did not run: make the loader's blobs, unmeasured
        (base / "out-small").mkdir()
        loader("--new", str(base / "state-reference"), str(tree), "file:" + str(base / "out-small"), "c", "-")
    blobs = [(p.name, p.read_bytes()) for p in sorted(reference.iterdir()) if p.is_file()]
    # In a random order, as the loader stores them: Azurite inserts names in
    # ascending order faster than at random places.
    random.Random(5).shuffle(blobs)
    rates, floors, cpus, floor_cpus, peaks = [], [], [], [], []
    for k in range(repeat):
        process, az = start_azurite(binary, base, "bare-%d" % k)
        try:
            container = az.create_container()
            bare_wall, bare_cpu = bare_upload_loop(az.endpoint, container, az.make_sas(container), blobs)
        finally:
            process.stop()
        process, az = start_azurite(binary, base, "load-%d" % k)
        try:
            container = az.create_container()
            usage = loader("--new", str(base / ("state-az-%d" % k)), str(tree), az.endpoint, container,
                           az.make_sas(container))
        finally:
            process.stop()
        rates.append(objects / usage.wall)
        floors.append(len(blobs) / bare_wall)
        cpus.append(1000 * usage.cpu / objects)
        floor_cpus.append(1000 * bare_cpu / len(blobs))
        peaks.append(usage.peak_rss)
    rate, floor = statistics.median(rates), statistics.median(floors)
    cpu_ms, floor_cpu_ms = statistics.median(cpus), statistics.median(floor_cpus)
    return [
        ("small files, Azurite: objects/s" + _runs(repeat), "%.0f" % rate, "%.0f" % floor, _ratio(rate, floor),
         "ratio >= 0.90"),
        ("small files, Azurite: client CPU ms/object", "%.3f" % cpu_ms, "%.3f" % floor_cpu_ms,
         _ratio(cpu_ms, floor_cpu_ms), "<= 0.35"),
        ("small files, Azurite: peak RSS MiB", "%.0f" % (max(peaks) / MIB), "", "", "< 1024"),
    ]


# --- large files -----------------------------------------------------------------


def _compress(chunk: bytes) -> int:
    import lz4.frame

    return len(lz4.frame.compress(chunk))


def large_local(base: Path) -> List[Row]:
    tree = base / "large"
    tree.mkdir()
    words = b"".join(b"%08d line of a compressible text file\n" % i for i in range(4096))
    for i in range(4):
        with open(tree / ("f%d" % i), "wb") as f:
            for _ in range(128 * MIB // (8 * MIB)):
                f.write(os.urandom(8 * MIB) if i % 2 else (words * (8 * MIB // len(words) + 1))[: 8 * MIB])
    total = 4 * 128 * MIB
    start = time.perf_counter()
    for i in range(4):
        with open(tree / ("f%d" % i), "rb", buffering=0) as f:
            while f.read(8 * MIB):
                pass
    read_rate = total / (time.perf_counter() - start)
    chunks = []
    for i in range(4):
        with open(tree / ("f%d" % i), "rb") as f:
            chunks.extend(iter(lambda: f.read(8 * MIB), b""))
    with multiprocessing.Pool(os.cpu_count()) as pool:
        start = time.perf_counter()
        pool.map(_compress, chunks, chunksize=1)
        compress_rate = total / (time.perf_counter() - start)
    del chunks
    (base / "out-large").mkdir()
    usage = loader("--new", str(base / "state-large"), str(tree), "file:" + str(base / "out-large"), "c", "-")
    rate, floor = total / usage.wall, min(read_rate, compress_rate)
    return [
        ("large files, local folder: MB/s", "%.0f" % (rate / 1e6), "%.0f" % (floor / 1e6), _ratio(rate, floor),
         "ratio >= 0.80 (floor: read %.0f, LZ4 on all cores %.0f MB/s)" % (read_rate / 1e6, compress_rate / 1e6)),
        ("large files, local folder: peak RSS MiB", "%.0f" % (usage.peak_rss / MIB), "", "", "< 1024"),
    ]


# --- a 9 GiB sparse file -------------------------------------------------------------


def sparse(base: Path) -> List[Row]:
    tree = base / "sparse"
    tree.mkdir()
    path = tree / "nine-gib.img"
    with open(path, "wb") as f:
        f.truncate(9 * GIB)
        for offset in (0, 3 * GIB + 12345, 8 * GIB + 777, 9 * GIB - 5):
            f.seek(offset)
            f.write(b"marker@%d" % offset)
    (base / "out-sparse").mkdir()
    usage = loader("--new", str(base / "state-sparse"), str(tree), "file:" + str(base / "out-sparse"), "c", "-")
    verify = run_measured([sys.executable, "-m", "clfsload", "verify", "file:" + str(base / "out-sparse"), "c",
                           str(tree), "--deep"], env=dict(os.environ, PYTHONPATH=str(REPO)))
    ok = verify.returncode == 0
    return [
        ("9 GiB sparse file: load MB/s", "%.0f" % (9 * GIB / usage.wall / 1e6), "", "", ""),
        ("9 GiB sparse file: read back byte-exact (verify --deep)", "yes" if ok else "NO: " + verify.output[-200:],
         "", "", "yes (indirect trees)"),
        ("9 GiB sparse file: peak RSS MiB", "%.0f" % (max(usage.peak_rss, verify.peak_rss) / MIB), "", "", "< 1024"),
    ]


# --- a million empty files --------------------------------------------------------------


def million(base: Path, count: int) -> List[Row]:
    tree = base / "million"
    per_dir = 1000
    for d in range((count + per_dir - 1) // per_dir):
        sub = tree / ("d%04d" % d)
        sub.mkdir(parents=True)
        for i in range(min(per_dir, count - d * per_dir)):
            os.close(os.open(sub / ("e%04d" % i), os.O_CREAT | os.O_WRONLY, 0o644))
    (base / "out-million").mkdir()
    state = base / "state-million"
    usage = loader("--new", str(state), str(tree), "file:" + str(base / "out-million"), "c", "-")
    state_bytes = sum(p.stat().st_size for p in state.iterdir() if p.is_file())
    return [
        ("%d empty files, local folder: files/s" % count, "%.0f" % (count / usage.wall), "", "", ""),
        ("%d empty files: peak RSS MiB" % count, "%.0f" % (usage.peak_rss / MIB), "", "", "< 1024"),
        ("%d empty files: state dir MiB at the end" % count, "%.1f" % (state_bytes / MIB), "", "",
         "bounded (finished rows reaped)"),
    ]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="small,azurite,large,sparse,million",
                        help="comma-separated sections (default: all)")
    parser.add_argument("--million", type=int, default=1_000_000, help="files in the empty-file tree")
    parser.add_argument("--small", type=int, default=20000, help="files in the small-file tree (100 per directory)")
    parser.add_argument("--repeat", type=int, default=1,
                        help="run each small-file measurement and its floor N times, alternating; report medians")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    parser.add_argument("--dir", default=None, help="make the work folder under DIR (default: /dev/shm)")
    args = parser.parse_args(argv)
    sections = set(args.only.split(","))
    compile_checkout()
    where = args.dir or ("/dev/shm" if os.path.isdir("/dev/shm") else None)
    base = Path(tempfile.mkdtemp(prefix="clfsload-bench-", dir=where))
    rows: List[Row] = []
    try:
        if sections & {"small", "azurite"}:
            tree = base / "small"
            dirs = max(1, args.small // 100)
            files = make_tree(tree, args.small, dirs)
            objects = files + dirs + 1
            if "small" in sections:
                rows += small_local(base, tree, files, objects, max(1, args.repeat))
            if "azurite" in sections:
                rows += small_azurite(base, tree, objects, max(1, args.repeat))
        if "large" in sections:
            rows += large_local(base)
        if "sparse" in sections:
            rows += sparse(base)
        if "million" in sections:
            rows += million(base, args.million)
    finally:
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)
    widths = [max(len(r[i]) for r in rows + [("what", "measured", "floor", "ratio", "goal")]) for i in range(5)]
    line = "  ".join("%%-%ds" % w for w in widths)
    print(line % ("what", "measured", "floor", "ratio", "goal"))
    for row in rows:
        print(line % row)


if __name__ == "__main__":
    main()
