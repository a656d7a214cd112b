"""The BlobTarget contract (clfsload.targets.base) on every target: the local folder and Azure
(against Azurite), blocking and asyncio, the same test body each time."""

from __future__ import annotations

import asyncio
import os
from typing import Awaitable, Callable, Iterator

import pytest
from azurite import Azurite, azurite  # noqa: F401 - the session fixture

from clfsload.errors import BlobNameError, BlobNotFoundError
from clfsload.targets import AsyncBlobTarget, AzureOptions, BlobTarget, open_async_target, open_target

from _targets import FAST, FAST_RETRY, container, run  # noqa: F401 - container: a fixture


#: Names of every shape CLFS writes (FMT §4): V2 inode/segment names, the
#: tmp-prefixed root, the V1 bucket, log files.
CLFS_NAMES = [
    "0000006457871C6B_00000000000000000000000000000064.0002.0000006457871C6B.00000000009.FFFFFFFF.0002",
    "tmp0000006457871C6B_00000000000000000000000000000064.0002.0000006457871C6B.00000000009.FFFFFFFF.0002",
    "00000063_00000000000000000000000000000063.00000000009.FFFFFFFF.0001",
    "A1B2C3D4E5F60718_0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF.0008.00000062BAE79F98.00000000011.FFFFFFFF.0002",
    "output.txt",
    "output.process-transfer-0.txt",
    "problems.txt",
]


@pytest.fixture(params=["local", "azure"])
def target(request: pytest.FixtureRequest, tmp_path) -> Iterator[BlobTarget]:
    """An empty blocking target of each kind."""
    if request.param == "local":
        opened = open_target(f"file:{tmp_path}", "c1", "-", create=True)
    else:
        az: Azurite = request.getfixturevalue("azurite")
        name = request.getfixturevalue("container")
        opened = open_target(az.endpoint, name, az.make_sas(name), options=FAST)
    yield opened
    opened.close()


@pytest.fixture(params=["local", "azure-sdk", "azure-http"])
def async_target(request: pytest.FixtureRequest, tmp_path) -> Callable[[], Awaitable[AsyncBlobTarget]]:
    """A coroutine function that opens an empty asyncio target (inside the running loop)."""
    if request.param == "local":
        return lambda: open_async_target(f"file:{tmp_path}", "c1", "-", create=True)
    az: Azurite = request.getfixturevalue("azurite")
    name = request.getfixturevalue("container")
    options = AzureOptions(retry=FAST_RETRY, data_path=request.param.split("-")[1])
    return lambda: open_async_target(az.endpoint, name, az.make_sas(name), options=options)


def test_put_get_list_delete(target: BlobTarget) -> None:
    target.check_access()
    assert target.is_empty()
    target.put("aa.1", b"one")
    target.put("ab.2", bytearray(b"two"))
    target.put("b.3", memoryview(b"three"))
    target.put("empty", b"")
    assert not target.is_empty()
    assert list(target.list_names()) == ["aa.1", "ab.2", "b.3", "empty"]
    assert list(target.list_names("a")) == ["aa.1", "ab.2"]
    assert list(target.list_names("ab.")) == ["ab.2"]
    assert list(target.list_names("zz")) == []
    assert list(target.list_sizes()) == [("aa.1", 3), ("ab.2", 3), ("b.3", 5), ("empty", 0)]
    assert list(target.list_sizes("b")) == [("b.3", 5)]
    assert target.get("ab.2") == b"two"
    assert target.get("b.3") == b"three"
    assert target.get("empty") == b""
    target.delete("aa.1")
    assert list(target.list_names("a")) == ["ab.2"]
    for name in ("ab.2", "b.3", "empty"):
        target.delete(name)
    assert target.is_empty()


def test_overwrite_replaces_content(target: BlobTarget) -> None:
    target.put("x", b"first version, longer")
    target.put("x", b"second")
    assert target.get("x") == b"second"
    assert list(target.list_names()) == ["x"]


def test_clfs_names_round_trip_and_sort_like_azure(target: BlobTarget) -> None:
    for index, name in enumerate(CLFS_NAMES):
        target.put(name, name.encode() + bytes([index]))
    assert list(target.list_names()) == sorted(CLFS_NAMES)
    for index, name in enumerate(CLFS_NAMES):
        assert target.get(name) == name.encode() + bytes([index])
    assert list(target.list_names("tmp")) == [CLFS_NAMES[1]]
    assert list(target.list_names("0000006457871C6B_")) == [CLFS_NAMES[0]]


def test_payload_over_8_mib_is_one_blob(target: BlobTarget) -> None:
    payload = os.urandom(8 * 1024 * 1024 + 4097)
    target.put("big", payload)
    assert target.get("big") == payload


def test_missing_blob(target: BlobTarget) -> None:
    with pytest.raises(BlobNotFoundError, match="'nothing-here'"):
        target.get("nothing-here")
    target.delete("nothing-here")  # missing_ok by default
    with pytest.raises(BlobNotFoundError, match="'nothing-here'"):
        target.delete("nothing-here", missing_ok=False)


@pytest.mark.parametrize("name", ["", ".", "..", "a/b", "/", "a\\b", "nul\x00", "tab\t", ".clfsload-tmp-1",
                                  "x" * 1025])
def test_bad_names_are_refused(target: BlobTarget, name: str) -> None:
    with pytest.raises(BlobNameError):
        target.put(name, b"x")
    with pytest.raises(BlobNameError):
        target.get(name)
    assert target.is_empty()


def test_check_access_leaves_nothing_behind(target: BlobTarget) -> None:
    target.check_access()
    target.check_access(read=False, write=True, delete=False, list_=False)
    assert target.is_empty()
    assert list(target.list_names()) == []


def test_async_flavour(async_target: Callable[[], Awaitable[AsyncBlobTarget]]) -> None:
    async def body() -> None:
        async with await async_target() as target:
            await target.check_access()
            assert await target.is_empty()
            payloads = {f"obj{i:04d}.0002": os.urandom(i * 37) for i in range(150)}
            await asyncio.gather(*(target.put(n, p) for n, p in payloads.items()))
            big = os.urandom(8 * 1024 * 1024 + 1)
            await target.put("big", big)
            names = [name async for name in target.list_names("obj")]
            assert names == sorted(payloads)
            got = await asyncio.gather(*(target.get(n) for n in names))
            assert dict(zip(names, got)) == payloads
            assert await target.get("big") == big
            await target.put("big", b"small now")
            assert await target.get("big") == b"small now"
            with pytest.raises(BlobNotFoundError, match="'missing'"):
                await target.get("missing")
            with pytest.raises(BlobNotFoundError):
                await target.delete("missing", missing_ok=False)
            await target.delete("missing")
            with pytest.raises(BlobNameError):
                await target.put("a/b", b"")
            await asyncio.gather(*(target.delete(n) for n in names), target.delete("big"))
            assert await target.is_empty()

    run(body())
