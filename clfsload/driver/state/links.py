"""Hard-linked objects (``links``, ``link_paths``) and the directories stored before them (``deferred_dirs``)."""

from typing import Dict, List, Optional, Tuple

from ...work.scan import Problem
from ...work.units import DirTask, LinkTask
from .core import StateCore, StateError
from .schema import DONE, FAILED, PENDING, unpack_listing

__all__ = ["LinksTable"]


class LinksTable(StateCore):
    """Hard-linked objects: their settled handles, their paths, their results; and the deferred directories."""

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

    def deferred_dirs(self, limit: int, after: bytes = b"") -> List[Tuple[DirTask, bytes, List[Tuple[bytes, bytes]], int]]:
        """Directories to store before RECONCILE, fh above ``after``: (task, stat, listing, subdir count)."""
        rows = self._db.execute(
            "SELECT fh, path, parent_fh, name, stat, subdir_count, listing FROM deferred_dirs"
            " WHERE fh > ? ORDER BY fh LIMIT ?", (after, limit)).fetchall()
        return [(DirTask(0, bytes(p), bytes(fh), bytes(pfh), bytes(n)), bytes(st), unpack_listing(listing), count)
                for fh, p, pfh, n, st, count, listing in rows]

    def count_deferred_dirs(self) -> int:
        """Directories still to store before RECONCILE."""
        return self._db.execute("SELECT COUNT(*) FROM deferred_dirs").fetchone()[0]

    def complete_deferred_dir(self, fh: bytes) -> None:
        """A deferred directory is stored."""
        self._begin()
        self._db.execute("DELETE FROM deferred_dirs WHERE fh = ?", (fh,))
        self._in_batch += 1
