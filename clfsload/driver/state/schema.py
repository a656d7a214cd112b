"""The schema of the state database (format 2) and the packed values its rows hold.

The on-disk format: tables, columns, the tables and columns added to format
2 after its first release (made on open where missing), and the byte
layouts of ``units.scheduled`` and ``deferred_dirs.listing``.
"""

import struct
from typing import Dict, List, Optional, Tuple

from ...clfs.constants import FH_LEN

__all__ = [
    "FORMAT_VERSION", "DB_NAME", "LOCK_NAME", "PENDING", "DONE", "FAILED", "SWEEP_DIR", "SWEEP_OBJECT",
    "SCHEMA", "LATER_TABLES", "LATER_COLUMNS", "pack_subdirs", "unpack_subdirs", "pack_listing", "unpack_listing",
]

FORMAT_VERSION = "2"
DB_NAME = "state.db"
LOCK_NAME = "lock"

PENDING, DONE, FAILED = 0, 1, 2
#: kinds of ``sweep`` rows
SWEEP_DIR, SWEEP_OBJECT = 0, 1
SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE units (
    unit INTEGER PRIMARY KEY,
    state INTEGER NOT NULL,
    path BLOB NOT NULL,
    fh BLOB NOT NULL,
    parent_fh BLOB NOT NULL,
    name BLOB NOT NULL,
    stat BLOB,
    scheduled BLOB,       -- subdirectories already made units, with their fhs (packed);
                          -- NULL: no attempt of this unit has completed
    counted INTEGER NOT NULL DEFAULT 0,        -- objects its last attempt added to the counter
    counted_bytes INTEGER NOT NULL DEFAULT 0,  -- and source bytes: a retry takes them back
    dmid_base INTEGER NOT NULL DEFAULT 0,      -- directory counter values dmid_base + 1 ..
    dmid_count INTEGER NOT NULL DEFAULT 0      -- dmid_base + dmid_count are its subdirectories'
);
CREATE INDEX units_state ON units (state, unit);
CREATE TABLE problems (unit INTEGER, link_fh BLOB, path BLOB NOT NULL, reason TEXT NOT NULL);
CREATE INDEX problems_unit ON problems (unit);
CREATE TABLE links (
    fh BLOB PRIMARY KEY,
    state INTEGER NOT NULL,
    path BLOB NOT NULL,
    name BLOB NOT NULL,
    stat BLOB NOT NULL,
    final_fh BLOB           -- the handle on the target; NULL until settled (before RECONCILE)
);
CREATE TABLE link_paths (
    parent_fh BLOB NOT NULL,
    name BLOB NOT NULL,
    fh BLOB NOT NULL,
    PRIMARY KEY (parent_fh, name)
);
CREATE INDEX link_paths_fh ON link_paths (fh);
CREATE TABLE sweep (fh BLOB PRIMARY KEY, kind INTEGER NOT NULL);
CREATE TABLE gone (parent_fh BLOB NOT NULL, name BLOB NOT NULL, fh BLOB NOT NULL);
CREATE TABLE pruned (
    parent_fh BLOB NOT NULL,
    name BLOB NOT NULL,
    fh BLOB NOT NULL,
    PRIMARY KEY (parent_fh, name)
);
CREATE TABLE IF NOT EXISTS ranges (
    unit INTEGER NOT NULL,  -- the directory unit the file is in
    fh BLOB NOT NULL,
    first INTEGER NOT NULL,
    last INTEGER NOT NULL,
    stat BLOB NOT NULL,     -- EntryStat.pack() of the file as the range read it
    head BLOB NOT NULL,     -- the first 16 KiB (first range only)
    digest BLOB NOT NULL,   -- XXH3-128 of the range's bytes
    nbytes INTEGER NOT NULL,
    PRIMARY KEY (fh, first)
);
CREATE TABLE IF NOT EXISTS deferred_dirs (
    fh BLOB PRIMARY KEY,
    path BLOB NOT NULL,
    parent_fh BLOB NOT NULL,
    name BLOB NOT NULL,
    stat BLOB NOT NULL,        -- EntryStat.pack() taken before its listing
    subdir_count INTEGER NOT NULL,
    listing BLOB NOT NULL      -- (name, fh) in listing order, packed by pack_listing
);
"""
#: added to format 2 after its first release: made on open where missing
LATER_TABLES = SCHEMA[SCHEMA.index("CREATE TABLE IF NOT EXISTS ranges"):]
#: columns added to format 2 after its first release: (table, column, declaration)
LATER_COLUMNS = (
    ("units", "dmid_base", "INTEGER NOT NULL DEFAULT 0"),
    ("units", "dmid_count", "INTEGER NOT NULL DEFAULT 0"),
    ("links", "final_fh", "BLOB"),
)


_NAME_LEN = struct.Struct(">H")


def pack_subdirs(subdirs: Dict[bytes, bytes]) -> bytes:
    """``{name: fh}`` as (u16 name length, name, 24-byte fh) records."""
    return b"".join(_NAME_LEN.pack(len(n)) + n + fh for n, fh in sorted(subdirs.items()))


def pack_listing(children: List[Tuple[bytes, bytes]]) -> bytes:
    """``(name, fh)`` in order as (u16 name length, name, u8 fh length, fh) records."""
    return b"".join(_NAME_LEN.pack(len(n)) + n + bytes((len(fh),)) + fh for n, fh in children)


def unpack_listing(blob: bytes) -> List[Tuple[bytes, bytes]]:
    """The ``(name, fh)`` list :func:`pack_listing` packed."""
    out = []
    at = 0
    while at < len(blob):
        (size,) = _NAME_LEN.unpack_from(blob, at)
        name = bytes(blob[at + 2 : at + 2 + size])
        fh_len = blob[at + 2 + size]
        start = at + 3 + size
        out.append((name, bytes(blob[start : start + fh_len])))
        at = start + fh_len
    return out


def unpack_subdirs(blob: Optional[bytes]) -> Optional[Dict[bytes, bytes]]:
    """The ``{name: fh}`` :func:`pack_subdirs` packed; None stays None (no attempt completed)."""
    if blob is None:
        return None
    out: Dict[bytes, bytes] = {}
    at = 0
    while at < len(blob):
        (size,) = _NAME_LEN.unpack_from(blob, at)
        name = bytes(blob[at + 2 : at + 2 + size])
        out[name] = bytes(blob[at + 2 + size : at + 2 + size + FH_LEN])
        at += 2 + size + FH_LEN
    return out
