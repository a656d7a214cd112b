#!/usr/bin/env python3
"""Scale-out benchmark of issue 8: one load on 1, 2 and 4 Dask workers, next to the single-node engine.

usage: python bench/dask_scaling.py [--files 20000] [--dirs 200] [--latency 0.02] [--workers 1,2,4]
                                    [--in-flight N] [--huge-mib MIB [--range-segments N]]

Every measurement loads the same tree of small files with ``CLFSLoad.py`` as
a user would, into a fresh Azurite (it slows down as it fills) behind the
latency proxy (bench/_latency_proxy.py) holding every request ``--latency`` seconds, like a
WAN round trip. The proxy runs in its own process so it never competes with
the cluster for one interpreter. Rows:

* the single-node engine (``--processes`` = cores, no Dask);
* ``--dask`` on a ``distributed.LocalCluster`` of N worker processes with one
  thread each, for each N of ``--workers``.

Prints files/s and the ratio to 1 worker, all measured in this one run.
With ``--in-flight N`` each worker keeps at most N requests in flight
(``CLFSLOAD_MAX_IN_FLIGHT``): a stand-in for one node's NIC, so the cap a
worker hits is its own and not the emulator's (a single Azurite process on
this 2-core machine serves a few hundred puts per second at most).

With ``--huge-mib MIB`` the tree is one file of MIB MiB (text-like, so LZ4
has work) instead, loaded in ranges of ``--range-segments`` 8 MiB segments
(``CLFSLOAD_RANGE_SEGMENTS``): the single-node row loads it whole in one
unit (ranges off), the Dask rows spread its ranges over the workers. Prints
MB/s.
"""

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import NO_AZURITE, REPO, find_azurite, start_azurite, start_latency_proxy
from load_small_files import make_tree


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def make_huge_file(root: Path, mib: int) -> int:
    """One text-like file of ``mib`` MiB in ``root``; returns its size."""
    root.mkdir(parents=True)
    block = b"".join(b"line %08d of a huge file, compressible like logs or text\n" % i for i in range(16384))
    block = (block * (1 + (1 << 20) // len(block)))[: 1 << 20]
    with open(root / "huge.bin", "wb") as f:
        for _ in range(mib):
            f.write(block)
    return mib << 20


def one_load(binary, base: Path, tree: Path, files: int, latency: float, tag: str, extra, env):
    """Load ``tree`` into a fresh Azurite behind the proxy; returns (``files`` per s, CPU seconds of the CLI)."""
    process, az = start_azurite(binary, base, tag)
    proxy, endpoint = start_latency_proxy(az.endpoint, latency)
    try:
        container = az.create_container()
        state = base / ("state-" + tag)
        args = ["--new", str(state), str(tree), endpoint, container, az.make_sas(container), *extra]
        cpu0 = _children_cpu()
        start = time.perf_counter()
        done = subprocess.run([sys.executable, str(REPO / "CLFSLoad.py"), *args], capture_output=True, text=True,
                              env=dict(os.environ, PYTHONPATH=str(REPO), **env))
        wall = time.perf_counter() - start
        cpu = _children_cpu() - cpu0  # the CLI process; Dask workers are reaped later, not counted
        if done.returncode != 0:
            sys.exit("load %s failed:\n%s%s" % (tag, done.stdout[-3000:], done.stderr[-3000:]))
        return files / wall, cpu
    finally:
        proxy.kill()
        proxy.wait()
        process.stop()


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--files", type=int, default=20000)
    parser.add_argument("--dirs", type=int, default=200)
    parser.add_argument("--latency", type=float, default=0.02)
    parser.add_argument("--workers", default="1,2,4")
    parser.add_argument("--in-flight", type=int, default=0)
    parser.add_argument("--huge-mib", type=int, default=0)
    parser.add_argument("--range-segments", type=int, default=16)
    args = parser.parse_args(argv)
    if args.huge_mib:
        return huge_file(args)
    from distributed import LocalCluster

    binary = find_azurite()
    if binary is None:
        sys.exit(NO_AZURITE)
    base = Path(tempfile.mkdtemp(prefix="clfsload-dask-bench-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None))
    tree = base / "tree"
    files = make_tree(tree, args.files, args.dirs)
    env = {"CLFSLOAD_MAX_IN_FLIGHT": str(args.in_flight)} if args.in_flight else {}
    print("%d files in %d directories; Azurite behind a proxy adding %.0f ms per request%s; %d cores"
          % (files, args.dirs, 1000 * args.latency,
             ", %d requests in flight per worker" % args.in_flight if args.in_flight else "", os.cpu_count()),
          flush=True)
    rate, _ = one_load(binary, base, tree, files, args.latency, "single", [], env)
    rows = [("single-node engine (%d processes)" % os.cpu_count(), rate, None)]
    print("  measured: %s, %.0f files/s" % (rows[-1][0], rate), flush=True)
    by_workers = {}
    empty = base / "empty"
    empty.mkdir()
    baseline = None  # the driver's CPU for a load of one empty directory: start-up, connect, finish
    for n in [int(w) for w in args.workers.split(",")]:
        with LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=":0",
                          env=env) as cluster:
            if baseline is None:
                _, baseline = one_load(binary, base, empty, 1, args.latency, "empty",
                                       ["--dask", cluster.scheduler_address], {})
            rate, driver_cpu = one_load(binary, base, tree, files, args.latency, "dask%d" % n,
                                        ["--dask", cluster.scheduler_address], {})
        by_workers[n] = rate
        rows.append(("Dask, %d worker%s" % (n, "s" if n > 1 else ""), rate, driver_cpu))
        print("  measured: %s, %.0f files/s" % (rows[-1][0], rate), flush=True)
    one = by_workers.get(1)
    units = args.dirs + 1
    print("%-34s %10s %18s %24s" % ("", "files/s", "ratio to 1 worker", "driver CPU ms/directory"))
    for label, rate, driver_cpu in rows:
        per_unit = "%.2f" % (1000 * (driver_cpu - baseline) / units) if driver_cpu is not None else "-"
        print("%-34s %10.0f %18s %24s" % (label, rate, "%.2f" % (rate / one) if one else "-", per_unit))
    print("driver CPU per directory: the load's CPU less that of loading one empty directory (%.2f s: start-up, "
          "connecting, FINALIZE)" % baseline)
    shutil.rmtree(base, ignore_errors=True)


def huge_file(args) -> None:
    """One huge file: whole on one node, then in ranges over 1, 2, 4 Dask workers."""
    from distributed import LocalCluster

    binary = find_azurite()
    if binary is None:
        sys.exit(NO_AZURITE)
    base = Path(tempfile.mkdtemp(prefix="clfsload-dask-bench-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None))
    tree = base / "tree"
    size = make_huge_file(tree, args.huge_mib)
    mb = size / 1e6
    ranged = {"CLFSLOAD_RANGE_SEGMENTS": str(args.range_segments)}
    if args.in_flight:
        ranged["CLFSLOAD_MAX_IN_FLIGHT"] = str(args.in_flight)
    print("one file of %d MiB; Azurite behind a proxy adding %.0f ms per request; ranges of %d segments (%d MiB); "
          "%d cores" % (args.huge_mib, 1000 * args.latency, args.range_segments, 8 * args.range_segments,
                        os.cpu_count()), flush=True)
    whole = dict(ranged, CLFSLOAD_RANGE_SEGMENTS="0")
    rate, _ = one_load(binary, base, tree, 1, args.latency, "whole", [], whole)
    rows = [("single node, whole file (one unit)", rate * mb)]
    print("  measured: %s, %.0f MB/s" % rows[-1], flush=True)
    for n in [int(w) for w in args.workers.split(",")]:
        with LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=":0",
                          env=ranged) as cluster:
            rate, _ = one_load(binary, base, tree, 1, args.latency, "dask%d" % n,
                               ["--dask", cluster.scheduler_address], ranged)
        rows.append(("Dask, %d worker%s, in ranges" % (n, "s" if n > 1 else ""), rate * mb))
        print("  measured: %s, %.0f MB/s" % rows[-1], flush=True)
    one = rows[1][1]
    print("%-40s %10s %18s" % ("", "MB/s", "ratio to 1 worker"))
    for label, rate in rows:
        print("%-40s %10.0f %18.2f" % (label, rate, rate / one))
    shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
