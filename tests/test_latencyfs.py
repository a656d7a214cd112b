"""latencyfs, the FUSE file system of the source-latency benchmark (bench/fusefs).

Not timing tests: a delay is checked only as a lower bound, concurrency as a
peak the file system itself counted. Where /dev/fuse is missing the module
is skipped with that one reason; where it exists, a missing libfuse3-dev or
fuse3 is a failure (the build error names the apt line).
"""

import os
import stat
import threading
import time
from pathlib import Path

import pytest

from bench.fusefs.daemon import own_fsname
from bench.fusefs.mount import LatencyFS, fuse_available  # bench/ from the checkout (pytest pythonpath)

_WHY_NOT = fuse_available()
if _WHY_NOT:
    pytest.skip(_WHY_NOT, allow_module_level=True)


def _mounted_latencyfs() -> list:
    """This process's latencyfs mounts (other sessions' ones on the machine are theirs)."""
    mine = own_fsname("latencyfs")
    with open("/proc/self/mounts") as f:
        return [line for line in f if "latencyfs" in line.split()[2] and line.split()[0] == mine]


@pytest.fixture(autouse=True)
def no_mount_left_behind():
    before = _mounted_latencyfs()
    yield
    assert _mounted_latencyfs() == before


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """Directories, files of awkward sizes (empty, one byte, several FUSE reads), a symlink, a hard link."""
    root = tmp_path / "src"
    (root / "a" / "b").mkdir(parents=True)
    (root / "empty").mkdir()
    for i, size in enumerate([0, 1, 4095, 4096, 131073, 1 << 20]):
        (root / "a" / ("f%d" % i)).write_bytes(os.urandom(size))
    for i in range(40):
        (root / "a" / "b" / ("small%02d.txt" % i)).write_bytes(b"line %d\n" % i * (i + 1))
    (root / "a" / "link").symlink_to("b/small01.txt")
    os.link(root / "a" / "f1", root / "hard")
    return root


def _snapshot(root: Path) -> dict:
    """Relative path -> (type, mode bits, size, content or link target, inode group) for the whole tree."""
    out, inodes = {}, {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode):
                body = os.readlink(path).encode()
            elif stat.S_ISREG(st.st_mode):
                body = path.read_bytes()
            else:
                body = b""
            group = inodes.setdefault(st.st_ino, len(inodes))  # hard links share a group
            out[str(path.relative_to(root))] = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode),
                                                st.st_size, body, group)
    return out


def test_mirrors_the_tree_byte_for_byte(tree: Path) -> None:
    before = len(_mounted_latencyfs())
    with LatencyFS(tree, cache=False) as fs:
        # named for this process in the mount table, so the leftover check sees its own mounts only
        assert len(_mounted_latencyfs()) == before + 1
        seen = _snapshot(fs.mountpoint)
        assert ".latencyfs" not in os.listdir(fs.mountpoint)  # the control file is never listed
        assert fs.stats()["total"] > 0
    assert seen == _snapshot(tree)
    assert len(seen) == 3 + 6 + 40 + 2  # directories, a/f*, a/b/*, link and hard


def test_readonly_refuses_changes_and_readwrite_passes_them_on(tree: Path) -> None:
    with LatencyFS(tree, readonly=True) as fs:
        with pytest.raises(OSError):
            (fs.mountpoint / "new").write_bytes(b"x")
        with pytest.raises(OSError):
            os.unlink(fs.mountpoint / "a" / "f0")
    assert not (tree / "new").exists()
    with LatencyFS(tree, readonly=False) as fs:
        (fs.mountpoint / "new").write_bytes(b"written")
        os.rename(fs.mountpoint / "new", fs.mountpoint / "a" / "renamed")
        os.mkdir(fs.mountpoint / "d")
    assert (tree / "a" / "renamed").read_bytes() == b"written"
    assert (tree / "d").is_dir()


def test_every_operation_waits_at_least_the_delay(tree: Path) -> None:
    delay = 0.05
    with LatencyFS(tree, delay_us=int(delay * 1e6), cache=False, max_threads=16) as fs:
        start = time.perf_counter()
        os.lstat(fs.mountpoint / "hard")  # lookup: one operation at least
        assert time.perf_counter() - start >= delay
        fs.reset()
        start = time.perf_counter()
        (fs.mountpoint / "a" / "f1").read_bytes()
        elapsed = time.perf_counter() - start
        ops = fs.stats()["total"]
        # the operations this read sent, if run one after another; at least lookups, open, read
        assert ops >= 4
        assert elapsed >= delay * 2


def test_readahead_sets_the_read_size_the_file_system_sees(tree: Path) -> None:
    reads = {}
    for kib in (None, 1024):
        with LatencyFS(tree, readahead_kib=kib, max_threads=8) as fs:
            assert (fs.mountpoint / "a" / "f5").read_bytes() == (tree / "a" / "f5").read_bytes()  # 1 MiB
            reads[kib] = fs.stats()["read"]
    assert reads[None] >= 8  # 128 KiB at a time
    assert reads[1024] <= 3


def test_in_flight_counter_sees_concurrent_reads(tree: Path) -> None:
    n = 16
    files = sorted((tree / "a" / "b").iterdir())[:n]
    with LatencyFS(tree, delay_us=100_000, cache=True, max_threads=64) as fs:
        mine = [fs.mountpoint / f.relative_to(tree) for f in files]
        for path in mine:
            os.lstat(path)  # entries and attributes cached: what remains is open, read, ...
        fs.reset()
        assert fs.stats()["peak"] == 0
        barrier = threading.Barrier(n)
        contents = {}

        def read(path: Path) -> None:
            barrier.wait()
            contents[path.name] = path.read_bytes()

        workers = [threading.Thread(target=read, args=(p,)) for p in mine]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        stats = fs.stats()
        deadline = time.monotonic() + 5  # releases are sent after close(2) returns
        while fs.stats()["inflight"] and time.monotonic() < deadline:
            time.sleep(0.02)
        drained = fs.stats()
    assert contents == {f.name: f.read_bytes() for f in files}
    assert stats["peak"] >= n
    assert drained["inflight"] == 0
    assert stats["open"] >= n and stats["read"] >= n
    assert drained["busy_us"] >= drained["total"] * 100_000  # every operation lasted at least the delay


def test_lookups_in_one_directory_run_in_parallel(tree: Path) -> None:
    """NFS looks names up in parallel; libfuse < 3.17 would have the kernel send them one at a time."""
    n = 16
    # entries cached (1 s): a and a/b are looked up once, below, so what the
    # threads send is one LOOKUP each of a new name in a/b (revalidations of
    # cached entries would run in parallel either way)
    with LatencyFS(tree, delay_us=100_000, cache=True, max_threads=64) as fs:
        os.lstat(fs.mountpoint / "a" / "b")
        fs.reset()
        barrier = threading.Barrier(n)

        def look(i: int) -> None:
            barrier.wait()
            os.lstat(fs.mountpoint / "a" / "b" / ("small%02d.txt" % i))

        workers = [threading.Thread(target=look, args=(i,)) for i in range(n)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        stats = fs.stats()
    assert stats["getattr"] == n
    assert stats["peak"] >= n // 2  # one at a time without the fix


def test_a_held_read_blocks_until_released_and_the_rest_goes_on(tree: Path) -> None:
    with LatencyFS(tree, delay_us=1000) as fs:
        fs.hold("a/f2", ops=("read",))
        result = []
        reader = threading.Thread(target=lambda: result.append((fs.mountpoint / "a" / "f2").read_bytes()))
        reader.start()
        deadline = time.monotonic() + 5
        while fs.stats()["held"] < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert fs.stats()["held"] == 1
        # another file of the same directory reads meanwhile
        assert (fs.mountpoint / "a" / "f3").read_bytes() == (tree / "a" / "f3").read_bytes()
        time.sleep(0.2)
        assert reader.is_alive() and not result
        fs.release()
        reader.join(5)
        assert not reader.is_alive()
        assert result == [(tree / "a" / "f2").read_bytes()]
        assert fs.stats()["held"] == 0


def test_unmounts_when_the_body_raises_even_with_a_read_held(tree: Path) -> None:
    reader = None
    with pytest.raises(KeyboardInterrupt):
        with LatencyFS(tree) as fs:
            fs.hold("a/f1")
            reader = threading.Thread(target=lambda: (fs.mountpoint / "a" / "f1").read_bytes(), daemon=True)
            reader.start()
            time.sleep(0.1)
            raise KeyboardInterrupt
    reader.join(10)
    assert not reader.is_alive()
    assert fs.proc is None and not fs._mounted()
