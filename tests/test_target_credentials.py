"""Credentials, accounts and redaction (clfsload.targets.credentials, endpoint, redaction): parsing,
repr without the secret, pickling for worker processes, scrubbing of log records."""

from __future__ import annotations

import logging

import pytest

from clfsload.errors import TargetConfigError
from clfsload.targets import Credential, CredentialKind, open_target, parse_account, redact

from _targets import FAST


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
