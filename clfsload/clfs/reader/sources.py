"""Where a container's blobs come from: the :class:`BlobSource` protocol and a local folder."""

import os
from typing import Iterable, List, Optional, Protocol

__all__ = ["BlobSource", "FolderSource"]


class BlobSource(Protocol):
    """Where a container's blobs come from."""

    def names(self) -> Iterable[str]:
        """Every blob name in the container."""

    def read(self, name: str) -> bytes:
        """The whole payload of blob ``name``."""


class FolderSource:
    """A local folder with one file per blob, the file name being the blob name."""

    def __init__(self, path: str) -> None:
        self.path = os.fspath(path)

    def names(self) -> List[str]:
        """The regular files of the folder, sorted."""
        return sorted(e.name for e in os.scandir(self.path) if e.is_file(follow_symlinks=False))

    def read(self, name: str) -> bytes:
        """The content of the file named ``name``."""
        with open(os.path.join(self.path, name), "rb") as f:
            return f.read()

    def size(self, name: str) -> Optional[int]:
        """The size of the file named ``name`` (None if it is gone)."""
        try:
            return os.lstat(os.path.join(self.path, name)).st_size
        except OSError:
            return None

    def __repr__(self) -> str:
        return "FolderSource(%r)" % self.path
