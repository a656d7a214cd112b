"""What the walk yields: paths reached, entries refused, and the rule for a path component."""

from dataclasses import dataclass
from typing import Optional

from ..constants import CLFS_NAME_MAX
from .inodes_model import Inode

__all__ = ["WalkEntry", "SkippedEntry", "bad_name"]


@dataclass(frozen=True)
class WalkEntry:
    """One path reached by the walk. Hard links give several entries sharing an inode."""

    path: bytes  # relative to the root, "/"-separated; b"" for the root
    parent_fh: bytes  # the directory listing it (the root lists itself)
    inode: Inode

    @property
    def fh(self) -> bytes:
        """The object's filehandle."""
        return self.inode.fh


@dataclass(frozen=True)
class SkippedEntry:
    """A directory entry the walk did not turn into a path, and why (one line, naming the blob)."""

    path: bytes  # the path it would have had (its name may be hostile: show it with display_path)
    reason: str
    refused: bool = True  # False: a good name whose inode is missing or does not decode


def bad_name(name: bytes) -> Optional[str]:
    """Why ``name`` cannot be a path component (empty, ``.``, ``..``, ``/``, NUL, too long), or None."""
    if name in (b"", b".", b".."):
        return "the name %r is not allowed" % name.decode("utf-8", "backslashreplace")
    if b"/" in name:
        return "the name holds a '/'"
    if b"\0" in name:
        return "the name holds a NUL byte"
    if len(name) > CLFS_NAME_MAX:
        return "the name is %d bytes, more than %d" % (len(name), CLFS_NAME_MAX)
    return None
