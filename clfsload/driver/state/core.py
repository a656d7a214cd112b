"""The state database itself: opening (with its lock), the batched transaction, meta values.

:class:`StateCore` is the base every table mixin of
:class:`~clfsload.driver.state.StateStore` builds on: they share its one
SQLite connection and its one open transaction (a batch, made durable by
:meth:`StateCore.commit`).

Durability, against a power loss as well as a kill: the database runs with
``synchronous=FULL``, so a commit is on disk when :meth:`StateCore.commit`
returns (WAL: one fsync of the log per commit; SQLite fsyncs the folder when
it creates the log). A lost commit would not merely be redone: work it
scheduled may already be stored under names a resume would not find again.
Before each commit the :attr:`StateCore.before_commit` hook runs (the
loader makes the driver's own target writes durable there), so no commit
records a blob a power loss could still take away. :meth:`StateCore.create`
fsyncs the new database, its folder and the folder's parent once the first
commit is made: a state dir that survives a power loss is a whole one, and
one that does not is refused by the resume as "stopped while it was being
created" (its target holds at most an empty container folder then).
"""

import errno
import fcntl
import os
import sqlite3
import time
from typing import Callable, Dict, Optional, Set, Type, TypeVar

from ... import crashpoints
from ...durable import fsync_dir
from ...errors import ClfsLoadError
from .schema import DB_NAME, FORMAT_VERSION, LATER_COLUMNS, LATER_TABLES, LOCK_NAME, SCHEMA

__all__ = ["StateError", "StateCore"]

_NOT_A_DIRECTORY = "'%s' is a file, not a state directory; give a new path for the state directory"

#: the class a StateCore classmethod opens (StateStore, for the callers)
_Store = TypeVar("_Store", bound="StateCore")


class StateError(ClfsLoadError):
    """The state directory cannot be used as asked; the message says what to do."""


class StateCore:
    """The database of one transfer, opened by its only writer: connection, lock, batch and meta."""

    def __init__(self, path: str, db: sqlite3.Connection, lock_fd: int):
        self.path = path
        self._db = db
        self._lock_fd = lock_fd
        self._in_batch = 0
        #: the number of the first unit scheduled in the open batch (None: none is): the
        #: units from it on are not durable yet, and are not handed out (:meth:`UnitsTable.pending_units`)
        self._first_new_unit: Optional[int] = None
        #: the directory counter, read once; written to meta with each commit that changed it
        self._dir_counter: Optional[int] = None
        self._dir_counter_dirty = False
        #: integer counters of meta read so far (and changed in the open batch: ``_counters_dirty``);
        #: written to meta just before the COMMIT, in the same transaction, so a unit's row and
        #: ``next_unit`` (or a result and ``objects``) are durable together or not at all
        self._counters: Dict[str, int] = {}
        self._counters_dirty: Set[str] = set()
        #: called before each commit: what the batch records must be durable first
        self.before_commit: Optional[Callable[[], None]] = None

    @classmethod
    def create(cls: Type[_Store], path: str, identity: Dict[str, str]) -> _Store:
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
        # The tables and the first meta rows in one transaction: one WAL sync where each
        # statement on its own was one (a dozen fsyncs on a disk). Until it commits the
        # database holds no format_version, which :meth:`open` reports as unfinished.
        store._db.executescript("BEGIN;" + SCHEMA)
        store._begin()
        for key, value in identity.items():
            store.set(key, value)
        store.set("format_version", FORMAT_VERSION)
        store.set("next_unit", "1")
        store.commit()
        try:
            fd = os.open(os.path.join(path, DB_NAME), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            fsync_dir(path)
            fsync_dir(os.path.dirname(os.path.abspath(path)))
        except OSError as exc:
            store.close()
            raise StateError("cannot make state directory '%s' durable: %s" % (path, exc.strerror)) from None
        return store

    @classmethod
    def open(cls: Type[_Store], path: str) -> _Store:
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
        store._db.executescript(LATER_TABLES)
        for table, column, declaration in LATER_COLUMNS:
            if column not in {row[1] for row in store._db.execute("PRAGMA table_info(%s)" % table)}:
                store._db.execute("ALTER TABLE %s ADD COLUMN %s %s" % (table, column, declaration))
        return store

    @classmethod
    def _open(cls: Type[_Store], path: str) -> _Store:
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
            db.execute("PRAGMA synchronous=FULL")  # every commit durable (see the module docstring)
        except (sqlite3.Error, OSError) as exc:
            os.close(fd)
            raise StateError("cannot open the state database in '%s': %s" % (path, exc)) from None
        return cls(path, db, fd)

    def close(self) -> None:
        """Commit, checkpoint and release the lock."""
        try:
            if self._db is not None:
                try:
                    self.commit()  # a failing before_commit hook rolls back and raises, after the release below
                    self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                except sqlite3.Error:
                    # A full disk or a busy checkpoint: the last batch is redone by the
                    # next run, and the checkpoint is retried at the next open.
                    if self._db.in_transaction:
                        self._db.execute("ROLLBACK")
                        self._first_new_unit = None
                        self._forget_counters()
        finally:
            if self._db is not None:
                self._db.close()
                self._db = None  # type: ignore[assignment]
            if self._lock_fd >= 0:
                os.close(self._lock_fd)
                self._lock_fd = -1

    def _begin(self) -> None:
        if not self._db.in_transaction:
            self._db.execute("BEGIN")

    def commit(self) -> None:
        """Make every change so far durable (one transaction for the whole batch)."""
        if self._dir_counter_dirty:
            self.set("dir_counter", str(self._dir_counter))
            self._dir_counter_dirty = False
        if self._counters_dirty:
            self._db.executemany("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                                 [(key, str(self._counters[key])) for key in sorted(self._counters_dirty)])
            self._counters_dirty.clear()
        if self._db.in_transaction:
            if self.before_commit is not None:
                try:
                    self.before_commit()
                except BaseException:
                    # What the batch records may not be durable: drop it (a resume redoes it),
                    # so no later commit (the error path's, close's) can record it.
                    self._db.execute("ROLLBACK")
                    self._in_batch = 0
                    self._first_new_unit = None
                    self._forget_counters()
                    raise
            self._db.execute("COMMIT")
            crashpoints.reached("commit")
        self._in_batch = 0
        self._first_new_unit = None

    @property
    def batch_size(self) -> int:
        """Results recorded since the last commit."""
        return self._in_batch

    @property
    def units_to_commit(self) -> bool:
        """True if the open batch schedules units (a commit makes them available to :meth:`pending_units`)."""
        return self._first_new_unit is not None

    def get(self, key: str, default: Optional[str] = None) -> Optional[str]:
        """A meta value, or ``default``."""
        if key in self._counters_dirty:
            return str(self._counters[key])
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else default

    def set(self, key: str, value: str) -> None:
        """Set a meta value (in the current batch)."""
        self._begin()
        self._counters.pop(key, None)  # a counter set outright is read afresh
        self._counters_dirty.discard(key)
        self._db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, str(value)))

    def add_counter(self, key: str, amount: int) -> None:
        """Add to an integer counter in meta (kept here, written to meta with the commit)."""
        if amount:
            value = self.counter(key) + amount
            self._begin()
            self._counters[key] = value
            self._counters_dirty.add(key)

    def counter(self, key: str) -> int:
        """An integer counter from meta (0 when unset)."""
        value = self._counters.get(key)
        if value is None:
            value = self._counters[key] = int(self.get(key, "0") or 0)
        return value

    def _forget_counters(self) -> None:
        """The batch was rolled back: the counters are read from meta again."""
        self._counters.clear()
        self._counters_dirty.clear()

    def _next_unit(self) -> int:
        unit = self.counter("next_unit")
        self.add_counter("next_unit", 1)
        return unit

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
