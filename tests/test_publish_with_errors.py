"""Never publish a broken tree; with --publish_with_errors, publish without the failed entries.

Entries fail here through attributes CLFS cannot hold (a time before 1970),
which fails a whole directory unit, or a hard-linked object in RECONCILE.
Without the flag nothing is published. With it the root is published and
the failed entries are absent from their directories (no dangling entry,
no stray blob). Once the source is fixed, the same command retries them,
puts them back, and the container equals a clean load.
"""

import os
from pathlib import Path

from clfsload.clfs.canonical import canonical_form, diff_canonical
from clfsload.clfs.container import Container, FolderSource
from clfsload.clfs.fh_rules import handle_rule_violations

from _load import load_local

BEFORE_1970 = -86400.0 * 400


def _tree(root: Path) -> Path:
    (root / "good" / "deeper").mkdir(parents=True)
    (root / "good" / "a.txt").write_bytes(b"a" * 5000)
    (root / "good" / "deeper" / "b.txt").write_bytes(b"b" * 20000)
    (root / "bad-dir" / "inside").mkdir(parents=True)
    (root / "bad-dir" / "inside" / "c.txt").write_bytes(b"c")
    (root / "links").mkdir()
    (root / "links" / "one").write_bytes(b"linked" * 1000)
    os.link(root / "links" / "one", root / "good" / "two")
    (root / "top.txt").write_bytes(b"top")
    return root


def _load(state, source, out, *extra, new=False):
    return load_local(state, source, out, *extra, new=new)


def _walk(out: Path) -> Container:
    container = Container(FolderSource(str(out / "c")))
    assert container.finished
    assert container.strays() == [], container.strays()[:3]
    assert container.tmp_names == []
    assert handle_rule_violations(container, spread_tolerance=0.05) == []
    return container


def test_failed_entries_are_left_out_then_put_back(tmp_path):
    source = _tree(tmp_path / "src")
    state, out = tmp_path / "state", tmp_path / "out"
    out.mkdir()
    os.utime(source / "bad-dir", (BEFORE_1970, BEFORE_1970))  # the directory unit fails outright
    os.utime(source / "links" / "one", (BEFORE_1970, BEFORE_1970), follow_symlinks=False)  # the link, in RECONCILE

    first = _load(state, source, out, "--preserve_hardlinks", "1", new=True)
    assert first.returncode == 1, first.stdout
    assert "not published" in first.stdout and "Traceback" not in first.stdout
    assert not Container(FolderSource(str(out / "c"))).finished
    problems = (state / "problems.txt").read_bytes().splitlines()
    names = sorted(os.path.basename(p) for p in problems)
    assert len(names) == 2 and names[0] == b"bad-dir" and names[1] in (b"one", b"two"), names

    published = _load(state, source, out, "--publish_with_errors")
    assert published.returncode == 1, published.stdout  # published, but with problems
    assert "failed entries are left out of their directories" in published.stdout
    container = _walk(out)  # strict: a dangling entry would raise
    paths = {e.path for e in container.walk()}
    assert b"bad-dir" not in paths and b"links/one" not in paths and b"good/two" not in paths
    assert {b"good/a.txt", b"good/deeper/b.txt", b"top.txt", b"links"} <= paths
    assert container.read_file(b"good/deeper/b.txt") == b"b" * 20000
    assert (out / "c" / "problems.txt").exists()

    os.utime(source / "bad-dir", None)
    os.utime(source / "links" / "one", None)
    fixed = _load(state, source, out)
    assert fixed.returncode == 0, fixed.stdout
    assert "are back in their directories" in fixed.stdout
    ours = _walk(out)
    clean_out = tmp_path / "clean"
    clean_out.mkdir()
    clean = _load(tmp_path / "clean-state", source, clean_out, "--preserve_hardlinks", "1", new=True)
    assert clean.returncode == 0, clean.stdout
    expected = canonical_form(Container(FolderSource(str(clean_out / "c"))))
    assert diff_canonical(expected, canonical_form(ours)) == []
    # FMT §2.2 handles, also for the entries put back (the spread: the first run's failed directory kept its value)
    assert handle_rule_violations(ours, spread_tolerance=0.05) == []
    assert ours.read_file(b"bad-dir/inside/c.txt") == b"c"
    assert sorted(ours.links(ours.lookup(b"links/one").fh)) == [b"good/two", b"links/one"]


def test_without_the_flag_a_failed_load_never_publishes(tmp_path):
    source = _tree(tmp_path / "src")
    state, out = tmp_path / "state", tmp_path / "out"
    out.mkdir()
    os.utime(source / "bad-dir", (BEFORE_1970, BEFORE_1970))
    for attempt in range(2):
        done = _load(state, source, out, new=attempt == 0)
        assert done.returncode == 1, done.stdout
        container = Container(FolderSource(str(out / "c")), allow_unfinished=True)
        assert not container.finished and container.tmp_root is not None
