"""What every soak campaign script shares: its common options and how it ends."""

import argparse
import tempfile
import time
from pathlib import Path


def parser(doc: str, count_help: str, count_default: int) -> argparse.ArgumentParser:
    """The options every campaign takes: --count, --seed (default: the time), --dir."""
    p = argparse.ArgumentParser(description=doc.splitlines()[0])
    p.add_argument("--count", type=int, default=count_default, help="%s (default %d)" % (count_help, count_default))
    p.add_argument("--seed", type=int, default=int(time.time()), help="random seed (default: the time)")
    p.add_argument("--dir", default=None, help="work folder (default: a new one under /tmp)")
    return p


def work_folder(given, prefix: str) -> Path:
    """``--dir``, or a new folder under /tmp."""
    return Path(given or tempfile.mkdtemp(prefix=prefix))


def finish(report, seed: int, started: float, base: Path) -> int:
    """Print the summary line and each failure; the exit status (1 keeps ``base`` and says where)."""
    print("seed %d: %s (%.0f s)" % (seed, report.line(), time.monotonic() - started))
    for failure in report.failures:
        print("FAILED:", failure)
    if report.failures:
        print("work folder kept:", base)
        return 1
    return 0
