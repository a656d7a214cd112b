"""End-to-end loads with the real command line into the local-folder target.

Every golden tree is loaded by ``python -m clfsload`` and the result must be
canonical-equal to the container the original tool wrote. Then the paths a
user hits when something is wrong: each must give one clear line and a
documented exit code, and leave nothing half-published.
"""

import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from clfsload.work.checksum_log import RangedDigest, read_checksums
from clfsload.clfs.canonical import canonical_form, diff_canonical
from clfsload.clfs.container import Container, FolderSource

from _load import REPO, assert_handle_rules, assert_matches_golden, cli
from _load import load_local as load
from _trees import GOLDEN_RUNS, golden_dir, source_trees  # noqa: F401


@pytest.mark.parametrize("golden", ["bigdir", "basic", "hardlinks-preserve", "special"])
def test_directories_loaded_in_batches_match_the_golden(golden, source_trees, tmp_path):
    """Every directory of over 2 non-directories split into batches of 2: the same container, stored by the driver."""
    tree, preserve, _ = GOLDEN_RUNS[golden]
    done = load(tmp_path / "state", source_trees / tree, tmp_path / "out", "--preserve_hardlinks", str(int(preserve)),
                env={"CLFSLOAD_BATCH_ENTRIES": "2"})
    assert done.returncode == 0, done.stdout + done.stderr
    assert "loaded in" in done.stdout and " batches" in done.stdout  # the split really happened
    assert_matches_golden(golden_dir(golden), FolderSource(str(tmp_path / "out" / "c")))


def test_files_loaded_in_ranges_of_segments_match_the_golden(source_trees, tmp_path):
    """Every file of over 1 data segment loaded in ranges of 1 segment: the same container, inodes by the driver."""
    golden = "boundaries"  # the golden tree with files of 2 and 3 data segments
    tree, preserve, _ = GOLDEN_RUNS[golden]
    done = load(tmp_path / "state", source_trees / tree, tmp_path / "out", "--preserve_hardlinks", str(int(preserve)),
                "--processes", "2", env={"CLFSLOAD_RANGE_SEGMENTS": "1"})
    assert done.returncode == 0, done.stdout + done.stderr
    ranged = [line for line in done.stdout.splitlines() if " ranges of up to 1 segments" in line]
    assert ranged, done.stdout  # the split really happened
    assert_matches_golden(golden_dir(golden), FolderSource(str(tmp_path / "out" / "c")))
    # verify --state checks the ranged files against the digests of their ranges recorded at upload ...
    recorded = read_checksums(str(tmp_path / "state"))
    assert sum(isinstance(r, RangedDigest) and r.span == 8 << 20 for r in recorded.values()) == len(ranged)
    verify = ["verify", "file:" + str(tmp_path / "out"), "c"]
    checked = cli(*verify, str(source_trees / tree), "--state", str(tmp_path / "state"))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    # ... and sees one byte changed in the last range of the biggest (size and mtime put back).
    copy = tmp_path / "copy"
    shutil.copytree(source_trees / tree, copy, symlinks=True)
    biggest = max((p for p in copy.rglob("*") if p.is_file() and not p.is_symlink()), key=lambda p: p.stat().st_size)
    st = biggest.stat()
    with open(biggest, "r+b") as f:
        f.seek(st.st_size - 3)
        byte = f.read(1)
        f.seek(st.st_size - 3)
        f.write(bytes([byte[0] ^ 1]))
    os.utime(biggest, ns=(st.st_atime_ns, st.st_mtime_ns))
    changed = cli(*verify, str(copy), "--state", str(tmp_path / "state"))
    assert changed.returncode == 1 and "differs from the checksum recorded" in changed.stdout, changed.stdout
    assert biggest.name in changed.stdout


def test_a_run_killed_after_a_ranged_file_resumes_without_reading_its_ranges_again(source_trees, tmp_path):
    """Killed (all processes) at the driver's 5th state commit, by then after the first ranges of huge
    files came back (each is committed at once): the resumed run reads only ranges no earlier run
    stored, and the container is the golden one."""
    tree = source_trees / GOLDEN_RUNS["boundaries"][0]
    env = {"CLFSLOAD_RANGE_SEGMENTS": "1"}
    killed = load(tmp_path / "state", tree, tmp_path / "out", "--processes", "1", start_new_session=True,
                  env=dict(env, CLFSLOAD_TEST_CRASH="commit@5"))
    assert killed.returncode == -signal.SIGKILL, killed.stdout + killed.stderr
    done = load(tmp_path / "state", tree, tmp_path / "out", new=False, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    reused = re.findall(r"loaded in (\d+) ranges of up to 1 segments \((\d+) stored by an earlier run\)", done.stdout)
    assert reused, done.stdout
    assert_matches_golden(golden_dir("boundaries"), FolderSource(str(tmp_path / "out" / "c")))


@pytest.mark.parametrize("golden", sorted(GOLDEN_RUNS))
def test_golden_tree_loads_canonical_equal(golden, source_trees, tmp_path):
    tree, preserve, compress = GOLDEN_RUNS[golden]
    extra = ["--preserve_hardlinks", "1" if preserve else "0"]
    if not compress:
        extra += ["--compression", "DISABLED"]
    done = load(tmp_path / "state", source_trees / tree, tmp_path / "out", *extra)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "CLFSLoad succeeded" in done.stdout
    assert done.stderr == ""
    assert_matches_golden(golden_dir(golden), FolderSource(str(tmp_path / "out" / "c")), compressed=compress)
    # A second run on the finished state is a no-op that says so.
    again = load(tmp_path / "state", source_trees / tree, tmp_path / "out", new=False)
    assert again.returncode == 0 and "already completed without errors" in again.stdout


def test_state_dir_is_private_and_holds_no_secret(source_trees, tmp_path):
    done = load(tmp_path / "state", source_trees / "basic", tmp_path / "out")
    assert done.returncode == 0, done.stdout
    assert (os.stat(tmp_path / "state").st_mode & 0o777) == 0o700
    assert {"state.db", "output.txt", "lock"} <= set(os.listdir(tmp_path / "state"))
    log_blob = (tmp_path / "out" / "c" / "output.txt").read_text()
    assert "begin phase transfer" in log_blob


def test_python_m_and_script_share_the_command_line(tmp_path):
    script = subprocess.run([sys.executable, str(REPO / "CLFSLoad.py"), "--version"], capture_output=True, text=True)
    module = cli("--version")
    assert script.returncode == module.returncode == 0
    assert script.stdout == module.stdout
    assert module.stdout.startswith("CLFSLoad ") and "backend" in module.stdout


def _make_tree(root: Path, dirs: int, files: int) -> Path:
    for d in range(dirs):
        sub = root / ("d%03d" % d)
        sub.mkdir(parents=True)
        for f in range(files):
            (sub / ("f%03d" % f)).write_bytes(b"%d-%d " % (d, f) * (1 + f % 50))
    return root


def _objects_done(state: Path) -> int:
    try:
        with sqlite3.connect("file:%s?mode=ro" % (state / "state.db"), uri=True, timeout=0.1) as db:
            row = db.execute("SELECT value FROM meta WHERE key = 'objects'").fetchone()
            return int(row[0]) if row else 0
    except sqlite3.Error:
        return 0


@pytest.mark.parametrize("how", ["SIGKILL", "SIGINT"])
def test_interrupted_load_resumes_to_the_same_container(how, tmp_path):
    # Big enough to be running still a second after its first commit (the state
    # commits every 200 results or each second), one unit at a time.
    tree = _make_tree(tmp_path / "tree", 240, 40)
    clean = load(tmp_path / "clean-state", tree, tmp_path / "clean")
    assert clean.returncode == 0, clean.stdout
    state, out = tmp_path / "state", tmp_path / "out"
    out.mkdir()
    env = dict(os.environ, PYTHONPATH=str(REPO), CLFSLOAD_UNIT_THREADS="1")
    args = [sys.executable, "-m", "clfsload", "--new", str(state), str(tree), "file:" + str(out), "c", "-",
            "--processes", "1", "--worker_thread_count", "1"]
    # SIGINT as a terminal delivers it: a shell that started the tests in
    # the background left it ignored, and the loader would inherit that.
    proc = subprocess.Popen(args, cwd=str(REPO), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 60
    while _objects_done(state) < 200 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert proc.poll() is None, "the load finished before it could be interrupted"
    if how == "SIGKILL":
        os.killpg(proc.pid, signal.SIGKILL)  # the whole process tree, as a crash would
    else:
        os.kill(proc.pid, signal.SIGINT)
    output = proc.communicate(timeout=60)[0].decode()
    if how == "SIGINT":
        assert proc.returncode == 1
        assert "interrupted; the state is saved" in output
        assert "Traceback" not in output
    assert not Container(FolderSource(str(out / "c"))).finished
    resumed = load(state, tree, out, new=False)
    assert resumed.returncode == 0, resumed.stdout
    ours = Container(FolderSource(str(out / "c")))
    assert ours.finished and not ours.strays() and not ours.tmp_names
    expected = canonical_form(Container(FolderSource(str(tmp_path / "clean" / "c"))))
    assert diff_canonical(expected, canonical_form(ours)) == []
    assert_handle_rules(ours)


# --- what a user gets wrong ------------------------------------------------------


def test_missing_arguments_is_a_usage_error(tmp_path):
    done = cli(str(tmp_path / "state"), str(tmp_path))
    assert done.returncode == 2
    assert "the following arguments are required" in done.stderr


def test_bad_compression_choice_is_a_usage_error(tmp_path):
    done = cli("--new", str(tmp_path / "s"), str(tmp_path), "file:" + str(tmp_path), "c", "-", "--compression", "ZSTD")
    assert done.returncode == 2 and "invalid choice: 'ZSTD'" in done.stderr


def _one_error_line(done):
    errors = [line for line in done.stdout.splitlines() if " ERR " in line]
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    assert errors, done.stdout
    return errors[0]


def test_source_that_is_a_file(tmp_path):
    (tmp_path / "file").write_text("x")
    line = _one_error_line(load(tmp_path / "state", tmp_path / "file", tmp_path / "out"))
    assert "is not a directory" in line and "file" in line
    assert not (tmp_path / "state").exists()  # nothing left behind to block a retry


def test_missing_source(tmp_path):
    line = _one_error_line(load(tmp_path / "state", tmp_path / "nope", tmp_path / "out"))
    assert "'%s' cannot be read" % (tmp_path / "nope") in line


def test_state_dir_inside_the_source(source_trees, tmp_path):
    tree = tmp_path / "tree"
    tree.mkdir()
    line = _one_error_line(load(tree / "state", tree, tmp_path / "out"))
    assert "overlap" in line


def test_new_with_an_existing_state_dir(tmp_path):
    (tmp_path / "state").mkdir()
    (tmp_path / "tree").mkdir()
    line = _one_error_line(load(tmp_path / "state", tmp_path / "tree", tmp_path / "out"))
    assert "already exists" in line and "without --new" in line


def test_resume_without_a_state_dir(tmp_path):
    (tmp_path / "tree").mkdir()
    line = _one_error_line(load(tmp_path / "state", tmp_path / "tree", tmp_path / "out", new=False))
    assert "does not exist; start a transfer with --new" in line


def test_new_into_a_container_that_is_not_empty(tmp_path):
    (tmp_path / "tree").mkdir()
    (tmp_path / "out" / "c").mkdir(parents=True)
    (tmp_path / "out" / "c" / "someone-elses-blob").write_text("x")
    line = _one_error_line(load(tmp_path / "state", tmp_path / "tree", tmp_path / "out"))
    assert "is not empty" in line
    assert not (tmp_path / "state").exists()


def test_resume_with_another_source_or_option_names_the_mismatch(source_trees, tmp_path):
    done = load(tmp_path / "state", source_trees / "special", tmp_path / "out")
    assert done.returncode == 0
    line = _one_error_line(load(tmp_path / "state", source_trees / "basic", tmp_path / "out", new=False))
    assert "cannot resume" in line and "source" in line
    line = _one_error_line(load(tmp_path / "state", source_trees / "special", tmp_path / "out", "--compression", "DISABLED", new=False))
    assert "--compression DISABLED differs from the stored LZ4" in line
    line = _one_error_line(load(tmp_path / "state", source_trees / "special", tmp_path / "out", "--preserve_hardlinks", "1", new=False))
    assert "--preserve_hardlinks 1 differs" in line
    line = _one_error_line(load(tmp_path / "state", source_trees / "special", tmp_path / "other", new=False))
    assert "container folder" in line and "does not exist" in line
    (tmp_path / "other" / "c").mkdir(parents=True)
    line = _one_error_line(load(tmp_path / "state", source_trees / "special", tmp_path / "other", new=False))
    assert "target file:%s is not the one this transfer started with" % (tmp_path / "other" / "c") in line


def test_a_second_run_on_the_same_state_dir_is_refused(tmp_path):
    tree = _make_tree(tmp_path / "tree", 100, 100)
    state, out = tmp_path / "state", tmp_path / "out"
    out.mkdir()
    env = dict(os.environ, PYTHONPATH=str(REPO))
    first = subprocess.Popen(
        [sys.executable, "-m", "clfsload", "--new", str(state), str(tree), "file:" + str(out), "c", "-",
         "--processes", "1", "--worker_thread_count", "1"],
        cwd=str(REPO), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while _objects_done(state) < 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        line = _one_error_line(load(state, tree, out, new=False))
        assert "in use by another clfsload run" in line
    finally:
        first.communicate(timeout=120)
    assert first.returncode == 0


def test_unreadable_entries_fail_the_load_without_publishing(tmp_path):
    _make_tree(tmp_path / "tree", 2, 3)
    (tmp_path / "tree" / "d000" / "f001").chmod(0)
    os.symlink("x" * 1024, tmp_path / "tree" / "too-long-link")
    if os.geteuid() == 0:  # root reads mode-0 files: make one vanish instead
        os.unlink(tmp_path / "tree" / "d000" / "f001")
        (tmp_path / "tree" / "d000" / "f001").mkdir()
        (tmp_path / "tree" / "d000" / "f001").chmod(0)
    done = load(tmp_path / "state", tmp_path / "tree", tmp_path / "out")
    assert done.returncode == 1
    assert "too-long-link': symlink target of 1024 bytes exceeds the CLFS limit of 1023 bytes" in done.stdout
    assert "not published" in done.stdout
    assert (tmp_path / "state" / "problems.txt").read_bytes().count(b"\n") >= 1
    assert not Container(FolderSource(str(tmp_path / "out" / "c"))).finished
    # Fix the source; the same command retries the failed entries and publishes.
    os.unlink(tmp_path / "tree" / "too-long-link")
    os.symlink("x" * 1023, tmp_path / "tree" / "too-long-link")
    if os.geteuid() == 0:
        (tmp_path / "tree" / "d000" / "f001").chmod(0o755)
    else:
        (tmp_path / "tree" / "d000" / "f001").chmod(0o644)
    again = load(tmp_path / "state", tmp_path / "tree", tmp_path / "out", new=False)
    assert again.returncode == 0, again.stdout
    container = Container(FolderSource(str(tmp_path / "out" / "c")))
    assert container.finished and not container.strays()
    assert b"too-long-link" in [e.path for e in container.walk()]


def test_names_that_are_not_utf8_round_trip(tmp_path):
    tree = tmp_path / "tree"
    tree.mkdir()
    odd = os.fsencode(str(tree)) + b"/caf\xe9-\xff\xfe"
    with open(odd, "wb") as f:
        f.write(b"latin-1 name\n")
    os.mkdir(os.fsencode(str(tree)) + b"/dir-\x80")
    done = load(tmp_path / "state", tree, tmp_path / "out")
    assert done.returncode == 0, done.stdout
    container = Container(FolderSource(str(tmp_path / "out" / "c")))
    assert {e.path for e in container.walk()} == {b"", b"caf\xe9-\xff\xfe", b"dir-\x80"}  # b"": the root
    assert container.read_file(b"caf\xe9-\xff\xfe") == b"latin-1 name\n"


def test_a_file_that_keeps_changing_is_reported_not_stored_torn(tmp_path):
    import threading

    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "steady").write_bytes(b"steady\n")
    busy = tree / "busy.log"
    busy.write_bytes(os.urandom(48 << 20))
    stop = threading.Event()

    def append():
        with open(busy, "ab", buffering=0) as f:
            while not stop.is_set():
                f.write(b"x")
                time.sleep(0.0005)

    writer = threading.Thread(target=append)
    writer.start()
    try:
        done = load(tmp_path / "state", tree, tmp_path / "out", "--processes", "0")
    finally:
        stop.set()
        writer.join()
    assert done.returncode == 1
    assert "busy.log': changed while being read, 3 times; not stored torn" in done.stdout
    assert (tmp_path / "state" / "problems.txt").read_bytes() == os.fsencode(str(busy)) + b"\n"
    # Once it is quiet, the same command stores it and publishes.
    again = load(tmp_path / "state", tree, tmp_path / "out", new=False)
    assert again.returncode == 0, again.stdout
    container = Container(FolderSource(str(tmp_path / "out" / "c")))
    assert container.read_file(b"busy.log") == busy.read_bytes()
