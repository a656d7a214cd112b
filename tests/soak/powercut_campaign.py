#!/usr/bin/env python3
"""Soak: the power-cut campaign for as many cuts as asked, on ``file:`` and (optionally) Azurite.

    python tests/soak/powercut_campaign.py --count 300 --azurite 100 --seed 7

Needs /dev/fuse (and for ``--azurite``, azurite-blob: ``bash .ci/install-azurite``).
Prints one summary line (cuts survived/tried by point, per target); exits 1,
keeping the failing campaign's folder and printing where, if any campaign
lost or left anything. See tests/_powercut.py.
"""

import shutil
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE.parents[1])]

from _powercut import Azure, run_powercut_campaigns  # noqa: E402
from bench._common import AzuriteProcess, find_azurite, wait_answering  # noqa: E402
from bench.fusefs.mount import fuse_available  # noqa: E402
from soak._soak import finish, parser, work_folder  # noqa: E402


def main() -> int:
    options = parser(__doc__, "cuts against a file: target", 200)
    options.add_argument("--azurite", type=int, default=0, help="cuts against Azurite (default 0)")
    args = options.parse_args()
    why = fuse_available()
    if why:
        print(why)
        return 1
    base = work_folder(args.dir, "clfsload-powercut-soak-")
    started = time.monotonic()
    process = None
    azure = None
    try:
        if args.azurite:
            binary = find_azurite()
            if binary is None:
                print("azurite-blob not found; run bash .ci/install-azurite")
                return 1
            sys.path.insert(0, str(HERE.parent))
            from azurite import ACCOUNT_NAME, Azurite  # tests/azurite.py: containers and the connection string

            process = AzuriteProcess(binary, base / "azurite-data")
            url = process.wait_listening(60)
            endpoint = "%s/%s" % (url, ACCOUNT_NAME)
            wait_answering(endpoint + "?comp=list", 30)
            az = Azurite(endpoint=endpoint, port=int(url.rsplit(":", 1)[1]), location=base / "azurite-data")
            azure = Azure(az.endpoint, az.connection_string, az.create_container, az.make_sas)
        cuts = {"file": args.count}
        if args.azurite:
            cuts["azurite"] = args.azurite
        report = run_powercut_campaigns(base, args.seed, cuts, azure=azure)
    finally:
        if process is not None:
            process.stop()
            shutil.rmtree(base / "azurite-data", ignore_errors=True)
    return finish(report, args.seed, started, base)


if __name__ == "__main__":
    sys.exit(main())
