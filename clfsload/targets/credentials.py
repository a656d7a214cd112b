"""Credentials for the storage targets, with secrets kept out of reprs and messages.

A :class:`Credential` is a kind plus a secret string. Its ``repr`` and ``str``
show only the kind. It pickles with the secret (worker processes need it), so
never log a pickled credential. Constructing one registers the secret with
:func:`clfsload.targets.redaction.register_secret`.

Kinds:

* ``sas``: a SAS token for the container (or an account SAS). Whitespace
  around it and a leading ``?`` are removed. A whole SAS URL
  (``https://acct.blob.core.windows.net/container?sv=...``) is accepted; only
  its query is kept.
* ``account-key``: the storage account key (base64).
* ``connection-string``: an Azure Storage connection string holding
  ``AccountKey=`` or ``SharedAccessSignature=``; it may also give the endpoint.
  ``UseDevelopmentStorage=true`` means the local emulator (Azurite).
* ``azure-ad``: Azure AD through ``azure.identity.DefaultAzureCredential``
  (environment, workload identity, managed identity, Azure CLI ...). No secret.
* ``none``: no credential; the only kind a ``file:`` target takes (``-`` on the
  command line).
"""

from __future__ import annotations

import base64
import binascii
import datetime as _dt
import enum
import urllib.parse
from dataclasses import dataclass, field
from typing import Dict, Optional

from ..errors import TargetConfigError
from .redaction import register_secret

__all__ = [
    "Credential",
    "CredentialKind",
    "SasInfo",
    "parse_connection_string",
    "DEV_ACCOUNT_NAME",
    "DEV_ACCOUNT_KEY",
]

#: The well-known Azurite / storage-emulator account (public, documented by Microsoft).
DEV_ACCOUNT_NAME = "devstoreaccount1"
DEV_ACCOUNT_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)
DEV_BLOB_ENDPOINT = "http://127.0.0.1:10000/devstoreaccount1"


class CredentialKind(str, enum.Enum):
    """What a :class:`Credential` holds."""

    NONE = "none"
    SAS = "sas"
    ACCOUNT_KEY = "account-key"
    CONNECTION_STRING = "connection-string"
    AZURE_AD = "azure-ad"

    @property
    def label(self) -> str:
        """The phrase messages use for this kind, e.g. ``the SAS token``."""
        return _LABELS[self]


_LABELS = {
    CredentialKind.NONE: "no credential",
    CredentialKind.SAS: "the SAS token",
    CredentialKind.ACCOUNT_KEY: "the account key",
    CredentialKind.CONNECTION_STRING: "the connection string",
    CredentialKind.AZURE_AD: "the Azure AD identity",
}


@dataclass(frozen=True)
class Credential:
    """A credential kind and its secret; ``repr``/``str`` never show the secret.

    Build one with the class methods (:meth:`sas`, :meth:`account_key`,
    :meth:`connection_string`, :meth:`azure_ad`, :meth:`none`) or
    :meth:`parse`, which normalise and check the secret.
    """

    kind: CredentialKind
    secret: str = field(default="", repr=False)

    def __post_init__(self) -> None:
        if self.secret:
            register_secret(self.secret)

    def __repr__(self) -> str:
        return f"Credential(kind={self.kind.value!r})"

    def __str__(self) -> str:
        return self.kind.label

    # -- constructors -------------------------------------------------------

    @classmethod
    def none(cls) -> "Credential":
        """No credential (``-`` on the command line): for ``file:`` targets."""
        return cls(CredentialKind.NONE)

    @classmethod
    def azure_ad(cls) -> "Credential":
        """Azure AD sign-in through ``azure.identity.DefaultAzureCredential``."""
        return cls(CredentialKind.AZURE_AD)

    @classmethod
    def sas(cls, token: str) -> "Credential":
        """A SAS token; accepts a leading ``?``, surrounding whitespace or a whole SAS URL."""
        text = token.strip()
        if text.lower().startswith(("https://", "http://")):
            text = urllib.parse.urlsplit(text).query
        text = text.lstrip("?").strip()
        if not text:
            raise TargetConfigError("the SAS token is empty; pass the query part of the SAS URL (the text after '?')")
        fields = urllib.parse.parse_qs(text, keep_blank_values=True)
        if "sig" not in fields:
            raise TargetConfigError(
                "the SAS token has no 'sig' field; pass the whole query part of the SAS URL (the text after '?', "
                "with its 'sv', 'sp', 'se' and 'sig' fields)"
            )
        return cls(CredentialKind.SAS, text)

    @classmethod
    def account_key(cls, key: str) -> "Credential":
        """A storage account key (the base64 string the portal shows)."""
        text = key.strip()
        try:
            raw = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raw = b""
        if not raw:
            raise TargetConfigError("the account key is not base64 text; copy key1 or key2 of the storage account")
        return cls(CredentialKind.ACCOUNT_KEY, text)

    @classmethod
    def connection_string(cls, text: str) -> "Credential":
        """An Azure Storage connection string with ``AccountKey=`` or ``SharedAccessSignature=``."""
        text = text.strip()
        fields = parse_connection_string(text)
        if fields.get("usedevelopmentstorage", "").lower() == "true":
            return cls(CredentialKind.CONNECTION_STRING, text)
        if not (fields.get("accountkey") or fields.get("sharedaccesssignature")):
            raise TargetConfigError(
                "the connection string has neither AccountKey= nor SharedAccessSignature=; "
                "copy it from the storage account's 'Access keys' page"
            )
        return cls(CredentialKind.CONNECTION_STRING, text)

    @classmethod
    def parse(cls, text: str) -> "Credential":
        """Guess the kind of a credential given as one string.

        ``-`` is none; ``azure-ad`` (or ``aad``) is Azure AD; a string with
        ``AccountKey=``, ``SharedAccessSignature=``, ``BlobEndpoint=`` or
        ``UseDevelopmentStorage=`` is a connection string; one with ``sig=`` is
        a SAS; base64 text is an account key.
        """
        stripped = text.strip()
        lowered = stripped.lower()
        if stripped == "-":
            return cls.none()
        if lowered in ("azure-ad", "aad", "azuread"):
            return cls.azure_ad()
        if any(k in lowered for k in ("accountkey=", "sharedaccesssignature=", "blobendpoint=",
                                      "usedevelopmentstorage=", "defaultendpointsprotocol=")):
            return cls.connection_string(stripped)
        if "sig=" in lowered:
            return cls.sas(stripped)
        try:
            return cls.account_key(stripped)
        except TargetConfigError:
            raise TargetConfigError(
                "cannot tell what kind of credential this is; give a SAS token (with 'sv' and 'sig' fields), "
                "an account key, a connection string, 'azure-ad' or '-' for a file: target"
            ) from None

    # -- derived facts ----------------------------------------------------

    def sas_info(self) -> Optional["SasInfo"]:
        """The non-secret fields of the SAS this credential carries, if any."""
        if self.kind is CredentialKind.SAS:
            return SasInfo.parse(self.secret)
        if self.kind is CredentialKind.CONNECTION_STRING:
            sas = parse_connection_string(self.secret).get("sharedaccesssignature")
            if sas:
                return SasInfo.parse(sas)
        return None


@dataclass(frozen=True)
class SasInfo:
    """The public fields of a SAS token (everything but the signature).

    ``permissions`` is the ``sp`` field (``None`` when a stored access policy
    ``si`` supplies it), ``expiry``/``start`` are the ``se``/``st`` times (UTC,
    ``None`` when absent or unparsable).
    """

    permissions: Optional[str]
    expiry: Optional[_dt.datetime]
    start: Optional[_dt.datetime]
    policy: Optional[str]
    resource: Optional[str]

    @classmethod
    def parse(cls, token: str) -> "SasInfo":
        """Read the fields of *token* (a query string, with or without ``?``)."""
        fields = urllib.parse.parse_qs(token.lstrip("?"), keep_blank_values=True)

        def one(key: str) -> Optional[str]:
            values = fields.get(key)
            return values[0] if values else None

        return cls(
            permissions=one("sp"),
            expiry=_parse_sas_time(one("se")),
            start=_parse_sas_time(one("st")),
            policy=one("si"),
            resource=one("sr") or one("srt"),
        )

    def is_expired(self, now: Optional[_dt.datetime] = None) -> bool:
        """True if the expiry time has passed (a SAS without ``se`` never expires here)."""
        now = now or _dt.datetime.now(_dt.timezone.utc)
        return self.expiry is not None and self.expiry <= now

    def not_yet_valid(self, now: Optional[_dt.datetime] = None, slack_s: float = 300.0) -> bool:
        """True if the start time is more than *slack_s* in the future (clock skew allowed)."""
        now = now or _dt.datetime.now(_dt.timezone.utc)
        return self.start is not None and self.start > now + _dt.timedelta(seconds=slack_s)

    def lacks(self, letter: str) -> bool:
        """True if the token states its permissions and *letter* is not among them."""
        return self.permissions is not None and letter not in self.permissions


def _parse_sas_time(text: Optional[str]) -> Optional[_dt.datetime]:
    """Parse a SAS time (ISO 8601 UTC, with or without seconds/fractions)."""
    if not text:
        return None
    value = text.strip().replace("Z", "+00:00")
    try:
        parsed = _dt.datetime.fromisoformat(value)
    except ValueError:
        try:
            parsed = _dt.datetime.strptime(text.strip(), "%Y-%m-%d")
        except ValueError:
            return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=_dt.timezone.utc)
    return parsed.astimezone(_dt.timezone.utc)


def parse_connection_string(text: str) -> Dict[str, str]:
    """Split ``Key=Value;Key=Value`` into a dict with lower-case keys.

    Values may contain ``=`` (base64 keys, SAS tokens); only the first ``=`` of
    each part separates the key.
    """
    out: Dict[str, str] = {}
    for part in text.strip().split(";"):
        if not part.strip():
            continue
        key, sep, value = part.partition("=")
        if not sep:
            raise TargetConfigError(
                "the connection string has a part without '='; copy it whole from the storage account"
            )
        out[key.strip().lower()] = value.strip()
    return out
