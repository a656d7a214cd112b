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
