"""Content checksums recorded at upload, for ``clfsload verify --state``.

While a worker reads a regular file to store it, it hashes the bytes it
stores (XXH3-128, from the ``xxhash`` package). The driver appends one
record per stored file larger than 16 KiB to ``STATE_DIR/checksums.xxh3``:
the object's 24-byte filehandle and the 16-byte digest. Smaller files are
whole in their inode, which verify decodes and compares anyway, so the file
grows with the large files only (40 bytes per file of more than 16 KiB). Verify walks the container, so it knows
each file's filehandle, hashes the source file and compares: that proves
the bytes the load stored equal the source's bytes now, without
downloading the data segments.

The file is append-only: a unit loaded again appends again and the last
record of a filehandle wins; a record cut short by a crash is ignored. It
holds no path and no secret (mode 0600 in the private state dir).

A file loaded in ranges (:mod:`clfsload.work.ranges`) is read by several workers,
so no one of them sees all its bytes in order. Its digest is the XXH3-128
of the concatenated XXH3-128 digests of its ranges, where range 0 is bytes
``[0, 16 KiB + S)`` and range k is ``[16 KiB + k*S, 16 KiB + (k+1)*S)`` for
a range span of S bytes (:func:`ranged_digest` computes it from a local
file). Its record is preceded by a marker record, ``RANGED_MARKER`` (no
filehandle can be: its ftype byte is 0xFF) with S as a little-endian u64 in
the digest field, which applies to the next record only. Both kinds share
one file, so the last record of a filehandle wins whichever kind it is; a
marker whose record was cut off by a crash applies to nothing.
"""

import os
import struct
from typing import BinaryIO, Dict, Iterable, NamedTuple, Optional, Sequence, Tuple, Union

import xxhash

from ..durable import fsync_dir

from ..clfs.constants import FIRST_SEGMENT_BYTES, OTHER_SEGMENT_BYTES

FILE_NAME = "checksums.xxh3"
RECORD = struct.Struct("24s16s")  # filehandle, XXH3-128 digest (big-endian, as xxhash gives it)
#: the filehandle field of the marker record before a ranged file's record
RANGED_MARKER = b"\xff" * 24
_SPAN = struct.Struct("<Q8x")  # the marker's digest field: the range span in bytes
_READ = 1 << 20


class RangedDigest(NamedTuple):
    """The recorded checksum of a file loaded in ranges of ``span`` bytes (see the module doc)."""

    span: int
    digest: bytes


Recorded = Union[bytes, RangedDigest]


def new_hasher() -> "xxhash.xxh3_128":
    """A fresh XXH3-128 hasher."""
    return xxhash.xxh3_128()


class HashingReader:
    """A read-only stream that hashes every byte read through it."""

    def __init__(self, stream: BinaryIO, hasher) -> None:
        self._stream = stream
        self.hasher = hasher

    def read(self, size: int = -1) -> bytes:
        """Read like the wrapped stream; the bytes go into the hash."""
        data = self._stream.read(size)
        if data:
            self.hasher.update(data)
        return data


def file_digest(path) -> bytes:
    """The XXH3-128 digest of a local file's content."""
    hasher = new_hasher()
    with open(path, "rb", buffering=0) as f:
        while True:
            chunk = f.read(_READ)
            if not chunk:
                return hasher.digest()
            hasher.update(chunk)


def range_span(range_segments: int) -> int:
    """Bytes of source in each range after the first (which also holds the first 16 KiB)."""
    return range_segments * OTHER_SEGMENT_BYTES


def tree_digest(range_digests: Sequence[bytes]) -> bytes:
    """A ranged file's digest: XXH3-128 of its ranges' XXH3-128 digests, in file order."""
    return xxhash.xxh3_128(b"".join(range_digests)).digest()


def ranged_digest(path, span: int) -> bytes:
    """The :func:`tree_digest` of a local file cut into ranges of ``span`` bytes (as loaded)."""
    digests = []
    with open(path, "rb", buffering=0) as f:
        left = FIRST_SEGMENT_BYTES + span  # the first range also holds the inode's 16 KiB
        while True:
            hasher = new_hasher()
            got = 0
            while left > 0:
                chunk = f.read(min(_READ, left))
                if not chunk:
                    break
                hasher.update(chunk)
                left -= len(chunk)
                got += len(chunk)
            if got == 0 and digests:
                return tree_digest(digests)
            digests.append(hasher.digest())
            if left > 0:  # end of file inside this range
                return tree_digest(digests)
            left = span


def matches(path, recorded: Recorded) -> bool:
    """True if the local file at ``path`` has the recorded checksum (either kind)."""
    if isinstance(recorded, RangedDigest):
        return ranged_digest(path, recorded.span) == recorded.digest
    return file_digest(path) == recorded


class ChecksumLog:
    """Appends (filehandle, digest) records to the state dir's checksum file (the driver only)."""

    def __init__(self, state_dir: str) -> None:
        path = os.path.join(state_dir, FILE_NAME)
        created = not os.path.exists(path)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self._file = os.fdopen(fd, "ab", buffering=1 << 16)
        self._unsynced = False
        self._sync_failed: Optional[OSError] = None  # a failed fsync: raised again by every later flush
        if created:  # verify --state wants the file: its name survives a power loss
            os.fsync(fd)
            fsync_dir(state_dir)

    def add(self, records: Iterable[Tuple[bytes, bytes]]) -> None:
        """Append records; they reach the file at the latest on :meth:`flush` or :meth:`close`."""
        for fh, digest in records:
            self._file.write(RECORD.pack(bytes(fh), digest))
            self._unsynced = True

    def add_ranged(self, fh: bytes, span: int, digest: bytes) -> None:
        """Append the record of a file loaded in ranges of ``span`` bytes (after its marker)."""
        self._file.write(RECORD.pack(RANGED_MARKER, _SPAN.pack(span)) + RECORD.pack(bytes(fh), digest))
        self._unsynced = True

    def flush(self) -> None:
        """Write what is buffered and fsync it (once per state commit, when records were added).

        A tail lost anyway (a crash between two commits) only makes verify read more.
        """
        if self._sync_failed is not None:
            raise self._sync_failed  # a failed fsync is not retried: the next may say success with the data gone
        self._file.flush()
        if self._unsynced:
            try:
                os.fsync(self._file.fileno())
            except OSError as exc:
                self._sync_failed = exc
                raise
            self._unsynced = False

    def close(self) -> None:
        """Flush and close."""
        self._file.close()


def read_checksums(state_dir: str) -> Dict[bytes, Recorded]:
    """Filehandle -> recorded checksum from a state dir's checksum file ({} when there is none).

    A whole-file record is the digest (bytes); a ranged one a :class:`RangedDigest`.
    """
    out: Dict[bytes, Recorded] = {}
    try:
        with open(os.path.join(state_dir, FILE_NAME), "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return out
    usable = len(data) - len(data) % RECORD.size  # a record cut short by a crash is ignored
    span = 0  # set by a marker, for the next record only
    for fh, digest in RECORD.iter_unpack(data[:usable]):
        if fh == RANGED_MARKER:
            (span,) = _SPAN.unpack(digest)
            continue
        out[fh] = RangedDigest(span, digest) if span else digest  # regular files have 24-byte generated handles
        span = 0
    return out


__all__ = [
    "ChecksumLog",
    "FILE_NAME",
    "HashingReader",
    "RANGED_MARKER",
    "RangedDigest",
    "file_digest",
    "matches",
    "new_hasher",
    "ranged_digest",
    "range_span",
    "read_checksums",
    "tree_digest",
]
