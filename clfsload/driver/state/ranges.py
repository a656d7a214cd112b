"""The stored ranges of huge files (:mod:`clfsload.work.ranges`), so a resumed run loads only the rest."""

from typing import List, Tuple

from .core import StateCore

__all__ = ["RangesTable"]


class RangesTable(StateCore):
    """The ``ranges`` table."""

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
