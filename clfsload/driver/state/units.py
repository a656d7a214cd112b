"""Directory units: scheduling, the directory counter, results, vanished directories."""

from typing import List, Optional, Tuple

from ...work.scan import EntryStat, Problem
from ...work.units import DirResult, DirTask
from .core import StateCore
from .schema import FAILED, PENDING, SWEEP_DIR, pack_listing, pack_subdirs, unpack_subdirs

__all__ = ["UnitsTable"]


class UnitsTable(StateCore):
    """The ``units`` table and what a unit's result writes (subdirectories, links, problems, deferred listing)."""

    def add_unit(self, path: bytes, fh: bytes, parent_fh: bytes, name: bytes, stat: Optional[bytes]) -> int:
        """Schedule a directory; returns its unit number.

        Reserves ``st_nlink - 2`` directory counter values for its
        subdirectories (FMT §2.2): ext4, XFS, tmpfs and NFS from them count a
        directory's subdirectories in its link count.
        """
        self._begin()
        unit = self._next_unit()
        if self._first_new_unit is None:
            self._first_new_unit = unit
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

    def pending_units(self, after: int, limit: int, committed_only: bool = False) -> List[DirTask]:
        """Pending units numbered above ``after``, in order; with ``committed_only``, only those committed.

        The drain hands out committed units only (:func:`clfsload.driver.recording.drain`):
        a unit stores blobs under the handles its row reserves (``dmid_base``),
        and a resume that lost the row would schedule it again with other ones,
        leaving what it stored unreachable. The connection sees its own
        uncommitted rows, so they are left out by number: units are numbered
        in order, and those of the open batch come from ``_first_new_unit`` on.
        """
        first_new = self._first_new_unit if committed_only else None
        before = first_new if first_new is not None else 1 << 62
        rows = self._db.execute(
            "SELECT unit, path, fh, parent_fh, name, stat, scheduled, dmid_base, dmid_count FROM units"
            " WHERE state = ? AND unit > ? AND unit < ? ORDER BY unit LIMIT ?",
            (PENDING, after, before, limit),
        ).fetchall()
        return [DirTask(u, p, fh, pfh, n, st, unpack_subdirs(sc), base, count)
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
                (deferred.stat, deferred.subdir_count, pack_listing(deferred.children), result.unit),
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
                (FAILED, pack_subdirs(scheduled), result.objects + 1, result.source_bytes, result.unit),
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
