"""The local state of one transfer: a SQLite database in STATE_DIR, one writer.

Only the driver touches it, through this narrow interface. What it holds:

* ``meta``: the run's identity and settings (phase, container id, fsid, id
  secret, options, source root, target identity) and progress counters;
* ``units``: directories still to load (pending) or that failed; a loaded
  directory's row is deleted at once, so the table stays small on huge trees;
* ``problems``: source entries that could not be loaded, per unit or link;
* ``links`` and ``link_paths``: hard-linked objects and every path to them
  (``--preserve_hardlinks 1``), stored once each in RECONCILE; a link's
  settled handle (``final_fh``) is fixed before RECONCILE from its first
  backpointer, and its row is kept (state DONE) once stored, so a directory
  loaded again later names the same handle;
* ``deferred_dirs``: directories whose listing names handles settled later
  (hard-linked objects, subdirectories the driver minted): the driver stores
  them before RECONCILE stores the linked objects;
* the directory counter (``meta.dir_counter``, FMT §2.2): each unit row
  keeps the counter values reserved for its subdirectories
  (``dmid_base``, ``dmid_count``), so a rerun names the same handles;
* ``sweep``: directories and objects that may have been written more than
  once with different content (a unit cut short by a crash, a retry, a file
  read again): FINALIZE deletes what their earlier attempts left behind
  (:mod:`clfsload.driver.sweep`);
* ``pruned``: entries taken out of their directories because they failed
  and the run published anyway (``--publish_with_errors``); a successful
  retry puts them back;
* ``ranges``: the ranges of huge files (:mod:`clfsload.work.ranges`) stored so
  far, with the stat they read, so a resumed run loads only the rest of a
  file that has not changed since.

Writes are batched: results accumulate in one open transaction until
:meth:`StateStore.commit`. A crash loses at most the uncommitted batch, and
those units are simply loaded again (they write the same blobs). No secret is
ever stored here. A lock file keeps a second run off the same state dir.
"""

import errno
import fcntl
import os
import sqlite3
import struct
import time
from typing import Dict, Iterator, List, Optional, Tuple

from .. import crashpoints
from ..clfs.constants import FH_LEN
from ..errors import ClfsLoadError
from ..work.scan import EntryStat, Problem
from ..work.units import DirResult, DirTask, LinkTask

FORMAT_VERSION = "2"
DB_NAME = "state.db"
LOCK_NAME = "lock"

PENDING, DONE, FAILED = 0, 1, 2
#: kinds of ``sweep`` rows
SWEEP_DIR, SWEEP_OBJECT = 0, 1
_SCHEMA = """
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
    listing BLOB NOT NULL      -- (name, fh) in listing order, packed by _pack_listing
);
"""
#: added to format 2 after its first release: made on open where missing
_LATER_TABLES = _SCHEMA[_SCHEMA.index("CREATE TABLE IF NOT EXISTS ranges"):]
#: columns added to format 2 after its first release: (table, column, declaration)
_LATER_COLUMNS = (
    ("units", "dmid_base", "INTEGER NOT NULL DEFAULT 0"),
    ("units", "dmid_count", "INTEGER NOT NULL DEFAULT 0"),
    ("links", "final_fh", "BLOB"),
)


_NOT_A_DIRECTORY = "'%s' is a file, not a state directory; give a new path for the state directory"


class StateError(ClfsLoadError):
    """The state directory cannot be used as asked; the message says what to do."""


_NAME_LEN = struct.Struct(">H")


def _pack_subdirs(subdirs: Dict[bytes, bytes]) -> bytes:
    """``{name: fh}`` as (u16 name length, name, 24-byte fh) records."""
    return b"".join(_NAME_LEN.pack(len(n)) + n + fh for n, fh in sorted(subdirs.items()))


def _pack_listing(children: List[Tuple[bytes, bytes]]) -> bytes:
    """``(name, fh)`` in order as (u16 name length, name, u8 fh length, fh) records."""
    return b"".join(_NAME_LEN.pack(len(n)) + n + bytes((len(fh),)) + fh for n, fh in children)


def _unpack_listing(blob: bytes) -> List[Tuple[bytes, bytes]]:
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


def _unpack_subdirs(blob: Optional[bytes]) -> Optional[Dict[bytes, bytes]]:
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


class StateStore:
    """The state database of one transfer, opened by its only writer."""

    def __init__(self, path: str, db: sqlite3.Connection, lock_fd: int):
        self.path = path
        self._db = db
        self._lock_fd = lock_fd
        self._in_batch = 0
        #: the directory counter, read once; written to meta with each commit that changed it
        self._dir_counter: Optional[int] = None
        self._dir_counter_dirty = False

    # --- opening -------------------------------------------------------------

    @classmethod
    def create(cls, path: str, identity: Dict[str, str]) -> "StateStore":
        """Make a new state dir (mode 0700) for a new transfer; it must not exist."""
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            if not os.path.isdir(path):
                raise StateError(_NOT_A_DIRECTORY % path) from None
            raise StateError(
                "state directory '%s' already exists; resume without --new, or pick a new directory" % path
            ) from None
        except OSError as exc:
            parent = os.path.dirname(os.path.abspath(path))
            if exc.errno == errno.ENOENT:
                raise StateError(
                    "cannot create state directory '%s': its parent '%s' does not exist; create it first" % (path, parent)
                ) from None
            raise StateError("cannot create state directory '%s': %s" % (path, exc.strerror)) from None
        store = cls._open(path)
        store._db.executescript(_SCHEMA)
        store._begin()
        for key, value in identity.items():
            store.set(key, value)
        store.set("format_version", FORMAT_VERSION)
        store.set("next_unit", "1")
        store.commit()
        return store

    @classmethod
    def open(cls, path: str) -> "StateStore":
        """Open the state dir of an earlier run to resume it."""
        if os.path.exists(path) and not os.path.isdir(path):
            raise StateError(_NOT_A_DIRECTORY % path)
        if os.path.islink(path) or not os.path.isdir(path):
            raise StateError("state directory '%s' does not exist; start a transfer with --new" % path)
        unfinished = (
            "state directory '%s' was left by a run stopped while it was being created, before it loaded anything: "
            "remove it and start again with --new" % path
        )
        if not os.path.exists(os.path.join(path, DB_NAME)):
            if os.path.exists(os.path.join(path, LOCK_NAME)):
                raise StateError(unfinished)
            raise StateError("'%s' holds no clfsload state (%s missing); start with --new in a new directory" % (path, DB_NAME))
        store = cls._open(path)
        try:
            version = store.get("format_version")
        except sqlite3.Error:
            version = None
        if version is None:
            store.close()
            raise StateError(unfinished)
        if version != FORMAT_VERSION:
            store.close()
            raise StateError(
                "state directory '%s' has format version %r, this clfsload reads %r" % (path, version, FORMAT_VERSION)
            )
        store._db.executescript(_LATER_TABLES)
        for table, column, declaration in _LATER_COLUMNS:
            if column not in {row[1] for row in store._db.execute("PRAGMA table_info(%s)" % table)}:
                store._db.execute("ALTER TABLE %s ADD COLUMN %s %s" % (table, column, declaration))
        return store

    @classmethod
    def _open(cls, path: str) -> "StateStore":
        lock_path = os.path.join(path, LOCK_NAME)
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise StateError(
                "state directory '%s' is in use by another clfsload run (pid %s); wait for it or stop it" % (path, holder)
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        db_path = os.path.join(path, DB_NAME)
        try:
            # Created here, private: SQLite gives its -wal and -shm files the same mode.
            os.close(os.open(db_path, os.O_RDWR | os.O_CREAT, 0o600))
            db = sqlite3.connect(db_path, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")  # WAL: durable at checkpoints, never corrupt
        except (sqlite3.Error, OSError) as exc:
            os.close(fd)
            raise StateError("cannot open the state database in '%s': %s" % (path, exc)) from None
        return cls(path, db, fd)

    def close(self) -> None:
        """Commit, checkpoint and release the lock."""
        if self._db is not None:
            try:
                self.commit()
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error:
                # A full disk or a busy checkpoint: the last batch is redone by the
                # next run, and the checkpoint is retried at the next open.
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
            self._db.close()
            self._db = None  # type: ignore[assignment]
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1

    # --- transactions ----------------------------------------------------------

    def _begin(self) -> None:
        if not self._db.in_transaction:
            self._db.execute("BEGIN")

    def commit(self) -> None:
        """Make every change so far durable (one transaction for the whole batch)."""
        if self._dir_counter_dirty:
            self.set("dir_counter", str(self._dir_counter))
            self._dir_counter_dirty = False
        if self._db.in_transaction:
            self._db.execute("COMMIT")
            crashpoints.reached("commit")
        self._in_batch = 0

    @property
    def batch_size(self) -> int:
        """Results recorded since the last commit."""
        return self._in_batch

    # --- meta ------------------------------------------------------------------

    def get(self, key: str, default: Optional[str] = None) -> Optional[str]:
        """A meta value, or ``default``."""
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else default

    def set(self, key: str, value: str) -> None:
        """Set a meta value (in the current batch)."""
        self._begin()
        self._db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, str(value)))

    def add_counter(self, key: str, amount: int) -> None:
        """Add to an integer counter in meta."""
        if amount:
            self.set(key, str(int(self.get(key, "0") or 0) + amount))

    def counter(self, key: str) -> int:
        """An integer counter from meta (0 when unset)."""
        return int(self.get(key, "0") or 0)

    @property
    def phase(self) -> str:
        """The stored phase: INIT, TRANSFER, RECONCILE, FINALIZE or DONE."""
        return self.get("phase", "INIT") or "INIT"

    def set_phase(self, phase: str) -> None:
        """Store the phase and commit at once."""
        self.set("phase", phase)
        self.set("phase_started", "%.3f" % time.time())
        self.commit()
        crashpoints.reached("phase")

    # --- units -----------------------------------------------------------------

    def _next_unit(self) -> int:
        unit = self.counter("next_unit")
        self.set("next_unit", str(unit + 1))
        return unit

    def add_unit(self, path: bytes, fh: bytes, parent_fh: bytes, name: bytes, stat: Optional[bytes]) -> int:
        """Schedule a directory; returns its unit number.

        Reserves ``st_nlink - 2`` directory counter values for its
        subdirectories (FMT §2.2): ext4, XFS, tmpfs and NFS from them count a
        directory's subdirectories in its link count.
        """
        self._begin()
        unit = self._next_unit()
        reserve = max(EntryStat.unpack(stat).st_nlink - 2, 0) if stat else 0
        base = self.take_dir_counter(reserve)
        self._db.execute(
            "INSERT INTO units (unit, state, path, fh, parent_fh, name, stat, dmid_base, dmid_count)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (unit, PENDING, path, fh, parent_fh, name, stat, base, reserve),
        )
        return unit

    def take_dir_counter(self, count: int) -> int:
        """Reserve ``count`` values of the run-wide directory counter; returns the base (values base+1 .. base+count)."""
        if self._dir_counter is None:
            self._dir_counter = self.counter("dir_counter")
        base = self._dir_counter
        if count:
            self._dir_counter = base + count
            self._dir_counter_dirty = True
        return base

    def pending_units(self, after: int, limit: int) -> List[DirTask]:
        """Pending units numbered above ``after``, in order."""
        rows = self._db.execute(
            "SELECT unit, path, fh, parent_fh, name, stat, scheduled, dmid_base, dmid_count FROM units"
            " WHERE state = ? AND unit > ? ORDER BY unit LIMIT ?",
            (PENDING, after, limit),
        ).fetchall()
        return [DirTask(u, p, fh, pfh, n, st, _unpack_subdirs(sc), base, count)
                for u, p, fh, pfh, n, st, sc, base, count in rows]

    def count_units(self, state: int = PENDING) -> int:
        """Units in ``state``."""
        return self._db.execute("SELECT COUNT(*) FROM units WHERE state = ?", (state,)).fetchone()[0]

    def complete_unit(self, result: DirResult) -> None:
        """Record a unit's result: schedule its subdirectories, keep its links and problems."""
        self._begin()
        if result.vanished:
            self._vanish_unit(result.unit)
            return
        if result.subdirs:
            parent_fh = self._unit_fh(result.unit)
            for sub in result.subdirs:
                self.add_unit(sub.path, sub.fh, parent_fh, sub.name, sub.stat)
        if result.deferred is not None:
            deferred = result.deferred
            self._db.execute(
                "INSERT OR REPLACE INTO deferred_dirs (fh, path, parent_fh, name, stat, subdir_count, listing)"
                " SELECT fh, path, parent_fh, name, ?, ?, ? FROM units WHERE unit = ?",
                (deferred.stat, deferred.subdir_count, _pack_listing(deferred.children), result.unit),
            )
        else:  # stored by its unit: an earlier attempt's deferred listing must not overwrite it
            self._db.execute("DELETE FROM deferred_dirs WHERE fh = (SELECT fh FROM units WHERE unit = ?)",
                             (result.unit,))
        for link in result.links:
            self._db.execute(
                "INSERT OR IGNORE INTO links (fh, state, path, name, stat) VALUES (?, ?, ?, ?, ?)",
                (link.fh, PENDING, link.path, link.name, link.stat),
            )
            self._db.execute(
                "INSERT OR IGNORE INTO link_paths (parent_fh, name, fh) VALUES (?, ?, ?)",
                (link.parent_fh, link.name, link.fh),
            )
        if result.dirty:  # before the unit's row may go, below
            self._db.execute("INSERT OR IGNORE INTO sweep (fh, kind) SELECT fh, ? FROM units WHERE unit = ?",
                             (SWEEP_DIR, result.unit))
        self._db.execute("DELETE FROM ranges WHERE unit = ?", (result.unit,))  # a file no longer loaded in ranges
        self._db.execute("DELETE FROM problems WHERE unit = ?", (result.unit,))
        if result.problems:
            self._db.executemany(
                "INSERT INTO problems (unit, path, reason) VALUES (?, ?, ?)",
                [(result.unit, p.path, p.reason) for p in result.problems],
            )
            # A retry reuses these subdirectories' fhs and does not load them again.
            # One loaded before but not listed this time is dropped: the sweep
            # deletes its tree, and a later retry loads it afresh.
            scheduled = dict(result.kept_subdirs)
            scheduled.update((sub.name, sub.fh) for sub in result.subdirs)
            self._db.execute(
                "UPDATE units SET state = ?, scheduled = ?, counted = ?, counted_bytes = ? WHERE unit = ?",
                (FAILED, _pack_subdirs(scheduled), result.objects + 1, result.source_bytes, result.unit),
            )
        else:
            self._db.execute("DELETE FROM units WHERE unit = ?", (result.unit,))  # reaped
        self.add_counter("objects", result.objects + 1)
        self.add_counter("source_bytes", result.source_bytes)
        self._in_batch += 1

    def _vanish_unit(self, unit: int) -> None:
        """A directory gone since its parent listed it: FINALIZE takes it out of the parent."""
        self._db.execute("INSERT INTO gone (parent_fh, name, fh) SELECT parent_fh, name, fh FROM units WHERE unit = ?",
                         (unit,))
        self._db.execute("DELETE FROM problems WHERE unit = ?", (unit,))
        self._db.execute("DELETE FROM ranges WHERE unit = ?", (unit,))
        self._db.execute("DELETE FROM units WHERE unit = ?", (unit,))
        self._in_batch += 1

    def gone_entries(self) -> List[Tuple[bytes, bytes, bytes]]:
        """(parent fh, name, fh) of directories that vanished after their parent listed them."""
        rows = self._db.execute("SELECT parent_fh, name, fh FROM gone ORDER BY rowid").fetchall()
        return [(bytes(p), bytes(n), bytes(f)) for p, n, f in rows]

    def clear_gone(self) -> None:
        """The vanished directories are out of their parents (committed)."""
        self._begin()
        self._db.execute("DELETE FROM gone")
        self.commit()

    def _unit_fh(self, unit: int) -> bytes:
        return self._db.execute("SELECT fh FROM units WHERE unit = ?", (unit,)).fetchone()[0]

    def fail_unit(self, unit: int, problem: Problem) -> None:
        """Record that a directory could not be loaded at all."""
        self._begin()
        self._db.execute("DELETE FROM problems WHERE unit = ?", (unit,))
        self._db.execute("INSERT INTO problems (unit, path, reason) VALUES (?, ?, ?)", (unit, problem.path, problem.reason))
        self._db.execute("UPDATE units SET state = ? WHERE unit = ?", (FAILED, unit))
        self._db.execute("DELETE FROM ranges WHERE unit = ?", (unit,))
        self._in_batch += 1

    # --- links -----------------------------------------------------------------

    def pending_links(self, limit: int, after: bytes = b"") -> List[LinkTask]:
        """Hard-linked objects still to store (keys above ``after``), with their backpointers, first parent first.

        Their handles must be settled (:meth:`settle_links`). The NAME is the
        name under the first parent, which the handle's dmid comes from.
        """
        rows = self._db.execute(
            "SELECT fh, path, stat, final_fh FROM links WHERE state = ? AND fh > ? ORDER BY fh LIMIT ?",
            (PENDING, after, limit),
        ).fetchall()
        tasks = []
        for key, path, stat, final_fh in rows:
            if final_fh is None:
                raise StateError("internal error: a hard-linked object's handle was not settled before RECONCILE")
            paths = self._db.execute("SELECT parent_fh, name FROM link_paths WHERE fh = ? ORDER BY rowid",
                                     (key,)).fetchall()
            tasks.append(LinkTask(bytes(final_fh), path, bytes(paths[0][1]), stat,
                                  tuple(bytes(p) for p, _ in paths), bytes(key)))
        return tasks

    def unsettled_links(self) -> List[Tuple[bytes, bytes]]:
        """``(key, first parent fh)`` of the hard-linked objects whose handle is not settled yet."""
        rows = self._db.execute(
            "SELECT l.fh, (SELECT p.parent_fh FROM link_paths p WHERE p.fh = l.fh ORDER BY p.rowid LIMIT 1)"
            " FROM links l WHERE l.final_fh IS NULL ORDER BY l.fh").fetchall()
        return [(bytes(key), bytes(parent)) for key, parent in rows if parent is not None]

    def drop_pathless_links(self) -> int:
        """Forget pending links that no path names any more (a path recorded again under another inode)."""
        self._begin()
        return self._db.execute(
            "DELETE FROM links WHERE state != ? AND NOT EXISTS (SELECT 1 FROM link_paths p WHERE p.fh = links.fh)",
            (DONE,)).rowcount

    def settle_links(self, handles: List[Tuple[bytes, bytes]]) -> None:
        """Record the settled handle of each ``(key, final fh)`` (committed)."""
        self._begin()
        self._db.executemany("UPDATE links SET final_fh = ? WHERE fh = ?", [(final, key) for key, final in handles])
        self.commit()

    def link_handles(self, keys: List[bytes]) -> Dict[bytes, bytes]:
        """The settled handle of each of ``keys`` that has one."""
        out: Dict[bytes, bytes] = {}
        for key in keys:
            row = self._db.execute("SELECT final_fh FROM links WHERE fh = ?", (key,)).fetchone()
            if row is not None and row[0] is not None:
                out[key] = bytes(row[0])
        return out

    # --- deferred directories -----------------------------------------------------

    def deferred_dirs(self, limit: int, after: bytes = b"") -> List[Tuple[DirTask, bytes, List[Tuple[bytes, bytes]], int]]:
        """Directories to store before RECONCILE, fh above ``after``: (task, stat, listing, subdir count)."""
        rows = self._db.execute(
            "SELECT fh, path, parent_fh, name, stat, subdir_count, listing FROM deferred_dirs"
            " WHERE fh > ? ORDER BY fh LIMIT ?", (after, limit)).fetchall()
        return [(DirTask(0, bytes(p), bytes(fh), bytes(pfh), bytes(n)), bytes(st), _unpack_listing(listing), count)
                for fh, p, pfh, n, st, count, listing in rows]

    def count_deferred_dirs(self) -> int:
        """Directories still to store before RECONCILE."""
        return self._db.execute("SELECT COUNT(*) FROM deferred_dirs").fetchone()[0]

    def complete_deferred_dir(self, fh: bytes) -> None:
        """A deferred directory is stored."""
        self._begin()
        self._db.execute("DELETE FROM deferred_dirs WHERE fh = ?", (fh,))
        self._in_batch += 1

    def record_range(self, unit: int, fh: bytes, first: int, last: int, stat: bytes, head: bytes, digest: bytes,
                     nbytes: int) -> None:
        """One range of a huge file of directory ``unit`` is stored (its segments are in the container)."""
        self._begin()
        self._db.execute("INSERT OR REPLACE INTO ranges (unit, fh, first, last, stat, head, digest, nbytes)"
                         " VALUES (?, ?, ?, ?, ?, ?, ?, ?)", (unit, fh, first, last, stat, head, digest, nbytes))
        self._in_batch += 1

    def stored_ranges(self, fh: bytes) -> List[Tuple[int, int, bytes, bytes, bytes, int]]:
        """``(first, last, stat, head, digest, nbytes)`` of the ranges of file ``fh`` stored by earlier runs."""
        rows = self._db.execute("SELECT first, last, stat, head, digest, nbytes FROM ranges WHERE fh = ?"
                                " ORDER BY first", (fh,))
        return [(f, last, bytes(st), bytes(h), bytes(d), n) for f, last, st, h, d, n in rows]

    def forget_ranges(self, fh: bytes) -> None:
        """The huge file ``fh`` is stored, or left out: its ranges are no longer needed."""
        self._begin()
        self._db.execute("DELETE FROM ranges WHERE fh = ?", (fh,))

    def drop_ranges(self) -> None:
        """The sweep is about to run: it may delete the segments of ranges whose file has no inode yet,
        so none may be reused by a later run (committed)."""
        self._begin()
        self._db.execute("DELETE FROM ranges")
        self.commit()

    def complete_link(self, fh: bytes, problem: Optional[Problem]) -> None:
        """Record a stored link object (its rows are reaped) or its failure."""
        self._begin()
        self._db.execute("DELETE FROM problems WHERE link_fh = ?", (fh,))
        if problem is None:
            # The row stays (DONE): a directory loaded again later maps the key to the same handle.
            self._db.execute("DELETE FROM link_paths WHERE fh = ?", (fh,))
            self._db.execute("UPDATE links SET state = ?, path = x'', stat = x'' WHERE fh = ?", (DONE, fh))
            self.add_counter("objects", 1)
        else:
            self._db.execute("INSERT INTO problems (link_fh, path, reason) VALUES (?, ?, ?)", (fh, problem.path, problem.reason))
            self._db.execute("UPDATE links SET state = ? WHERE fh = ?", (FAILED, fh))
        self._in_batch += 1

    def count_links(self, state: int = PENDING) -> int:
        """Hard-linked objects in ``state``."""
        return self._db.execute("SELECT COUNT(*) FROM links WHERE state = ?", (state,)).fetchone()[0]

    # --- problems and retries ----------------------------------------------------

    def problems(self) -> Iterator[Problem]:
        """Every recorded problem, in the order found."""
        for path, reason in self._db.execute("SELECT path, reason FROM problems ORDER BY rowid"):
            yield Problem(bytes(path), reason)

    def count_problems(self) -> int:
        """How many problems are recorded."""
        return self._db.execute("SELECT COUNT(*) FROM problems").fetchone()[0]

    def retry_failed(self) -> Tuple[int, int]:
        """Make failed units and links pending again; returns (units, links) reset.

        A unit that had loaded but left entries out is redone whole, under a
        new unit number: the subdirectories it made units keep their fhs and
        are not loaded again, every other child gets a fresh fh (the ranks of
        the names may have changed, and a fresh number cannot collide with
        the kept fhs), and the sweep deletes what the old attempt wrote. One
        that failed outright schedules every subdirectory it finds.
        """
        self._begin()
        # The redone units count their objects again: take back what they counted.
        counted, counted_bytes = self._db.execute(
            "SELECT COALESCE(SUM(counted), 0), COALESCE(SUM(counted_bytes), 0) FROM units WHERE state = ?", (FAILED,)
        ).fetchone()
        self.add_counter("objects", -counted)
        self.add_counter("source_bytes", -counted_bytes)
        self._db.execute("UPDATE units SET counted = 0, counted_bytes = 0 WHERE state = ?", (FAILED,))
        renumber = [r[0] for r in self._db.execute(
            "SELECT unit FROM units WHERE state = ? AND scheduled IS NOT NULL ORDER BY unit", (FAILED,))]
        for unit in renumber:
            self._db.execute("UPDATE units SET unit = ? WHERE unit = ?", (self._next_unit(), unit))
        units = self._db.execute("UPDATE units SET state = ? WHERE state = ?", (PENDING, FAILED)).rowcount
        links = self._db.execute("UPDATE links SET state = ? WHERE state = ?", (PENDING, FAILED)).rowcount
        self._db.execute("DELETE FROM problems")
        self.commit()
        return units, links

    # --- the sweep and pruned entries ----------------------------------------------

    def mark_resumed(self) -> None:
        """Every unit and link not finished may have been half done by the run that stopped.

        They go on the sweep list: once they are done again, FINALIZE deletes
        what the earlier attempt wrote and this one did not (a file that
        shrank, an entry that vanished). Units never started cost the sweep
        nothing: nothing in the container is owned by them.
        """
        self._begin()
        self._db.execute("INSERT OR IGNORE INTO sweep (fh, kind) SELECT fh, ? FROM units", (SWEEP_DIR,))
        self._db.execute("INSERT OR IGNORE INTO sweep (fh, kind) SELECT final_fh, ? FROM links"
                         " WHERE state != ? AND final_fh IS NOT NULL", (SWEEP_OBJECT, DONE))
        self.commit()

    def sweep_list(self) -> Tuple[List[bytes], List[bytes]]:
        """The (directories, objects) to sweep."""
        dirs: List[bytes] = []
        objects: List[bytes] = []
        for fh, kind in self._db.execute("SELECT fh, kind FROM sweep ORDER BY fh"):
            (dirs if kind == SWEEP_DIR else objects).append(bytes(fh))
        return dirs, objects

    def add_sweep(self, fh: bytes, kind: int = SWEEP_DIR) -> None:
        """Put one directory (or object) on the sweep list."""
        self._begin()
        self._db.execute("INSERT OR IGNORE INTO sweep (fh, kind) VALUES (?, ?)", (fh, kind))

    def clear_sweep(self) -> None:
        """The sweep is done: empty its list (committed)."""
        self._begin()
        self._db.execute("DELETE FROM sweep")
        self.commit()

    def failed_entries(self) -> List[Tuple[bytes, bytes, bytes]]:
        """(parent fh, name, fh) of every entry whose object is missing because it failed.

        Those are directories that failed outright (a directory that loaded
        but left entries out lists only what it stored) and every path of a
        hard-linked object that failed in RECONCILE.
        """
        rows = self._db.execute(
            "SELECT parent_fh, name, fh FROM units WHERE state = ? AND scheduled IS NULL ORDER BY unit", (FAILED,)
        ).fetchall()
        rows += self._db.execute(
            "SELECT p.parent_fh, p.name, l.final_fh FROM link_paths p JOIN links l ON l.fh = p.fh"
            " WHERE l.state = ? AND l.final_fh IS NOT NULL ORDER BY p.rowid",
            (FAILED,),
        ).fetchall()
        return [(bytes(p), bytes(n), bytes(f)) for p, n, f in rows]

    def add_pruned(self, entries: List[Tuple[bytes, bytes, bytes]]) -> None:
        """Record entries taken out of their directories (committed)."""
        self._begin()
        self._db.executemany("INSERT OR REPLACE INTO pruned (parent_fh, name, fh) VALUES (?, ?, ?)", entries)
        self.commit()

    def pruned_to_restore(self) -> List[Tuple[bytes, bytes, bytes]]:
        """Pruned entries whose object has loaded since: they go back into their directories."""
        rows = self._db.execute(
            "SELECT parent_fh, name, fh FROM pruned p WHERE"
            " NOT EXISTS (SELECT 1 FROM units u WHERE u.fh = p.fh AND u.state = ?) AND"
            " NOT EXISTS (SELECT 1 FROM links l WHERE l.final_fh = p.fh AND l.state = ?)",
            (FAILED, FAILED),
        ).fetchall()
        return [(bytes(p), bytes(n), bytes(f)) for p, n, f in rows]

    def drop_pruned(self, entries: List[Tuple[bytes, bytes, bytes]]) -> None:
        """Forget pruned entries that are back in their directories (committed)."""
        self._begin()
        self._db.executemany("DELETE FROM pruned WHERE parent_fh = ? AND name = ?", [(p, n) for p, n, _ in entries])
        self.commit()
