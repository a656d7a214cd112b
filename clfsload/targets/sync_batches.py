"""What a local folder's writers have not yet made durable, made so in shared batches (:class:`SyncBatches`).

The local-folder target (:mod:`.local`) writes a blob without an fsync and
notes it here; whoever is about to record blobs as stored calls
:meth:`SyncBatches.sync`, which fsyncs every file noted (in threads for a
large batch: a disk's journal commits them together), then the folder once.

Invariant: each change noted (a blob file written, a name created or
removed) takes the next generation number, and every change up to
``_synced`` is durable. One batch runs at a time; a :meth:`~SyncBatches.sync`
returns once every change noted before it began is durable, made so by its
own batch or by another thread's. A batch swaps the list of files out as it
starts, so an empty list does not mean its files are durable yet: the
generations say so, not the list.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import List, Optional

from .._native import blobfile
from ..durable import fsync_dir, fsync_paths
from ..errors import TerminalError

__all__ = ["FSYNC_THREADS", "SyncBatches"]

#: threads that share a batch of fsyncs (the caller's one of them): a disk's journal commits them together
FSYNC_THREADS = 32

#: a batch smaller than this is fsynced by the caller alone
_THREADED_BATCH = 8


class SyncBatches:
    """The changes made in one folder since they were last made durable. Thread-safe."""

    def __init__(self, folder: str) -> None:
        self._folder = folder
        self._lock = threading.Lock()
        self._synced_cond = threading.Condition(self._lock)  # a batch of fsyncs ended
        self._unsynced: List[str] = []  # blob files written since the last batch began
        self._folder_dirty = False  # a name created or removed since the last batch began
        self._noted = 0  # generation of the last change noted
        self._synced = 0  # every change up to this generation is durable
        self._syncing = False  # a batch is running
        self._sync_failed: Optional[str] = None  # the error of a failed sync: raised by every later one
        self._fsyncs: Optional[ThreadPoolExecutor] = None  # made on the first large batch

    def note(self, path: Optional[str] = None) -> None:
        """A change in the folder: file ``path`` written and renamed in, or (None) a name created or removed."""
        with self._lock:
            if path is not None:
                self._unsynced.append(path)
            self._folder_dirty = True
            self._noted += 1

    def sync(self) -> None:
        """Make every change noted before this call durable.

        fsyncs the files (in threads for a large batch), then the folder
        once. Threads share the work: one batch runs at a time, and a call
        returns once every change noted before it began is durable, made so
        by its own batch or by another thread's (never while another
        thread's batch still holds one of its files). An error is a
        :class:`TerminalError`: what was written may be lost, so nothing may
        be recorded as stored; a rerun writes it again. The failure is
        permanent: after a failed fsync Linux may report the next one as a
        success with the data gone, so every later call (and every call
        waiting on the failed batch) raises it again rather than retry.
        """
        with self._lock:
            goal = self._noted
            while True:
                if self._sync_failed is not None:
                    raise TerminalError(self._sync_failed)
                if self._synced >= goal:
                    return
                if not self._syncing:
                    break
                self._synced_cond.wait()
            self._syncing = True
            paths, self._unsynced = self._unsynced, []
            dirty, self._folder_dirty = self._folder_dirty, False
            upto = self._noted
        failed: Optional[str] = None
        done = False
        try:
            if paths:
                fsync_paths(paths, self._executor(len(paths)), FSYNC_THREADS, blobfile.fsync_files)
            if dirty:
                fsync_dir(self._folder)
            done = True
        except OSError as exc:
            failed = (
                f"cannot make the blobs written to folder '{self._folder}' durable (fsync): "
                f"{exc.strerror or exc}; fix the file system and run again"
            )
        finally:
            with self._lock:
                self._syncing = False
                if failed is not None:
                    self._sync_failed = failed
                elif not done:  # interrupted (not an fsync error): the next batch takes them again
                    self._unsynced[:0] = paths
                    self._folder_dirty = self._folder_dirty or dirty
                elif self._sync_failed is None:
                    self._synced = max(self._synced, upto)
                self._synced_cond.notify_all()
        if failed is not None:
            raise TerminalError(failed) from None

    def close(self) -> None:
        """Stop the fsync threads (call after the last :meth:`sync`)."""
        if self._fsyncs is not None:
            self._fsyncs.shutdown(wait=True)
            self._fsyncs = None

    def _executor(self, batch: int) -> Optional[ThreadPoolExecutor]:
        """The fsync threads (made at the first batch that could use them), None for a small batch."""
        if batch < _THREADED_BATCH:
            return None
        if self._fsyncs is None:
            self._fsyncs = ThreadPoolExecutor(max_workers=FSYNC_THREADS - 1, thread_name_prefix="clfsload-fsync")
        return self._fsyncs
