"""Strict decoder of one CLFS blob: envelope, handle framing, handle payloads.

Spec: clfs-format.md §6.3 (envelope), §7 (handle framing), §8 (payloads) and
§17.1 (decoder logic). Unlike the reference decoder this one is strict:

* every handle header is checked (magic, reserved word, ``blobCount ==
  (realCount + 27) & ~7``, the handle fits in the body, zero padding);
* every payload must be consumed exactly by its type's decoder, so trailing
  bytes inside ``realCount`` are an error;
* every length prefix must stay inside its payload;
* VATTR fields are all decoded, including those the reference drops.

Every fault raises :class:`~clfsload.errors.FormatError` with a one-line
message ``"<blob>: offset <n>: <what>"``. Offsets count bytes from the start
of the object body, that is after the 4-byte envelope and after LZ4
decompression; envelope faults name their offset in the payload instead.
Handle types this decoder does not know are skipped with a
:class:`FormatWarning`, as §17.1 suggests.
"""

import re
import struct
import warnings
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Tuple

from .._native import dirents, envelope
from ..errors import FormatError
from .constants import (
    BMAP_TREE_COUNT,
    DIRECT_BLOCKS,
    ENVELOPE_LEN,
    HANDLE_HEADER_LEN,
    HANDLE_MAGIC,
    INDIR_POINTERS,
    VATTR_RECORD_LEN,
    Obtype,
)
from .vattr import VAttr

__all__ = [
    "FormatWarning",
    "DecodedVAttr",
    "BlockMap",
    "DataBack",
    "DecodedObject",
    "decode_body",
    "decode_payload",
]


class FormatWarning(UserWarning):
    """Something a lenient reader can skip, such as a handle of unknown type."""


@dataclass(frozen=True)
class DecodedVAttr:
    """A VATTR record decoded in full (§8.3).

    ``vattr`` holds the fields the encoder takes; the others are the fields
    clfsload always writes as constants (``used`` equals ``vattr.size``; the
    rest are 0) but which a decoder must still report.
    """

    vattr: VAttr
    used: int
    flags: int
    spare: int
    dtime_sec: int
    dtime_nsec: int
    ha_version: int


@dataclass(frozen=True)
class BlockMap:
    """A BMAP handle (§8.4). ``direct[0]`` is the owner's own fh."""

    first_segment_bytes: int
    other_segment_bytes: int
    direct: List[bytes]
    tree_roots: List[bytes]


@dataclass(frozen=True)
class DataBack:
    """A DATABACK handle (§8.7): the owner's whole-second ctime, offset, owner fh."""

    ctime: int
    offset: int
    owner: bytes


@dataclass
class DecodedObject:
    """One decoded object body.

    ``handle_types`` lists every handle in body order, unknown types
    included (as plain ints). The value fields hold the last handle of each
    type (a repeated type overwrites, as in the reference); None means the
    body has no handle of that type. ``compression`` is the envelope mode
    (0 raw, 1 LZ4) when the object came from :func:`decode_payload`.
    """

    blob: str
    handle_types: List[int] = field(default_factory=list)
    compression: Optional[int] = None
    vattr: Optional[DecodedVAttr] = None
    bmap: Optional[BlockMap] = None
    back: Optional[List[bytes]] = None
    databack: Optional[DataBack] = None
    extattrs: Optional[List[Tuple[str, str]]] = None
    name: Optional[bytes] = None
    data: Optional[bytes] = None
    dirents: Optional[List[Tuple[bytes, bytes]]] = None
    indir: Optional[List[bytes]] = None


# Handle header (§7): magic, blobCount, realCount, type, reserved.
_HEADER = struct.Struct("<5I")
# VATTR record after its u32 length word (§8.3): mode u16, btype u8, spare u8,
# flags u32, uid, gid, size u64, dtime/mtime/ctime/atime as (u32 sec, u32
# nsec), used u64, fsid u64, fileid u64, rdev major/minor u32, nlink u32,
# haVersion u32, containerid u64.
_VATTR = struct.Struct("<HBBI II Q II II II II Q Q Q II II Q")
assert _VATTR.size == VATTR_RECORD_LEN
_ENTRY_OFFSET = re.compile(r"at offset (\d+)")


class _Reader:
    """A cursor over one handle payload that turns overruns into FormatError.

    ``base`` is the payload's offset in the body, so messages carry absolute
    body offsets.
    """

    def __init__(self, blob: str, data: memoryview, base: int, what: str) -> None:
        self.blob = blob
        self.data = data
        self.base = base
        self.what = what
        self.pos = 0

    def fail(self, message: str, at: Optional[int] = None) -> FormatError:
        where = self.base + (self.pos if at is None else at)
        return FormatError("%s: offset %d: %s %s" % (self.blob, where, self.what, message))

    def take(self, n: int, what: str, at: Optional[int] = None) -> bytes:
        left = len(self.data) - self.pos
        if n > left:
            raise self.fail("%s of %d bytes overruns the payload (%d bytes left)" % (what, n, left), at)
        out = bytes(self.data[self.pos : self.pos + n])  # the only copy of a payload's bytes
        self.pos += n
        return out

    def uint(self, size: int, what: str) -> int:
        """A little-endian unsigned integer of ``size`` bytes."""
        return int.from_bytes(self.take(size, what), "little")

    def u32(self, what: str) -> int:
        return self.uint(4, what)

    def lp(self, size: int, what: str) -> bytes:
        """A value with a ``size``-byte length prefix (lp16: 2, lp32: 4)."""
        start = self.pos
        return self.take(self.uint(size, what + " length"), what, start)

    def lp16(self, what: str) -> bytes:
        return self.lp(2, what)

    def lp32(self, what: str) -> bytes:
        return self.lp(4, what)

    def lp16_list(self, what: str, limit: Optional[int] = None) -> List[bytes]:
        count = self.u32(what + " count")
        if limit is not None and count > limit:
            raise self.fail("%s count %d exceeds %d" % (what, count, limit), self.pos - 4)
        return [self.lp16(what) for _ in range(count)]

    def finish(self) -> None:
        """Insist that the payload was consumed exactly."""
        if self.pos != len(self.data):
            raise self.fail("has %d unparsed trailing bytes" % (len(self.data) - self.pos))


def _decode_data(r: _Reader, obj: DecodedObject) -> None:
    obj.data = r.lp32("data")


def _decode_dirents(r: _Reader, obj: DecodedObject) -> None:
    try:
        obj.dirents = dirents.unpack_entries(bytes(r.data))
    except FormatError as exc:
        # The twins report offsets relative to the entries; make them absolute.
        found = _ENTRY_OFFSET.search(str(exc))
        at = int(found.group(1)) if found else 0
        reason = str(exc)[found.end() :].lstrip(": ") if found else str(exc)
        raise r.fail("entry: %s" % reason, at) from None
    r.pos = len(r.data)


def _decode_vattr(r: _Reader, obj: DecodedObject) -> None:
    length = r.u32("record length")
    if length != VATTR_RECORD_LEN:
        raise r.fail("length word is %d, expected %d" % (length, VATTR_RECORD_LEN), 0)
    (mode, btype, spare, flags, uid, gid, size, dsec, dnsec, msec, mnsec, csec, cnsec,
     asec, ansec, used, fsid, fileid, major, minor, nlink, ha_version,
     containerid) = _VATTR.unpack(r.take(VATTR_RECORD_LEN, "record"))  # fmt: skip
    attrs = VAttr(mode, btype, uid, gid, size, msec, mnsec, csec, cnsec, asec, ansec,
                  fsid, fileid, major, minor, nlink, containerid)  # fmt: skip
    obj.vattr = DecodedVAttr(attrs, used, flags, spare, dsec, dnsec, ha_version)


def _decode_bmap(r: _Reader, obj: DecodedObject) -> None:
    first = r.u32("firstSegmentBytes")
    other = r.u32("otherSegmentBytes")
    count = r.u32("direct count")
    if not 1 <= count <= DIRECT_BLOCKS:
        raise r.fail("direct count is %d, expected 1..%d" % (count, DIRECT_BLOCKS), r.pos - 4)
    direct = [r.lp16("direct id") for _ in range(count)]
    roots = r.u32("tree-root count")
    if roots != BMAP_TREE_COUNT:
        raise r.fail("tree-root count is %d, expected %d" % (roots, BMAP_TREE_COUNT), r.pos - 4)
    tree_roots = [r.lp16("tree root") for _ in range(roots)]
    obj.bmap = BlockMap(first, other, direct, tree_roots)


def _decode_indir(r: _Reader, obj: DecodedObject) -> None:
    obj.indir = r.lp16_list("pointer", INDIR_POINTERS)


def _decode_back(r: _Reader, obj: DecodedObject) -> None:
    obj.back = r.lp16_list("backpointer")


def _decode_databack(r: _Reader, obj: DecodedObject) -> None:
    ctime = r.u32("ctime")
    offset = r.uint(8, "offset")
    obj.databack = DataBack(ctime, offset, r.lp16("owner"))


def _utf8(r: _Reader, what: str) -> str:
    start = r.pos
    raw = r.lp32(what)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise r.fail("%s is not UTF-8 (%s)" % (what, exc.reason), start) from None


def _decode_extattrs(r: _Reader, obj: DecodedObject) -> None:
    count = r.u32("pair count")
    obj.extattrs = [(_utf8(r, "key"), _utf8(r, "value")) for _ in range(count)]


def _decode_name(r: _Reader, obj: DecodedObject) -> None:
    obj.name = r.lp32("name")


_DECODERS: Dict[int, Callable[[_Reader, DecodedObject], None]] = {
    Obtype.DATA: _decode_data,
    Obtype.DIRENTS: _decode_dirents,
    Obtype.VATTR: _decode_vattr,
    Obtype.BMAP: _decode_bmap,
    Obtype.INDIR: _decode_indir,
    Obtype.BACK: _decode_back,
    Obtype.DATABACK: _decode_databack,
    Obtype.EXTATTRS: _decode_extattrs,
    Obtype.NAME: _decode_name,
}


def _as_obtype(code: int) -> int:
    """``code`` as an Obtype member when it is one, else the plain int."""
    try:
        return Obtype(code)
    except ValueError:
        return code


def _type_label(code: int) -> str:
    typed = _as_obtype(code)
    return typed.name if isinstance(typed, Obtype) else "type %d" % code


def decode_body(body: bytes, blob: str = "<blob>") -> DecodedObject:
    """Decode an object body (the handle stream, §7) strictly.

    ``blob`` names the blob in error messages. Raises FormatError on any
    framing or payload fault; warns (FormatWarning) and skips handles of
    types it cannot decode.
    """
    body = bytes(body)
    view = memoryview(body)
    obj = DecodedObject(blob)
    pos = 0
    end = len(body)
    while pos < end:
        if end - pos < HANDLE_HEADER_LEN:
            raise FormatError(
                "%s: offset %d: truncated handle header (%d of %d bytes)" % (blob, pos, end - pos, HANDLE_HEADER_LEN)
            )
        magic, blob_count, real_count, obtype, reserved = _HEADER.unpack_from(body, pos)
        if magic != HANDLE_MAGIC:
            raise FormatError("%s: offset %d: bad handle magic 0x%08X, expected 0x03016005" % (blob, pos, magic))
        if reserved != 0:
            raise FormatError("%s: offset %d: handle reserved word is 0x%X, expected 0" % (blob, pos + 16, reserved))
        # blobCount includes the 20-byte header and pads the total to 8 bytes.
        expected_count = (real_count + HANDLE_HEADER_LEN + 7) & ~7
        if blob_count != expected_count:
            raise FormatError(
                "%s: offset %d: handle blobCount %d does not match realCount %d (expected %d)"
                % (blob, pos + 4, blob_count, real_count, expected_count)
            )
        if blob_count > end - pos:
            raise FormatError(
                "%s: offset %d: %s handle of %d bytes overruns the body (%d bytes left)"
                % (blob, pos, _type_label(obtype), blob_count, end - pos)
            )
        start = pos + HANDLE_HEADER_LEN
        stop = start + real_count
        padding = body[stop : pos + blob_count]
        if padding.count(0) != len(padding):
            raise FormatError("%s: offset %d: nonzero handle padding" % (blob, stop))
        obj.handle_types.append(_as_obtype(obtype))
        decoder = _DECODERS.get(obtype)
        if decoder is None:
            warnings.warn(
                "%s: offset %d: skipping handle of unsupported %s" % (blob, pos, _type_label(obtype)),
                FormatWarning,
                stacklevel=2,
            )
        else:
            reader = _Reader(blob, view[start:stop], start, _type_label(obtype))
            decoder(reader, obj)
            reader.finish()
        pos += blob_count
    return obj


def decode_payload(payload: bytes, blob: str = "<blob>") -> DecodedObject:
    """Decode a whole blob payload: check the envelope, decompress, decode the body.

    The result records the envelope's compression mode. Envelope faults
    (encryption, unknown compression mode, corrupt LZ4 frame, bytes after the
    frame) raise FormatError naming the blob.
    """
    if len(payload) < ENVELOPE_LEN:
        raise FormatError(
            "%s: offset 0: payload of %d bytes is shorter than the 4-byte envelope" % (blob, len(payload))
        )
    try:
        mode = envelope.payload_mode(payload)
        body = envelope.unwrap(payload)
    except FormatError as exc:
        raise FormatError("%s: %s" % (blob, exc)) from None
    obj = decode_body(body, blob)
    obj.compression = mode
    return obj
