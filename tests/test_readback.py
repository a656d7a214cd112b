"""Reading containers back: ``ls``, ``cat``, ``get`` and ``verify`` (clfsload.cli.commands), restore and compare.

The commands run in-process through :func:`clfsload.cli.commands.main`, the
function the command line dispatches to. Every golden container is listed,
read and restored; a restored tree must match both the container and the
source tree. A fresh load made by the real loader verifies clean, and each
kind of damage (to the container or to the source) is caught with exit
code 1 and a line naming the path.
"""

import os
import random
import shutil
import socket
import stat
from collections import defaultdict
from pathlib import Path
from typing import Callable, Dict, List, Tuple

import pytest

from clfsload._native import envelope, hashing
from clfsload.clfs.constants import FIRST_SEGMENT_BYTES, ROOT_ID, Btype
from clfsload.clfs.container import Container, FolderSource, WalkEntry
from clfsload.cli.commands import main
from clfsload.read.restore import DestinationExistsError, restore
from clfsload.read.verify import Difference, _first_difference, compare_dirs, compare_tree

from _load import cli
from _trees import GOLDEN, GOLDEN_RUNS, source_trees  # noqa: F401
from azurite import azurite  # noqa: F401

GOLDEN_NAMES = sorted(GOLDEN_RUNS)
GOLDEN_ACCOUNT = "file:" + str(GOLDEN)
SECRET_SIG = "c2VjcmV0LXNpZ25hdHVyZS1kby1ub3QtcHJpbnQ%3D"
SAS = "sv=2022-11-02&sr=c&sp=rl&se=2030-01-01T00%3A00%3A00Z&sig=" + SECRET_SIG


def lenient(name: str) -> Container:
    return Container(FolderSource(str(GOLDEN / name)), strict=False)


def source_of(name: str, trees: Path) -> Path:
    return trees / GOLDEN_RUNS[name][0]


def run(capsys, *args: str) -> Tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    assert "Traceback" not in str(err)
    return code, out, err


# --- the golden containers -------------------------------------------------------


@pytest.mark.parametrize("name", GOLDEN_NAMES)
def test_ls_root_lists_the_names(name, source_trees, capsysbinary):
    code = main(["ls", GOLDEN_ACCOUNT, name])
    out = capsysbinary.readouterr().out
    assert code == 0
    assert out.splitlines() == sorted(os.listdir(os.fsencode(source_of(name, source_trees))))


def test_ls_long_and_recursive(capsysbinary):
    assert main(["ls", GOLDEN_ACCOUNT, "special", "-l", "-R"]) == 0
    lines = capsysbinary.readouterr().out.decode().splitlines()
    assert lines[0] == "/:" and "" in lines and "/dev:" in lines
    by_name = {line.split(" ")[-1]: line for line in lines if " " in line}
    assert by_name["null-like"].startswith("crw-r--r--") and " 1, 3 2023-11-14 22:13:20.123456716 +0000 " in by_name[
        "null-like"]  # the 1700000000.123456789 s of the source after the float rule (§10.4)
    assert by_name["setuid"].startswith("-rwsr-xr-x   1     0     0         10 ")
    assert main(["ls", GOLDEN_ACCOUNT, "basic", "-l", "link"]) == 0
    assert capsysbinary.readouterr().out.decode().rstrip().endswith(" link -> a/hello.txt")


@pytest.mark.parametrize("name", GOLDEN_NAMES)
def test_cat_equals_the_source_file(name, source_trees, capsysbinary):
    container = lenient(name)
    files = [e for e in container.walk() if e.inode.btype == Btype.REG]
    biggest = max(files, key=lambda e: (e.inode.vattr.size, e.path))
    assert main(["cat", GOLDEN_ACCOUNT, name, os.fsdecode(biggest.path)]) == 0
    out = capsysbinary.readouterr().out
    assert out == (source_of(name, source_trees) / os.fsdecode(biggest.path)).read_bytes()
    assert len(out) == biggest.inode.vattr.size


def _restored_matches_container(container: Container, dest: Path) -> None:
    """Independent of compare_tree: lstat of every restored path against the container, before any read."""
    groups: Dict[bytes, set] = defaultdict(set)
    for entry in container.walk():
        attrs = entry.inode.vattr
        st = os.lstat(os.path.join(os.fsencode(dest), entry.path) if entry.path else dest)
        where = entry.path
        if attrs.btype != Btype.LNK:
            assert st.st_mode == attrs.mode, where
        else:
            assert os.readlink(os.path.join(os.fsencode(dest), entry.path)) == entry.inode.obj.data
        assert (st.st_uid, st.st_gid) == (attrs.uid, attrs.gid), where
        assert st.st_mtime_ns == attrs.mtime_sec * 10**9 + attrs.mtime_nsec, where
        assert st.st_atime_ns == attrs.atime_sec * 10**9 + attrs.atime_nsec, where
        if attrs.btype in (Btype.BLK, Btype.CHR):
            assert (os.major(st.st_rdev), os.minor(st.st_rdev)) == (attrs.rdev_major, attrs.rdev_minor), where
        if not entry.inode.is_dir:
            groups[entry.fh].add(st.st_ino)
            assert st.st_nlink == attrs.nlink, where
    assert all(len(inos) == 1 for inos in groups.values())  # one local inode per container inode
    assert len({next(iter(inos)) for inos in groups.values()}) == len(groups)  # and never shared


@pytest.mark.parametrize("name", GOLDEN_NAMES)
def test_get_restores_the_whole_tree(name, source_trees, tmp_path, capsys):
    dest = tmp_path / "restored"
    code, out, err = run(capsys, "get", GOLDEN_ACCOUNT, name, "/", str(dest))
    assert (code, err) == (0, ""), err
    assert out.startswith("restored ") and "notes" not in out
    container = lenient(name)
    _restored_matches_container(container, dest)
    assert compare_tree(container, str(dest), deep=True) == []
    preserved = GOLDEN_RUNS[name][1]
    differences = compare_dirs(str(source_of(name, source_trees)), str(dest), hardlinks=preserved)
    assert differences == [], "\n".join(map(str, differences[:10]))
    if name == "special":  # we run as root: the device nodes are real
        assert stat.S_ISCHR(os.lstat(dest / "dev" / "null-like").st_mode)
        assert os.lstat(dest / "setuid").st_mode == 0o104755


def test_get_one_file_a_subtree_and_overwrite(tmp_path, capsys):
    # a subtree whose hard links partly lead outside it: those become plain files
    code, out, err = run(capsys, "get", GOLDEN_ACCOUNT, "hardlinks-preserve", "/y", str(tmp_path / "y"))
    assert code == 0, err
    assert sorted(os.listdir(tmp_path / "y")) == ["one-again", "pipe-link", "three-b"]
    assert os.lstat(tmp_path / "y" / "three-b").st_nlink == 1
    assert stat.S_ISFIFO(os.lstat(tmp_path / "y" / "pipe-link").st_mode)
    # one file; then the same again is refused, and nothing is touched
    target = tmp_path / "hello"
    assert run(capsys, "get", GOLDEN_ACCOUNT, "basic", "a/hello.txt", str(target))[0] == 0
    assert target.read_bytes() == b"hello\n"
    target.write_bytes(b"local edit")
    code, out, err = run(capsys, "get", GOLDEN_ACCOUNT, "basic", "a/hello.txt", str(target))
    assert code == 1 and err == "clfsload get: '%s' already exists; nothing was restored " \
                                "(pass --overwrite to replace files)\n" % target  # fmt: skip
    assert target.read_bytes() == b"local edit"
    assert run(capsys, "get", GOLDEN_ACCOUNT, "basic", "/a/hello.txt", str(target), "--overwrite")[0] == 0
    assert target.read_bytes() == b"hello\n"
    # a directory in the way of a file is never removed
    (tmp_path / "d").mkdir()
    with pytest.raises(DestinationExistsError, match="is a directory"):
        restore(lenient("basic"), b"zero", str(tmp_path / "d"), overwrite=True)
    # an existing directory is reused for a directory; its files in the way are refused
    code, _, err = run(capsys, "get", GOLDEN_ACCOUNT, "basic", "/", str(tmp_path / "y"))
    assert code == 0, err
    assert run(capsys, "get", GOLDEN_ACCOUNT, "basic", "/", str(tmp_path / "y"))[0] == 1


def test_command_errors_are_one_line(tmp_path, capsys):
    code, out, err = run(capsys, "cat", GOLDEN_ACCOUNT, "basic", "x")
    assert (code, out, err) == (1, "", "clfsload cat: no such path in the container: 'x'\n")
    assert run(capsys, "cat", GOLDEN_ACCOUNT, "basic", "a")[2] == "clfsload cat: 'a' is a directory\n"
    assert "symbolic link" in run(capsys, "cat", GOLDEN_ACCOUNT, "basic", "link")[2]
    assert run(capsys, "ls", GOLDEN_ACCOUNT, "basic", "nope/x")[:2] == (1, "")
    assert run(capsys, "get", GOLDEN_ACCOUNT, "basic", "/", str(tmp_path / "no" / "parent"))[0] == 1
    missing = run(capsys, "ls", GOLDEN_ACCOUNT, "no-such-container")
    assert missing[0] == 1 and len(missing[2].splitlines()) == 1
    for argv in ([], ["frob"], ["ls"], ["ls", GOLDEN_ACCOUNT], ["verify", GOLDEN_ACCOUNT, "basic", str(tmp_path / "x")],
                 ["get", GOLDEN_ACCOUNT, "basic", "/"], ["ls", GOLDEN_ACCOUNT, "basic", "--bogus"]):
        assert run(capsys, *argv)[0] == 2, argv
    assert run(capsys, "ls", "--help")[0] == 0


def test_no_secret_is_ever_printed(capsys, tmp_path):
    for argv in (["ls", GOLDEN_ACCOUNT, "basic", "--credential", SAS],  # a file: target takes none
                 ["ls", GOLDEN_ACCOUNT, SAS],  # a SAS in place of CONTAINER
                 ["ls", SAS, "basic"],
                 ["cat", GOLDEN_ACCOUNT, "basic", SAS],
                 ["ls", GOLDEN_ACCOUNT, "basic", "--bogus", SAS],
                 [SAS]):
        code, out, err = run(capsys, *argv)
        assert code in (1, 2), argv
        assert SECRET_SIG not in out + err and "c2VjcmV0" not in out + err, argv


class _Tampered(Container):
    """basic, with walk entries a damaged container could produce: a ``..`` name and a name with ``/``."""

    def walk(self):
        entries = list(super().walk())
        zero = next(e for e in entries if e.path == b"zero")
        return iter(entries + [WalkEntry(b"../escape", ROOT_ID, zero.inode),
                               WalkEntry(b"link/escape", ROOT_ID, zero.inode)])  # fmt: skip


def test_restore_never_writes_outside_the_destination(tmp_path):
    dest = tmp_path / "in" / "dest"
    dest.parent.mkdir()
    report = restore(_Tampered(FolderSource(str(GOLDEN / "basic")), strict=False), b"/", str(dest))
    assert (b"../escape", "its directory was not restored") in report.failures
    assert (b"link/escape", "its directory was not restored") in report.failures
    assert not (tmp_path / "in" / "escape").exists() and not (dest / "a" / "escape").exists()
    assert report.files == 7 and report.damaged == [] and not report.complete


# --- verify on a fresh load ----------------------------------------------------------

MTIME_NS = 1_600_000_000 * 10**9 + 987_654_321


def build_source(root: Path) -> Path:
    """A small tree with every kind of object; the same bytes, modes and times on every call."""
    rng = random.Random(2024)
    (root / "dir" / "sub").mkdir(parents=True)
    files = {
        "small.txt": (b"small file\n", 0o644),
        "head.bin": (rng.randbytes(10_000), 0o644),  # random: the blob is stored raw
        "rand.bin": (rng.randbytes(FIRST_SEGMENT_BYTES + 50_000), 0o644),  # inode DATA + one segment
        "gone.txt": (b"removed from the source later\n", 0o644),
        "dir/mode.txt": (b"mode\n", 0o640),
        "dir/sub/deep.txt": (b"deep\n", 0o600),
    }
    for name, (data, mode) in files.items():
        (root / name).write_bytes(data)
        os.chmod(root / name, mode)
    os.link(root / "dir" / "sub" / "deep.txt", root / "dir" / "twin.txt")  # split by the default load
    os.symlink("small.txt", root / "link")
    os.mkfifo(root / "fifo", 0o600)
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(root / "sock"))
    os.chmod(root / "sock", 0o755)
    for dirpath, dirnames, filenames in os.walk(root, topdown=False):
        for name in filenames + dirnames:
            os.utime(os.path.join(dirpath, name), ns=(MTIME_NS, MTIME_NS), follow_symlinks=False)
    os.utime(root, ns=(MTIME_NS, MTIME_NS))
    return root


@pytest.fixture(scope="module")
def fresh(tmp_path_factory) -> Tuple[Path, Path]:
    """(folder of the file: account, source tree) of one load by the real command line."""
    base = tmp_path_factory.mktemp("fresh")
    source = build_source(tmp_path_factory.mktemp("s") / "src")  # short: a socket path has a length limit
    (base / "out").mkdir()
    done = cli("--new", str(base / "state"), str(source), "file:" + str(base / "out"), "c", "-")
    assert done.returncode == 0, done.stdout + done.stderr
    return base / "out", source


def verify(capsys, account_dir: Path, source: Path, *extra: str, container: str = "c") -> Tuple[int, List[str]]:
    code, out, err = run(capsys, "verify", "file:" + str(account_dir), container, str(source), *extra)
    assert err == ""
    return code, out.splitlines()


def test_verify_fresh_load(fresh, capsys, monkeypatch):
    out_dir, source = fresh
    monkeypatch.setenv("CLFSLOAD_SAS_TOKEN", SAS)  # ignored: a file: target takes no credential
    for extra in ([], ["--deep"]):
        code, lines = verify(capsys, out_dir, source, *extra)
        assert code == 0, lines
        assert lines == ["verify: OK: 13 paths match the source (%s check)" % ("deep" if extra else "fast")]
    code, lines = verify(capsys, out_dir, source, "--output", "json", "--preserve-hardlinks", "0")
    assert code == 0 and '"ok": true' in "\n".join(lines)
    # the load split the hard link; saying it was preserved finds the difference
    code, lines = verify(capsys, out_dir, source, "--preserve-hardlinks", "1")
    assert code == 1 and any(line.startswith("/dir/sub/deep.txt: hard links: ") for line in lines), lines


def test_get_notes_the_socket(fresh, tmp_path, capsys):
    out_dir, source = fresh
    code, out, err = run(capsys, "get", "file:" + str(out_dir), "c", "/", str(tmp_path / "r"))
    assert code == 0 and err == "note: /sock: socket not restored: a socket is made by a listening process\n"
    assert [str(d) for d in compare_dirs(str(source), str(tmp_path / "r"), hardlinks=False)] == [
        "/sock: missing: expected socket, found nothing"]
    assert (tmp_path / "r" / "rand.bin").read_bytes() == (source / "rand.bin").read_bytes()


def _blob(folder: Path, path: bytes, segment: bool = False) -> Path:
    inode = Container(FolderSource(str(folder))).lookup(path).inode
    return folder / (inode.segments[0].blob if segment else inode.blob)


def _flip(blob: Path, needle: bytes) -> None:
    """Invert the byte where ``needle`` (file content) starts in a blob's body; store the blob raw."""
    body = bytearray(envelope.unwrap(blob.read_bytes()))
    at = body.find(needle)
    assert at > 0 and body.find(needle, at + 1) == -1
    body[at] ^= 0xFF
    blob.write_bytes(envelope.wrap(bytes(body), compress=False))


def _rewrite(path: Path, offset: int, keep_mtime: bool = True) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0xFF]))
    if keep_mtime:
        os.utime(path, ns=(MTIME_NS, MTIME_NS))


def _resize(path: Path) -> None:
    path.write_bytes(b"small file, longer now\n")
    os.utime(path, ns=(MTIME_NS, MTIME_NS))  # only the size tells


def _stray(folder: Path, source: Path) -> None:
    owner = Container(FolderSource(str(folder))).lookup(b"rand.bin").inode
    name = hashing.blob_name(bytes(range(16)), Btype.SEGMENT, owner.fh)
    (folder / name).write_bytes((folder / owner.segments[0].blob).read_bytes())


SEG_OFFSET = FIRST_SEGMENT_BYTES + 1000

#: case -> (damage(container folder, source), exit code of the fast check, the line deep and fast must show)
CASES: Dict[str, Tuple[Callable[[Path, Path], None], int, str]] = {
    "segment byte flipped": (
        lambda c, s: _flip(_blob(c, b"rand.bin", segment=True), (s / "rand.bin").read_bytes()[SEG_OFFSET:][:64]),
        0, "/rand.bin: content: first difference at byte %d" % SEG_OFFSET),
    "inode data byte flipped": (
        lambda c, s: _flip(_blob(c, b"head.bin"), (s / "head.bin").read_bytes()[5000:5064]),
        1, "/head.bin: content: first difference at byte 5000"),
    "inode blob deleted": (
        lambda c, s: _blob(c, b"dir/mode.txt").unlink(),
        1, "/dir/mode.txt: missing: expected regular file, found nothing"),
    "stray blob": (_stray, 1, "(container): stray: "),
    "source size changed": (lambda c, s: _resize(s / "small.txt"), 1, "/small.txt: size: expected 23, found 11"),
    "source content changed in the first 16 KiB": (
        lambda c, s: _rewrite(s / "head.bin", 100), 1, "/head.bin: content: first difference at byte 100"),
    "source content changed past 16 KiB": (
        lambda c, s: _rewrite(s / "rand.bin", 40_000), 0, "/rand.bin: content: first difference at byte 40000"),
    "source file touched": (
        lambda c, s: _rewrite(s / "small.txt", 0, keep_mtime=False), 1, "/small.txt: mtime: expected "),
    "source mode changed": (
        lambda c, s: os.chmod(s / "dir" / "mode.txt", 0o600),
        1, "/dir/mode.txt: mode: expected 0o100600, found 0o100640"),
    "source file removed": (
        lambda c, s: (s / "gone.txt").unlink(), 1, "/gone.txt: extra: expected nothing, found regular file"),
    "source file added": (
        lambda c, s: (s / "dir" / "new.txt").write_bytes(b"new"), 1, "/dir/new.txt: missing: expected regular file"),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(CASES))
def test_verify_catches(case, fresh, tmp_path, tmp_path_factory, capsys):
    damage, fast_code, expected = CASES[case]
    out_dir, _ = fresh
    account = tmp_path / "account"
    shutil.copytree(out_dir / "c", account / "c")
    source = build_source(tmp_path_factory.mktemp("s") / "src")
    assert verify(capsys, account, source)[0] == 0  # a rebuilt source matches the load
    damage(account / "c", source)
    code, lines = verify(capsys, account, source, "--deep")
    assert code == 1 and any(line.startswith(expected) for line in lines), lines
    code, lines = verify(capsys, account, source)
    assert code == fast_code, lines
    if fast_code:
        assert any(line.startswith(expected) for line in lines), lines
    else:  # the documented blind spot of the fast check: bytes past the first 16 KiB
        assert lines[-1].startswith("verify: OK")


def test_verify_unfinished_and_unreadable(fresh, tmp_path, capsys):
    out_dir, source = fresh
    folder = tmp_path / "account" / "c"
    shutil.copytree(out_dir / "c", folder)
    root = hashing.blob_name(ROOT_ID, Btype.DIR, ROOT_ID)
    os.rename(folder / root, folder / ("tmp" + root))
    code, out, err = run(capsys, "verify", "file:" + str(folder.parent), "c", str(source))
    assert code == 1 and out == "" and err.startswith("clfsload verify: container unreadable: ")
    assert "did not finish" in err and len(err.splitlines()) == 1
    assert run(capsys, "ls", "file:" + str(folder.parent), "c", "--allow-unfinished")[0] == 0


def test_ls_marks_a_dangling_entry(fresh, tmp_path, capsysbinary):
    out_dir, _ = fresh
    folder = tmp_path / "account" / "c"
    shutil.copytree(out_dir / "c", folder)
    _blob(folder, b"dir/mode.txt").unlink()
    assert main(["ls", "file:" + str(folder.parent), "c", "dir", "-l"]) == 1
    out, err = capsysbinary.readouterr()
    assert b"?????????? ? ? ? ? ? mode.txt\n" in out and b" sub\n" in out
    assert err == b"clfsload ls: 1 entry whose inode is missing or unreadable (shown as ?) or whose name was refused\n"


def test_read_back_through_azurite(azurite, source_trees, tmp_path, capsysbinary, monkeypatch):
    """The same commands against Azure (Azurite): SAS from the environment, a file, or a connection string."""
    container = azurite.create_container()
    source = source_trees / "basic"
    done = cli("--new", str(tmp_path / "state"), str(source), azurite.endpoint, container,
               azurite.make_sas(container))  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    read_only = azurite.make_sas(container, permission="rl")
    monkeypatch.setenv("CLFSLOAD_SAS_TOKEN", read_only)
    code, out, err = run(capsysbinary, "verify", azurite.endpoint, container, str(source), "--deep")
    assert (code, err) == (0, b"") and out.startswith(b"verify: OK: 14 paths"), out + err
    (tmp_path / "sas").write_text(read_only)
    assert main(["cat", azurite.endpoint, container, "a/b/rand.bin", "--sas-token-file", str(tmp_path / "sas")]) == 0
    assert capsysbinary.readouterr().out == (source / "a" / "b" / "rand.bin").read_bytes()
    monkeypatch.delenv("CLFSLOAD_SAS_TOKEN")
    code, out, err = run(capsysbinary, "get", azurite.endpoint, container, "/", str(tmp_path / "r"),
                         "--credential", azurite.connection_string)  # fmt: skip
    assert code == 0, err
    assert compare_dirs(str(source), str(tmp_path / "r"), hardlinks=False) == []
    code, out, err = run(capsysbinary, "ls", azurite.endpoint, container, "--credential", SAS)  # rejected
    assert code == 1 and len(err.splitlines()) == 1, err
    for secret in (read_only.split("sig=")[1].split("&")[0], azurite.account_key, SECRET_SIG):
        assert secret.encode() not in out + err


# --- the comparison itself ----------------------------------------------------------


def test_difference_text_and_json():
    d = Difference(b"a/\xff", "mode", "0o100644", "0o100600")
    assert str(d) == "/a/\\xff: mode: expected 0o100644, found 0o100600"
    assert d.to_json() == {"path": "/a/\\xff", "what": "mode", "expected": "0o100644", "found": "0o100600"}
    assert str(Difference(None, "stray", None, "X: not reachable from the root")) == (
        "(container): stray: X: not reachable from the root")


@pytest.mark.parametrize("left, right, expected", [
    ([b"abc", b"def"], [b"abcdef"], None),
    ([b"", b"abc", b""], [b"a", b"", b"bc"], None),
    ([b"abc"], [b"abd"], 2),
    ([b"ab", b"c"], [b"abcd"], 3),
    ([], [b"x"], 0),
    ([b"x" * 100000 + b"y"], [b"x" * 50000, b"x" * 50001], 100000),
])  # fmt: skip
def test_first_difference(left, right, expected):
    assert _first_difference(iter(left), iter(right)) == expected
    assert _first_difference(iter(right), iter(left)) == expected


def test_the_loader_command_line_runs_the_reading_commands(tmp_path):
    """``python -m clfsload verify|ls|cat`` reach the reading commands (same entry point as a load)."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "hello.txt").write_bytes(b"hello\n")
    out = tmp_path / "out"
    out.mkdir()
    assert cli("--new", str(tmp_path / "state"), str(src), "file:" + str(out), "c", "-").returncode == 0
    verified = cli("verify", "file:" + str(out), "c", str(src))
    assert verified.returncode == 0 and "OK" in verified.stdout, verified.stdout + verified.stderr
    assert "hello.txt" in cli("ls", "file:" + str(out), "c").stdout
    assert cli("cat", "file:" + str(out), "c", "hello.txt").stdout == "hello\n"
    (src / "hello.txt").write_bytes(b"changed\n")
    changed = cli("verify", "file:" + str(out), "c", str(src), "--deep")
    assert changed.returncode == 1 and "/hello.txt" in changed.stdout


def test_checksums_recorded_at_upload_catch_a_change_past_16_kib(tmp_path):
    """verify --state hashes the source and compares with the XXH3 recorded at upload."""
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    big = src / "sub" / "big.bin"
    big.write_bytes(bytes(range(256)) * 400)  # 100 KiB: most of it in a data segment
    (src / "small.txt").write_bytes(b"small\n")
    out = tmp_path / "out"
    out.mkdir()
    state = tmp_path / "state"
    assert cli("--new", str(state), str(src), "file:" + str(out), "c", "-").returncode == 0
    assert (state / "checksums.xxh3").stat().st_size == 40  # one record: small.txt is whole in its inode
    args = ["verify", "file:" + str(out), "c", str(src)]
    assert main(args + ["--state", str(state)]) == 0
    # Rewrite a byte past the first 16 KiB and put the size and mtime back.
    st = big.stat()
    with open(big, "r+b") as f:
        f.seek(50000)
        f.write(b"\xff")
    os.utime(big, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert main(args) == 0  # the fast check without checksums cannot see it (documented)
    assert main(args + ["--state", str(state)]) == 1
    assert main(args + ["--deep"]) == 1
    assert main(args + ["--state", str(tmp_path)]) == 1  # not a state dir: one clear line
