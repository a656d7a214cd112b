"""What a user gets wrong on the command line, and that the state directory survives it.

Each bad invocation must give **one** ``ERR`` line that names the thing
(path, container, option) and says what to do, exit with the documented
code (1, or 2 for a malformed command line), print no traceback, and leave
things so that the next, correct command works: a failed ``--new`` leaves
no state directory behind, a refused resume leaves the state as it was.

The plain error lines of several of these are already checked in
``test_load_local.py`` and ``test_load_azure.py``; the tests here add the
follow-up (the correct command then works) and the cases those files lack.
"""

import datetime as dt
import fcntl
import os
import subprocess
import sys
from pathlib import Path

import pytest

from clfsload.clfs.container import Container, FolderSource

from _load import TargetSource, cli
from _load import load_local as local
from azurite import azurite  # noqa: F401


def the_error(done, code=1):
    """The single ERR line of a failed run."""
    text = done.stdout + done.stderr
    assert done.returncode == code, text
    assert "Traceback" not in text, text
    errors = [line for line in done.stdout.splitlines() if " ERR " in line]
    assert len(errors) == 1, text
    return errors[0]


def succeeds(done):
    assert done.returncode == 0, done.stdout + done.stderr
    assert "CLFSLoad succeeded" in done.stdout


def small_tree(root: Path, bad_link: bool = False) -> Path:
    (root / "sub").mkdir(parents=True)
    (root / "a").write_bytes(b"a\n")
    (root / "sub" / "b").write_bytes(b"b\n")
    if bad_link:  # a fault that makes the run end unfinished (resumable) until it is fixed
        os.symlink("x" * 1024, root / "bad")
    return root


def fix_link(root: Path) -> None:
    os.unlink(root / "bad")
    os.symlink("y" * 1023, root / "bad")


def assert_finished(out, container="c"):
    c = Container(FolderSource(str(Path(out) / container)))
    assert c.finished and c.verify() == []
    return c


# --- SOURCE and STATE_DIR ----------------------------------------------------------------


def test_source_that_is_a_file_then_the_directory(tmp_path):
    tree = small_tree(tmp_path / "tree")
    line = the_error(local(tmp_path / "state", tree / "a", tmp_path / "out"))
    assert "source '%s' is not a directory" % (tree / "a") in line
    assert not (tmp_path / "state").exists()
    succeeds(local(tmp_path / "state", tree, tmp_path / "out"))


def test_missing_source_then_the_right_path(tmp_path):
    tree = small_tree(tmp_path / "tree")
    line = the_error(local(tmp_path / "state", tmp_path / "tre", tmp_path / "out"))
    assert "source '%s' cannot be read: No such file or directory" % (tmp_path / "tre") in line
    assert not (tmp_path / "state").exists()
    succeeds(local(tmp_path / "state", tree, tmp_path / "out"))


def test_source_given_as_a_symlink_then_the_directory(tmp_path):
    tree = small_tree(tmp_path / "tree")
    os.symlink(tree, tmp_path / "link")
    line = the_error(local(tmp_path / "state", tmp_path / "link", tmp_path / "out"))
    assert "source '%s' is a symlink; give the directory it points to" % (tmp_path / "link") in line
    assert not (tmp_path / "state").exists()
    succeeds(local(tmp_path / "state", tree, tmp_path / "out"))


def test_state_dir_inside_the_source_then_outside(tmp_path):
    tree = small_tree(tmp_path / "tree")
    line = the_error(local(tree / "state", tree, tmp_path / "out"))
    assert "overlap; put the state directory outside the tree you load" in line
    assert sorted(os.listdir(tree)) == ["a", "sub"]  # nothing written into the source
    succeeds(local(tmp_path / "state", tree, tmp_path / "out"))


def test_state_dir_whose_parent_is_missing_then_created(tmp_path):
    tree = small_tree(tmp_path / "tree")
    state = tmp_path / "nope" / "state"
    line = the_error(local(state, tree, tmp_path / "out"))
    assert "cannot create state directory '%s'" % state in line
    assert "parent '%s' does not exist; create it first" % state.parent in line  # names the folder to create
    assert not (tmp_path / "nope").exists()
    state.parent.mkdir()
    succeeds(local(state, tree, tmp_path / "out"))


def test_state_dir_that_is_a_file(tmp_path):
    tree = small_tree(tmp_path / "tree")
    (tmp_path / "state").write_text("not a directory\n")
    for new in (True, False):
        line = the_error(local(tmp_path / "state", tree, tmp_path / "out", new=new))
        assert "not a directory" in line or "is a file" in line, line


def test_resume_from_a_folder_without_state_then_new_elsewhere(tmp_path):
    tree = small_tree(tmp_path / "tree")
    (tmp_path / "empty").mkdir()
    line = the_error(local(tmp_path / "empty", tree, tmp_path / "out", new=False))
    assert "'%s' holds no clfsload state (state.db missing); start with --new in a new directory" % (
        tmp_path / "empty") in line
    assert os.listdir(tmp_path / "empty") == []
    succeeds(local(tmp_path / "state", tree, tmp_path / "out"))


def test_negative_max_errors_is_a_usage_error(tmp_path):
    tree = small_tree(tmp_path / "tree")
    done = local(tmp_path / "state", tree, tmp_path / "out", "--max_errors", "-1")
    assert done.returncode == 2 and done.stdout == ""
    errors = [line for line in done.stderr.splitlines() if "error:" in line]
    assert errors == ["CLFSLoad.py: error: argument --max_errors/--max-errors: must be 0 (no limit) or more, got -1"]
    assert not (tmp_path / "state").exists()
    succeeds(local(tmp_path / "state", tree, tmp_path / "out", "--max_errors", "0"))


def test_local_target_creates_missing_parent_folders(tmp_path):
    """A file: target is a local path: --new creates every missing folder above the container, as mkdir -p."""
    tree = small_tree(tmp_path / "tree")
    out = tmp_path / "no-such-folder" / "deeper"
    succeeds(cli("--new", str(tmp_path / "state"), str(tree), "file:" + str(out), "c", "-"))
    assert (out / "c").is_dir()


def test_local_target_under_a_file_is_one_clear_line(tmp_path):
    tree = small_tree(tmp_path / "tree")
    (tmp_path / "afile").write_text("x")
    done = cli("--new", str(tmp_path / "state"), str(tree), "file:" + str(tmp_path / "afile" / "out"), "c", "-")
    line = the_error(done)
    assert str(tmp_path / "afile") in line and "Traceback" not in done.stdout + done.stderr
    assert not (tmp_path / "state").exists()


# --- resuming with other values ---------------------------------------------------------------


def test_refused_resumes_leave_the_state_usable(tmp_path):
    tree = small_tree(tmp_path / "tree", bad_link=True)
    other = small_tree(tmp_path / "other")
    state, out = tmp_path / "state", tmp_path / "out"
    first = local(state, tree, out)
    assert first.returncode == 1 and "not published" in first.stdout
    refused = [
        (local(state, tree, out, "--compression", "DISABLED", new=False), "--compression DISABLED differs from the stored LZ4"),
        (local(state, tree, out, "--preserve_hardlinks", "1", new=False), "--preserve_hardlinks 1 differs from the stored 0"),
        (local(state, other, out, new=False), "source '%s' is not the one this transfer started with" % other),
        (local(state, tree, tmp_path / "out2", new=False), "does not exist"),
    ]
    (tmp_path / "out3" / "c").mkdir(parents=True)
    refused.append((local(state, tree, tmp_path / "out3", new=False),
                    "target file:%s is not the one this transfer started with" % (tmp_path / "out3" / "c")))
    for done, expected in refused:
        line = the_error(done)
        assert expected in line, line
    for name in ("out2", "out3"):  # a refused resume writes nothing to the target it was pointed at
        assert not list((tmp_path / name).rglob("*.*")), name
    fix_link(tree)
    again = local(state, tree, out, new=False)
    succeeds(again)
    assert_finished(out)


def test_a_state_dir_locked_by_another_process_then_the_same_command_works(tmp_path):
    tree = small_tree(tmp_path / "tree", bad_link=True)
    state, out = tmp_path / "state", tmp_path / "out"
    assert local(state, tree, out).returncode == 1
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import fcntl, os, sys, time\n"
         "fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o600)\n"
         "fcntl.flock(fd, fcntl.LOCK_EX)\n"
         "os.ftruncate(fd, 0); os.write(fd, str(os.getpid()).encode())\n"
         "print('locked', flush=True)\n"
         "time.sleep(300)\n",
         str(state / "lock")],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        fix_link(tree)
        line = the_error(local(state, tree, out, new=False))
        assert "state directory '%s' is in use by another clfsload run (pid %d); wait for it or stop it" % (
            state, holder.pid) in line
        # The refused run did not take the lock away or touch the state.
        fd = os.open(state / "lock", os.O_RDWR)
        with pytest.raises(BlockingIOError):
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.close(fd)
    finally:
        holder.kill()
        holder.wait()
    succeeds(local(state, tree, out, new=False))
    assert_finished(out)


# --- Azure (Azurite) ----------------------------------------------------------------------------


def azure(az, state, source, container, credential, *extra, new=True):
    return cli(*((["--new"] if new else []) + [str(state), str(source), az.endpoint, container, credential, *extra]))


def assert_azure_finished(az, container):
    from clfsload.targets import open_target

    target = open_target(az.endpoint, container, az.connection_string)
    try:
        c = Container(TargetSource(target))
        assert c.finished and c.verify() == []
    finally:
        target.close()


def blob_names(az, container):
    with az.service_client() as svc:
        return [b.name for b in svc.get_container_client(container).list_blobs()]


def test_refused_starts_leave_nothing_behind_then_the_right_command_works(azurite, tmp_path):
    """Every way a --new can be refused by the credential or the container, then the correct command."""
    tree, state = small_tree(tmp_path / "tree"), tmp_path / "state"
    container, full = azurite.create_container(), azurite.create_container()
    with azurite.service_client() as svc:
        svc.get_blob_client(full, "someone-elses.txt").upload_blob(b"keep me")
    missing = "missing-" + container[1:]
    attempts = [
        (container, azurite.make_sas(container, expiry=dt.timedelta(minutes=-5)),
         ["the SAS token expired at", "create a new SAS for container '%s'" % container]),
        (missing, azurite.make_sas(missing), ["container '%s'" % missing, "does not exist"]),
        (full, azurite.make_sas(full), ["container '%s' is not empty; --new needs an empty container" % full]),
    ]
    for permission, letter, word in (("racdl", "w", "write"), ("racwd", "l", "list"), ("racwl", "d", "delete")):
        attempts.append((container, azurite.make_sas(container, permission),
                         ["the SAS token has no '%s' (%s) permission on container '%s'; create a SAS with racwdl"
                          % (letter, word, container)]))
    for name, sas, expected in attempts:
        line = the_error(azure(azurite, state, tree, name, sas))
        assert all(part in line for part in expected), line
        assert not state.exists(), line  # a refused start leaves nothing that blocks the next one
    assert blob_names(azurite, container) == [] and blob_names(azurite, full) == ["someone-elses.txt"]
    succeeds(azure(azurite, state, tree, container, azurite.make_sas(container)))
    assert_azure_finished(azurite, container)


def test_resume_against_another_container_then_the_right_one(azurite, tmp_path):
    tree = small_tree(tmp_path / "tree", bad_link=True)
    mine, other = azurite.create_container(), azurite.create_container()
    state = tmp_path / "state"
    first = azure(azurite, state, tree, mine, azurite.make_sas(mine))
    assert first.returncode == 1 and "not published" in first.stdout
    line = the_error(azure(azurite, state, tree, other, azurite.make_sas(other), new=False))
    assert ("target azure:%s/%s is not the one this transfer started with (azure:%s/%s)"
            % (azurite.endpoint, other, azurite.endpoint, mine)) in line and "rerun with the original values" in line
    assert blob_names(azurite, other) == []  # nothing written to the wrong container
    fix_link(tree)
    succeeds(azure(azurite, state, tree, mine, azurite.make_sas(mine), new=False))
    assert_azure_finished(azurite, mine)
    # The container emptied behind the finished transfer's back: named, and nothing written.
    with azurite.service_client() as svc:
        client = svc.get_container_client(mine)
        for name in [b.name for b in client.list_blobs()]:
            client.delete_blob(name)
    line = the_error(azure(azurite, state, tree, mine, azurite.make_sas(mine), new=False))
    assert "the container has no bucket object" in line and "emptied" in line
    assert blob_names(azurite, mine) == []
