"""XXH3-128 checksums of object payloads: the pure-Python twin.

The digest is the canonical (big-endian) 16-byte form, identical to
``xxhash.xxh3_128_digest``. It is recorded per uploaded blob and used to
verify a container against its source.
"""

import xxhash

__all__ = ["checksum"]


def checksum(data: bytes) -> bytes:
    """Return the 16-byte XXH3-128 digest (seed 0) of ``data``."""
    return xxhash.xxh3_128_digest(data)
