"""Open a loaded CLFS container for reading: a local ``file:`` folder or an Azure / Azurite container.

The container is reached through the same storage targets the loader writes
with (:func:`clfsload.targets.open_target`), so ACCOUNT, CONTAINER and the
credential are spelt exactly as on the loader's command line. The blob names
are listed once, when the container is opened; every blob is then fetched
with one ``get`` when the walk (or a file read) needs it.

Typical use::

    with open_container("file:/data/out", "c") as container:
        for entry in container.walk():
            print(entry.path, entry.inode.vattr.size)
"""

from typing import Dict, List, Optional

from ..clfs.container import Container
from ..targets.azure_common import AzureOptions
from ..targets.base import BlobTarget
from ..targets.factory import CredentialLike, open_target

__all__ = ["TargetSource", "TargetContainer", "open_container"]


class TargetSource:
    """A storage target seen as a container's :class:`~clfsload.clfs.container.BlobSource`.

    ``names`` lists the container on first call and keeps the list: a walk
    asks for it once, and blobs written afterwards are not part of the
    snapshot being read. ``read`` fetches one blob whole.
    """

    def __init__(self, target: BlobTarget) -> None:
        self.target = target
        self._names: Optional[List[str]] = None
        self._sizes: Dict[str, Optional[int]] = {}

    def names(self) -> List[str]:
        """Every blob name, in the target's (ascending) listing order; listed once."""
        if self._names is None:
            sized = list(self.target.list_sizes())
            self._names = [name for name, _ in sized]
            self._sizes = dict(sized)
        return self._names

    def size(self, name: str) -> Optional[int]:
        """The size of blob ``name`` as listed (None if the listing gave none)."""
        self.names()
        return self._sizes.get(name)

    def read(self, name: str) -> bytes:
        """The payload of blob ``name`` (BlobNotFoundError if it vanished since the listing)."""
        return self.target.get(name)

    def close(self) -> None:
        """Release the target's connections or files."""
        self.target.close()

    def __repr__(self) -> str:
        return "TargetSource(%s)" % self.target.describe()


class TargetContainer(Container):
    """A :class:`Container` over a :class:`TargetSource`; close it (or use ``with``) when done."""

    source: TargetSource

    def close(self) -> None:
        """Close the underlying target."""
        self.source.close()

    def __enter__(self) -> "TargetContainer":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def open_container(account: str, container: str, credential: CredentialLike = None, *, strict: bool = False,
                   allow_unfinished: bool = False, options: Optional[AzureOptions] = None) -> TargetContainer:
    """Open container ``container`` of ``account`` for reading and list its blobs.

    *account*: an account name, a blob endpoint URL (Azurite:
    ``http://127.0.0.1:10000/devstoreaccount1``) or ``file:/path`` for a local
    folder holding the container folder. *credential*: a
    :class:`~clfsload.targets.credentials.Credential` or a string that
    :meth:`Credential.parse <clfsload.targets.credentials.Credential.parse>`
    understands (SAS, account key, connection string, ``azure-ad``; None or
    ``-`` for none, the only kind a ``file:`` target takes).

    *strict* makes the first format violation raise
    :class:`~clfsload.errors.FormatError`; by default violations are collected
    in ``problems`` so one bad blob does not hide the rest. *allow_unfinished*
    walks from the ``tmp`` root of a transfer that never finalized.
    *options*: Azure tuning (:class:`~clfsload.targets.AzureOptions`), as for
    :func:`~clfsload.targets.open_target`.

    Raises :class:`~clfsload.errors.TerminalError` subclasses for an unusable
    account, credential or container, and target errors from the listing.
    Nothing is written to the container.
    """
    target = open_target(account, container, credential, options=options)
    source = TargetSource(target)
    try:
        source.names()  # list now: a wrong container or credential fails here, not mid-walk
        return TargetContainer(source, strict=strict, allow_unfinished=allow_unfinished)
    except BaseException:
        target.close()
        raise
