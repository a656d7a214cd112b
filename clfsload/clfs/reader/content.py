"""A file's content: its data segments in block order, checked (§9.6, §11.2, §17.2 step 5)."""

from typing import Iterator, Tuple

from ..constants import FIRST_SEGMENT_BYTES, OTHER_SEGMENT_BYTES, Btype, Obtype
from ..decode import DecodedObject
from .core import handle_names
from .inodes_model import BlockRef, Inode
from .walk import TreeWalker

__all__ = ["ContentReader"]

_DATA_SEGMENT_HANDLES = [Obtype.DATA, Obtype.DATABACK]


class ContentReader(TreeWalker):
    """Reads files the walk reached: data segments, streamed content, whole files."""

    def file_segments(self, inode: Inode) -> Iterator[Tuple[BlockRef, DecodedObject]]:
        """Decode a file's data segments in block order, checking each (§9.6, §11.2)."""
        size = inode.vattr.size
        for ref in inode.segments:
            obj = self.read_object(ref.blob)
            offset = FIRST_SEGMENT_BYTES + (ref.index - 1) * OTHER_SEGMENT_BYTES
            self._expect(obj.handle_types == _DATA_SEGMENT_HANDLES, ref.blob,
                         "data segment handles are %s" % handle_names(obj.handle_types))  # fmt: skip
            self._check_databack(obj, inode, offset, "data segment")
            expected = min(OTHER_SEGMENT_BYTES, size - offset)
            self._expect(len(obj.data or b"") == expected, ref.blob,
                         "segment holds %d bytes, expected %d" % (len(obj.data or b""), expected))  # fmt: skip
            yield ref, obj

    def iter_content(self, inode: Inode) -> Iterator[bytes]:
        """Stream a file's bytes: inode DATA, then every segment's DATA (§17.2 step 5).

        For regular files the total is checked against VATTR.size; a symlink's
        DATA is its raw target.
        """
        first = inode.obj.data or b""
        total = len(first)
        yield first
        for _, obj in self.file_segments(inode):
            chunk = obj.data or b""
            total += len(chunk)
            yield chunk
        if inode.btype == Btype.REG:
            self._expect(total == inode.vattr.size, inode.blob,
                         "content is %d bytes, VATTR size %d" % (total, inode.vattr.size))  # fmt: skip

    def read_file(self, path: bytes) -> bytes:
        """The whole content of a file (or a symlink's target) at ``path``."""
        return b"".join(self.iter_content(self.lookup(path).inode))
