"""The Azure target against Azurite (clfsload.targets.azure, azure_access, azure_errors): containers,
credentials and permissions, unreachable endpoints, secrets kept out of logs and errors."""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import time
import traceback
from typing import Callable, List

import pytest
from azurite import Azurite, azurite  # noqa: F401 - the session fixture

from clfsload.errors import (
    AccessDeniedError,
    ClfsLoadError,
    ContainerNotFoundError,
    TargetConfigError,
    TerminalError,
    TransientError,
)
from clfsload.targets import AzureOptions, Credential, CredentialKind, RetrySettings, open_async_target, open_target

from _targets import FAST, container, run  # noqa: F401 - container: a fixture


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
