"""CLFS objects from source entries: each function yields the blobs of one object.

Blobs come out in upload order: data segments and indirect blocks first, the
inode last (§11.5; the reference could publish an inode before its
segments, we never do). Bodies are not yet wrapped: :func:`seal` adds the
envelope and the checksum. Everything an object needs travels in its
arguments (its fh, its parent's fh, the run's ids), so one object, or one
directory, is a self-contained unit of work.
"""

import os
import struct
import uuid
from typing import BinaryIO, Callable, Dict, Generator, Iterator, List, NamedTuple, Optional, Sequence, Tuple, Union

from .._native import checksum, dirents, envelope, hashing, records
from .blockmap import BlockMapBuilder, RandomBlockIds, segment_offset
from .constants import (
    BUCKET_FIXED_ATTRS,
    BUCKET_UUID_KEY,
    DIR_FIRST_SEGMENT_LIMIT,
    DIR_OTHER_SEGMENT_BYTES,
    FIRST_SEGMENT_BYTES,
    INPROGRESS_ID,
    LOGFILE_KEY_FORMAT,
    OBJ_VERSION_INITIAL,
    OTHER_SEGMENT_BYTES,
    RAW_ENVELOPE,
    ROOT_EPOCH_ATTR,
    ROOT_ID,
    ROOT_UUID_KEYS,
    TMP_PREFIX,
    Btype,
)
from .vattr import VAttr


class Blob(NamedTuple):
    """One object to store: its blob name and its body (before the envelope)."""

    name: str
    body: bytes


class Sealed(NamedTuple):
    """A blob ready to upload: name and payload (envelope included)."""

    name: str
    payload: bytes

    @property
    def digest(self) -> bytes:
        """XXH3-128 of the payload, computed when asked (the upload path does not need it)."""
        return checksum.checksum(self.payload)


def seal(blob: Blob, compress: bool) -> Sealed:
    """Wrap a body in its envelope (LZ4 unless a fallback rule says raw)."""
    return Sealed(blob.name, envelope.wrap(blob.body, compress))


def read_exact(stream: BinaryIO, size: int) -> bytes:
    """Read up to ``size`` bytes, stopping early only at end of file.

    Short reads are retried, and a segment never grows past ``size`` (the
    reference could over-read on unusual filesystems, spec §20 item 10).
    """
    chunks = read_parts(stream, size)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def read_parts(stream: BinaryIO, size: int) -> List[bytes]:
    """:func:`read_exact`, the pieces as the stream gave them (their concatenation is what it returns).

    A segment read through the pipeline comes as 1 MiB pieces; joined here
    it would be copied once more than :func:`file_segment_blob` copies it
    into its body.
    """
    chunks = []
    remaining = size
    while remaining > 0:
        chunk = stream.read(remaining)
        if not chunk:
            break
        chunks.append(chunk)
        remaining -= len(chunk)
    return chunks


def _indirect_emitter(out: List[Blob], owner: bytes, ctime: int):
    def emit(block_id: bytes, children: List[bytes], offset: int) -> None:
        body = records.encode_indirect_block(children, ctime, offset, owner)
        out.append(Blob(hashing.blob_name(block_id, Btype.INDIRECT, owner), body))

    return emit


class InodeName(NamedTuple):
    """Where an inode is stored: the owner hashed into its name, and the version."""

    owner: bytes
    version: int = OBJ_VERSION_INITIAL

    @classmethod
    def parked(cls) -> "InodeName":
        """The name of an inode that reconcile rewrites later (owner 0x62, §13)."""
        return cls(INPROGRESS_ID)


def file_blobs(
    stream: BinaryIO,
    attrs: VAttr,
    fh: bytes,
    backpointers: Sequence[bytes],
    name: bytes,
    where: InodeName,
    ids=None,
    compress: Optional[bool] = None,
) -> Generator[Union[Blob, Sealed], None, VAttr]:
    """The blobs of a regular file read from ``stream`` (§9.1, §9.6, §11).

    ``attrs.size`` is ignored: the stored size is the number of bytes read.
    The inode comes last; the final :class:`VAttr` is available afterwards
    through the generator's return value (``StopIteration.value``). ``ids``
    makes segment and indirect-block ids (default: random UUID4s). With
    ``compress`` (True or False) data segments come sealed with it
    (:func:`file_segment_sealed`), the other blobs as bodies.
    """
    ids = ids or RandomBlockIds(fh)
    ctime = attrs.ctime_sec
    first = read_exact(stream, FIRST_SEGMENT_BYTES)
    size = len(first)
    pending: List[Blob] = []
    blockmap = BlockMapBuilder(_indirect_emitter(pending, fh, ctime), new_id=ids.next_indirect)
    if size == FIRST_SEGMENT_BYTES:
        index = 1
        while True:
            parts = read_parts(stream, OTHER_SEGMENT_BYTES)
            length = sum(map(len, parts))
            if not length:
                break
            seg_id = ids.segment(index)
            if compress is None:
                yield file_segment_blob(parts, index, seg_id, ctime, fh)
            else:
                yield file_segment_sealed(parts, index, seg_id, ctime, fh, compress)
            blockmap.add(seg_id)
            yield from pending
            pending.clear()
            size += length
            index += 1
            if length < OTHER_SEGMENT_BYTES:
                break
    direct, roots = blockmap.finish()
    yield from pending
    final = attrs._replace(size=size)
    body = records.encode_file_inode(final, fh, direct, roots, backpointers, name, first)
    yield Blob(hashing.blob_name(fh, final.btype, where.owner, where.version), body)
    return final


def file_segment_blob(data: Union[bytes, List[bytes]], index: int, seg_id: bytes, ctime: int, fh: bytes) -> Blob:
    """Data segment ``index`` (1-based block index) of regular file ``fh``, with id ``seg_id`` (§9.6).

    ``data``: the segment's bytes, or the list of its pieces in order (:func:`read_parts`).
    """
    offset = segment_offset(index, FIRST_SEGMENT_BYTES, OTHER_SEGMENT_BYTES)
    if isinstance(data, list):
        body = records.encode_file_segment_parts(data, ctime, offset, fh)
    else:
        body = records.encode_file_segment(data, ctime, offset, fh)
    return Blob(hashing.blob_name(seg_id, Btype.SEGMENT, fh), body)


def file_segment_sealed(parts: List[bytes], index: int, seg_id: bytes, ctime: int, fh: bytes,
                        compress: bool) -> Sealed:
    """:func:`file_segment_blob` of ``parts`` sealed at once (:func:`seal`, the same payload).

    The body is encoded behind a raw envelope header, so a segment LZ4 keeps
    raw (random or already compressed data) is stored without a second 8 MiB
    copy into its payload.
    """
    offset = segment_offset(index, FIRST_SEGMENT_BYTES, OTHER_SEGMENT_BYTES)
    framed = records.encode_file_segment_parts(parts, ctime, offset, fh, RAW_ENVELOPE)
    return Sealed(hashing.blob_name(seg_id, Btype.SEGMENT, fh), envelope.wrap_prefixed(framed, compress))


def file_inode_blobs(
    attrs: VAttr,
    fh: bytes,
    backpointers: Sequence[bytes],
    name: bytes,
    where: InodeName,
    head: bytes,
    segments: int,
    ids,
) -> List[Blob]:
    """The indirect blocks and the inode of a regular file whose segments are stored already.

    For a file loaded in ranges (:mod:`clfsload.work.ranges`): its ``segments``
    data segments were written by other units under ``ids.segment(1..n)``.
    The block map needs their ids only, so it is built here without the
    data: the same indirect blocks and inode :func:`file_blobs` makes (it
    emits them between segments; here they come together, inode last).
    ``head`` is the file's first FIRST_SEGMENT_BYTES, ``attrs.size`` its size.
    """
    out: List[Blob] = []
    blockmap = BlockMapBuilder(_indirect_emitter(out, fh, attrs.ctime_sec), new_id=ids.next_indirect)
    for index in range(1, segments + 1):
        blockmap.add(ids.segment(index))
    direct, roots = blockmap.finish()
    body = records.encode_file_inode(attrs, fh, direct, roots, backpointers, name, head)
    out.append(Blob(hashing.blob_name(fh, attrs.btype, where.owner, where.version), body))
    return out


def small_file_blob(
    data: bytes, attrs: VAttr, fh: bytes, backpointers: Sequence[bytes], name: bytes, where: InodeName
) -> Blob:
    """The inode of a regular file whose whole content fits its DATA (§9.1): no segment.

    The same blob :func:`file_blobs` makes for such a file, without a stream:
    ``len(data)`` must be below FIRST_SEGMENT_BYTES and is the stored size.
    """
    if len(data) >= FIRST_SEGMENT_BYTES:
        raise ValueError("a file of %d bytes does not fit its inode" % len(data))
    final = attrs if attrs.size == len(data) else attrs._replace(size=len(data))
    body = records.encode_file_inode(final, fh, (), (), backpointers, name, data)
    return Blob(hashing.blob_name(fh, final.btype, where.owner, where.version), body)


def symlink_blob(
    target: bytes, attrs: VAttr, fh: bytes, backpointers: Sequence[bytes], name: bytes, where: InodeName
) -> Blob:
    """The inode of a symlink (§9.2): the whole target in DATA, never segmented.

    ``attrs.size`` must already be the target's length in code points.
    """
    body = records.encode_file_inode(attrs, fh, (), (), backpointers, name, target)
    return Blob(hashing.blob_name(fh, attrs.btype, where.owner, where.version), body)


def special_blob(attrs: VAttr, fh: bytes, backpointers: Sequence[bytes], name: bytes, where: InodeName) -> Blob:
    """The inode of a device, FIFO or socket (§9.3): no DATA handle."""
    body = records.encode_file_inode(attrs, fh, (), (), backpointers, name, None)
    return Blob(hashing.blob_name(fh, attrs.btype, where.owner, where.version), body)


def symlink_size(target: bytes) -> int:
    """VATTR size of a symlink: code points of the decoded target, not bytes (§9.2)."""
    return len(os.fsdecode(target))


def root_extattrs() -> List[Tuple[str, str]]:
    """The root inode's ext-attrs (§9.5), with fresh UUIDs."""
    return [ROOT_EPOCH_ATTR] + [(key, str(uuid.uuid4())) for key in ROOT_UUID_KEYS]


def directory_blobs(
    attrs: VAttr,
    fh: bytes,
    parent_fh: bytes,
    children: Sequence[Tuple[bytes, bytes]],
    child_dir_count: int,
    name: bytes,
    where: InodeName,
    extattrs: Optional[Sequence[Tuple[str, str]]] = None,
    ids=None,
) -> Iterator[Blob]:
    """The blobs of a directory (§9.4, §9.5, §9.7, §12): segments, then the inode.

    ``children`` are ``(name, fh)`` in scan order; ``.`` and ``..`` are added
    here. The root is stored under its ``tmp`` name until FINALIZE. ``ids``
    makes segment and indirect-block ids (default: random UUID4s).
    """
    ids = ids or RandomBlockIds(fh)
    entries = [(b".", fh), (b"..", parent_fh)]
    entries.extend(children)
    segments = dirents.split_entries(entries, DIR_FIRST_SEGMENT_LIMIT, DIR_OTHER_SEGMENT_BYTES)
    ctime = attrs.ctime_sec
    pending: List[Blob] = []
    blockmap = BlockMapBuilder(_indirect_emitter(pending, fh, ctime), new_id=ids.next_indirect)
    for index, packed in enumerate(segments[1:], start=1):
        seg_id = ids.segment(index)
        offset = segment_offset(index, FIRST_SEGMENT_BYTES, DIR_OTHER_SEGMENT_BYTES)
        yield Blob(hashing.blob_name(seg_id, Btype.SEGMENT, fh), records.encode_dir_segment(packed, ctime, offset, fh))
        blockmap.add(seg_id)
        yield from pending
        pending.clear()
    direct, roots = blockmap.finish()
    yield from pending
    size = sum(4 + len(s) for s in segments)  # §12.4: a length word per segment
    final = attrs._replace(size=size, nlink=child_dir_count + 2)
    body = records.encode_dir_inode(final, fh, direct, roots, name, segments[0], extattrs)
    blob_name = hashing.blob_name(fh, Btype.DIR, where.owner, where.version)
    if fh == ROOT_ID:
        blob_name = TMP_PREFIX + blob_name
    yield Blob(blob_name, body)


def bucket_blob(bucket_uuid: str, logfiles: Sequence[str] = ()) -> Blob:
    """The bucket object (§9.9); ``logfiles`` are appended as logfileNNN in sorted order."""
    pairs = list(BUCKET_FIXED_ATTRS) + [(BUCKET_UUID_KEY, bucket_uuid)]
    pairs += [(LOGFILE_KEY_FORMAT % i, n) for i, n in enumerate(sorted(logfiles), start=1)]
    return Blob(hashing.bucket_blob_name(), records.encode_extattrs(pairs))


def final_root_name(version: int = OBJ_VERSION_INITIAL) -> str:
    """The root's published name; its existence marks a finished transfer (§4.5)."""
    return hashing.blob_name(ROOT_ID, Btype.DIR, ROOT_ID, version)


def yield_all(gen: Generator[Blob, None, VAttr], put: Callable[[Blob], None]) -> VAttr:
    """Feed every blob of ``gen`` to ``put``; return the generator's final VAttr."""
    while True:
        try:
            put(next(gen))
        except StopIteration as done:
            return done.value


_HANDLE_HEAD = struct.Struct("<III")  # magic, blobCount, realCount (§7)


def replace_handles(body: bytes, replacements: Dict[int, bytes]) -> bytes:
    """Rewrite an object body handle by handle, swapping the handles of the given types.

    Handles keep their order; every handle not named is copied byte for byte.
    This is how RECONCILE updates a parked inode (§13). The body must be
    well-formed (it was written by us); a decoder checks foreign data.
    """
    out = []
    pos = 0
    while pos < len(body):
        _, count, _ = _HANDLE_HEAD.unpack_from(body, pos)
        (obtype,) = struct.unpack_from("<I", body, pos + 12)
        out.append(replacements.get(obtype, body[pos : pos + count]))
        pos += count
    return b"".join(out)
