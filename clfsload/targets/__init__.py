"""Storage targets: where the loader writes blobs (Azure Blob storage or a local folder).

Open one with :func:`open_target` (blocking) or :func:`open_async_target`
(asyncio) from the ACCOUNT, CONTAINER and credential the user gave:

>>> with open_target("file:/srv/clfs", "c1", "-", create=True) as target:   # doctest: +SKIP
...     target.put("name", b"payload")

Errors are :mod:`clfsload.errors` classes; messages and reprs never hold a
secret (:func:`redact` scrubs everything built from outside text).

The Azure pieces (and asyncio, which they import) load on first use: a run
to a local folder, or ``--help``, never pays for them.
"""

from typing import TYPE_CHECKING, Any

from .base import AsyncBlobTarget, BlobTarget, check_blob_name
from .credentials import Credential, CredentialKind, SasInfo
from .endpoint import AzureEndpoint, LocalFolder, parse_account
from .redaction import RedactingFilter, protect_library_loggers, redact, register_secret

if TYPE_CHECKING:
    from .azure_common import AzureOptions, TargetStats
    from .factory import open_async_target, open_target
    from .retry import RetrySettings

#: the names imported on first use, and the module of each (PEP 562)
_LAZY = {
    "AzureOptions": "azure_common",
    "TargetStats": "azure_common",
    "open_async_target": "factory",
    "open_target": "factory",
    "RetrySettings": "retry",
}


def __getattr__(name: str) -> Any:
    """Import the module a lazy name lives in, on first use (PEP 562)."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError("module %r has no attribute %r" % (__name__, name))
    import importlib

    value = getattr(importlib.import_module("." + module, __name__), name)
    globals()[name] = value  # the next access is a plain lookup
    return value

__all__ = [
    "AsyncBlobTarget",
    "AzureEndpoint",
    "AzureOptions",
    "BlobTarget",
    "Credential",
    "CredentialKind",
    "LocalFolder",
    "RedactingFilter",
    "RetrySettings",
    "SasInfo",
    "TargetStats",
    "check_blob_name",
    "open_async_target",
    "open_target",
    "parse_account",
    "protect_library_loggers",
    "redact",
    "register_secret",
]
