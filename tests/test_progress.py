"""What an operator sees: live bars on a terminal, log lines otherwise, a JSON summary for scripts."""

import json
import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

from _load import REPO, cli


def _tree(root: Path, files: int = 300) -> Path:
    for d in range(3):
        sub = root / ("d%d" % d)
        sub.mkdir(parents=True)
        for f in range(files // 3):
            (sub / ("f%03d" % f)).write_bytes(b"x" * (100 + f))
    return root


def _run_on_a_terminal(args, timeout: float = 120) -> tuple:
    """Run ``python -m clfsload ARGS`` with a pseudo-terminal as stdout and stderr."""
    master, slave = pty.openpty()
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen([sys.executable, "-m", "clfsload", *args], stdout=slave, stderr=slave,
                            stdin=subprocess.DEVNULL, cwd=str(REPO), env=env)
    os.close(slave)
    out = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 1)
        if not ready:
            if proc.poll() is not None:
                break
            continue
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        out += chunk
    os.close(master)
    return proc.wait(timeout=30), out.decode(errors="replace")


def test_live_bars_on_a_terminal(tmp_path):
    src = _tree(tmp_path / "src")
    (tmp_path / "out").mkdir()
    code, screen = _run_on_a_terminal(["--new", str(tmp_path / "state"), str(src), "file:" + str(tmp_path / "out"),
                                       "c", "-", "--dry_run"])
    assert code == 0, screen
    # Bars for the transfer, redrawn in place, complete against the dry run's totals, with a rate.
    assert "transfer  objects:" in screen and "transfer  data" in screen
    assert "\r" in screen and "\x1b[A" in screen  # redrawn, not appended
    assert "304/304" in screen  # 300 files, 3 directories and the root, out of the dry run's count
    assert "100%" in screen and "obj/s" in screen
    # The log still reaches the terminal, above the bars, and the run ends with its summary.
    assert "INF begin phase transfer" in screen and "CLFSLoad succeeded" in screen
    assert "Traceback" not in screen


def test_plain_lines_when_not_a_terminal(tmp_path):
    src = _tree(tmp_path / "src", 30)
    (tmp_path / "out").mkdir()
    done = cli("--new", str(tmp_path / "state"), str(src), "file:" + str(tmp_path / "out"), "c", "-", "--dry_run")
    assert done.returncode == 0
    assert "objects:" not in done.stdout and "\r" not in done.stdout
    assert "INF transfer elapsed=" in done.stdout and "(100.0%)" in done.stdout


def test_json_summary_for_scripts(tmp_path):
    src = _tree(tmp_path / "src", 30)
    os.symlink("y" * 1100, src / "too-long")
    (tmp_path / "out").mkdir()
    args = [str(tmp_path / "state"), str(src), "file:" + str(tmp_path / "out"), "c", "-", "--output", "json"]
    failed = cli("--new", *args)
    summary = json.loads(failed.stdout)  # stdout holds the one object, nothing else
    assert failed.returncode == 1 and summary["exit_code"] == 1 and summary["status"] == "Failed"
    assert summary["problems"] == 1 and summary["problem_paths"] == [str(src / "too-long")]
    assert summary["published"] is False and "not published" in summary["message"]
    assert "ERR" in failed.stderr  # the log went to stderr
    os.unlink(src / "too-long")
    done = cli(*args)
    summary = json.loads(done.stdout)
    assert done.returncode == 0 and summary["status"] == "Completed" and summary["published"] is True
    assert summary["objects"] == 34 and summary["phase"] == "DONE"
