"""Storage targets: the local folder and Azure (against Azurite), blocking and asyncio.

Most behaviour tests run the same body on every target. Retry behaviour is
checked against a scripted HTTP server (tests/_fake_blob_server.py) that
counts requests.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import socket
import time
import traceback
from typing import Awaitable, Callable, Iterator, List

import pytest
from _fake_blob_server import FakeBlobServer
from azurite import Azurite, azurite  # noqa: F401 - the session fixture

from clfsload.errors import (
    AccessDeniedError,
    BlobNameError,
    BlobNotFoundError,
    ClfsLoadError,
    ContainerNotFoundError,
    TargetConfigError,
    TerminalError,
    TransientError,
)
from clfsload.targets import (
    AsyncBlobTarget,
    AzureOptions,
    BlobTarget,
    Credential,
    CredentialKind,
    RetrySettings,
    open_async_target,
    open_target,
    parse_account,
    redact,
)
from clfsload.targets.local import TEMP_PREFIX
from clfsload.targets.retry import parse_retry_after

FAST_RETRY = RetrySettings(max_attempts=4, base_delay=0.01, max_delay=0.05, max_retry_after=5.0,
                           total_timeout=20.0, connect_timeout=2.0, read_timeout=10.0)
FAST = AzureOptions(retry=FAST_RETRY, max_connections=16)

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


def run(coro: Awaitable) -> object:
    """Run one coroutine on a fresh event loop."""
    return asyncio.run(coro)  # type: ignore[arg-type]


# -- fixtures -------------------------------------------------------------------


@pytest.fixture
def container(azurite: Azurite) -> Iterator[str]:
    """A fresh, empty Azurite container."""
    name = azurite.create_container()
    yield name
    azurite.delete_container(name)


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


# -- the same behaviour on every target ----------------------------------------


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


# -- containers ------------------------------------------------------------------


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


def test_missing_azure_container_is_terminal(azurite: Azurite) -> None:
    target = open_target(azurite.endpoint, "no-such-container", Credential.account_key(azurite.account_key),
                         options=FAST)
    with pytest.raises(ContainerNotFoundError, match="container 'no-such-container' does not exist in account "
                                                     "'devstoreaccount1'"):
        target.check_access()
    with pytest.raises(ContainerNotFoundError, match="no-such-container"):
        target.put("x", b"1")
    assert issubclass(ContainerNotFoundError, TerminalError)


def test_create_container_with_key(azurite: Azurite) -> None:
    name = f"created-{os.getpid()}"
    with open_target(azurite.endpoint, name, Credential.account_key(azurite.account_key), create=True,
                     options=FAST) as target:
        target.check_access()
        assert target.is_empty()
    azurite.delete_container(name)


def test_connection_string_credential(azurite: Azurite, container: str) -> None:
    cred = Credential.parse(azurite.connection_string)
    assert cred.kind is CredentialKind.CONNECTION_STRING
    with open_target("", container, cred, options=FAST) as target:
        target.check_access()
        target.put("cs", b"via connection string")
        assert target.get("cs") == b"via connection string"
    assert target.describe() == f"azure:{azurite.endpoint}/{container}"


# -- credentials and permissions ---------------------------------------------------


@pytest.mark.parametrize("permission, letter, word", [
    ("racwd", "l", "list"), ("racdl", "w", "write"), ("racwl", "d", "delete"), ("acwdl", "r", "read"),
])
@pytest.mark.parametrize("style", ["token", "stored-policy"])
def test_sas_missing_permission(azurite: Azurite, container: str, permission: str, letter: str, word: str,
                                style: str) -> None:
    if style == "token":  # the token states its permissions: caught before any request
        sas = azurite.make_sas(container, permission)
    else:  # permissions live in a stored access policy: the server probes catch it
        azurite.set_access_policy(container, "policy1", permission)
        sas = azurite.make_sas(container, policy_id="policy1")
    target = open_target(azurite.endpoint, container, sas, options=FAST)
    with pytest.raises(AccessDeniedError) as info:
        target.check_access()
    assert str(info.value) == (f"the SAS token has no '{letter}' ({word}) permission on container "
                               f"'{container}'; create a SAS with racwdl")


def test_expired_sas(azurite: Azurite, container: str) -> None:
    sas = azurite.make_sas(container, expiry=dt.timedelta(seconds=-30))
    target = open_target(azurite.endpoint, container, sas, options=FAST)
    with pytest.raises(AccessDeniedError, match=r"^the SAS token expired at .*UTC; create a new SAS"):
        target.check_access()
    with pytest.raises(AccessDeniedError, match="expired"):
        target.put("x", b"1")  # the server's 403, explained with the token's expiry


def test_wrong_account_key(azurite: Azurite, container: str) -> None:
    wrong = "AAAA" + azurite.account_key[4:]
    target = open_target(azurite.endpoint, container, Credential.account_key(wrong), options=FAST)
    with pytest.raises(AccessDeniedError, match="^the account key was rejected by account 'devstoreaccount1'"):
        target.check_access()


def test_forbidden_is_not_retried(azurite: Azurite, container: str) -> None:
    """A rejected SAS fails at once: one attempt, no back-off."""
    sas = azurite.make_sas(container)
    forged = sas.split("sig=")[0] + "sig=Zm9yZ2VkLXNpZ25hdHVyZQ%3D%3D"
    target = open_target(azurite.endpoint, container, forged, options=FAST)
    started = time.monotonic()
    with pytest.raises(AccessDeniedError, match="^the SAS token was rejected by account 'devstoreaccount1'"):
        target.put("x", b"1")
    assert target.stats.retries == 0  # type: ignore[attr-defined]
    assert time.monotonic() - started < 2


def test_azure_ad_needs_https(azurite: Azurite, container: str) -> None:
    """Azure AD bearer tokens never travel over plain http: refused before any client exists."""
    with pytest.raises(TargetConfigError, match="^the Azure AD identity needs an https endpoint, but the endpoint "
                                                "is http://127.0.0.1"):
        open_target(azurite.endpoint, container, "azure-ad", options=FAST)
    try:
        import azure.identity  # noqa: F401
    except ImportError:  # the optional extra is missing: say how to get it
        with pytest.raises(TargetConfigError, match="pip install azure-identity"):
            open_target("myaccount", container, Credential.azure_ad())
        return
    target = open_target("myaccount", container, Credential.azure_ad())  # builds; no request yet
    assert target.describe() == f"azure:https://myaccount.blob.core.windows.net/{container}"
    target.close()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_unreachable_endpoint(tmp_path) -> None:
    options = AzureOptions(retry=RetrySettings(max_attempts=2, base_delay=0.01, max_delay=0.01,
                                               connect_timeout=2, total_timeout=10))
    endpoint = f"http://127.0.0.1:{_closed_port()}/devstoreaccount1"
    target = open_target(endpoint, "cont1", Credential.account_key("QUJDRA=="), options=options)
    with pytest.raises(TerminalError, match="cannot reach"):
        target.check_access()
    with pytest.raises(TransientError, match="cannot reach"):
        target.put("x", b"1")


SECRET_SIG = "RecognisableSecretSig0123456789abcdef"


def test_secrets_never_leak(azurite: Azurite, container: str, caplog: pytest.LogCaptureFixture) -> None:
    """Every error path and repr, scanned for the signature and the key."""
    caplog.set_level(logging.DEBUG)
    sas = f"sv=2025-01-05&sr=c&sp=racwdl&se=2099-01-01T00%3A00%3A00Z&sig={SECRET_SIG}"
    key = "U2VjcmV0QWNjb3VudEtleVJlY29nbmlzYWJsZQ=="  # base64("SecretAccountKeyRecognisable")
    dead = f"http://127.0.0.1:{_closed_port()}/devstoreaccount1"
    quick = AzureOptions(retry=RetrySettings(max_attempts=2, base_delay=0.01, max_delay=0.01, connect_timeout=2))
    errors: List[BaseException] = []
    shown: List[str] = []

    def collect(fn: Callable[[], object]) -> None:
        try:
            fn()
        except ClfsLoadError as exc:
            errors.append(exc)
        else:
            raise AssertionError("expected a failure")

    for endpoint in (azurite.endpoint, dead):
        for cred in (Credential.sas(f"?{sas}\n"), Credential.account_key(key),
                     Credential.connection_string(f"AccountName=devstoreaccount1;AccountKey={key};"
                                                  f"BlobEndpoint={endpoint}")):
            target = open_target(endpoint if cred.kind is not CredentialKind.CONNECTION_STRING else "",
                                 container, cred, options=quick)
            shown += [repr(target), str(target), target.describe(), repr(cred), str(cred)]
            collect(target.check_access)
            collect(lambda target=target: target.put("x", b"1"))
            collect(lambda target=target: target.get("x"))
            collect(lambda target=target: list(target.list_names()))
            target.close()

            async def aio(cred: Credential = cred, endpoint: str = endpoint, shown: List[str] = shown) -> None:
                for mode in ("sdk", "http"):
                    options = AzureOptions(retry=quick.retry, data_path=mode)
                    where = endpoint if cred.kind is not CredentialKind.CONNECTION_STRING else ""
                    async with await open_async_target(where, container, cred, options=options) as atarget:
                        shown.append(repr(atarget))
                        for call in (atarget.put("x", b"1"), atarget.get("x"), atarget.check_access()):
                            try:
                                await call
                            except ClfsLoadError as exc:
                                errors.append(exc)
            run(aio())

    assert len(errors) == 2 * 3 * (4 + 2 * 3)
    for exc in errors:
        shown += [str(exc), repr(exc), "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))]
        assert exc.__cause__ is None and exc.__suppress_context__
    shown.append(caplog.text)
    text = "\n".join(shown)
    for secret in (SECRET_SIG, key, "SecretAccountKeyRecognisable"):
        assert secret not in text
    kinds = {type(exc).__name__ for exc in errors}
    assert {"AccessDeniedError", "TransientError", "TerminalError"} <= kinds
    assert "sig=REDACTED" in caplog.text  # urllib3 logged the request line, scrubbed


# -- retries (scripted server) ------------------------------------------------------------


@pytest.fixture
def fake() -> Iterator[FakeBlobServer]:
    server = FakeBlobServer().start()
    yield server
    server.stop()


FAKE_SAS = "sv=2025-01-05&sr=c&sp=racwdl&se=2099-01-01T00%3A00%3A00Z&sig=ZmFrZQ%3D%3D"


def _put_with(kind: str, fake: FakeBlobServer, settings: RetrySettings = FAST_RETRY) -> float:
    """Put one blob through target *kind*; return the seconds it took."""
    options = AzureOptions(retry=settings, data_path="sdk" if kind != "aio-http" else "http")
    started = time.monotonic()
    if kind == "sync":
        with open_target(fake.endpoint, "cont1", FAKE_SAS, options=options) as target:
            target.put("blob", b"payload")
    else:
        async def body() -> None:
            async with await open_async_target(fake.endpoint, "cont1", FAKE_SAS, options=options) as target:
                await target.put("blob", b"payload")
        run(body())
    return time.monotonic() - started


KINDS = ["sync", "aio-sdk", "aio-http"]


@pytest.mark.parametrize("kind", KINDS)
def test_retry_503_then_success(fake: FakeBlobServer, kind: str) -> None:
    fake.load(("status", 503, {"x-ms-error-code": "ServerBusy"}), ("status", 500, {}))
    elapsed = _put_with(kind, fake)
    assert [m for m, _ in fake.requests] == ["PUT", "PUT", "PUT"]
    assert elapsed < 3  # our back-off only: the SDK's own policy (15 s and up) is off
    assert fake.requests[-1][1].startswith("/devstoreaccount1/cont1/blob?")


@pytest.mark.parametrize("kind", KINDS)
def test_retry_429_honours_retry_after(fake: FakeBlobServer, kind: str) -> None:
    fake.load(("status", 429, {"Retry-After": "1", "x-ms-error-code": "TooManyRequests"}))
    elapsed = _put_with(kind, fake)
    assert len(fake.requests) == 2
    assert elapsed >= 1.0  # the back-off alone would be at most 0.01 s


@pytest.mark.parametrize("kind", KINDS)
def test_retry_after_connection_reset(fake: FakeBlobServer, kind: str) -> None:
    fake.load(("reset",), ("reset",))
    _put_with(kind, fake)
    assert len(fake.requests) == 3


@pytest.mark.parametrize("kind", KINDS)
def test_403_is_not_retried(fake: FakeBlobServer, kind: str) -> None:
    fake.load(("status", 403, {"x-ms-error-code": "AuthenticationFailed"}))
    with pytest.raises(AccessDeniedError, match="AuthenticationFailed"):
        _put_with(kind, fake)
    assert len(fake.requests) == 1


@pytest.mark.parametrize("status", [400, 404, 409])
def test_other_client_errors_are_not_retried(fake: FakeBlobServer, status: int) -> None:
    fake.load(("status", status, {"x-ms-error-code": "SomethingWrong"}))
    with pytest.raises(ClfsLoadError, match=f"HTTP {status} SomethingWrong"):
        _put_with("sync", fake)
    assert len(fake.requests) == 1


@pytest.mark.parametrize("kind", KINDS)
def test_attempts_are_bounded(fake: FakeBlobServer, kind: str) -> None:
    fake.load(*[("status", 503, {"x-ms-error-code": "ServerBusy"})] * 10)
    started = time.monotonic()
    with pytest.raises(TransientError, match=r"HTTP 503 ServerBusy persisted .* \(gave up after 4 attempts in "):
        _put_with(kind, fake)
    assert len(fake.requests) == FAST_RETRY.max_attempts  # no second retry layer multiplies them
    assert time.monotonic() - started < 3


def test_total_time_is_bounded(fake: FakeBlobServer) -> None:
    settings = RetrySettings(max_attempts=100, base_delay=0.01, max_delay=0.01, max_retry_after=0.3,
                             total_timeout=1.0)
    fake.load(*[("status", 503, {"Retry-After": "3600"})] * 100)  # capped at 0.3 s per wait
    with pytest.raises(TransientError):
        _put_with("sync", fake, settings)
    assert 3 <= len(fake.requests) <= 5


def test_delete_retried_after_reset_counts_as_done(fake: FakeBlobServer) -> None:
    """The first DELETE may have landed before the reset; its retry's 404 is success."""
    fake.load(("reset",), ("status", 404, {"x-ms-error-code": "BlobNotFound"}))
    with open_target(fake.endpoint, "cont1", FAKE_SAS, options=FAST) as target:
        target.delete("blob", missing_ok=False)
    assert [m for m, _ in fake.requests] == ["DELETE", "DELETE"]


# -- small pure units ----------------------------------------------------------------


def test_parse_retry_after() -> None:
    assert parse_retry_after({"Retry-After": "7"}) == 7.0
    assert parse_retry_after({"retry-after": " 0.5 "}) == 0.5
    assert parse_retry_after({"x-ms-retry-after-ms": "250"}) == 0.25
    assert parse_retry_after({"Retry-After": "Wed, 25 Nov 2026 00:00:30 GMT"},
                             now=dt.datetime(2026, 11, 25, tzinfo=dt.timezone.utc).timestamp()) == 30.0
    assert parse_retry_after({"Retry-After": "Wed, 25 Nov 2020 00:00:30 GMT"}) == 0.0
    assert parse_retry_after({"Retry-After": "soon"}) is None
    assert parse_retry_after({}) is None


def test_backoff_is_full_jitter_and_capped() -> None:
    settings = RetrySettings(base_delay=0.5, max_delay=4.0)
    assert settings.backoff(1, lambda lo, hi: hi) == 0.5
    assert settings.backoff(3, lambda lo, hi: hi) == 2.0
    assert settings.backoff(10, lambda lo, hi: hi) == 4.0
    assert settings.backoff(10, lambda lo, hi: lo) == 0.0


def test_redact() -> None:
    url = "http://h/c/b?sv=2025-01-05&sp=rwdl&se=2030-01-01T00%3A00%3A00Z&sig=abc%2Bdef%3D&comp=list"
    assert redact(url) == "http://h/c/b?sv=REDACTED&sp=REDACTED&se=REDACTED&sig=REDACTED&comp=list"
    assert redact("AccountName=a;AccountKey=Zm9v==;X=1") == "AccountName=a;AccountKey=REDACTED;X=1"
    assert redact("Authorization: SharedKey acct:c2lnbmF0dXJl") == "Authorization: SharedKey acct:REDACTED"
    assert "tok" not in redact("{'Authorization': 'Bearer tok.en.value'}")


def test_credential_parsing_and_repr() -> None:
    sas = Credential.parse("  ?sv=2025-01-05&sp=rl&se=2030-01-01T00:00:00Z&sig=c2VjcmV0c2ln  ")
    assert sas.kind is CredentialKind.SAS and sas.secret.startswith("sv=")
    assert repr(sas) == "Credential(kind='sas')" and str(sas) == "the SAS token"
    info = sas.sas_info()
    assert info is not None and info.lacks("w") and not info.lacks("l") and not info.is_expired()
    url = Credential.sas("https://acct.blob.core.windows.net/c?sv=1&sig=c2lnc2ln")
    assert url.secret == "sv=1&sig=c2lnc2ln"
    assert Credential.parse("-").kind is CredentialKind.NONE
    assert Credential.parse("azure-ad").kind is CredentialKind.AZURE_AD
    assert Credential.parse("Zm9vYmFyYmF6").kind is CredentialKind.ACCOUNT_KEY
    with pytest.raises(TargetConfigError, match="no 'sig' field"):
        Credential.sas("sv=2025-01-05&sp=rl")
    with pytest.raises(TargetConfigError, match="cannot tell"):
        Credential.parse("not a credential!")


def test_parse_account() -> None:
    assert parse_account("myacct").url == "https://myacct.blob.core.windows.net"  # type: ignore[union-attr]
    gov = parse_account("https://acct.blob.core.usgovcloudapi.net/")
    assert gov.url == "https://acct.blob.core.usgovcloudapi.net" and gov.account == "acct"  # type: ignore[union-attr]
    emu = parse_account("http://127.0.0.1:10000/devstoreaccount1")
    assert emu.account == "devstoreaccount1" and emu.path_style  # type: ignore[union-attr]
    assert parse_account("file:///srv/x").path == "/srv/x"  # type: ignore[union-attr]
    assert parse_account("file://localhost/srv/a%20b").path == "/srv/a b"  # type: ignore[union-attr]
    for bad in ("My_Account", "https://acct.blob.core.windows.net/?sig=abc", "ftp://x", "file://otherhost/x"):
        with pytest.raises(TargetConfigError) as info:
            parse_account(bad)
        assert "abc" not in str(info.value)
    with pytest.raises(TargetConfigError, match="container name 'Bad_Name'"):
        open_target("acct", "Bad_Name", "sv=1&sig=abcdefgh")


def test_redacting_filter_scrubs_messages_and_tracebacks() -> None:
    from clfsload.targets import RedactingFilter

    try:
        raise RuntimeError("GET http://h/c?sv=1&sig=TopSecretSignature")
    except RuntimeError:
        import sys

        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "url %s", ("http://h/c?sig=TopSecretSignature",),
                                   sys.exc_info())
    assert RedactingFilter().filter(record)
    text = logging.Formatter().format(record)
    assert "TopSecretSignature" not in text and "sig=REDACTED" in text and "RuntimeError" in text


def test_credential_pickles_for_worker_processes() -> None:
    import pickle

    cred = Credential.sas("sv=1&sig=c2lnbmF0dXJlMTIz")
    copy = pickle.loads(pickle.dumps(cred))
    assert copy == cred and copy.secret == "sv=1&sig=c2lnbmF0dXJlMTIz" and "c2ln" not in repr(copy)
    options = pickle.loads(pickle.dumps(FAST))
    assert options == FAST
