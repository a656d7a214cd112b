#!/usr/bin/env python3
"""Soak: hostile containers, as many single mutations of the golden containers as asked.

    python tests/soak/hostile_campaign.py --count 2000 --seed 7 [--kind bitflip ...]

Prints the outcome table (per kind, per command: clean error / exit 0 /
traceback / timeout) and every run that broke a rule; exits 1 if any did.
See tests/_hostile.py.
"""

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE.parents[1])]

import _hostile  # noqa: E402
from _trees import GOLDEN, MKTREES  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1000, help="mutations to run (default 1000)")
    parser.add_argument("--seed", type=int, default=int(time.time()), help="random seed (default: the time)")
    parser.add_argument("--kind", action="append", choices=sorted(_hostile.KINDS), help="only these kinds")
    parser.add_argument("--workers", type=int, default=0, help="parallel mutations (default: the CPU count)")
    parser.add_argument("--dir", default=None, help="work folder (default: a new one under /tmp)")
    args = parser.parse_args()
    base = Path(args.dir or tempfile.mkdtemp(prefix="clfsload-hostile-"))
    trees = base / "trees"
    subprocess.run([sys.executable, str(MKTREES), str(trees)], check=True, capture_output=True)
    started = time.monotonic()
    results = _hostile.run_campaign(GOLDEN, trees, base, args.seed, args.count, args.workers, args.kind)
    print("seed %d, %d mutations (%.0f s)" % (args.seed, len(results), time.monotonic() - started))
    print(_hostile.table(results))
    bad = [r for r in results if r.violations]
    for r in bad:
        print("FAILED: %s on %s (%s): %s" % (r.kind, r.golden, r.detail, "; ".join(r.violations)))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
