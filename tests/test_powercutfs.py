"""powercutfs, the power-cut file system of issue 20 (bench/fusefs/powercutfs.c, powercut.py).

Each test is a durability rule that could fail: what an fsync, an fsyncdir
or their absence leaves after a cut. Where /dev/fuse is missing the module
is skipped with that one reason; where it exists, a missing libfuse3-dev or
fuse3 is a failure (the build error names the apt line).
"""

import ctypes
import os
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path
from typing import Dict

import pytest

from bench.fusefs.mount import PowerCutFS, fuse_available  # bench/ from the checkout (pytest pythonpath)

_WHY_NOT = fuse_available()
if _WHY_NOT:
    pytest.skip(_WHY_NOT, allow_module_level=True)


def _mounted_powercutfs() -> list:
    """This process's powercutfs mounts (others may run in parallel sessions)."""
    with open("/proc/self/mounts") as f:
        return [line for line in f
                if "powercutfs" in line.split()[2] and line.split()[0] == "powercutfs-%d" % os.getpid()]


@pytest.fixture(autouse=True)
def no_mount_left_behind():
    before = _mounted_powercutfs()
    yield
    assert _mounted_powercutfs() == before


@pytest.fixture
def store(tmp_path: Path) -> Path:
    """A durable image: a file, a directory with a file in it."""
    root = tmp_path / "store"
    (root / "dir").mkdir(parents=True)
    (root / "old").write_bytes(b"old content")
    (root / "dir" / "inner").write_bytes(b"inner content")
    return root


@pytest.fixture
def fs(store: Path):
    """PowerCutFS over ``store``, mounted; unmounted at the end whatever happened."""
    with PowerCutFS(store, seed=7) as mounted:
        yield mounted


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write(path: Path, data: bytes, *, fsync: bool) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        if fsync:
            os.fsync(f.fileno())


def _tree(root: Path) -> Dict[str, bytes]:
    """Relative path -> content (b"<dir>" for a directory) of the whole tree."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames:
            out[os.path.relpath(os.path.join(dirpath, name), root)] = b"<dir>"
        for name in filenames:
            out[os.path.relpath(os.path.join(dirpath, name), root)] = Path(dirpath, name).read_bytes()
    return out


def test_mount_shows_the_store_and_a_clean_unmount_keeps_everything(store: Path) -> None:
    before = _tree(store)
    with PowerCutFS(store) as fs:
        assert [line.split()[1] for line in _mounted_powercutfs()] == [str(fs.mountpoint)]
        assert _tree(fs.mountpoint) == before
        assert ".powercutfs" not in os.listdir(fs.mountpoint)  # the control file is never listed
        _write(fs.mountpoint / "new", b"never synced", fsync=False)
        os.unlink(fs.mountpoint / "old")
        pid = fs.proc.pid
    assert _tree(store) == {"dir": b"<dir>", "dir/inner": b"inner content", "new": b"never synced"}
    assert not Path("/proc/%d" % pid).exists() or _zombie_or_gone(pid)
    assert sorted(os.listdir(store.parent)) == ["store"]  # the volatile copy is gone


def _zombie_or_gone(pid: int) -> bool:
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def test_a_cut_with_nothing_synced_gives_back_the_image_as_mounted(store: Path) -> None:
    """Symlinks, hard links, empty folders and modes of the image survive a cut untouched."""
    os.symlink("dir/inner", store / "link")
    os.link(store / "old", store / "dir" / "hard")
    (store / "empty").mkdir()
    os.chmod(store / "dir" / "inner", 0o640)
    before = _tree(store)
    with PowerCutFS(store) as fs:
        _write(fs.mountpoint / "dir" / "hard", b"changed through one name", fsync=False)
        os.unlink(fs.mountpoint / "link")
        os.rmdir(fs.mountpoint / "empty")
        fs.cut()
    assert _tree(store) == before
    assert os.readlink(store / "link") == "dir/inner"
    assert os.stat(store / "old").st_ino == os.stat(store / "dir" / "hard").st_ino
    assert os.stat(store / "dir" / "inner").st_mode & 0o777 == 0o640


def test_unsynced_file_data_is_lost(fs: PowerCutFS, store: Path) -> None:
    with open(fs.mountpoint / "old", "r+b") as f:
        f.write(b"NEW")
    with open(fs.mountpoint / "dir" / "inner", "ab") as f:
        f.write(b" and more")
    fs.cut()
    assert (store / "old").read_bytes() == b"old content"
    assert (store / "dir" / "inner").read_bytes() == b"inner content"


def test_fsynced_file_data_is_kept_and_later_writes_are_not(fs: PowerCutFS, store: Path) -> None:
    fd = os.open(fs.mountpoint / "old", os.O_RDWR)
    try:
        os.pwrite(fd, b"NEW", 0)
        os.fdatasync(fd)
        os.pwrite(fd, b"XYZ", 8)  # not synced
    finally:
        os.close(fd)
    fs.cut()
    assert (store / "old").read_bytes() == b"NEW content"
    fs.mount()
    assert (fs.mountpoint / "old").read_bytes() == b"NEW content"


def test_a_created_file_needs_its_directory_fsynced(fs: PowerCutFS, store: Path) -> None:
    _write(fs.mountpoint / "data_synced_only", b"data", fsync=True)
    _write(fs.mountpoint / "dir" / "both_synced", b"both", fsync=True)
    _write(fs.mountpoint / "dir" / "entry_synced_only", b"lost data", fsync=False)
    _fsync_dir(fs.mountpoint / "dir")
    fs.cut()
    assert _tree(store) == {"old": b"old content", "dir": b"<dir>", "dir/inner": b"inner content",
                            "dir/both_synced": b"both", "dir/entry_synced_only": b""}


def test_a_created_directory_needs_its_parent_fsynced(fs: PowerCutFS, store: Path) -> None:
    os.makedirs(fs.mountpoint / "a" / "b")
    _write(fs.mountpoint / "a" / "b" / "f", b"deep", fsync=True)
    _fsync_dir(fs.mountpoint / "a" / "b")
    _fsync_dir(fs.mountpoint / "a")  # the root is not synced: a/ is not durable, nor what is in it
    fs.cut()
    assert not (store / "a").exists()
    fs.mount()
    os.makedirs(fs.mountpoint / "a" / "b")
    _write(fs.mountpoint / "a" / "b" / "f", b"deep", fsync=True)
    for d in ("a/b", "a", "."):
        _fsync_dir(fs.mountpoint / d)
    fs.cut()
    assert (store / "a" / "b" / "f").read_bytes() == b"deep"


def test_rename_is_durable_only_after_fsyncdir(fs: PowerCutFS, store: Path) -> None:
    os.rename(fs.mountpoint / "old", fs.mountpoint / "renamed")
    fs.cut()
    assert sorted(os.listdir(store)) == ["dir", "old"]  # the old name is back
    fs.mount()
    os.rename(fs.mountpoint / "old", fs.mountpoint / "renamed")
    _fsync_dir(fs.mountpoint)
    fs.cut()
    assert sorted(os.listdir(store)) == ["dir", "renamed"]
    assert (store / "renamed").read_bytes() == b"old content"


def test_the_temp_file_then_rename_pattern_of_a_file_target(fs: PowerCutFS, store: Path) -> None:
    """Write a temporary name, fsync it, rename over the real name, fsync the folder: all or nothing."""
    m = fs.mountpoint / "dir"
    _write(m / "inner.tmp", b"replacement", fsync=True)
    os.rename(m / "inner.tmp", m / "inner")
    fs.cut()
    assert (store / "dir" / "inner").read_bytes() == b"inner content"  # rename not durable: old file
    assert not (store / "dir" / "inner.tmp").exists()  # and the temporary name was never durable
    fs.mount()
    m = fs.mountpoint / "dir"
    _write(m / "inner.tmp", b"replacement", fsync=True)
    os.rename(m / "inner.tmp", m / "inner")
    _fsync_dir(m)
    fs.cut()
    assert _tree(store / "dir") == {"inner": b"replacement"}


def test_a_rename_across_directories_is_durable_per_directory(fs: PowerCutFS, store: Path) -> None:
    os.rename(fs.mountpoint / "old", fs.mountpoint / "dir" / "moved")
    _fsync_dir(fs.mountpoint / "dir")  # only the destination: the file is durable under both names
    fs.cut()
    assert (store / "old").read_bytes() == (store / "dir" / "moved").read_bytes() == b"old content"
    assert os.stat(store / "old").st_ino == os.stat(store / "dir" / "moved").st_ino  # one inode
    fs.mount()
    os.rename(fs.mountpoint / "dir" / "inner", fs.mountpoint / "moved_up")
    _fsync_dir(fs.mountpoint / "dir")  # only the source: durable under neither name
    fs.cut()
    assert "inner" not in os.listdir(store / "dir") and not (store / "moved_up").exists()


def test_unlink_is_undone_without_fsyncdir(fs: PowerCutFS, store: Path) -> None:
    os.unlink(fs.mountpoint / "old")
    os.unlink(fs.mountpoint / "dir" / "inner")
    os.rmdir(fs.mountpoint / "dir")
    fs.cut()
    assert _tree(store) == {"old": b"old content", "dir": b"<dir>", "dir/inner": b"inner content"}
    fs.mount()
    os.unlink(fs.mountpoint / "old")
    _fsync_dir(fs.mountpoint)
    fs.cut()
    assert sorted(os.listdir(store)) == ["dir"]


def test_an_inode_number_reused_after_unlink_is_a_new_file(fs: PowerCutFS, store: Path) -> None:
    """Durable data belongs to an inode, and a backing inode number can come back for a new file."""
    for i in range(20):
        _write(fs.mountpoint / ("f%d" % i), b"first %d" % i, fsync=True)
    _fsync_dir(fs.mountpoint)
    for i in range(20):
        os.unlink(fs.mountpoint / ("f%d" % i))
        _write(fs.mountpoint / ("g%d" % i), b"second %d, never synced" % i, fsync=False)
    fs.cut()
    assert {n: c for n, c in _tree(store).items() if n[0] in "fg"} == {"f%d" % i: b"first %d" % i for i in range(20)}


def test_arm_cuts_the_power_at_the_nth_write(fs: PowerCutFS, store: Path) -> None:
    fd = os.open(fs.mountpoint / "old", os.O_RDWR)
    try:
        fs.arm(writes=3)
        assert fs.stats()["armed"] == 3
        for i in range(5):
            os.pwrite(fd, b"v%d" % i, 0)  # one write-like operation
            os.fsync(fd)
            assert fs.stats()["cut"] == (i >= 2)
    finally:
        os.close(fd)
    stats = fs.stats()
    assert stats["cut_at"] == stats["writes"] - 2 and stats["lost_fsyncs"] == 3 and stats["fsyncs"] == 5
    _write(fs.mountpoint / "after", b"x", fsync=True)
    _fsync_dir(fs.mountpoint)  # the power is off: this counts for nothing
    fs.cut()
    assert (store / "old").read_bytes() == b"v1d content"
    assert not (store / "after").exists()


def test_unmount_after_the_armed_cut_is_the_cut(store: Path) -> None:
    with PowerCutFS(store) as fs:
        fs.arm(writes=1)
        _write(fs.mountpoint / "old", b"replaced", fsync=True)
        assert fs.stats()["cut"]
    assert (store / "old").read_bytes() == b"old content"


def _torn_result(store: Path, seed: int, tear: bool = True) -> bytes:
    durable, live = b"D" * 5000, bytes(range(256)) * 30
    with PowerCutFS(store, seed=seed, tear=tear) as fs:
        _write(fs.mountpoint / "f", durable, fsync=True)
        _fsync_dir(fs.mountpoint)
        with open(fs.mountpoint / "f", "r+b") as f:
            f.write(live)  # not synced
        fs.cut()
    data = (store / "f").read_bytes()
    os.unlink(store / "f")
    return data


def test_tear_is_deterministic_for_a_seed(store: Path) -> None:
    durable, live = b"D" * 5000, bytes(range(256)) * 30
    results = {seed: _torn_result(store, seed) for seed in range(6)}
    assert _torn_result(store, 3) == results[3]
    for data in results.values():  # the rule: a prefix of the new content over the old, in place
        assert any(data == live[:k] + durable[k:] for k in range(len(live) + 1))
    assert len(set(results.values())) > 1 and any(d not in (durable, live) for d in results.values())
    assert _torn_result(store, 3, tear=False) == durable


def test_tear_keeps_every_byte_at_its_offset(store: Path) -> None:
    """An unsynced truncation and shorter rewrite tear in place: never the old bytes shifted."""
    for seed in range(8):
        with PowerCutFS(store, seed=seed, tear=True) as fs:
            _write(fs.mountpoint / "old", b"xy", fsync=False)  # O_TRUNC, then 2 bytes
            fs.cut()
        assert (store / "old").read_bytes() in (b"old content", b"xld content", b"xy" + b"d content")


def test_tear_gives_a_never_synced_file_with_a_durable_name_a_prefix(store: Path) -> None:
    sizes = set()
    for seed in range(4):
        with PowerCutFS(store, seed=seed, tear=True) as fs:
            _write(fs.mountpoint / "f", b"0123456789" * 100, fsync=False)
            _fsync_dir(fs.mountpoint)
            fs.cut()
        data = (store / "f").read_bytes()
        assert data == (b"0123456789" * 100)[:len(data)]
        sizes.add(len(data))
        os.unlink(store / "f")
    assert len(sizes) > 1


def test_o_sync_writes_are_durable(fs: PowerCutFS, store: Path) -> None:
    fd = os.open(fs.mountpoint / "old", os.O_WRONLY | os.O_SYNC)
    try:
        os.write(fd, b"SYNC")
    finally:
        os.close(fd)
    fs.cut()
    assert (store / "old").read_bytes() == b"SYNCcontent"


def test_syncfs_makes_nothing_durable(fs: PowerCutFS, store: Path) -> None:
    """The kernel sends FUSE_SYNCFS to virtiofs only: on this mount syncfs(2) reaches no daemon."""
    _write(fs.mountpoint / "old", b"replaced", fsync=False)
    fd = os.open(fs.mountpoint, os.O_RDONLY)
    try:
        assert ctypes.CDLL(None, use_errno=True).syncfs(fd) == 0
    finally:
        os.close(fd)
    assert fs.stats()["fsyncs"] == 0
    fs.cut()
    assert (store / "old").read_bytes() == b"old content"


def test_concurrent_writers_keep_exactly_what_they_synced(fs: PowerCutFS, store: Path) -> None:
    """Eight threads each write files the way a file: target does (temporary name, fsync, rename,
    fsync of the folder) and others without any sync; after the cut, all of the first, none of the second."""
    errors = []

    def writer(t: int) -> None:
        try:
            d = fs.mountpoint / ("t%d" % t)
            os.mkdir(d)
            for i in range(25):
                body = (b"thread %d file %d " % (t, i)) * (i + 1)
                _write(d / (".tmp%d" % i), body, fsync=True)
                os.rename(d / (".tmp%d" % i), d / ("f%d" % i))
                _write(d / ("lost%d" % i), body, fsync=False)
                with pytest.raises(FileExistsError):
                    os.open(d / ("f%d" % i), os.O_CREAT | os.O_EXCL | os.O_WRONLY)
                _fsync_dir(d)
                os.unlink(d / ("lost%d" % i))
        except BaseException as e:  # reported by the main thread
            errors.append(e)

    threads = [threading.Thread(target=writer, args=(t,)) for t in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors
    _fsync_dir(fs.mountpoint)
    fs.cut()
    for t in range(8):
        expected = {"f%d" % i: (b"thread %d file %d " % (t, i)) * (i + 1) for i in range(25)}
        # lost24 was unlinked after the last fsyncdir: its name is durable, its data never was
        expected["lost24"] = b""
        assert _tree(store / ("t%d" % t)) == expected


def test_sqlite_wal_full_keeps_every_committed_transaction(store: Path) -> None:
    committed = {}
    for n in (30, 90, 10 ** 9):  # the last one never cuts before fs.cut()
        with PowerCutFS(store, seed=n, tear=True) as fs:
            db = sqlite3.connect(str(fs.mountpoint / "state.db"), isolation_level=None)
            try:
                assert db.execute("PRAGMA journal_mode=WAL").fetchone()[0] == "wal"
                db.execute("PRAGMA synchronous=FULL")
                db.execute("CREATE TABLE IF NOT EXISTS t (run INTEGER, i INTEGER, pad BLOB)")
                fs.arm(writes=n)
                done = 0
                for i in range(200):
                    db.execute("INSERT INTO t VALUES (?, ?, ?)", (n, i, os.urandom(i * 7)))
                    if fs.stats()["cut"]:
                        break
                    done = i + 1  # committed before the power went
                fs.cut()
            finally:
                db.close()
            committed[n] = done
        with PowerCutFS(store) as fs:  # recovery on a fresh mount
            db = sqlite3.connect(str(fs.mountpoint / "state.db"))
            try:
                assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
                rows = db.execute("SELECT i FROM t WHERE run = ? ORDER BY i", (n,)).fetchall()
            finally:
                db.close()
        # every committed row, and at most the one whose commit was in flight at the cut
        assert [r[0] for r in rows] == list(range(len(rows))) and done <= len(rows) <= done + 1
    assert committed[30] < committed[90] < committed[10 ** 9] == 200


_SQLITE_WRITER = """
import sqlite3, sys
db = sqlite3.connect(sys.argv[1], timeout=60, isolation_level=None)
db.execute("PRAGMA synchronous=FULL")
for i in range(50):
    db.execute("INSERT INTO t VALUES (?, ?)", (int(sys.argv[2]), i))
db.close()
"""


def test_sqlite_wal_with_several_writer_processes(store: Path) -> None:
    """Processes share the WAL index (-shm, mmapped through FUSE) and their locks: nothing committed is lost."""
    with PowerCutFS(store, seed=3, tear=True) as fs:
        path = str(fs.mountpoint / "state.db")
        db = sqlite3.connect(path, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("CREATE TABLE t (k INTEGER, i INTEGER, PRIMARY KEY (k, i))")
            procs = [subprocess.Popen([sys.executable, "-c", _SQLITE_WRITER, path, str(k)]) for k in range(4)]
            assert [p.wait(timeout=120) for p in procs] == [0] * 4
            fs.cut()
        finally:
            db.close()
    with PowerCutFS(store) as fs:
        db = sqlite3.connect(str(fs.mountpoint / "state.db"))
        try:
            assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            assert db.execute("SELECT count(*) FROM t").fetchone()[0] == 200
        finally:
            db.close()


def test_sqlite_synchronous_off_loses_committed_transactions(store: Path) -> None:
    with PowerCutFS(store) as fs:
        db = sqlite3.connect(str(fs.mountpoint / "state.db"), isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("CREATE TABLE t (i INTEGER)")
            db.execute("PRAGMA synchronous=OFF")
            for i in range(50):
                db.execute("INSERT INTO t VALUES (?)", (i,))
            assert db.execute("SELECT count(*) FROM t").fetchone()[0] == 50
            fs.cut()
        finally:
            db.close()
    with PowerCutFS(store) as fs:
        db = sqlite3.connect(str(fs.mountpoint / "state.db"))
        try:
            assert db.execute("SELECT count(*) FROM t").fetchone()[0] < 50
        finally:
            db.close()


def test_leaves_no_mount_nor_daemon_when_the_body_raises(store: Path) -> None:
    with pytest.raises(ZeroDivisionError):
        with PowerCutFS(store) as fs:
            pid, mountpoint = fs.proc.pid, fs.mountpoint
            (fs.mountpoint / "new").write_bytes(b"kept: a clean unmount")
            f = open(fs.mountpoint / "old", "rb")  # an open file does not block the unmount
            1 / 0
    try:
        f.close()
    except OSError:
        pass  # ENOTCONN: the file system went from under it, as it should
    assert fs.proc is None and _zombie_or_gone(pid)
    assert not any(line.split()[1] == str(mountpoint) for line in _mounted_powercutfs())
    assert not mountpoint.exists()  # the temporary mountpoint is removed
    assert (store / "new").read_bytes() == b"kept: a clean unmount"


def test_cut_with_a_file_open_and_remount_at_the_same_mountpoint(fs: PowerCutFS, store: Path) -> None:
    mountpoint = fs.mountpoint
    fd = os.open(fs.mountpoint / "dir" / "inner", os.O_WRONLY | os.O_APPEND)
    try:
        os.write(fd, b" unsynced")
        fs.cut()
        assert all(line.split()[1] != str(mountpoint) for line in _mounted_powercutfs())
        with pytest.raises(OSError):  # the file system is gone from under the open file
            os.write(fd, b"more")
    finally:
        try:
            os.close(fd)
        except OSError:
            pass  # ENOTCONN: the file system went from under it, as it should
    fs.mount()
    assert fs.mountpoint == mountpoint
    assert (mountpoint / "dir" / "inner").read_bytes() == b"inner content"
    assert fs.stats()["writes"] == 0 and not fs.stats()["cut"]


def test_a_leftover_volatile_copy_is_discarded(store: Path) -> None:
    leftover = store.parent / ".store.powercutfs"
    (leftover / "live").mkdir(parents=True)
    (leftover / "live" / "junk").write_bytes(b"from a crashed run")
    with PowerCutFS(store) as fs:
        assert sorted(os.listdir(fs.mountpoint)) == ["dir", "old"]
    assert sorted(os.listdir(store.parent)) == ["store"]
