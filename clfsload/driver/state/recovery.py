"""What failed and what to clean up: problems, retries of failed units, the sweep list, pruned entries."""

from typing import Iterator, List, Tuple

from ...work.scan import Problem
from .core import StateCore
from .schema import DONE, FAILED, PENDING, SWEEP_DIR, SWEEP_OBJECT

__all__ = ["Recovery"]


class Recovery(StateCore):
    """Problems, retries, the sweep list and pruned entries: the tables FINALIZE and a resume read."""

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
