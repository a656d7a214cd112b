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
"""

import os
import struct
from typing import BinaryIO, Dict, Iterable, Tuple

import xxhash

FILE_NAME = "checksums.xxh3"
RECORD = struct.Struct("24s16s")  # filehandle, XXH3-128 digest (big-endian, as xxhash gives it)
_READ = 1 << 20


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


class ChecksumLog:
    """Appends (filehandle, digest) records to the state dir's checksum file (the driver only)."""

    def __init__(self, state_dir: str) -> None:
        fd = os.open(os.path.join(state_dir, FILE_NAME), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self._file = os.fdopen(fd, "ab", buffering=1 << 16)

    def add(self, records: Iterable[Tuple[bytes, bytes]]) -> None:
        """Append records; they reach the file at the latest on :meth:`flush` or :meth:`close`."""
        for fh, digest in records:
            self._file.write(RECORD.pack(bytes(fh), digest))

    def flush(self) -> None:
        """Hand what is buffered to the OS (no fsync: a lost tail only makes verify read more)."""
        self._file.flush()

    def close(self) -> None:
        """Flush and close."""
        self._file.close()


def read_checksums(state_dir: str) -> Dict[bytes, bytes]:
    """Filehandle -> digest from a state dir's checksum file ({} when there is none)."""
    out: Dict[bytes, bytes] = {}
    try:
        with open(os.path.join(state_dir, FILE_NAME), "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return out
    usable = len(data) - len(data) % RECORD.size  # a record cut short by a crash is ignored
    for fh, digest in RECORD.iter_unpack(data[:usable]):
        out[fh] = digest  # regular files always have 24-byte generated handles
    return out


__all__ = ["ChecksumLog", "FILE_NAME", "HashingReader", "file_digest", "new_hasher", "read_checksums"]
