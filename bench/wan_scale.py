#!/usr/bin/env python3
"""Scale runs of issue 22: the loader against the benchmark Blob sink, a WAN round trip away.

usage: python bench/wan_scale.py [--files 1000000] [--per-dir 100] [--delays 0,20] [--in-flight N]
                                 [--workers 1,2,4] [--worker-in-flight 8] [--dirs 100000]
                                 [--skip selftest,single,dask,dirs]

Everything runs against ``bench/blobsink`` (a fresh sink per load, in its own
process, holding every answer ``--delays`` ms by a timer), with ``CLFSLOAD.py``
as a user runs it, measured over its whole process tree (bench/procwatch.py).
The sink's own rate on this machine (bare client, 4 KiB Put Blobs) is
measured first and printed, so it is seen never to be the ceiling.

Rows:

* **single node**, for each delay: FILES files of 1-8 KiB (text-like) in
  FILES/PER_DIR directories: objects/s, client CPU per object, peak RSS,
  state-dir size, TRANSFER and FINALIZE time (from the loader's own phase
  log lines), requests in flight at the sink (mean over the TRANSFER phase, and
  peak), and the bound: ``min(cap / round trip, cores / CPU per object)``,
  where cap = processes x min(uploads in flight, connections) per process and
  CPU per object is the one measured at the lowest delay;
* **Dask** on a ``LocalCluster`` of 1, 2, 4 one-thread workers at the
  largest delay, each worker capped at ``--worker-in-flight`` requests
  (``CLFSLOAD_MAX_IN_FLIGHT``): bound = workers x cap / round trip, far under
  what the CPU allows, so the ratio to one worker (of TRANSFER rates) shows
  the scaling; worker CPU is read from /proc;
* **directory units**: ``--dirs`` directories of one file each (in groups of
  1,000) through ``--dask`` on the largest cluster at delay 0: the driver's
  CPU per directory unit (less that of loading an empty tree) and units/s.

Source trees are built on /dev/shm (checked against its free space) and
removed at the end. One table is printed at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Dict, List, Optional, Tuple

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # bench.blobsink as a package, whatever the working directory
sys.path.insert(0, str(HERE))

from _common import REPO, compile_checkout  # noqa: E402
from procwatch import GroupUsage, run_measured  # noqa: E402

from bench.blobsink import BlobSink  # noqa: E402
from bench.blobsink.loadgen import measure as sink_selftest  # noqa: E402

_WORDS = [b"alpha ", b"beta ", b"gamma\n", b"delta ", b"omega\n", b"zeta ", b"0123 "]
_PHASE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) \w+ (begin phase (\w+)|all phases complete)")


# -- trees -------------------------------------------------------------------------------------------

def _text(rng: random.Random, size: int) -> bytes:
    out = bytearray()
    while len(out) < size:
        out += rng.choice(_WORDS)
    return bytes(out[:size])


def make_files_tree(root: Path, files: int, per_dir: int) -> Tuple[int, int]:
    """FILES text-like files of 1-8 KiB, PER_DIR to a directory; returns (files, directories)."""
    rng = random.Random(files)
    pool = _text(rng, 4 << 20)
    dirs = max(1, -(-files // per_dir))
    made = 0
    for d in range(dirs):
        sub = root / ("d%06d" % d)
        sub.mkdir(parents=True)
        for f in range(min(per_dir, files - made)):
            size = rng.randint(1024, 8192)
            at = rng.randrange(len(pool) - size)
            fd = os.open(sub / ("f%04d.txt" % f), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            os.write(fd, pool[at:at + size])
            os.close(fd)
            made += 1
    return made, dirs


def make_dirs_tree(root: Path, dirs: int) -> int:
    """DIRS directories of one small file each, 1,000 to a parent; returns the directories made (parents too)."""
    groups = max(1, -(-dirs // 1000))
    made = 0
    for g in range(groups):
        parent = root / ("g%04d" % g)
        parent.mkdir(parents=True)
        for d in range(min(1000, dirs - made)):
            sub = parent / ("d%04d" % d)
            sub.mkdir()
            (sub / "f").write_bytes(b"one small file\n")
            made += 1
    return made + groups


def shm_base(need_bytes: int) -> Path:
    """A fresh folder on /dev/shm, after checking it has room for ``need_bytes`` plus a margin."""
    stat = os.statvfs("/dev/shm")
    free = stat.f_bavail * stat.f_frsize
    if free < need_bytes * 1.5:
        sys.exit("/dev/shm has %.1f GiB free, the trees need about %.1f GiB: use --files to scale down"
                 % (free / 2**30, need_bytes / 2**30))
    return Path(tempfile.mkdtemp(prefix="clfsload-wan-", dir="/dev/shm"))


def dir_size(path: Path) -> int:
    """Bytes of the files under *path*."""
    total = 0
    for dirpath, _, names in os.walk(path):
        for name in names:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_size
            except OSError:
                pass
    return total


# -- one load ----------------------------------------------------------------------------------------

class SinkWatch:
    """Polls the sink's counters during a load: requests in flight over time."""

    def __init__(self, sink: BlobSink) -> None:
        self.sink = sink
        self.samples: List[Tuple[float, Dict]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.samples.append((time.time(), self.sink.stats()))
            except OSError:
                pass
            self._stop.wait(0.25)

    def stop(self) -> Dict:
        """Stop polling; the last counters."""
        self._stop.set()
        self._thread.join()
        final = self.sink.stats()
        self.samples.append((time.time(), final))
        return final

    def mean_in_flight(self, start: float, end: float) -> float:
        """Mean requests held by the sink between two wall-clock times (from its time integral)."""
        inside = [(t, s["in_flight_seconds"]) for t, s in self.samples if start <= t <= end]
        if len(inside) < 2:
            return float("nan")
        (t0, a0), (t1, a1) = inside[0], inside[-1]
        return (a1 - a0) / (t1 - t0) if t1 > t0 else float("nan")


def phase_times(log: str) -> Dict[str, float]:
    """Wall-clock start of each phase, and ``end``, from the loader's INFO lines."""
    found: Dict[str, float] = {}
    for line in log.splitlines():
        match = _PHASE.match(line)
        if match:
            when = datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
            found[match.group(3) or "end"] = when
    return found


def run_load(sink: BlobSink, tree: Path, base: Path, tag: str, extra: List[str], env: Dict[str, str]) -> Dict:
    """One CLFSLoad.py load into a fresh container of *sink*; the measured figures."""
    container = sink.create_container()
    state = base / ("state-" + tag)
    args = [sys.executable, str(REPO / "CLFSLoad.py"), "--new", "--output", "json", str(state), str(tree),
            sink.endpoint, container, sink.make_sas(container), *extra]
    watch = SinkWatch(sink)
    sink_cpu0 = sink.cpu_seconds()
    usage: GroupUsage = run_measured(args, env=dict(os.environ, PYTHONPATH=str(REPO), **env), interval=0.1)
    sink_cpu = sink.cpu_seconds() - sink_cpu0
    final = watch.stop()
    summary = None
    for line in usage.output.splitlines():
        if line.startswith("{"):
            try:
                summary = json.loads(line)
            except ValueError:
                pass
    if usage.returncode != 0 or summary is None:
        sys.exit("load %s failed (exit %d):\n%s" % (tag, usage.returncode, usage.output[-4000:]))
    phases = phase_times(usage.output)
    transfer = phases.get("finalize", 0) - phases.get("transfer", 0)
    finalize = phases.get("end", 0) - phases.get("finalize", 0)
    state_bytes = dir_size(state)
    shutil.rmtree(state, ignore_errors=True)
    return {"tag": tag, "objects": summary["objects"], "wall": usage.wall, "cpu": usage.cpu,
            "peak_rss": usage.peak_rss, "state_bytes": state_bytes, "transfer": transfer, "finalize": finalize,
            "mean_in_flight": watch.mean_in_flight(phases.get("transfer", 0), phases.get("finalize", 0)),
            "peak_in_flight": final["peak_in_flight"], "sink_cpu": sink_cpu, "unsupported": final["unsupported"],
            "requests": final["requests"], "container": container}


def human(n: float) -> str:
    """Bytes as KiB, MiB or GiB."""
    if n >= 2**30:
        return "%.2f GiB" % (n / 2**30)
    return "%.0f MiB" % (n / 2**20) if n >= 2**20 else "%.0f KiB" % (n / 2**10)


# -- the runs ----------------------------------------------------------------------------------------

def single_node(tree: Path, base: Path, delays: List[float], env: Dict[str, str]) -> List[Dict]:
    """The tree on one node at each delay (*env*: the loader's switches)."""
    rows = []
    for delay in delays:
        with BlobSink(delay) as sink:
            row = run_load(sink, tree, base, "single-%g" % delay, [], env)
        row["delay"] = delay
        rows.append(row)
        print("  measured: single node, %.0f ms: %.0f objects/s" % (1000 * delay, row["objects"] / row["wall"]),
              flush=True)
    return rows


def dask_rows(tree: Path, base: Path, delay: float, workers: List[int], cap: int) -> List[Dict]:
    """The tree through --dask on LocalClusters of each size, each worker capped at *cap* in flight."""
    from distributed import Client, LocalCluster

    rows = []
    env = {"CLFSLOAD_MAX_IN_FLIGHT": str(cap)}
    for n in workers:
        with LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=":0",
                          env=env) as cluster, Client(cluster) as client:
            pids = list(client.run(os.getpid).values())
            cpu0 = sum(_proc_cpu(p) for p in pids)
            with BlobSink(delay) as sink:
                row = run_load(sink, tree, base, "dask%d" % n, ["--dask", cluster.scheduler_address], env)
            row["worker_cpu"] = sum(_proc_cpu(p) for p in pids) - cpu0
        row.update(delay=delay, workers=n, cap=cap)
        rows.append(row)
        print("  measured: Dask, %d workers, %.0f ms: %.0f objects/s" % (n, 1000 * delay, row["objects"] / row["wall"]),
              flush=True)
    return rows


def dirs_rows(tree: Path, base: Path, workers: int, units: int) -> Dict:
    """The many-directory tree through --dask at delay 0; the driver's CPU per unit above an empty load's."""
    from distributed import Client, LocalCluster

    empty = base / "empty"
    empty.mkdir(exist_ok=True)
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster, \
            Client(cluster) as client:
        pids = list(client.run(os.getpid).values())
        with BlobSink(0.0) as sink:
            baseline = run_load(sink, empty, base, "empty", ["--dask", cluster.scheduler_address], {})
            cpu0 = sum(_proc_cpu(p) for p in pids)
            row = run_load(sink, tree, base, "dirs", ["--dask", cluster.scheduler_address], {})
            row["worker_cpu"] = sum(_proc_cpu(p) for p in pids) - cpu0
    row.update(units=units, workers=workers, baseline_cpu=baseline["cpu"])
    return row


def _proc_cpu(pid: int) -> float:
    try:
        with open("/proc/%d/stat" % pid, "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# -- report ------------------------------------------------------------------------------------------

def single_table(rows: List[Dict], cores: int, cap: int) -> List[str]:
    """The single-node rows with their bound."""
    cpu_per_object = min(r["cpu"] / r["objects"] for r in rows)
    cpu_bound = cores / cpu_per_object
    out = ["single node (%d processes x min(uploads in flight, connections) = %d requests in flight at most):"
           % (cores, cap),
           "  %-8s %9s %9s %9s %11s %9s %9s %8s %8s %11s %9s %15s %8s" % (
               "delay", "objects", "objects/s", "TRANSFER/s", "CPU/object", "peak RSS", "state", "TRANSFER",
               "FINALIZE", "in flight", "sink CPU", "bound (which)", "of bound")]
    for r in rows:
        rtt = r["delay"]
        net_bound = cap / rtt if rtt else float("inf")
        bound = min(net_bound, cpu_bound)
        rate = r["objects"] / r["wall"]
        moving = r["objects"] / r["transfer"] if r["transfer"] else float("nan")
        out.append("  %-8s %9d %9.0f %10.0f %8.3f ms %9s %9s %7.1fs %7.1fs %5.1f/%-5d %8.0f%% %9.0f (%s) %8.2f" % (
            "%.0f ms" % (1000 * rtt), r["objects"], rate, moving, 1000 * r["cpu"] / r["objects"], human(r["peak_rss"]),
            human(r["state_bytes"]), r["transfer"], r["finalize"], r["mean_in_flight"], r["peak_in_flight"],
            100 * r["sink_cpu"] / r["wall"], bound, "net" if net_bound < cpu_bound else "CPU", moving / bound))
    out.append("  bound = min(cap / delay, %d cores / %.3f ms CPU per object = %.0f objects/s); objects/s over the "
               "whole run (start-up and FINALIZE included), TRANSFER/s over that phase (what 'of bound' compares); "
               "in flight: mean over TRANSFER / peak, at the sink; sink CPU: share of one core"
               % (cores, 1000 * cpu_per_object, cpu_bound))
    return out


def dask_table(rows: List[Dict]) -> List[str]:
    """The Dask rows and their ratio to one worker."""
    one = next((r for r in rows if r["workers"] == 1), None)
    out = ["Dask LocalCluster, one thread per worker, %d requests in flight per worker, %.0f ms per request:"
           % (rows[0]["cap"], 1000 * rows[0]["delay"]),
           "  %-8s %9s %10s %9s %11s %9s %15s %11s %11s %11s" % (
               "workers", "objects/s", "TRANSFER/s", "bound", "ratio to 1", "TRANSFER", "in flight", "driver CPU",
               "worker CPU", "CPU/object")]
    for r in rows:
        rate = r["objects"] / r["transfer"]
        bound = r["workers"] * r["cap"] / r["delay"]
        out.append("  %-8d %9.0f %10.0f %9.0f %11s %8.1fs %9.1f/%-5d %10.1fs %10.1fs %8.3f ms" % (
            r["workers"], r["objects"] / r["wall"], rate, bound,
            "%.2f" % (rate / (one["objects"] / one["transfer"])) if one else "-",
            r["transfer"], r["mean_in_flight"], r["peak_in_flight"], r["cpu"], r["worker_cpu"],
            1000 * (r["cpu"] + r["worker_cpu"]) / r["objects"]))
    return out


def dirs_table(r: Dict) -> List[str]:
    """The directory-unit row."""
    per_unit = (r["cpu"] - r["baseline_cpu"]) / r["units"]
    return ["directory units: %d directories of one file (+ their parents), --dask on %d workers, 0 ms:"
            % (r["units"], r["workers"]),
            "  %d units in %.1f s of TRANSFER = %.0f units/s; driver CPU %.1f s (%.1f s for an empty tree) = "
            "%.3f ms per unit; worker CPU %.1f s; peak RSS of the driver's tree %s; FINALIZE %.1f s"
            % (r["units"], r["transfer"], r["units"] / r["transfer"] if r["transfer"] else float("nan"), r["cpu"],
               r["baseline_cpu"], 1000 * per_unit, r["worker_cpu"], human(r["peak_rss"]), r["finalize"])]


def main(argv: Optional[List[str]] = None) -> None:
    """Build the trees, run the loads, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--files", type=int, default=1_000_000)
    parser.add_argument("--per-dir", type=int, default=100)
    parser.add_argument("--delays", default="0,20", help="ms per request, comma-separated")
    parser.add_argument("--workers", default="1,2,4")
    parser.add_argument("--worker-in-flight", type=int, default=8)
    parser.add_argument("--in-flight", type=int, default=0,
                        help="single node: requests in flight per process (CLFSLOAD_MAX_IN_FLIGHT; 0: the default)")
    parser.add_argument("--dirs", type=int, default=100_000, help="directories of the directory-unit tree")
    parser.add_argument("--skip", default="", help="comma-separated: single, dask, dirs, selftest")
    args = parser.parse_args(argv)
    compile_checkout()
    skip = set(filter(None, args.skip.split(",")))
    delays = [float(d) / 1000 for d in args.delays.split(",")]
    workers = [int(w) for w in args.workers.split(",")]
    cores = os.cpu_count() or 1
    print("wan_scale: %d cores, load average %s at the start" % (cores, " ".join("%.2f" % x for x in os.getloadavg())),
          flush=True)
    report: List[str] = []
    if "selftest" not in skip:
        with BlobSink(0.0) as sink:
            lines = sink_selftest(sink, seconds=3.0, connections=64, clients=1)
        print("\n".join(lines), flush=True)
        report += lines
    need = (args.files * 6000 if not {"single", "dask"} <= skip else 0) + (args.dirs * 8192 if "dirs" not in skip else 0)
    base = shm_base(need)
    try:
        if not {"single", "dask"} <= skip:
            t0 = time.perf_counter()
            files, dirs = make_files_tree(base / "tree", args.files, args.per_dir)
            print("tree: %d files in %d directories, %s, built in %.0f s" % (
                files, dirs, human(dir_size(base / "tree")), time.perf_counter() - t0), flush=True)
            if "single" not in skip:
                from clfsload.execute.pool import uploads_in_flight
                from clfsload.settings import Switches, default_upload_threads

                in_flight = uploads_in_flight(default_upload_threads(), args.in_flight or None)
                options = Switches().target_options(local=False, in_flight=in_flight)
                per_process = min(in_flight, options.max_connections if options else in_flight)
                env = {"CLFSLOAD_MAX_IN_FLIGHT": str(args.in_flight)} if args.in_flight else {}
                report += single_table(single_node(base / "tree", base, delays, env), cores, cores * per_process)
            if "dask" not in skip:
                report += dask_table(dask_rows(base / "tree", base, max(delays), workers, args.worker_in_flight))
            shutil.rmtree(base / "tree", ignore_errors=True)
        if "dirs" not in skip:
            t0 = time.perf_counter()
            units = make_dirs_tree(base / "dirs", args.dirs)
            print("tree: %d directory units built in %.0f s" % (units, time.perf_counter() - t0), flush=True)
            report += dirs_table(dirs_rows(base / "dirs", base, max(workers), units))
    finally:
        shutil.rmtree(base, ignore_errors=True)
    print("load average %s at the end" % " ".join("%.2f" % x for x in os.getloadavg()))
    print("\n".join(report))


if __name__ == "__main__":
    main()
