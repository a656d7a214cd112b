"""A load on pure-Python twins says so: one WARNING naming the missing library and the fixing command.

pip hides the build's own message, so an install on a machine without
liblz4-dev / libxxhash-dev silently gets a *mixed* backend. The run must say
it, and ``--output json`` must name the backend that ran.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from _load import REPO

import clfsload._native as native

# Runs the command line with the compiled twins of the named topics made unimportable.
_WITHOUT = """
import sys
from importlib.abc import MetaPathFinder

class Missing(MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name in {%s}:
            raise ImportError("no module named " + name)
        return None

sys.meta_path.insert(0, Missing())
from clfsload.cli.main import main
sys.exit(main(sys.argv[1:]))
"""


def _load_without(topics, tmp_path: Path, *extra: str) -> subprocess.CompletedProcess:
    (tmp_path / "src" / "d").mkdir(parents=True)
    (tmp_path / "src" / "d" / "f").write_bytes(b"data\n")
    blocked = ", ".join(repr("clfsload._native.%s_c" % t) for t in topics)
    args = ["--new", str(tmp_path / "state"), str(tmp_path / "src"), "file:" + str(tmp_path / "out"), "c", "-", *extra]
    env = {"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}
    return subprocess.run([sys.executable, "-c", _WITHOUT % blocked, *args], cwd=str(REPO), env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.c_extension
def test_a_mixed_backend_logs_one_warning_naming_the_library_and_the_fix(tmp_path):
    done = _load_without(["envelope"], tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    warnings = [line for line in done.stdout.splitlines() if " WAR " in line]
    assert len(warnings) == 1, done.stdout
    assert "mixed backend" in warnings[0] and "liblz4" in warnings[0]
    assert "apt-get install pkg-config liblz4-dev" in warnings[0] and "pip install --force-reinstall" in warnings[0]
    assert "clfsload version 1.0.25 (mixed backend)" in done.stdout


@pytest.mark.c_extension
def test_output_json_names_the_backend_that_ran(tmp_path):
    done = _load_without(["checksum"], tmp_path, "--output", "json")
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads(done.stdout)["backend"] == "mixed"
    assert "libxxhash-dev" in done.stderr


def test_no_warning_when_every_twin_is_compiled_or_the_pure_ones_were_asked_for(monkeypatch):
    monkeypatch.setattr(native, "LOADED", {t: "cython" for t in native.TOPICS})
    assert native.backend_warning() == ""
    monkeypatch.setattr(native, "LOADED", {t: "python" for t in native.TOPICS})
    monkeypatch.setattr(native, "NO_EXTENSIONS", True)
    assert native.backend_warning() == ""
    monkeypatch.setattr(native, "NO_EXTENSIONS", False)
    assert "build-essential" in native.backend_warning()  # no twin at all: no compiler at build time


def test_the_library_list_is_the_build_configuration():
    sys.path.insert(0, str(REPO))
    try:
        import gen_setup
    finally:
        sys.path.remove(str(REPO))
    from_build = {m.topic: (m.pkgconfig[0], m.debian[0]) for m in gen_setup.NATIVE_MODULES if m.pkgconfig}
    assert from_build == native.LIBRARIES
