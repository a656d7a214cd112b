"""Huge regular files loaded as ranges of their segments, so one file spreads over many workers.

A directory unit that meets a regular file of more than 4 data segments
(32 MiB, :func:`range_size`) does not read it itself: it hands the driver a
:class:`HugeFile`. The driver cuts the file into :class:`FileRange` units of
4 to ``range_segments`` segments each (128 x 8 MiB = 1 GiB by default; about
an eighth of the file between the two) and runs them like any unit, on any
worker or Dask node, so a directory's large files spread over every worker
process instead of being one unit's. A range needs
nobody: segment ids are fixed by the file's fh and the segment's index
(:class:`clfsload.work.ids.BlockIds`), and a segment's body by its bytes, its
offset and the file's ctime, so a range run twice writes the same blobs
under the same names.

When every range is back, the driver checks they all read the same file
(each range fstats it before and after reading; all must match the stat the
ranges were planned on) and writes the file's indirect blocks and inode
itself: they need the segment ids and the first 16 KiB (which the first
range returns), not the data. Until then the directory is not stored, so a
published container never lists a file whose inode is missing. A file that
changed while read is planned again from its new stat, at most
``READ_ATTEMPTS`` times, as on the single-file path; it is never stored torn.

Content checksum: each range hashes its bytes (XXH3-128); the file's record
is the XXH3-128 of its ranges' digests with the range span, which
``verify --state`` recomputes from the source
(:func:`clfsload.work.checksum_log.ranged_digest`).
"""

import os
from concurrent.futures import Future
from typing import Dict, List, Optional, Sequence, Tuple, Union

from .. import crashpoints
from .checksum_log import new_hasher, range_span, tree_digest
from ..clfs.blockmap import segment_count, segment_offset
from ..clfs.constants import FIRST_SEGMENT_BYTES, OTHER_SEGMENT_BYTES
from ..clfs.objects import Blob, InodeName, file_inode_blobs, file_segment_sealed, read_parts
from ..errors import EncodeError, TerminalError
from .scan import EntryStat, Problem, describe_oserror, open_for_reading, same_content
from .protocols import ReadingRunStore, RunStore
from .reasons import READ_ATTEMPTS, store_failure, torn_read
from .source_reads import AheadReader
from .units import FileRange, HugeFile, RangeDone, RangeOutcome, RangeVanished
from .upload import first_error

#: a file of more data segments than this (32 MiB) is loaded in ranges even below ``range_segments``:
#: one unit reading and encoding a large file alone leaves the other worker processes idle
#: (four 128 MiB files of one directory were one process's work), a slow source most of all
SPREAD_SEGMENTS = 4
#: such a file is cut into about this many ranges (of SPREAD_SEGMENTS .. range_segments segments each)
SPREAD_RANGES = 8


def range_size(size: int, range_segments: int) -> int:
    """Data segments per range of a regular file of ``size`` bytes; 0 if it is not loaded in ranges.

    Files of more than ``range_segments`` segments (1 GiB by default) or of
    more than SPREAD_SEGMENTS (32 MiB) are; a range holds ``range_segments``
    at most, SPREAD_SEGMENTS at least, about 1/SPREAD_RANGES of the file
    between the two. The size alone decides (not the worker count nor the
    source's speed), so the same tree is always cut the same way: the same
    units, the same checksum records (their range span). ``range_segments``
    0 never splits a file; below SPREAD_SEGMENTS (a test's switch) it is
    both the threshold and the range, as it always was.
    """
    if range_segments <= 0:
        return 0
    count = segment_count(size, FIRST_SEGMENT_BYTES, OTHER_SEGMENT_BYTES)
    span = min(range_segments, max(SPREAD_SEGMENTS, -(-count // SPREAD_RANGES)))
    return span if count > span else 0


def is_huge(st: EntryStat, range_segments: int) -> bool:
    """True if a regular file of this stat is loaded in ranges (never with ``range_segments`` 0)."""
    return range_size(st.st_size, range_segments) > 0


def plan_ranges(size: int, range_segments: int) -> List[Tuple[int, int]]:
    """``(first, last)`` segment indexes of each range of a file of ``size`` bytes; at least one range.

    A file that shrank to fit its inode has one range of no segment (it reads the head only).
    """
    count = segment_count(size, FIRST_SEGMENT_BYTES, OTHER_SEGMENT_BYTES)
    if count == 0:
        return [(1, 0)]
    return [(first, min(first + range_segments - 1, count)) for first in range(1, count + 1, range_segments)]


def _pread_exact(fd: int, size: int, offset: int) -> bytes:
    """Up to ``size`` bytes at ``offset``, short only at end of file."""
    chunks = []
    while size > 0:
        chunk = os.pread(fd, size, offset)
        if not chunk:
            break
        chunks.append(chunk)
        size -= len(chunk)
        offset += len(chunk)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def store_range(store: ReadingRunStore, task: FileRange) -> RangeOutcome:
    """Read and store the segments of one range (one unit). Raises TerminalError only.

    Every PUT it started has landed (or failed) when it returns, whatever it returns.
    """
    try:
        fd, opened = store.reads.call("open", task.path, open_for_reading, task.path)
    except FileNotFoundError:
        return RangeVanished(task.path)
    except OSError as exc:
        return Problem(task.path, describe_oserror(exc))
    futures: List["Future[None]"] = []
    try:
        return _read_range(store, task, fd, EntryStat.of(opened), futures)
    except FileNotFoundError:
        return RangeVanished(task.path)
    except OSError as exc:
        return Problem(task.path, describe_oserror(exc))
    except EncodeError as exc:
        return Problem(task.path, str(exc))
    finally:
        os.close(fd)
        first_error(futures)  # a range that failed half-way reports once its PUTs are over


def _read_range(store: ReadingRunStore, task: FileRange, fd: int, before: EntryStat,
                futures: List["Future[None]"]) -> RangeOutcome:
    if not same_content(task.stat, before):
        return RangeDone(task.first, before, b"", b"", 0, changed=True)
    ctime = store.attrs(before, before.st_size).ctime_sec
    size = before.st_size
    hasher = new_hasher()
    head = b""
    nbytes = 0
    short = False
    if task.first == 1:
        head = store.reads.call("read", task.path, _pread_exact, fd, FIRST_SEGMENT_BYTES, 0)
        hasher.update(head)
        nbytes = len(head)
        short = len(head) != min(size, FIRST_SEGMENT_BYTES)
    ids = store.mint.block_ids(task.fh)
    # The range's segments are contiguous: one reader runs their preads ahead, many in
    # flight (a segment in several pieces), within the budget of data read ahead.
    start = segment_offset(task.first, FIRST_SEGMENT_BYTES, OTHER_SEGMENT_BYTES)
    end = min(size, segment_offset(task.last + 1, FIRST_SEGMENT_BYTES, OTHER_SEGMENT_BYTES))
    reader = AheadReader(store.reads, fd, end, start, task.path)
    try:
        for index in range(task.first, task.last + 1):
            if short:
                break
            offset = segment_offset(index, FIRST_SEGMENT_BYTES, OTHER_SEGMENT_BYTES)
            want = min(OTHER_SEGMENT_BYTES, size - offset)
            # the segment's 1 MiB pieces as read: the body is their one copy (not a join, then the body)
            parts = read_parts(reader, want)
            length = sum(map(len, parts))
            if length != want:  # the file shrank while read
                short = True
                break
            for part in parts:
                hasher.update(part)
            nbytes += length
            sealed = file_segment_sealed(parts, index, ids.segment(index), ctime, task.fh, store.uploader.compress)
            futures.append(store.uploader.submit(sealed))
            crashpoints.reached("file-segment")
    finally:
        reader.close()  # its reads are over before the descriptor is closed
    error = first_error(futures)  # every PUT lands before the range reports, changed or not
    if isinstance(error, TerminalError):
        raise error
    after = EntryStat.of(store.reads.call("fstat", task.path, os.fstat, fd))
    if short or not same_content(before, after):
        return RangeDone(task.first, after, b"", b"", nbytes, changed=True)
    if error is not None:
        return Problem(task.path, store_failure(error))
    return RangeDone(task.first, before, head, hasher.digest(), nbytes)


class FileAssembly:
    """The driver's view of one huge file: its ranges out, those back, and what to do once all are.

    :meth:`tasks` gives the ranges of the current attempt; feed each outcome
    to :meth:`add`; when it returns True every range is back and
    :meth:`verdict` says what happens to the file.
    """

    def __init__(self, huge: HugeFile, range_segments: int, stored: Sequence[Tuple[int, RangeDone]] = ()):
        self.huge = huge
        self.range_segments = range_segments
        self.attempt = 0
        self._plan(huge.stat)
        # Ranges an earlier run stored from the same file (same inode, size,
        # mtime, ctime, and range bounds) stand: their segments are in the container.
        for last, done in stored:
            if (done.first, last) in self.ranges and same_content(done.stat, huge.stat):
                self._done[done.first] = done
                self._waiting.discard(done.first)

    def _plan(self, st: EntryStat) -> None:
        self.attempt += 1
        self.stat = st
        self.ranges = plan_ranges(st.st_size, self.range_segments)
        self._waiting = {first for first, _ in self.ranges}
        self._done: Dict[int, RangeDone] = {}
        self._changed: Optional[EntryStat] = None
        self._problem: Optional[Problem] = None
        self._vanished = False

    def tasks(self) -> List[FileRange]:
        """The range units of the current attempt still to run (none: all are stored, :meth:`verdict` is due)."""
        h = self.huge
        return [FileRange(h.unit, h.fh, h.parent_fh, h.path, self.stat, first, last, self.attempt)
                for first, last in self.ranges if first in self._waiting]

    def add(self, task: FileRange, outcome: RangeOutcome) -> bool:
        """Take one range's outcome; True once every range of this attempt is back."""
        assert task.attempt == self.attempt, "a range of an earlier attempt came back late"
        self._waiting.discard(task.first)
        if isinstance(outcome, RangeVanished):
            self._vanished = True
        elif isinstance(outcome, Problem):
            self._problem = self._problem or outcome
        elif outcome.changed:
            self._changed = outcome.stat
        else:
            self._done[outcome.first] = outcome
        return not self._waiting

    def verdict(self) -> Union[str, Problem]:
        """Once all are back: ``"store"``, ``"vanished"``, ``"again"`` (changed: :meth:`tasks` has the
        next attempt's ranges), or the file's Problem."""
        if self._problem is not None:
            return self._problem
        if self._vanished:
            return "vanished"
        if self._changed is not None:
            if self.attempt >= READ_ATTEMPTS:
                return Problem(self.huge.path, torn_read())
            self._plan(self._changed)
            return "again"
        return "store"

    def blobs(self, store: RunStore) -> List[Blob]:
        """The file's indirect blocks and inode (inode last), once :meth:`verdict` said ``"store"``."""
        h = self.huge
        first = self._done[1]
        attrs = store.attrs(first.stat, self.stat.st_size)
        segments = segment_count(self.stat.st_size, FIRST_SEGMENT_BYTES, OTHER_SEGMENT_BYTES)
        return file_inode_blobs(attrs, h.fh, [h.parent_fh], h.name, InodeName(h.parent_fh), first.head, segments,
                                store.mint.block_ids(h.fh))

    def checksum(self) -> Tuple[bytes, int, bytes]:
        """``(fh, span, digest)``: the file's content checksum record (:func:`clfsload.work.checksum_log.ranged_digest`)."""
        digests = [self._done[first].digest for first, _ in self.ranges]
        return self.huge.fh, range_span(self.range_segments), tree_digest(digests)


__all__ = [
    "FileAssembly",
    "is_huge",
    "plan_ranges",
    "range_size",
    "store_range",
]
