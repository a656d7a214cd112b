#!/usr/bin/env python3
"""Soak: the kill -9 campaign for as many kill points as asked.

    python tests/soak/kill_campaign.py --count 1000 --seed 7

Prints one summary line; exits 1 (keeping the failing campaign's folder and
printing where) if any campaign lost or left anything. See tests/_campaign.py.
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE.parents[1])]

from _campaign import run_campaigns  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=500, help="kill points to survive (default 500)")
    parser.add_argument("--seed", type=int, default=int(time.time()), help="random seed (default: the time)")
    parser.add_argument("--dir", default=None, help="work folder (default: a new one under /tmp)")
    args = parser.parse_args()
    base = Path(args.dir or tempfile.mkdtemp(prefix="clfsload-soak-"))
    started = time.monotonic()
    report = run_campaigns(base, args.seed, args.count)
    print("seed %d: %s (%.0f s)" % (args.seed, report.line(), time.monotonic() - started))
    for failure in report.failures:
        print("FAILED:", failure)
    if report.failures:
        print("work folder kept:", base)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
