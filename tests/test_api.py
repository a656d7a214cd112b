"""The library API: clfsload.load() and clfsload.open_container(), and the README's example."""

import io
import os
import re
from contextlib import redirect_stdout
from pathlib import Path

import clfsload

from _load import REPO


def _tree(root: Path) -> Path:
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "a.txt").write_bytes(b"a" * 3000)
    (root / "b.bin").write_bytes(os.urandom(20000))
    return root


def test_load_returns_its_statistics_and_problems(tmp_path):
    src = _tree(tmp_path / "src")
    os.symlink("x" * 1100, src / "too-long")  # over the CLFS symlink limit: one problem
    out = tmp_path / "out"
    out.mkdir()
    result = clfsload.load(tmp_path / "state", src, "file:" + str(out), "c", new=True, processes=0)
    assert not result.ok and result.exit_code == 1 and not result.published
    assert result.problems == 1 and result.problem_list[0].path == os.fsencode(str(src / "too-long"))
    assert "not published" in result.message
    os.unlink(src / "too-long")
    again = clfsload.load(tmp_path / "state", src, "file:" + str(out), "c")  # a resume
    assert again.ok and again.published and again.phase == "DONE" and again.problem_list == []
    assert again.objects == 4 and again.source_bytes == 23000  # root, sub, a.txt, b.bin
    with clfsload.open_container("file:" + str(out), "c") as container:
        assert sorted(container.listdir(b"")) == [b"b.bin", b"sub"]
        assert container.read_file(b"b.bin") == (src / "b.bin").read_bytes()
        assert clfsload.compare_tree(container, str(src), deep=True) == []


def test_a_load_that_cannot_start_is_reported_not_raised(tmp_path):
    result = clfsload.load(tmp_path / "state", tmp_path / "missing", "file:" + str(tmp_path), "c", new=True)
    assert result.exit_code == 1 and "cannot be read" in result.message
    assert not (tmp_path / "state").exists()


def test_bad_arguments_raise():
    import pytest

    with pytest.raises(ValueError, match="compression"):
        clfsload.load("s", "src", "file:/x", "c", compression="ZSTD")


def test_the_readme_example_runs(tmp_path):
    text = (REPO / "README.md").read_text()
    code = re.search(r"<!-- api-example -->\n```python\n(.*?)```", text, re.S).group(1)
    src = _tree(tmp_path / "src")
    (tmp_path / "out").mkdir()
    code = (code.replace("/tmp/clfs-api-state", str(tmp_path / "state"))
                .replace("/tmp/clfs-api-out", str(tmp_path / "out"))
                .replace("/usr/share/doc", str(src)))
    (tmp_path / "out" / "demo").mkdir()
    printed = io.StringIO()
    with redirect_stdout(printed):
        exec(compile(code, "README.md", "exec"), {})
    lines = printed.getvalue().splitlines()
    assert lines[0] == "0 4 objects, 0 problems"
    assert lines[-1] == "0 differences"
