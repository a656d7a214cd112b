"""Run the real loader with a test hook around each directory scan.

Some source faults happen between two steps of one unit: an entry that
vanishes or changes type after its directory was scanned and before it is
read, a source root swapped while the load runs, a state directory that
fills up. To make them happen at the same point on every run, this module
runs ``clfsload.cli.main.main`` with :func:`clfsload.work.transfer.scan_directory`
wrapped: a hook file (Python) may define ``before_scan(path: bytes)`` and
``after_scan(path: bytes)``, called around every scan with the directory's
path. The hook lives in the test, not in the product.

Run as a script: ``python tests/_inject.py HOOK.py CLFSLOAD-ARGS...``. The
units run in the driver process (``--processes 0``), where the wrapper is
installed; :func:`inject_cli` adds that option.
"""

import os
import runpy
import subprocess
import sys
from pathlib import Path
from typing import Optional

REPO = Path(__file__).resolve().parents[1]


def inject_cli(hook: str, *args: str, hook_dir: Path, env: Optional[dict] = None,
               timeout: float = 120) -> subprocess.CompletedProcess:
    """Run the loader with ``hook`` (Python source) around each scan; capture its output."""
    hook_dir.mkdir(parents=True, exist_ok=True)
    path = hook_dir / ("hook%d.py" % len(list(hook_dir.glob("hook*.py"))))
    path.write_text(hook)
    full_env = dict(os.environ)
    full_env["PYTHONPATH"] = str(REPO) + os.pathsep + full_env.get("PYTHONPATH", "")
    if env:
        full_env.update(env)
    return subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), str(path), *args, "--processes", "0"],
        cwd=str(REPO), env=full_env, capture_output=True, text=True, timeout=timeout,
    )


def _main() -> int:
    hook = runpy.run_path(sys.argv[1])
    import clfsload.work.transfer as transfer

    original = transfer.scan_directory

    def scan_directory(path, *args):
        if "before_scan" in hook:
            hook["before_scan"](path)
        found = original(path, *args)
        if "after_scan" in hook:
            hook["after_scan"](path)
        return found

    transfer.scan_directory = scan_directory
    from clfsload.cli.main import main

    return main(sys.argv[2:])


if __name__ == "__main__":
    sys.exit(_main())
