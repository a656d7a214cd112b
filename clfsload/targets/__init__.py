"""Storage targets: where the loader writes blobs (Azure Blob storage or a local folder).

Open one with :func:`open_target` (blocking) or :func:`open_async_target`
(asyncio) from the ACCOUNT, CONTAINER and credential the user gave:

>>> with open_target("file:/srv/clfs", "c1", "-", create=True) as target:   # doctest: +SKIP
...     target.put("name", b"payload")

Errors are :mod:`clfsload.errors` classes; messages and reprs never hold a
secret (:func:`redact` scrubs everything built from outside text).
"""

from .azure_common import AzureOptions, TargetStats
from .base import AsyncBlobTarget, BlobTarget, check_blob_name
from .credentials import Credential, CredentialKind, SasInfo
from .endpoint import AzureEndpoint, LocalFolder, parse_account
from .factory import open_async_target, open_target
from .redaction import RedactingFilter, protect_library_loggers, redact, register_secret
from .retry import RetrySettings

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
