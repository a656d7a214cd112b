"""What a walk reads ahead through the pipeline (:mod:`clfsload.work.source_reads`).

* :func:`lstat_all`: the ``lstat`` of every name of a directory listing, in
  parallel, results in listing order (:func:`list_and_lstat` lists first:
  the dry run and ``verify`` walk with it);
* :func:`readable_all`: the readability check of each subdirectory;
* :class:`EntriesAhead`: for the non-directories a unit stores in order,
  regular files opened and, if small, read whole (open, fstat, read, fstat,
  close) and symlinks' targets read, ahead of the consumer.

Each operation is the one the consumer would have made, on a pool thread:
its result or its exception reaches the consumer unchanged.
"""

import os
from typing import Any, Iterable, List, NamedTuple, Optional, Sequence, Tuple, Union

from .._native import sourceio
from ..clfs.constants import FIRST_SEGMENT_BYTES, Ftype
from .scan import check_directory_readable
from .source_reads import OrderedAhead, SourceReads


def lstat_all(reads: SourceReads, paths: Sequence[bytes]) -> List[Union[os.stat_result, OSError]]:
    """``os.lstat`` of each path, in parallel; each result or its OSError, in the order given.

    Through a slow source, in a worker process with the compiled twins, all
    of them are one run on threads that never take the GIL (:class:`RunAhead`).
    """
    run = reads.run_ahead("lstat", paths) if len(paths) > 1 else None
    if run is None:
        return reads.results("lstat", os.lstat, paths)
    out: List[Union[os.stat_result, OSError]] = []
    with run:
        for index in range(len(paths)):
            try:
                out.append(run.take(index))
            except OSError as exc:
                out.append(exc)
    return out


def readable_all(reads: SourceReads, paths: Sequence[bytes]) -> List[Optional[str]]:
    """:func:`clfsload.work.scan.check_directory_readable` of each path, in parallel, in order."""
    return reads.results("opendir", check_directory_readable, paths, catch=())  # type: ignore[arg-type]


def list_directory(path: bytes) -> Tuple[List[Tuple[bytes, bytes]], Optional[OSError]]:
    """A directory's ``(name, path)`` in readdir order, and the OSError that cut the listing short, if one did.

    Raises the OSError of a directory that cannot be opened at all.
    """
    listed: List[Tuple[bytes, bytes]] = []
    with os.scandir(path) as it:
        while True:
            try:
                dirent = next(it)
            except StopIteration:
                return listed, None
            except OSError as exc:  # part way: keep what was listed
                return listed, exc
            listed.append((dirent.name, dirent.path))


class ParallelScan:
    """What :func:`clfsload.work.scan.scan_directory` reads through the pipeline: the listing, then the lstats."""

    def __init__(self, reads: SourceReads) -> None:
        self.reads = reads

    def listing(self, path: bytes) -> Tuple[List[Tuple[bytes, bytes]], Optional[OSError]]:
        """:func:`list_directory`, counted as one source operation."""
        return self.reads.call("readdir", path, list_directory, path)

    def lstat_all(self, paths: Sequence[bytes]) -> List[Union[os.stat_result, OSError]]:
        """:func:`lstat_all` through this pipeline."""
        return lstat_all(self.reads, paths)


def list_and_lstat(reads: SourceReads, path: bytes) -> Tuple[List[Tuple[bytes, bytes, Union[os.stat_result, OSError]]],
                                                          Optional[OSError]]:
    """A directory's ``(name, path, lstat or its OSError)`` in readdir order, the lstats in parallel.

    Also the OSError that cut the listing short, if one did (the entries
    listed before it are returned). Raises the OSError of a directory that
    cannot be opened at all.
    """
    scan = ParallelScan(reads)
    listed, failed = scan.listing(path)
    stats = scan.lstat_all([child for _, child in listed])
    return [(name, child, st) for (name, child), st in zip(listed, stats)], failed


class Opened(NamedTuple):
    """A regular file opened ahead: ``data`` is its whole content when the small-file read
    succeeded (``fd`` then closed, -1); else ``fd`` is open for the stream path."""

    fd: int
    opened: os.stat_result
    data: Optional[bytes]


def open_file(path: bytes) -> Opened:
    """Open a regular file and, if it fits its inode, read it whole.

    The open of :func:`clfsload.work.scan.open_for_reading` and the torn-read
    rule of the small-file path: the content is whole only when one read
    returned exactly the size fstat gave before it and a second fstat shows
    the file unchanged (:func:`clfsload.work.scan.same_content`); otherwise
    the descriptor is returned open, for the stream path and its retries.
    Raises what the calls raise (the descriptor closed). The chain open,
    fstat, read, fstat, close is one call (:mod:`clfsload._native.sourceio`):
    on a pool thread, one release of the GIL instead of five.
    """
    return Opened(*sourceio.open_read(path, FIRST_SEGMENT_BYTES))


class _Taken(NamedTuple):
    """A result of a :class:`RunAhead` as the future of it would give it: ``result()`` returns or raises."""

    value: Any
    error: Optional[OSError]

    def result(self) -> Any:
        """The value, or the OSError raised."""
        if self.error is not None:
            raise self.error
        return self.value


def _discard(result: Any) -> None:
    """Close the descriptor of an Opened the consumer never took."""
    if isinstance(result, Opened) and result.fd >= 0:
        os.close(result.fd)


class EntriesAhead:
    """Regular files and symlinks of a unit read ahead of the consumer that stores them in order.

    ``entries`` are ``(path, ftype, size)`` in the order the consumer takes
    them; :meth:`take` gives the future of the next one (None when it was
    not read ahead: the consumer reads it itself). :meth:`close` drops what
    was not taken, closing descriptors left open.
    """

    def __init__(self, reads: SourceReads, entries: Iterable[Tuple[bytes, int, int]]):
        items = []
        files: List[bytes] = []
        for path, ftype, size in entries:
            if ftype == Ftype.REG:
                files.append(path)
                # a small file's bytes wait for the consumer: they count against the budget
                items.append((path, "open+read", open_file, (path,), size if size < FIRST_SEGMENT_BYTES else 0))
            elif ftype == Ftype.LNK:
                items.append((path, "readlink", os.readlink, (path,), 0))
        #: the regular files as one run on threads of their own, where runs are used (else None)
        self._run = reads.run_ahead("open+read", files, FIRST_SEGMENT_BYTES) if len(files) > 1 else None
        self._files = {path: index for index, path in enumerate(files)} if self._run is not None else {}
        try:
            if self._run is not None:
                items = [item for item in items if item[1] != "open+read"]
            self._ahead = OrderedAhead(reads, items, _discard)
        except BaseException:
            if self._run is not None:
                self._run.close()
            raise

    def take(self, path: bytes):
        """The future of ``path``'s read if it was read ahead, else None."""
        index = self._files.pop(path, None)
        if index is None:
            return self._ahead.take(path)
        assert self._run is not None
        try:
            return _Taken(Opened(*self._run.take(index)), None)
        except OSError as exc:
            return _Taken(None, exc)
        except IndexError:  # passed already (a later file was taken): as OrderedAhead refuses it
            raise KeyError("%r is not among the operations still to take ahead" % (path,)) from None

    def close(self) -> None:
        """Drop everything not taken."""
        if self._run is not None:
            self._run.close()
        self._ahead.close()

    def __enter__(self) -> "EntriesAhead":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


__all__ = ["EntriesAhead", "Opened", "ParallelScan", "list_and_lstat", "list_directory", "lstat_all", "open_file", "readable_all"]
