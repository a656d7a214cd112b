#!/usr/bin/env python3
"""Soak: the kill -9 campaign for as many kill points as asked.

    python tests/soak/kill_campaign.py --count 1000 --seed 7

Prints one summary line; exits 1 (keeping the failing campaign's folder and
printing where) if any campaign lost or left anything. See tests/_campaign.py.
"""

import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE.parents[1])]

from _campaign import run_campaigns  # noqa: E402
from soak._soak import finish, parser, work_folder  # noqa: E402


def main() -> int:
    args = parser(__doc__, "kill points to survive", 500).parse_args()
    base = work_folder(args.dir, "clfsload-soak-")
    started = time.monotonic()
    return finish(run_campaigns(base, args.seed, args.count), args.seed, started, base)


if __name__ == "__main__":
    sys.exit(main())
