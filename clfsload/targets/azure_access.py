"""Resolve an endpoint plus a :class:`Credential` into what the Azure clients need.

Shared by the blocking and the asyncio Azure targets: the account URL, the
account name for messages, the SDK credential object, the SAS for the bare
HTTP data path (a SAS token as given, or one signed locally from an account
key), and the :class:`~clfsload.targets.azure_errors.AuthMode` for messages.
"""

from __future__ import annotations

import datetime as _dt
import threading
from dataclasses import dataclass
from typing import Any, Optional, Tuple

from ..errors import TargetConfigError
from .azure_errors import AuthMode, RECOMMENDED_SAS_PERMISSIONS
from .credentials import (
    DEV_ACCOUNT_KEY,
    DEV_BLOB_ENDPOINT,
    Credential,
    CredentialKind,
    SasInfo,
    parse_connection_string,
)
from .endpoint import AzureEndpoint, parse_endpoint_url
from .redaction import register_secret

__all__ = ["AzureAccess", "resolve_access", "SasSource"]

#: Lifetime of a SAS signed locally from an account key, and when to renew it.
_KEY_SAS_LIFETIME = _dt.timedelta(hours=4)
_KEY_SAS_RENEW_BEFORE = _dt.timedelta(hours=1)


@dataclass(frozen=True)
class AzureAccess:
    """Everything needed to build clients for one container; ``repr`` shows no secret."""

    endpoint: AzureEndpoint
    account: str
    container: str
    auth: AuthMode
    sas_token: Optional[str] = None
    account_key: Optional[str] = None

    def __repr__(self) -> str:
        return f"AzureAccess({self.endpoint.url!r}, {self.container!r}, {self.auth.mode!r})"

    @property
    def container_url(self) -> str:
        """The container URL, no query."""
        return self.endpoint.container_url(self.container)

    def sdk_credential(self, aio: bool) -> Any:
        """The credential object for ``ContainerClient`` (sync or aio flavour)."""
        if self.auth.mode == "sas":
            from azure.core.credentials import AzureSasCredential

            return AzureSasCredential(self.sas_token or "")
        if self.auth.mode == "key":
            from azure.core.credentials import AzureNamedKeyCredential

            return AzureNamedKeyCredential(self.account, self.account_key or "")
        try:
            if aio:
                from azure.identity import aio as identity
            else:
                import azure.identity as identity  # type: ignore[no-redef]
        except ImportError:
            raise TargetConfigError(
                "Azure AD sign-in needs the azure-identity package; run: pip install azure-identity"
            ) from None
        return identity.DefaultAzureCredential()

    def sas_source(self) -> Optional["SasSource"]:
        """A source of SAS tokens for the bare HTTP data path, or None (Azure AD)."""
        if self.auth.mode == "sas" and self.sas_token:
            return SasSource(fixed=self.sas_token)
        if self.auth.mode == "key" and self.account_key:
            return SasSource(account=self.account, container=self.container, key=self.account_key)
        return None


class SasSource:
    """Hands out a SAS token: a fixed one, or one signed from the account key and renewed."""

    def __init__(self, *, fixed: Optional[str] = None, account: str = "", container: str = "",
                 key: Optional[str] = None) -> None:
        self._fixed = fixed
        self._account = account
        self._container = container
        self._key = key
        self._lock = threading.Lock()
        self._token: Optional[str] = None
        self._expiry = _dt.datetime.min.replace(tzinfo=_dt.timezone.utc)

    def token(self) -> str:
        """The SAS query string (no ``?``) to append to blob URLs."""
        if self._fixed is not None:
            return self._fixed
        now = _dt.datetime.now(_dt.timezone.utc)
        if self._token is not None and self._expiry - now > _KEY_SAS_RENEW_BEFORE:
            return self._token
        with self._lock:
            if self._token is None or self._expiry - now <= _KEY_SAS_RENEW_BEFORE:
                from azure.storage.blob import generate_container_sas

                expiry = now + _KEY_SAS_LIFETIME
                token = generate_container_sas(
                    self._account, self._container, account_key=self._key,
                    permission=RECOMMENDED_SAS_PERMISSIONS, expiry=expiry,
                    start=now - _dt.timedelta(minutes=15),
                )
                register_secret(token)
                self._token, self._expiry = token, expiry
            return self._token


def resolve_access(endpoint: Optional[AzureEndpoint], container: str, credential: Credential) -> AzureAccess:
    """Combine the endpoint from ACCOUNT with the credential; raise TargetConfigError if they clash.

    *endpoint* may be None only with a connection string that names the endpoint.
    """
    kind = credential.kind
    if kind is CredentialKind.NONE:
        raise TargetConfigError(
            "an Azure target needs a credential (SAS token, account key, connection string or azure-ad); "
            "'-' is only for file: targets"
        )
    if kind is CredentialKind.CONNECTION_STRING:
        endpoint, key, sas = _from_connection_string(endpoint, credential.secret)
        if key:
            return _with_key(endpoint, container, key, "the connection string's account key")
        return _with_sas(endpoint, container, sas or "", "the connection string's SAS")
    if endpoint is None:
        raise TargetConfigError("no storage account given; pass an account name or a blob endpoint URL")
    if kind is CredentialKind.SAS:
        return _with_sas(endpoint, container, credential.secret, "the SAS token")
    if kind is CredentialKind.ACCOUNT_KEY:
        return _with_key(endpoint, container, credential.secret, "the account key")
    if not endpoint.url.startswith("https://"):
        raise TargetConfigError(f"the Azure AD identity needs an https endpoint, but the endpoint is {endpoint.url}")
    return AzureAccess(endpoint, _display_account(endpoint), container, AuthMode("aad", "the Azure AD identity"))


def _display_account(endpoint: AzureEndpoint) -> str:
    return endpoint.account or endpoint.url.split("://", 1)[-1]


def _with_sas(endpoint: AzureEndpoint, container: str, token: str, label: str) -> AzureAccess:
    token = token.strip().lstrip("?")
    return AzureAccess(endpoint, _display_account(endpoint), container,
                       AuthMode("sas", label, SasInfo.parse(token)), sas_token=token)


def _with_key(endpoint: AzureEndpoint, container: str, key: str, label: str) -> AzureAccess:
    if not endpoint.account:
        raise TargetConfigError(
            f"cannot tell the account name from endpoint {endpoint.url}; an account key needs it: "
            "use a connection string with AccountName= and BlobEndpoint="
        )
    return AzureAccess(endpoint, endpoint.account, container, AuthMode("key", label), account_key=key)


def _from_connection_string(endpoint: Optional[AzureEndpoint],
                            text: str) -> Tuple[AzureEndpoint, Optional[str], Optional[str]]:
    fields = parse_connection_string(text)
    if fields.get("usedevelopmentstorage", "").lower() == "true":
        given = parse_endpoint_url(DEV_BLOB_ENDPOINT)
        return endpoint or given, DEV_ACCOUNT_KEY, None
    name = fields.get("accountname")
    key = fields.get("accountkey") or None
    sas = fields.get("sharedaccesssignature") or None
    from_cs: Optional[AzureEndpoint] = None
    if fields.get("blobendpoint"):
        from_cs = parse_endpoint_url(fields["blobendpoint"])
    elif name:
        protocol = fields.get("defaultendpointsprotocol", "https")
        suffix = fields.get("endpointsuffix", "core.windows.net")
        from_cs = AzureEndpoint(f"{protocol}://{name}.blob.{suffix}", name)
    chosen = endpoint or from_cs
    if chosen is None:
        raise TargetConfigError(
            "the connection string names no endpoint (BlobEndpoint= or AccountName=) and no account was given"
        )
    if name and chosen.account and name != chosen.account:
        raise TargetConfigError(
            f"the connection string is for account '{name}' but the target is account '{chosen.account}'"
        )
    if not chosen.account and name:
        chosen = AzureEndpoint(chosen.url, name, chosen.path_style)
    return chosen, key, sas
