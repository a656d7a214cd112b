#!/usr/bin/env python3
"""Small-file load benchmark: CLFSLoad.py into Azurite and into a local folder.

usage: python bench/load_small_files.py [--files 20000] [--dirs 200] [--skip-azurite]

Builds a tree of FILES files (1-8 KiB, text-like) in DIRS directories, then
measures in one run:
  * the load into a local-folder target (tmpfs when /dev/shm exists);
  * the load into Azurite (started here on a free loopback port, in memory);
  * the floor for Azurite: a bare upload loop PUTting the same number of
    blobs of the same sizes, 64 in flight, as fast as it can, into a fresh
    instance of the same Azurite (Azurite slows down as it fills, so each
    measurement starts from an empty one).
For each: wall time, files/s, and the loader's client CPU per object
(user + sys of the loader's process tree; Azurite's own CPU is not counted).
"""

import argparse
import asyncio
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import NO_AZURITE, REPO, find_azurite, start_azurite

WORDS = [b"alpha ", b"beta ", b"gamma\n", b"delta ", b"omega\n", b"zeta ", b"0123 "]


def make_tree(root: Path, files: int, dirs: int) -> int:
    rng = random.Random(files)
    total = 0
    per_dir = max(1, files // dirs)
    made = 0
    for d in range(dirs):
        sub = root / ("dir%04d" % d)
        sub.mkdir(parents=True)
        for f in range(per_dir if d < dirs - 1 else files - made):
            size = rng.randint(1024, 8192)
            data = bytearray()
            while len(data) < size:
                data += rng.choice(WORDS)
            (sub / ("file%05d.txt" % f)).write_bytes(bytes(data[:size]))
            total += size
            made += 1
    return made


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_loader(args, env=None):
    """Run CLFSLoad.py; returns (wall seconds, client CPU seconds)."""
    cpu0 = children_cpu()
    start = time.perf_counter()
    done = subprocess.run([sys.executable, str(REPO / "CLFSLoad.py"), *args], capture_output=True, text=True,
                          env=dict(os.environ, **(env or {})))
    wall = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit("load failed:\n" + done.stdout[-3000:] + done.stderr[-3000:])
    return wall, children_cpu() - cpu0


def bare_upload_loop(endpoint: str, container: str, sas: str, blobs, in_flight: int = 64):
    """PUT every blob with aiohttp, ``in_flight`` at a time; returns (wall, CPU) of this process.

    ``blobs``: (name, payload) pairs, or sizes (then random payloads under
    sequential names).
    """
    import aiohttp

    blobs = [b if isinstance(b, tuple) else ("bare%06d" % i, os.urandom(b)) for i, b in enumerate(blobs)]

    async def main():
        sem = asyncio.Semaphore(in_flight)
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=in_flight)) as session:
            async def put(name, payload):
                async with sem:
                    url = "%s/%s/%s?%s" % (endpoint, container, name, sas)
                    headers = {"x-ms-blob-type": "BlockBlob", "x-ms-version": "2021-08-06"}
                    async with session.put(url, data=payload, headers=headers) as resp:
                        assert resp.status == 201, resp.status
            await asyncio.gather(*(put(name, payload) for name, payload in blobs))

    usage0 = resource.getrusage(resource.RUSAGE_SELF)
    start = time.perf_counter()
    asyncio.run(main())
    wall = time.perf_counter() - start
    usage1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (usage1.ru_utime - usage0.ru_utime) + (usage1.ru_stime - usage0.ru_stime)
    return wall, cpu


def report(label, files, wall, cpu):
    print("  %-34s %8.2f s %9.0f files/s %7.3f ms CPU/object" % (label, wall, files / wall, 1000 * cpu / files))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=20000)
    parser.add_argument("--dirs", type=int, default=200)
    parser.add_argument("--skip-azurite", action="store_true")
    args = parser.parse_args(argv)
    base = Path(tempfile.mkdtemp(prefix="clfsload-bench-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None))
    try:
        tree = base / "tree"
        files = make_tree(tree, args.files, args.dirs)
        objects = files + args.dirs + 1
        print("tree: %d files in %d directories (%d objects), under %s" % (files, args.dirs, objects, base))
        wall, cpu = run_loader(["--new", str(base / "state-local"), str(tree), "file:" + str(base), "local", "-"])
        report("local folder (tmpfs)", objects, wall, cpu)
        if args.skip_azurite:
            return
        binary = find_azurite()
        if binary is None:
            sys.exit(NO_AZURITE)

        def fresh_azurite(tag):
            return start_azurite(binary, base, tag)

        process, az = fresh_azurite("bare")
        try:
            c2 = az.create_container()
            sizes = [p.stat().st_size for p in tree.rglob("*") if p.is_file()] + [512] * (args.dirs + 1)
            wall_b, cpu_b = bare_upload_loop(az.endpoint, c2, az.make_sas(c2), sizes)
        finally:
            process.stop()
        process, az = fresh_azurite("load")
        try:
            c1 = az.create_container()
            wall, cpu = run_loader(["--new", str(base / "state-az"), str(tree), az.endpoint, c1, az.make_sas(c1)])
        finally:
            process.stop()
        report("Azurite, CLFSLoad.py", objects, wall, cpu)
        report("Azurite, bare upload loop (floor)", len(sizes), wall_b, cpu_b)
        print("  loader rate / bare loop rate: %.2f" % ((objects / wall) / (len(sizes) / wall_b)))
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
