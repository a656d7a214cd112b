"""The local-folder target (clfsload.targets.local): missing containers, its temp files."""

from __future__ import annotations

import os

import pytest

from clfsload.errors import ContainerNotFoundError, TargetConfigError
from clfsload.targets import Credential, open_target
from clfsload.targets.local import TEMP_PREFIX



def test_missing_local_container_names_the_path(tmp_path) -> None:
    with pytest.raises(ContainerNotFoundError, match=str(tmp_path / "nope")):
        open_target(f"file:{tmp_path}", "nope", "-")
    created = open_target(f"file://{tmp_path}", "fresh", "-", create=True)
    assert created.describe() == f"file:{tmp_path / 'fresh'}"
    assert (tmp_path / "fresh").is_dir() and created.is_empty()
    deep = open_target(f"file:{tmp_path}/not/there", "c", "-", create=True)  # missing parents made, as mkdir -p
    assert (tmp_path / "not" / "there" / "c").is_dir() and deep.is_empty()
    with pytest.raises(TargetConfigError, match="takes no credential"):
        open_target(f"file:{tmp_path}", "fresh", Credential.sas("sv=1&sig=abcdefgh"))


def test_local_temp_files_are_invisible_and_removable(tmp_path) -> None:
    target = open_target(f"file:{tmp_path}", "c", "-", create=True)
    (tmp_path / "c" / f"{TEMP_PREFIX}123-dead-0").write_bytes(b"partial")
    (tmp_path / "c" / "subdir").mkdir()
    assert target.is_empty() and list(target.list_names()) == []
    target.put("real", b"1")
    assert list(target.list_names()) == ["real"]
    assert target.remove_temp_files() == 1  # type: ignore[attr-defined]
    assert sorted(os.listdir(tmp_path / "c")) == ["real", "subdir"]


def _record_fsyncs(monkeypatch) -> list:
    """Patch os.fsync (the one the target and clfsload.durable call) to note (inode, is a folder) of each fsync."""
    import stat

    done = []
    real = os.fsync

    def fsync(fd: int) -> None:
        st = os.fstat(fd)
        done.append((st.st_ino, stat.S_ISDIR(st.st_mode)))
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    # the batches' compiled loop (blobfile.fsync_files) calls fsync(2) itself: its pure twin, the
    # specification, goes through os.fsync, so the order of the file and folder fsyncs shows here
    from clfsload._native import blobfile, blobfile_py

    monkeypatch.setattr(blobfile, "fsync_files", blobfile_py.fsync_files)
    return done


@pytest.mark.parametrize("count", [3, 100])  # one thread, and a batch shared by threads
def test_sync_fsyncs_every_blob_written_then_the_folder_once(tmp_path, monkeypatch, count) -> None:
    target = open_target("file:" + str(tmp_path), "c", "-", create=True)
    done = _record_fsyncs(monkeypatch)
    for i in range(count):
        target.put("blob-%03d" % i, b"x" * i)
    assert done == []  # put alone makes nothing durable: the batch waits for sync
    target.sync()
    folder = os.stat(tmp_path / "c").st_ino
    blobs = {os.stat(tmp_path / "c" / ("blob-%03d" % i)).st_ino for i in range(count)}
    assert {ino for ino, is_dir in done if not is_dir} == blobs
    assert done[-1] == (folder, True) and sum(1 for _, is_dir in done if is_dir) == 1  # the folder last, once
    done.clear()
    target.sync()
    assert done == []  # nothing new: nothing to do
    target.delete("blob-000")
    target.sync()
    assert done == [(folder, True)]  # a removal is the folder's to make durable
    target.close()


def test_publish_fsyncs_the_file_before_its_name_appears(tmp_path, monkeypatch) -> None:
    target = open_target("file:" + str(tmp_path), "c", "-", create=True)
    order = []
    real_replace = os.replace
    done = _record_fsyncs(monkeypatch)
    monkeypatch.setattr(os, "replace", lambda a, b: (order.append(("rename", len(done))), real_replace(a, b)))
    target.publish("root", b"published")
    assert (tmp_path / "c" / "root").read_bytes() == b"published"
    assert order == [("rename", 1)] and done[0][1] is False  # the file's fsync came before the rename
    assert done[-1] == (os.stat(tmp_path / "c").st_ino, True)  # and the folder's after it
    target.close()


def test_create_makes_the_new_folders_durable_in_their_parents(tmp_path, monkeypatch) -> None:
    done = _record_fsyncs(monkeypatch)
    open_target("file:" + str(tmp_path / "a" / "b"), "c", "-", create=True).close()
    synced = {ino for ino, is_dir in done if is_dir}
    for folder in (tmp_path, tmp_path / "a", tmp_path / "a" / "b", tmp_path / "a" / "b" / "c"):
        assert os.stat(folder).st_ino in synced, folder


def test_a_failed_sync_stays_failed(tmp_path, monkeypatch) -> None:
    """After a failed fsync Linux may report the next one as a success with the data gone: never retry."""
    import errno

    from clfsload.errors import TerminalError

    target = open_target("file:" + str(tmp_path), "c", "-", create=True)
    target.put("blob", b"lost at the disk")
    real_fsync = os.fsync
    failures = [OSError(errno.EIO, "Input/output error")]

    def failing_once(fd):
        if failures:
            raise failures.pop()
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", failing_once)
    with pytest.raises(TerminalError, match="durable"):
        target.sync()
    with pytest.raises(TerminalError, match="durable"):
        target.sync()  # the fsync would succeed now: the blob must still not count as durable
    target.put("later", b"x")
    with pytest.raises(TerminalError):
        target.close()


def test_durable_is_accepted_with_a_deprecation_warning(tmp_path) -> None:
    with pytest.warns(DeprecationWarning, match="durable"):
        open_target("file:" + str(tmp_path), "c", "-", create=True, durable=True).close()


def _block_first(monkeypatch, name: str):
    """Patch ``clfsload.targets.sync_batches.<name>`` (fsync_paths or fsync_dir) so its first call waits for a release.

    Returns (entered, release, calls): ``entered`` is set once the first call
    is blocked; ``calls`` lists the arguments of every call.
    """
    import threading

    import clfsload.targets.sync_batches as batches  # the local target's batches of fsyncs

    real = getattr(batches, name)
    entered, release, calls = threading.Event(), threading.Event(), []

    def blocking(*args):
        calls.append(args)
        if len(calls) == 1:
            entered.set()
            assert release.wait(30)
        return real(*args)

    monkeypatch.setattr(batches, name, blocking)
    return entered, release, calls


def _in_thread(fn):
    """Run ``fn`` in a thread; returns (the thread, an event set when it returned, a list for its error)."""
    import threading

    finished, errors = threading.Event(), []

    def run():
        try:
            fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            errors.append(exc)
        finished.set()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, finished, errors


@pytest.mark.parametrize("step", ["fsync_paths", "fsync_dir"])
def test_a_sync_waits_for_another_threads_batch_that_holds_its_changes(tmp_path, monkeypatch, step) -> None:
    """Thread A's sync took thread B's blob (or removal) into its batch: B's sync returns only once A's batch is done."""
    target = open_target("file:" + str(tmp_path), "c", "-", create=True)
    target.put("old", b"x")
    target.sync()
    entered, release, calls = _block_first(monkeypatch, step)
    target.put("a", b"a")
    if step == "fsync_paths":
        target.put("b", b"b")  # B's blob, noted before A's sync begins
    else:
        target.delete("old")  # a removal: the folder's fsync makes it durable
    first, first_done, first_errors = _in_thread(target.sync)  # thread A: swaps out both and blocks
    assert entered.wait(30)
    second, second_done, second_errors = _in_thread(target.sync)  # thread B
    assert not second_done.wait(0.5), "a sync returned while its changes were still in another thread's batch"
    release.set()
    assert first_done.wait(30) and second_done.wait(30)
    assert first_errors == [] and second_errors == []
    if step == "fsync_paths":
        assert sorted(os.path.basename(p) for p in calls[0][0]) == ["a", "b"]
    assert len(calls) == 1  # B's changes were in A's batch: B had nothing left to do
    target.close()


def test_a_sync_after_another_batch_began_runs_its_own(tmp_path, monkeypatch) -> None:
    """A blob written after thread A's batch began is not in it: B's sync waits for A's, then fsyncs it."""
    target = open_target("file:" + str(tmp_path), "c", "-", create=True)
    entered, release, calls = _block_first(monkeypatch, "fsync_paths")
    target.put("a", b"a")
    first, first_done, _ = _in_thread(target.sync)
    assert entered.wait(30)
    target.put("b", b"b")
    second, second_done, second_errors = _in_thread(target.sync)
    assert not second_done.wait(0.3)
    release.set()
    assert first_done.wait(30) and second_done.wait(30) and second_errors == []
    assert [[os.path.basename(p) for p in args[0]] for args in calls] == [["a"], ["b"]]
    target.close()


def test_a_failed_batch_fails_the_syncs_waiting_on_it(tmp_path, monkeypatch) -> None:
    import errno

    import clfsload.targets.sync_batches as batches  # the local target's batches of fsyncs
    from clfsload.errors import TerminalError

    target = open_target("file:" + str(tmp_path), "c", "-", create=True)
    entered, release, _ = _block_first(monkeypatch, "fsync_paths")
    blocked = batches.fsync_paths

    def failing(*args):
        blocked(*args)
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(batches, "fsync_paths", failing)
    target.put("a", b"a")
    first, first_done, first_errors = _in_thread(target.sync)
    assert entered.wait(30)
    second, second_done, second_errors = _in_thread(target.sync)
    release.set()
    assert first_done.wait(30) and second_done.wait(30)
    assert len(first_errors) == 1 and isinstance(first_errors[0], TerminalError)
    assert len(second_errors) == 1 and isinstance(second_errors[0], TerminalError)
