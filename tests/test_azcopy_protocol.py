"""The loader under AzCopy: a stand-in for ``azcopy load clfs`` (AzCopy v10.5.0 to v10.14.1) drives it.

AzCopy finds ``CLFSLoad.py`` on PATH and runs it with this argv::

    STATE SOURCE ACCOUNT CONTAINER SAS --azcopy --dry_run --retry_errors=1
        --compression=C --preserve_hardlinks=0|1 --log_level=L
        [--worker_thread_count=N] [--retry_errors=N] [--new]

It reads the child's **stdout** only (stderr goes nowhere) line by line, and
acts on the first tag a line *contains*, in this order (its
``cmd/loadOutputTranslation.go``):

* ``AZCOPY-FINAL:`` decoded into ``clfsSummary``; a line that does not decode
  makes AzCopy print "Unable to handle the output ..." and exit 1; one that
  does makes it print the summary and **exit 0 at once, whatever the status**;
* ``AZCOPY-CONFIG:`` and ``AZCOPY-INFO:``: shown when they decode, ignored when not;
* ``AZCOPY:`` decoded into ``clfsProgress``; failing to decode: exit 1;
* any other line containing ``ERR``: what follows ``ERR`` is shown as an
  ``INFO:`` message.

Without a final line AzCopy waits for the child: "Job failed due to extension
error: exit status N" and exit 1 when it failed, exit 0 otherwise.

The tag is stripped as a *prefix*, so a tag in the middle of a line fails to
decode. Go's ``encoding/json`` is strict about types: an ``int`` field takes
a JSON integer only (``1.0`` or ``1e3`` fail), a ``float64`` any number, a
``string`` a string, a ``bool`` true/false; ``null`` leaves any field at its
zero value; unknown keys are ignored. :func:`go_decode` does the same.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import pytest

from _load import REPO

GO_INT64 = (-(2**63), 2**63 - 1)

#: AzCopy's Go structs, field by field: JSON key -> Go type
CLFS_INITIALIZATION = {"version": "string", "compression": "string", "new": "bool", "preserve_hardlinks": "bool"}
CLFS_INFO = {"phase": "string"}
CLFS_PROGRESS = {
    "elapsed": "float64", "files_completed_failed": "int", "files_completed_success": "int",
    "files_pending": "int", "files_skipped": "int", "files_total": "int", "pct_complete": "float64",
    "phase": "string", "throughput_Mbps": "float64", "throughput_delta_secs": "float64",
    "time_eta": "float64", "time_report": "float64",
}
CLFS_SUMMARY = {
    "elapsed": "float64", "files_completed_failed": "int", "files_completed_success": "int",
    "files_skipped": "int", "files_total": "int", "final_job_status": "string", "total_bytes_transferred": "int",
}

TAG_ERR, TAG_CONFIG, TAG_INFO, TAG_PROGRESS, TAG_FINAL = "ERR", "AZCOPY-CONFIG:", "AZCOPY-INFO:", "AZCOPY:", "AZCOPY-FINAL:"
UNABLE = "Unable to handle the output from CLFS extension, please contact the dev team through Github."


class GoDecodeError(ValueError):
    """The line would not decode into AzCopy's struct."""


class _FloatLiteral(float):
    """A JSON number written with a fraction or an exponent (Go cannot put it in an int)."""


def _no_constant(name: str):
    raise GoDecodeError("invalid character in JSON: %s" % name)


def go_decode(text: str, struct: Dict[str, str]) -> Dict[str, object]:
    """Decode ``text`` as Go's ``json.Unmarshal`` into a struct of ``struct``'s fields would; raise GoDecodeError."""
    try:
        value = json.loads(text, parse_float=_FloatLiteral, parse_int=int, parse_constant=_no_constant)
    except ValueError as exc:
        raise GoDecodeError("not JSON: %s" % exc) from None
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise GoDecodeError("cannot unmarshal %s into a Go struct" % type(value).__name__)
    decoded: Dict[str, object] = {}
    for key, go_type in struct.items():
        if key not in value or value[key] is None:
            continue  # absent or null: the zero value
        item = value[key]
        if go_type == "int":
            ok = type(item) is int and GO_INT64[0] <= item <= GO_INT64[1]
        elif go_type == "float64":
            ok = type(item) in (int, _FloatLiteral)
        elif go_type == "bool":
            ok = type(item) is bool
        else:
            ok = type(item) is str
        if not ok:
            raise GoDecodeError("cannot unmarshal %r into Go struct field %s of type %s" % (item, key, go_type))
        decoded[key] = item
    return decoded


def _go_v(value: object) -> str:
    """Go's %v for the values these lines hold."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value == int(value) and abs(value) < 1e21:
        return str(int(value))
    return str(value)


def _summary_text(s: Dict[str, object]) -> List[str]:
    return [
        "Elapsed Time (Minutes): %.4f" % (float(s.get("elapsed", 0)) / 60),
        "Total Number Of Transfers: %s" % s.get("files_total", 0),
        "Number of Transfers Completed: %s" % s.get("files_completed_success", 0),
        "Number of Transfers Failed: %s" % s.get("files_completed_failed", 0),
        "Number of Transfers Skipped: %s" % s.get("files_skipped", 0),
        "TotalBytesTransferred: %s" % s.get("total_bytes_transferred", 0),
        "Final Job Status: %s" % s.get("final_job_status", ""),
    ]


@dataclass
class Verdict:
    """What AzCopy did with the child's stdout."""

    exit_code: int
    screen: List[str] = field(default_factory=list)
    summary: Optional[Dict[str, object]] = None
    progress: List[Dict[str, object]] = field(default_factory=list)
    child_exit: Optional[int] = None
    stdout: List[str] = field(default_factory=list)

    def info(self) -> List[str]:
        """The lines AzCopy shows as ``INFO:`` (ERR lines, phases, configuration)."""
        return [line[len("INFO: "):] for line in self.screen if line.startswith("INFO: ")]


class AzCopy:
    """Reads one line at a time as AzCopy's parser does; ``done`` once AzCopy would exit."""

    def __init__(self) -> None:
        self.verdict = Verdict(exit_code=-1)
        self.done = False

    def _exit(self, code: int) -> None:
        self.verdict.exit_code = code
        self.done = True

    def feed(self, line: str) -> None:
        v = self.verdict
        v.stdout.append(line)
        if TAG_FINAL in line:
            try:
                v.summary = go_decode(line[len(TAG_FINAL):] if line.startswith(TAG_FINAL) else line, CLFS_SUMMARY)
            except GoDecodeError as exc:
                v.screen.append("ERROR: %s (%s)" % (UNABLE, exc))
                return self._exit(1)
            v.screen.extend(_summary_text(v.summary))
            return self._exit(0)
        if TAG_CONFIG in line:
            try:
                c = go_decode(line[len(TAG_CONFIG):] if line.startswith(TAG_CONFIG) else line, CLFS_INITIALIZATION)
            except GoDecodeError:
                return  # nice to have: ignored
            v.screen.append("INFO: CLFSLoad Extension version: %s" % c.get("version", ""))
            v.screen.append("INFO: CLFSLoad Extension configurations: compression type=%s, preserve hard links=%s"
                            % (c.get("compression", ""), _go_v(c.get("preserve_hardlinks", False))))
            if c.get("new"):
                v.screen.append("INFO: Starting a new job.")
        elif TAG_INFO in line:
            try:
                i = go_decode(line[len(TAG_INFO):] if line.startswith(TAG_INFO) else line, CLFS_INFO)
            except GoDecodeError:
                return
            v.screen.append("INFO: %s phase has started." % i.get("phase", ""))
        elif TAG_PROGRESS in line:
            try:
                p = go_decode(line[len(TAG_PROGRESS):] if line.startswith(TAG_PROGRESS) else line, CLFS_PROGRESS)
            except GoDecodeError as exc:
                v.screen.append("ERROR: %s (%s)" % (UNABLE, exc))
                return self._exit(1)
            v.progress.append(p)
            v.screen.append("%.1f %%, %s Done, %s Failed, %s Pending, %s Skipped, %s Total, Throughput (Mb/s): %s" % (
                float(p.get("pct_complete", 0)), p.get("files_completed_success", 0), p.get("files_completed_failed", 0),
                p.get("files_pending", 0), p.get("files_skipped", 0), p.get("files_total", 0),
                _go_v(p.get("throughput_Mbps", 0))))
        elif TAG_ERR in line:
            parts = line.split(TAG_ERR)
            v.screen.append("INFO: " + parts[1].strip())

    def child_ended(self, code: int) -> None:
        """The child's stdout closed without a final line."""
        self.verdict.child_exit = code
        if not self.done:
            if code != 0:
                self.verdict.screen.append("ERROR: Job failed due to extension error: exit status %d" % code)
                self._exit(1)
            else:
                self._exit(0)


def azcopy_argv(state: Path, source: Path, account: str, container: str, sas: str, *, new: bool,
                compression: str = "LZ4", hardlinks: int = 0, log_level: str = "INFO",
                extra: Sequence[str] = ()) -> List[str]:
    """The child's argv exactly as AzCopy's ``cook()`` builds it."""
    argv = [str(state), str(source), account, container, sas, "--azcopy", "--dry_run", "--retry_errors=1",
            "--compression=%s" % compression, "--preserve_hardlinks=%d" % hardlinks, "--log_level=%s" % log_level]
    argv.extend(extra)
    if new:
        argv.append("--new")
    return argv


def play(argv: List[str], *, prefix: Sequence[str] = (), env: Optional[dict] = None, timeout: float = 180,
         on_line: Optional[Callable[[str, subprocess.Popen], None]] = None) -> Verdict:
    """Run ``CLFSLoad.py ARGV`` under the AzCopy stand-in; returns its verdict (the child is always reaped)."""
    full_env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    full_env.update(env or {})
    command = list(prefix or [sys.executable]) + [str(REPO / "CLFSLoad.py")] + argv
    proc = subprocess.Popen(command, cwd=str(REPO), env=full_env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    azcopy = AzCopy()
    deadline = time.monotonic() + timeout
    try:
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = raw.rstrip("\n")
            if not azcopy.done:
                azcopy.feed(line)
                if on_line is not None:
                    on_line(line, proc)
            else:
                azcopy.verdict.stdout.append(line)  # AzCopy has gone; kept for the assertion messages
            if time.monotonic() > deadline:
                pytest.fail("the load did not end within %.0fs" % timeout)
        code = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    azcopy.verdict.child_exit = code
    azcopy.child_ended(code)
    return azcopy.verdict


def _tree(root: Path, dirs: int = 2, files: int = 3) -> Path:
    for d in range(dirs):
        sub = root / ("d%03d" % d)
        sub.mkdir(parents=True, exist_ok=True)
        for f in range(files):
            (sub / ("f%03d" % f)).write_bytes(b"%d-%d\n" % (d, f) * (1 + f % 7))
    return root


def _source_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def _directories(root: Path) -> int:
    return 1 + sum(1 for p in root.rglob("*") if p.is_dir())


def _local(tmp_path: Path, source: Path, *, new: bool = True, state: str = "state", **options) -> Verdict:
    out = tmp_path / "out"
    out.mkdir(exist_ok=True)  # AzCopy's targets are containers that exist
    return play(azcopy_argv(tmp_path / state, source, "file:" + str(out), "c", "-", new=new, **options))


def _why(v: Verdict) -> str:
    return "\n".join(v.stdout[-40:])


# --- a clean load, and a resume of a finished one ---------------------------------------------


def test_clean_load_shows_the_phases_the_configuration_and_a_completed_summary(tmp_path):
    source = _tree(tmp_path / "src")
    v = _local(tmp_path, source)
    assert v.exit_code == 0 and v.summary is not None, _why(v)
    info = v.info()
    assert info.index("Init phase has started.") < info.index("CLFSLoad Extension version: 1.0.25"), info
    assert "CLFSLoad Extension configurations: compression type=LZ4, preserve hard links=false" in info
    assert "Starting a new job." in info
    assert info.index("Transfer phase has started.") < info.index("Finalize phase has started."), info
    objects = 1 + sum(1 for _ in source.rglob("*"))
    assert v.summary["final_job_status"] == "Completed"
    assert v.summary["files_total"] == v.summary["files_completed_success"] == objects
    assert v.summary["files_completed_failed"] == 0
    # the original's count: the file bytes and 4,096 per directory
    assert v.summary["total_bytes_transferred"] == _source_bytes(source) + 4096 * _directories(source)
    assert "Final Job Status: Completed" in v.screen
    assert not [line for line in v.screen if line.startswith("ERROR")], v.screen


def test_resume_of_a_finished_job_is_completed_again(tmp_path):
    source = _tree(tmp_path / "src")
    assert _local(tmp_path, source).exit_code == 0
    v = _local(tmp_path, source, new=False)
    assert v.exit_code == 0 and v.summary is not None, _why(v)
    assert v.summary["final_job_status"] == "Completed"
    assert "Starting a new job." not in v.info()
    assert v.child_exit == 0


def test_hard_links_show_reconcile_then_cleanup(tmp_path):
    source = _tree(tmp_path / "src")
    os.link(source / "d000" / "f000", source / "d001" / "again")
    v = _local(tmp_path, source, hardlinks=1)
    assert v.exit_code == 0 and v.summary["final_job_status"] == "Completed", _why(v)
    phases = [line for line in v.info() if line.endswith(" phase has started.")]
    assert phases == ["%s phase has started." % p for p in ("Init", "Transfer", "Reconcile", "Cleanup", "Finalize")]


@pytest.mark.parametrize("level", ["WARN", "FATAL", "NOTSET", "warning", "error", "10"])
def test_every_level_python_logging_knows_is_accepted_and_azcopy_still_gets_its_lines(level, tmp_path):
    v = _local(tmp_path, _tree(tmp_path / "src", dirs=1, files=1), log_level=level)
    assert v.exit_code == 0 and v.summary is not None and v.summary["final_job_status"] == "Completed", _why(v)
    assert "Transfer phase has started." in v.info()


# --- early failures: a final line with "Failed" -------------------------------------------------


def test_new_into_a_non_empty_container_is_a_failed_summary(tmp_path):
    (tmp_path / "out" / "c").mkdir(parents=True)
    (tmp_path / "out" / "c" / "someone-elses").write_bytes(b"x")
    v = _local(tmp_path, _tree(tmp_path / "src"))
    assert v.exit_code == 0 and v.summary is not None, _why(v)
    assert v.summary["final_job_status"] == "Failed"
    assert any("container 'c' is not empty" in line for line in v.info()), v.screen
    assert v.child_exit == 1


@pytest.mark.parametrize("option", [{"compression": "DISABLED"}, {"hardlinks": 1}])
def test_resume_with_other_options_is_a_failed_summary_naming_the_option(option, tmp_path):
    source = _tree(tmp_path / "src")
    os.symlink("x" * 1024, source / "too-long")  # a fault: the first run ends unfinished, resumable
    first = _local(tmp_path, source)
    assert first.exit_code == 0 and first.summary["final_job_status"] == "Failed", _why(first)
    v = _local(tmp_path, source, new=False, **option)
    assert v.exit_code == 0 and v.summary is not None, _why(v)
    assert v.summary["final_job_status"] == "Failed"
    name = "--compression" if "compression" in option else "--preserve_hardlinks"
    assert any("cannot resume" in line and name in line for line in v.info()), v.screen


def test_bad_log_level_is_shown_and_fails_as_the_original(tmp_path):
    v = _local(tmp_path, _tree(tmp_path / "src"), log_level="LOUD")
    assert v.summary is None and v.exit_code == 1, _why(v)
    assert any("invalid log_level 'LOUD'" in line for line in v.info()), v.screen
    assert v.screen[-1] == "ERROR: Job failed due to extension error: exit status 2"
    assert not (tmp_path / "state").exists()


def test_bad_state_path_after_parsing_is_a_failed_summary(tmp_path):
    v = _local(tmp_path, _tree(tmp_path / "src"), new=False, state="never-made")
    assert v.exit_code == 0 and v.summary is not None and v.summary["final_job_status"] == "Failed", _why(v)
    assert any("never-made" in line for line in v.info()), v.screen


# --- unreadable entries (as an unprivileged user: root reads everything) ------------------------

NOBODY = 65534


@pytest.fixture(scope="module")
def as_nobody(tmp_path_factory):
    """(work folder owned by uid 65534, argv prefix running a Python that user can use with this checkout)."""
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv to run the loader as an unprivileged user")
    from test_source_faults import _candidate_pythons
    import site
    import tempfile

    work = Path(tempfile.mkdtemp(prefix="clfsload-azcopy-", dir="/tmp"))
    work.chmod(0o755)
    os.chown(work, NOBODY, NOBODY)
    setpriv = ["setpriv", "--reuid=%d" % NOBODY, "--regid=%d" % NOBODY, "--clear-groups"]
    env = {"PYTHONPATH": os.pathsep.join([str(REPO)] + site.getsitepackages()), "HOME": str(work)}
    probe = work / "probe"
    (probe / "tree").mkdir(parents=True)
    (probe / "tree" / "f").write_bytes(b"probe\n")
    (probe / "out").mkdir()
    for dirpath in (work, probe, probe / "tree", probe / "tree" / "f", probe / "out"):
        os.chown(dirpath, NOBODY, NOBODY)
    for number, exe in enumerate(_candidate_pythons()):  # a real load: worker processes included
        args = [str(probe / ("state%d" % number)), str(probe / "tree"), "file:" + str(probe / "out"), "c%d" % number, "-"]
        done = subprocess.run(setpriv + [exe, str(REPO / "CLFSLoad.py"), "--new", *args], env=dict(os.environ, **env),
                              cwd=str(REPO), capture_output=True, timeout=60)
        if done.returncode == 0:
            yield work, setpriv + [exe], env
            break
    else:
        pytest.skip("no Python interpreter the unprivileged user can run with this checkout")
    shutil.rmtree(work, ignore_errors=True)


def test_unreadable_entries_are_shown_and_the_summary_says_failed(as_nobody, tmp_path):
    work, prefix, env = as_nobody
    base = work / tmp_path.name
    source = _tree(base / "src")
    (source / "secret.txt").write_bytes(b"secret\n")
    (source / "locked").mkdir()
    (base / "out").mkdir()
    for dirpath, _dirs, names in os.walk(base):
        os.chown(dirpath, NOBODY, NOBODY)
        for name in names:
            os.chown(os.path.join(dirpath, name), NOBODY, NOBODY)
    (source / "secret.txt").chmod(0)
    (source / "locked").chmod(0)
    v = play(azcopy_argv(base / "state", source, "file:" + str(base / "out"), "c", "-", new=True), prefix=prefix, env=env)
    assert v.exit_code == 0 and v.summary is not None, _why(v)
    assert v.summary["final_job_status"] == "Failed"
    assert v.summary["files_completed_failed"] == 2, _why(v)
    shown = "\n".join(v.info())
    assert str(source / "secret.txt") in shown and str(source / "locked") in shown, v.screen
    assert "permission denied" in shown


# --- a SAS without write or delete rights (Azurite) ----------------------------------------------

from azurite import azurite  # noqa: F401,E402 - the session fixture


@pytest.mark.parametrize("permission,word", [("rl", "write"), ("racwl", "delete")])
def test_sas_without_rights_is_a_failed_summary_naming_the_right(permission, word, azurite, tmp_path):  # noqa: F811
    container = azurite.create_container()
    sas = azurite.make_sas(container, permission)
    v = play(azcopy_argv(tmp_path / "state", _tree(tmp_path / "src"), azurite.endpoint, container, sas, new=True))
    assert v.exit_code == 0 and v.summary is not None, _why(v)
    assert v.summary["final_job_status"] == "Failed"
    assert any("SAS token has no" in line and "(%s) permission" % word in line for line in v.info()), v.screen
    assert not any(sas in line for line in v.stdout)


# --- Ctrl-C ------------------------------------------------------------------------------------


def test_ctrl_c_is_an_aborted_summary(tmp_path):
    """A terminal's Ctrl-C reaches AzCopy and the loader (one process group); AzCopy waits for the final line."""
    source = _tree(tmp_path / "src", dirs=60, files=50)
    sent = []

    def interrupt_once_transferring(line: str, proc: subprocess.Popen) -> None:
        if not sent and line.startswith(TAG_INFO) and "Transfer" in line:
            time.sleep(0.3)
            os.killpg(proc.pid, signal.SIGINT)
            sent.append(time.monotonic())

    (tmp_path / "out").mkdir()
    argv = azcopy_argv(tmp_path / "state", source, "file:" + str(tmp_path / "out"), "c", "-", new=True,
                       extra=["--worker_thread_count=1"])
    v = play(argv, on_line=interrupt_once_transferring)
    assert sent, "the load never reached its Transfer phase: " + _why(v)
    assert v.exit_code == 0 and v.summary is not None, _why(v)
    # The original says "Failed" here; "Aborted" is what happened (see the README).
    assert v.summary["final_job_status"] == "Aborted", _why(v)
    assert v.summary["files_total"] < 1 + 60 * 51, "the load finished before the interrupt"


# --- the decoder itself --------------------------------------------------------------------------


@pytest.mark.parametrize("text,ok", [
    ('{"files_total":3}', True),
    ('{"files_total":null,"extra":[1,2]}', True),
    ('{"files_total":3.0}', False),
    ('{"files_total":1e3}', False),
    ('{"files_total":"3"}', False),
    ('{"files_total":true}', False),
    ('{"elapsed":3}', True),
    ('{"elapsed":"3"}', False),
    ('{"elapsed":NaN}', False),
    ('{"final_job_status":1}', False),
    ('{"files_total":3} x', False),
])
def test_the_stand_in_decodes_as_strictly_as_go(text, ok):
    if ok:
        go_decode(text, CLFS_SUMMARY)
    else:
        with pytest.raises(GoDecodeError):
            go_decode(text, CLFS_SUMMARY)


def test_a_final_line_that_does_not_decode_makes_azcopy_fail():
    azcopy = AzCopy()
    azcopy.feed('AZCOPY-FINAL:{"files_total":1.5,"final_job_status":"Completed"}')
    assert azcopy.done and azcopy.verdict.exit_code == 1 and UNABLE in azcopy.verdict.screen[-1]
