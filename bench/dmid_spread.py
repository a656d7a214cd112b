"""How evenly a load spreads directories over the 48 directory managers (FMT §2.2).

Builds a tree of ``--dirs`` directories (``--fanout`` to a parent, one small
file in each), loads it into a local folder, single node and, with
``--dask N``, on a LocalCluster of N workers, and prints per run the number
of directories, the least and most used dmid values (the reference: each
used ``n // 48`` or ``n // 48 + 1`` times), how many of the 48 are used,
the handle-rule violations found (:mod:`clfsload.clfs.fh_rules`), the
load's wall time and its CPU over the whole process group (``procwatch``). ``--links`` hard-links every file from a second directory
and loads with ``--preserve_hardlinks 1`` (the hard-link-heavy case)::

    python bench/dmid_spread.py --dirs 10000 --dask 4
    python bench/dmid_spread.py --dirs 100000
"""

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def make_tree(root: Path, dirs: int, fanout: int, links: bool = False) -> None:
    """``dirs`` directories, breadth first, ``fanout`` to a parent, a file in each (``links``: and a
    hard link to it from another directory)."""
    made = [root]
    root.mkdir(parents=True)
    index = 0
    while len(made) - 1 < dirs:
        parent = made[index]
        for k in range(fanout):
            if len(made) - 1 >= dirs:
                break
            sub = parent / ("d%03d" % k)
            sub.mkdir()
            (sub / "f").write_bytes(b"x")
            made.append(sub)
        index += 1
    if links:
        for k, sub in enumerate(made[1:]):
            os.link(sub / "f", made[(k * 7919) % len(made)] / ("l%d" % k))


def histogram(folder: Path):
    """(directories, min, max, ids used, violations) of the container in ``folder``."""
    from clfsload.clfs.container import Container, FolderSource
    from clfsload.clfs.fh_rules import dmid_histogram, handle_rule_violations

    container = Container(FolderSource(str(folder)))
    counts = dmid_histogram(container)
    per_id = [counts.get(d, 0) for d in range(48)]
    violations = handle_rule_violations(container, check_spread=False)
    return sum(per_id), min(per_id), max(per_id), sum(1 for c in per_id if c), len(violations)


def load(base: Path, tree: Path, tag: str, extra):
    """Load ``tree`` into a fresh folder; (wall seconds, CPU seconds of the whole process group)."""
    from procwatch import run_measured

    out = base / ("out-" + tag)
    out.mkdir()
    done = run_measured([sys.executable, "-m", "clfsload", "--new", str(base / ("state-" + tag)), str(tree),
                         "file:" + str(out), "c", "-", *extra], cwd=str(REPO),
                        env=dict(os.environ, PYTHONPATH=str(REPO)))
    if done.returncode != 0:
        raise SystemExit("load %s failed: %s" % (tag, done.output[-2000:]))
    return done.wall, done.cpu


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dirs", type=int, default=10000)
    parser.add_argument("--fanout", type=int, default=10)
    parser.add_argument("--dask", type=int, default=0, metavar="N", help="also on a LocalCluster of N workers")
    parser.add_argument("--links", action="store_true",
                        help="every file hard-linked from another directory, loaded with --preserve_hardlinks 1")
    parser.add_argument("--work", default=None, help="scratch folder (default: a temporary one on /dev/shm)")
    args = parser.parse_args(argv)
    base = Path(tempfile.mkdtemp(prefix="dmid-", dir=args.work or ("/dev/shm" if os.path.isdir("/dev/shm") else None)))
    try:
        tree = base / "tree"
        make_tree(tree, args.dirs, args.fanout, args.links)
        options = ["--preserve_hardlinks", "1"] if args.links else []
        runs = [("single node", "single", options)]
        cluster = None
        if args.dask:
            from distributed import LocalCluster

            cluster = LocalCluster(n_workers=args.dask, threads_per_worker=1, processes=True,
                                   dashboard_address=":0")
            runs.append(("Dask, %d workers" % args.dask, "dask", options + ["--dask", cluster.scheduler_address]))
        print("| run | directories | min per dmid | max per dmid | dmids used | rule violations | wall s | CPU s |")
        print("|---|---|---|---|---|---|---|---|")
        try:
            for label, tag, extra in runs:
                wall, cpu = load(base, tree, tag, extra)
                n, low, high, used, bad = histogram(base / ("out-" + tag) / "c")
                print("| %s | %d | %d | %d | %d | %d | %.1f | %.1f |" % (label, n, low, high, used, bad, wall, cpu),
                      flush=True)
        finally:
            if cluster is not None:
                cluster.close()
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
