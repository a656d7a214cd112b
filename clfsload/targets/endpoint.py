"""Turn the ACCOUNT argument into a blob endpoint or a local folder.

ACCOUNT may be:

* a storage account name (3-24 lower-case letters and digits):
  ``https://NAME.blob.core.windows.net``;
* a blob endpoint URL, ``http`` or ``https``: another cloud
  (``https://NAME.blob.core.chinacloudapi.cn``), a private endpoint or custom
  domain, or Azurite / a path-style endpoint
  (``http://127.0.0.1:10000/devstoreaccount1``). Query strings are refused: a
  SAS belongs in the credential;
* a ``file:`` URL of an existing local folder: ``file:/abs/path``,
  ``file:///abs/path``, ``file://localhost/abs/path`` or ``file:relative/path``
  (made absolute against the current directory). Percent escapes are decoded.

Container names are checked here too, so a typo fails before any request.
"""

from __future__ import annotations

import ipaddress
import os
import re
import urllib.parse
from dataclasses import dataclass
from typing import Optional, Union

from ..errors import TargetConfigError
from .redaction import redact

__all__ = [
    "AzureEndpoint",
    "LocalFolder",
    "parse_account",
    "parse_endpoint_url",
    "check_container_name",
    "check_local_container_name",
]

_ACCOUNT_NAME_RE = re.compile(r"^[a-z0-9]{3,24}$")
_CONTAINER_RE = re.compile(r"^(?!.*--)[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")
_PUBLIC_SUFFIX = "blob.core.windows.net"


@dataclass(frozen=True)
class AzureEndpoint:
    """A blob service endpoint: ``url`` without a trailing ``/``; ``account`` if known.

    ``path_style`` is true when the account name is the first path segment
    (Azurite, IP addresses), false when it is the first label of the host.
    """

    url: str
    account: Optional[str]
    path_style: bool = False

    def container_url(self, container: str) -> str:
        """The URL of *container* under this endpoint (no query)."""
        return f"{self.url}/{urllib.parse.quote(container, safe='$')}"


@dataclass(frozen=True)
class LocalFolder:
    """A local folder that holds one sub-folder per container."""

    path: str


def parse_account(account: str) -> Union[AzureEndpoint, LocalFolder]:
    """Classify and normalise ACCOUNT; raise :class:`TargetConfigError` if unusable."""
    text = account.strip()
    if not text:
        raise TargetConfigError("the storage account is empty; give an account name, a blob endpoint URL or file:PATH")
    lowered = text.lower()
    if lowered.startswith("file:"):
        return LocalFolder(_file_url_path(text))
    if lowered.startswith(("http://", "https://")):
        return parse_endpoint_url(text)
    if "://" in text or "/" in text:
        raise TargetConfigError(
            f"storage account '{redact(text)}' is neither an account name nor an http(s):// or file: URL"
        )
    if not _ACCOUNT_NAME_RE.match(text):
        raise TargetConfigError(
            f"storage account name '{redact(text)}' is not 3-24 lower-case letters and digits; "
            "for another cloud or an emulator give the blob endpoint URL"
        )
    return AzureEndpoint(f"https://{text}.{_PUBLIC_SUFFIX}", text)


def parse_endpoint_url(text: str) -> AzureEndpoint:
    """Normalise an http(s) blob endpoint URL and find the account name in it, if it shows."""
    parts = urllib.parse.urlsplit(text)
    if parts.query or parts.fragment:
        raise TargetConfigError(
            f"blob endpoint '{redact(parts._replace(query='', fragment='').geturl())}' has a query or fragment; "
            "pass the SAS token as the credential, not in the URL"
        )
    if not parts.hostname:
        raise TargetConfigError(f"blob endpoint '{redact(text)}' has no host name")
    if parts.username or parts.password:
        raise TargetConfigError("the blob endpoint URL must not contain a user name or password")
    path = parts.path.strip("/")
    host = parts.hostname.lower()
    scheme = parts.scheme.lower()
    netloc = parts.netloc.lower()
    url = f"{scheme}://{netloc}" + (f"/{path}" if path else "")
    if path:
        # Path-style (Azurite, IP endpoints): the account is the first segment.
        segments = path.split("/")
        if len(segments) != 1:
            raise TargetConfigError(
                f"blob endpoint '{url}' has more than one path segment; give the endpoint without the container"
            )
        return AzureEndpoint(url, urllib.parse.unquote(segments[0]), path_style=True)
    account: Optional[str] = None
    if not _is_ip(host) and ".blob." in host:
        account = host.split(".", 1)[0]
    return AzureEndpoint(url, account)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return host == "localhost"
    return True


def _file_url_path(text: str) -> str:
    rest = text[len("file:"):]
    if rest.startswith("//"):
        netloc, _, path = rest[2:].partition("/")
        if netloc not in ("", "localhost"):
            raise TargetConfigError(f"file URL '{text}' names host '{netloc}'; only local folders are supported")
        path = "/" + path
    else:
        path = rest
    path = urllib.parse.unquote(path)
    if not path:
        raise TargetConfigError("the file: URL has no path; write file:/path/to/folder")
    if "\x00" in path:
        raise TargetConfigError("the file: URL path contains a NUL character")
    return os.path.abspath(path)


def check_container_name(container: str) -> str:
    """Return *container* if it is a valid Azure container name, else raise.

    Rules: 3-63 characters, lower-case letters, digits and single hyphens,
    starting and ending with a letter or digit; or ``$root``.
    """
    if container == "$root" or _CONTAINER_RE.match(container):
        return container
    raise TargetConfigError(
        f"container name '{redact(container)}' is not valid in Azure: use 3-63 lower-case letters, "
        "digits and single hyphens, starting and ending with a letter or digit"
    )


def check_local_container_name(container: str) -> str:
    """Return *container* if it can name one sub-folder, else raise."""
    if (
        not container
        or container in (".", "..")
        or "/" in container
        or "\x00" in container
        or len(os.fsencode(container)) > 255
    ):
        raise TargetConfigError(
            f"container '{container!r}' cannot name a sub-folder: use one path component without '/' or NUL"
        )
    return container
