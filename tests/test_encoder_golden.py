"""Our encoder against the original tool: canonical(ours) == canonical(golden) for all eight.

The small builder walks each rebuilt source tree with lstat and writes a
container through the same per-object functions the loader uses. Inode
numbers and ctimes differ between the golden machine and this one, so they
are masked; everything else the canonical form keeps must agree.
"""

import os
import subprocess
import sys

import pytest

from _builder import MemoryStore, build
from clfsload.clfs.canonical import canonical_form, diff_canonical
from clfsload.clfs.container import Container, FolderSource

from _trees import GOLDEN_RUNS, MKTREES, golden_dir, source_trees  # noqa: F401

MACHINE_MASK = frozenset({"fileid", "ctime"})


@pytest.fixture(scope="module")
def golden_forms():
    return {name: canonical_form(Container(FolderSource(str(golden_dir(name)))), mask=MACHINE_MASK) for name in GOLDEN_RUNS}


@pytest.mark.parametrize("golden", sorted(GOLDEN_RUNS))
def test_our_container_is_canonical_equal_to_the_golden(golden, golden_forms, source_trees, tmp_path):
    tree, preserve, compress = GOLDEN_RUNS[golden]
    store = MemoryStore()
    build(os.path.join(str(source_trees), tree), store, compress=compress, preserve_hardlinks=preserve)
    ours = Container(store)
    assert ours.finished and not ours.strays() and not ours.tmp_names
    differences = diff_canonical(golden_forms[golden], canonical_form(ours, mask=MACHINE_MASK))
    assert differences == [], "\n".join(map(str, differences[:20]))


def test_the_comparison_catches_a_changed_source(golden_forms, tmp_path):
    subprocess.run([sys.executable, str(MKTREES), str(tmp_path), "basic"], check=True, capture_output=True)
    tree = tmp_path / "basic"
    stat = os.lstat(tree / "a" / "hello.txt")
    (tree / "a" / "hello.txt").write_bytes(b"HELLO\n")
    os.utime(tree / "a" / "hello.txt", ns=(stat.st_atime_ns, stat.st_mtime_ns))
    for path in (tree, tree / "a"):
        os.utime(path, ns=(os.lstat(path).st_atime_ns, 1700000000123456789))
    store = MemoryStore()
    build(str(tree), store)
    differences = diff_canonical(golden_forms["basic"], canonical_form(Container(store), mask=MACHINE_MASK))
    assert differences, "a changed file must show up as a difference"
    assert any("hello.txt" in str(d) for d in differences), differences
