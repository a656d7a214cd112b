"""The interface the loader writes blobs through, in a blocking and an asyncio flavour.

A target is one container: a flat namespace of blobs addressed by name.
Blob names never contain ``/`` (CLFS names are flat, FMT §4). Both flavours
raise only :mod:`clfsload.errors` classes for storage failures:

* :class:`~clfsload.errors.BlobNotFoundError` from :meth:`BlobTarget.get`
  (and :meth:`BlobTarget.delete` with ``missing_ok=False``);
* :class:`~clfsload.errors.TransientError` when retries ran out;
* :class:`~clfsload.errors.TargetError` for any other per-blob failure;
* :class:`~clfsload.errors.TerminalError` subclasses when the run cannot go
  on (credential rejected or lacking a permission, container missing);
* :class:`~clfsload.errors.BlobNameError` for a name no target accepts.

Messages name the blob, the operation and the target, never a secret.
"""

from __future__ import annotations

import abc
import re
from typing import AsyncIterator, Iterator, Optional, Tuple, Union

from ..errors import BlobNameError

__all__ = ["BlobTarget", "AsyncBlobTarget", "Payload", "check_blob_name", "RESERVED_PREFIX", "MAX_NAME_LENGTH"]

#: What ``put`` accepts: anything with the buffer protocol of bytes.
Payload = Union[bytes, bytearray, memoryview]

#: Names starting with this are the targets' own (temp files, access probes):
#: ``put``/``get``/``delete`` refuse them and no target lists them or counts
#: them in ``is_empty``. No CLFS blob name can start with ``.`` (FMT §4: hex
#: digits, ``tmp``, or a log file name), so the prefix never clashes.
RESERVED_PREFIX = ".clfsload-"

#: Azure's limit on a blob name, in characters.
MAX_NAME_LENGTH = 1024

_BAD_CHARS = re.compile(r"[\x00-\x1f\x7f/\\]")


def check_blob_name(name: str) -> str:
    """Return *name* if every target accepts it; raise :class:`BlobNameError` otherwise.

    Refused: non-strings, the empty name, ``.`` and ``..``, names with ``/``,
    ``\\``, NUL or other control characters, names over 1,024 characters, and
    names starting with :data:`RESERVED_PREFIX`.
    """
    if not isinstance(name, str):
        raise BlobNameError(f"blob name must be a str, not {type(name).__name__}")
    if (_BAD_CHARS.search(name) is None and len(name) <= MAX_NAME_LENGTH
            and name not in ("", ".", "..") and not name.startswith(RESERVED_PREFIX)):
        return name  # the common case, one regex scan
    if name in ("", ".", ".."):
        raise BlobNameError(f"blob name {name!r} is not allowed; CLFS names are never empty, '.' or '..'")
    if "/" in name or "\\" in name:
        raise BlobNameError(f"blob name {name!r} contains a path separator; CLFS names are flat")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in name):
        raise BlobNameError(f"blob name {name!r} contains NUL or another control character")
    if len(name) > MAX_NAME_LENGTH:
        raise BlobNameError(f"blob name of {len(name)} characters exceeds Azure's limit of {MAX_NAME_LENGTH}")
    if name.startswith(RESERVED_PREFIX):
        raise BlobNameError(f"blob name {name!r} starts with {RESERVED_PREFIX!r}, which the targets reserve")
    return name


class BlobTarget(abc.ABC):
    """A container reached with blocking calls; safe to share between threads.

    Use it as a context manager or call :meth:`close`. Do not carry an open
    target across ``fork``: open one per process.
    """

    #: what kind of store it is, ``azure`` or ``local``: speeds differ too much to share a history
    kind = "azure"

    def remove_temp_files(self) -> int:
        """Delete temp files left by writers killed mid-blob; return how many (none on Azure).

        Call it only with no other writer.
        """
        return 0

    @abc.abstractmethod
    def describe(self) -> str:
        """A secret-free identity, e.g. ``azure:https://acct.blob.core.windows.net/c`` or ``file:/abs/path/c``."""

    @abc.abstractmethod
    def check_access(self, *, read: bool = True, write: bool = True, delete: bool = True,
                     list_: bool = True) -> None:
        """Check that the container exists and the credential allows the named operations.

        The checks leave nothing behind in the container. Raises
        :class:`~clfsload.errors.ContainerNotFoundError` or
        :class:`~clfsload.errors.AccessDeniedError` with a one-line message
        that names the credential kind and the missing permission.
        """

    @abc.abstractmethod
    def is_empty(self) -> bool:
        """True if the container holds no blob (names starting with :data:`RESERVED_PREFIX` aside)."""

    @abc.abstractmethod
    def list_names(self, prefix: str = "") -> Iterator[str]:
        """Yield the names of the blobs starting with *prefix*, in ascending (UTF-8 byte) order.

        Names starting with :data:`RESERVED_PREFIX` are never yielded.
        """

    def list_sizes(self, prefix: str = "") -> Iterator[Tuple[str, Optional[int]]]:
        """Yield ``(name, size in bytes)`` like :meth:`list_names`; None where the listing gives no size."""
        for name in self.list_names(prefix):
            yield name, None

    @abc.abstractmethod
    def put(self, name: str, payload: Payload) -> None:
        """Create or replace blob *name* with *payload* in one request (or one atomic write)."""

    @abc.abstractmethod
    def get(self, name: str) -> bytes:
        """Return the content of blob *name*; :class:`~clfsload.errors.BlobNotFoundError` if missing."""

    @abc.abstractmethod
    def delete(self, name: str, *, missing_ok: bool = True) -> None:
        """Delete blob *name*; a missing blob is fine unless *missing_ok* is false."""

    def sync(self) -> None:
        """Make every put and delete made so far durable; call it before recording them as done.

        Azure: nothing to do, an acknowledged Put Blob or Delete Blob is
        durable at the service. A local folder fsyncs what it wrote.
        """

    def publish(self, name: str, payload: Payload) -> None:
        """Store blob *name* durably, never seen torn after a crash or a power loss (the published root)."""
        self.put(name, payload)
        self.sync()

    @abc.abstractmethod
    def close(self) -> None:
        """Release connections and files; the target is unusable afterwards."""

    def __enter__(self) -> "BlobTarget":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.describe()}>"


class AsyncBlobTarget(abc.ABC):
    """A container reached from asyncio; one event loop per instance.

    Any number of calls may be in flight at once; the implementation bounds
    the connections. Use ``async with`` or await :meth:`close`.
    """

    @abc.abstractmethod
    def describe(self) -> str:
        """A secret-free identity, the same string the blocking flavour gives."""

    @abc.abstractmethod
    async def check_access(self, *, read: bool = True, write: bool = True, delete: bool = True,
                           list_: bool = True) -> None:
        """See :meth:`BlobTarget.check_access`."""

    @abc.abstractmethod
    async def is_empty(self) -> bool:
        """See :meth:`BlobTarget.is_empty`."""

    @abc.abstractmethod
    def list_names(self, prefix: str = "") -> AsyncIterator[str]:
        """Yield (``async for``) the names starting with *prefix*, in ascending order."""

    @abc.abstractmethod
    async def put(self, name: str, payload: Payload) -> None:
        """See :meth:`BlobTarget.put`."""

    @abc.abstractmethod
    async def get(self, name: str) -> bytes:
        """See :meth:`BlobTarget.get`."""

    @abc.abstractmethod
    async def delete(self, name: str, *, missing_ok: bool = True) -> None:
        """See :meth:`BlobTarget.delete`."""

    async def sync(self) -> None:
        """See :meth:`BlobTarget.sync`."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release connections; the target is unusable afterwards."""

    async def __aenter__(self) -> "AsyncBlobTarget":
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.describe()}>"
