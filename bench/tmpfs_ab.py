#!/usr/bin/env python3
"""This checkout's loader against another's, side by side, from tmpfs into a folder on tmpfs.

usage: python bench/tmpfs_ab.py --baseline CHECKOUT [--sets small,large] [--small N] [--dirs N]
                                [--large-files N] [--large-mib N] [--repeat N]

The "nothing slower on tmpfs" check of issue 19: a source that answers in
microseconds, where a read pipeline can only cost. Builds the small set
(N files of 1-8 KiB in DIRS directories, as ``bench/load_small_files.py``)
and the large set (a few big files, half random and half text, as
``bench/source_latency.py``) under /dev/shm, then loads each with this
checkout's ``CLFSLoad.py`` and with CHECKOUT's (its own ``.venv``),
alternating, REPEAT times each, every run into a fresh folder and state
directory. Prints one markdown table of medians: files/s, MB/s, the
loader's CPU per file over its whole process tree (``bench/procwatch.py``:
the forkserver's workers included) and peak RSS, with this checkout's
ratio to the baseline.
"""

import argparse
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Dict, List, Optional

from _common import REPO, compile_checkout
from procwatch import GroupUsage
from source_latency import _rate, load_tree, make_sets, tree_size


def main(argv: Optional[List[str]] = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--baseline", type=Path, required=True, metavar="CHECKOUT",
                   help="the other checkout (e.g. /work/main), run with CHECKOUT/.venv/bin/python")
    p.add_argument("--sets", default="small,large", help="small,large")
    p.add_argument("--small", type=int, default=20000, help="small files (1-8 KiB)")
    p.add_argument("--dirs", type=int, default=200, help="directories of the small set")
    p.add_argument("--large-files", type=int, default=4)
    p.add_argument("--large-mib", type=int, default=128, help="MiB per large file")
    p.add_argument("--repeat", type=int, default=5, help="runs of each side per set; the table shows medians")
    args = p.parse_args(argv)
    baseline = args.baseline.resolve()
    compile_checkout()
    compile_checkout(baseline)
    base = Path(tempfile.mkdtemp(prefix="tmpfs-ab-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None))
    load_before = os.getloadavg()[0]
    rows: List[str] = []
    sides = [("this checkout", REPO), (baseline.name, baseline)]
    try:
        for name, tree in make_sets(base, args):
            files, nbytes = tree_size(tree)
            seen: Dict[str, List[GroupUsage]] = {label: [] for label, _ in sides}
            for _ in range(args.repeat):  # alternated, so a busy spell hits both sides alike
                for label, repo in sides:
                    usage = load_tree(tree, base / "scratch", repo)
                    seen[label].append(usage)
                    print("%s, %s: %.2f s, %.2f s CPU" % (name, label, usage.wall, usage.cpu), file=sys.stderr,
                          flush=True)
            walls = {label: statistics.median(u.wall for u in runs) for label, runs in seen.items()}
            for label, _ in sides:
                runs = seen[label]
                wall, cpu = walls[label], statistics.median(u.cpu for u in runs)
                rows.append("| %s | %s | %s | %.1f | %.3f | %d | %.2f |" % (
                    name, label, _rate(files / wall), nbytes / wall / 1e6, 1000 * cpu / files,
                    max(u.peak_rss for u in runs) >> 20, walls[sides[1][0]] / wall))
    finally:
        shutil.rmtree(base, ignore_errors=True)
    print("| set | loader | files/s | MB/s | CPU ms/file | peak RSS MiB | speed vs %s |" % sides[1][0])
    print("|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    print("\n%d cores, load average %.1f before and %.1f after; medians of %d alternated runs." % (
        os.cpu_count(), load_before, os.getloadavg()[0], args.repeat))


if __name__ == "__main__":
    main()
