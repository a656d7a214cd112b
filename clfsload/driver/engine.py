"""The driver of a load: checks, then the phases INIT, TRANSFER, RECONCILE, FINALIZE.

* INIT (``--new`` only): pick the run's ids, store them, write the bucket object.
* TRANSFER: directory units run in the worker pool; the driver records
  their results in the state store and schedules the subdirectories found.
* RECONCILE: first the directories whose listings name handles settled only
  now are stored (those listing hard-linked objects, whose handle takes the
  dmid of its first backpointer, and those whose subdirectories the driver
  minted); then (``--preserve_hardlinks 1``) every hard-linked object is
  stored once, with all its backpointers, under its final version-11 name.
* FINALIZE: repair (put back entries that loaded since an earlier run left
  them out; with ``--publish_with_errors`` take failed entries out of their
  directories; sweep what interrupted attempts left behind), upload the
  run's log and ``problems.txt``, add them to the bucket object, and publish
  the root by copying its ``tmp`` inode to its final name, the last write of
  the run. A run with problems publishes nothing unless
  ``--publish_with_errors``.

Every object is written under a name fixed by the state store (see
:mod:`clfsload.work.ids`), so the whole driver can be killed at any point and
rerun: the work left is done again and overwrites what was half done, and
the sweep deletes what a changed source made obsolete.
"""

import collections
import errno
import hashlib
import itertools
import json
import logging
import os
import secrets
import sqlite3
import stat
import time
from concurrent.futures import FIRST_COMPLETED, wait
from typing import Deque, Dict, List, Optional, Set, Union

from .. import __version__, crashpoints
from . import handles, history
from .._native import BACKEND, envelope
from ..work.checksum_log import FILE_NAME as CHECKSUM_FILE
from ..work.checksum_log import ChecksumLog
from ..clfs.constants import BUCKET_UUID_KEY, ROOT_ID, TMP_PREFIX
from ..clfs.decode import decode_payload
from ..clfs.objects import bucket_blob, final_root_name, seal
from ..errors import BlobNotFoundError, ClfsLoadError, FormatError, TerminalError
from ..logsetup import attach_file, detach
from ..execute.pool import UnitPool, WorkerConfig, start_forkserver
from ..work.ids import IdMint
from .progress import Progress, azcopy_final
from .relist import edit_directory, group_by_parent
from ..work.scan import EntryStat, Problem
from ..settings import Settings
from .state import SWEEP_DIR, SWEEP_OBJECT, StateError, StateStore
from .sweep import Sweeper
from ..targets import open_target
from ..targets.endpoint import LocalFolder, parse_account
from ..targets.base import BlobTarget
from ..targets.local import LocalFolderTarget
from ..work.ranges import RANGE_SEGMENTS, FileAssembly, FileRange, RangeDone
from ..work.transfer import (
    BATCH_ENTRIES,
    VANISHED,
    DeferredDir,
    DirResult,
    DirWrite,
    DirTask,
    EntryBatch,
    LinkDone,
    LinkTask,
    RunParams,
    UnitFailed,
    Worker,
    split_listing,
)

log = logging.getLogger("clfsload")

PROBLEMS_FILE = "problems.txt"
LOG_FILE = "output.txt"
COMMIT_EVERY = 200  # results per state transaction
COMMIT_SECONDS = 1.0


class _SplitProgress:
    """A directory whose parts are out (batches, huge files): its task, the merged result so far, parts left."""

    def __init__(self, task: DirTask, result: DirResult):
        self.task = task
        self.result = result
        split = result.split
        assert split is not None
        self.left = len(split.batches) + len(split.files)


class LoadError(ClfsLoadError):
    """The load cannot go on; the message says what is wrong and what to do."""


class Interrupted(ClfsLoadError):
    """Ctrl-C or SIGTERM: the state is saved and the same command resumes."""


#: at most this many problems are carried in LoadResult.problem_list (all are in problems.txt)
PROBLEM_LIST_MAX = 100000


class LoadResult:
    """What a run did: exit code, counts, problems."""

    def __init__(self) -> None:
        #: 0: the container is complete; 1: it is not (the state is kept, run again to resume)
        self.exit_code = 1
        #: the root is published under its final name
        self.published = False
        #: objects stored (over every run of this transfer)
        self.objects = 0
        #: bytes read from the source (over every run of this transfer)
        self.source_bytes = 0
        #: how many entries could not be loaded
        self.problems = 0
        #: those entries (the first PROBLEM_LIST_MAX), each with its path and reason
        self.problem_list: List[Problem] = []
        self.elapsed = 0.0
        #: why the run stopped, when it did not complete
        self.message = ""
        #: the phase the transfer is in (DONE once finished)
        self.phase = "INIT"

    @property
    def ok(self) -> bool:
        """True when the container is complete and published without problems."""
        return self.exit_code == 0

    def __repr__(self) -> str:
        return "LoadResult(exit_code=%d, published=%s, objects=%d, problems=%d, phase=%s)" % (
            self.exit_code, self.published, self.objects, self.problems, self.phase)


def check_paths(state_dir: str, source: str) -> None:
    """SOURCE is a readable directory and neither path lies inside the other (real paths)."""
    try:
        st = os.lstat(source)
    except OSError as exc:
        raise LoadError("source '%s' cannot be read: %s" % (source, exc.strerror)) from None
    if stat.S_ISLNK(st.st_mode):
        raise LoadError("source '%s' is a symlink; give the directory it points to" % source)
    if not stat.S_ISDIR(st.st_mode):
        raise LoadError("source '%s' is not a directory" % source)
    if not os.access(source, os.R_OK | os.X_OK):
        raise LoadError("source '%s' cannot be listed: permission denied" % source)
    real_state = os.path.realpath(state_dir) + os.sep
    real_source = os.path.realpath(source) + os.sep
    if real_state.startswith(real_source) or real_source.startswith(real_state):
        raise LoadError(
            "state directory '%s' and source '%s' overlap; put the state directory outside the tree you load"
            % (state_dir, source)
        )


class Loader:
    """One invocation of the loader over one state directory."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.state: Optional[StateStore] = None
        self.target: Optional[BlobTarget] = None
        self.result = LoadResult()
        self.progress: Optional[Progress] = None
        self._started = time.monotonic()
        self._log_file: Optional[logging.Handler] = None
        self._noted: Set[str] = set()  # keys of the warnings logged once per run
        self._checksums: Optional[ChecksumLog] = None  # content checksums, appended as units finish
        self._dask_client = None  # distributed.Client, with --dask or load(client=...)
        self._dask = None  # clfsload.execute.dask_driver.DaskRun, once TRANSFER or RECONCILE starts
        self._extra: Deque = collections.deque()  # units made while others ran (batches), queued first
        self._splits: Dict[int, "_SplitProgress"] = {}  # directories whose parts are out, by unit
        self._files: Dict[bytes, FileAssembly] = {}  # huge files whose ranges are out, by fh

    # --- top level -----------------------------------------------------------

    def run(self) -> LoadResult:
        """Run every phase still to do; returns the result.

        Raises the ClfsLoadError that stopped the run. The log file in the
        state dir stays attached until :meth:`close_log`, so the line the run
        ends with reaches it too.
        """
        try:
            self._run()
        finally:
            self.result.elapsed = time.monotonic() - self._started
            if self.state is not None:
                self.result.phase = self.state.phase
                try:
                    self._fill_result()
                except sqlite3.Error:
                    pass  # the state database failed: the error that stopped the run says so
                try:
                    self._write_problems()
                except OSError as exc:
                    log.warning("cannot write %s: %s", PROBLEMS_FILE, exc.strerror)
            if self._checksums is not None:
                try:
                    self._checksums.close()
                except OSError as exc:
                    log.warning("cannot write %s: %s", CHECKSUM_FILE, exc.strerror)
            if self._dask is not None:
                self._dask.close()
            elif self._dask_client is not None and self.settings.dask_client is None:
                self._dask_client.close()
            if self.target is not None:
                self.target.close()
            if self.state is not None:
                self.state.close()
        return self.result

    def close_log(self) -> None:
        """Stop writing this run's log to the state dir."""
        detach(self._log_file)
        self._log_file = None

    def _write_problems(self) -> int:
        """STATE_DIR/problems.txt: every recorded problem's path, one per line (none: no file)."""
        assert self.state is not None
        path = os.path.join(self.settings.state_dir, PROBLEMS_FILE)
        if os.path.exists(path):
            os.unlink(path)
        count = 0
        problems = self.state.problems()
        first = next(problems, None)
        if first is None:
            return 0
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            for p in itertools.chain([first], problems):
                f.write(p.path + b"\n")
                count += 1
            f.flush()
            os.fsync(f.fileno())
        return count

    def _run(self) -> None:
        s = self.settings
        crashpoints.check_process_group()
        check_paths(s.state_dir, s.source)
        if s.uses_dask:
            from ..execute.dask_driver import connect

            # Before any state is written: a wrong address stops the run with nothing to clean up.
            self._dask_client = s.dask_client if s.dask_client is not None else connect(s.dask)  # type: ignore[arg-type]
        elif s.processes:
            start_forkserver()  # its imports overlap the checks below
        if not s.new:
            # The state dir first: a missing or busy one says so before any network call.
            self.state = StateStore.open(s.state_dir)
            self._log_file = attach_file(s.state_dir, LOG_FILE)
        # A local folder target is created on --new; an Azure container never is (it must exist).
        local = isinstance(parse_account(s.account), LocalFolder) if s.account.strip() else False
        self.target = open_target(s.account, s.container, s.credential, create=s.new and local)
        self.target.check_access()
        if s.new:
            if not self.target.is_empty():
                raise LoadError(
                    "container '%s' is not empty; --new needs an empty container (%s)" % (s.container, self.target.describe())
                )
            # Created only once every check passed, so a failed start leaves nothing to clean up.
            self.state = StateStore.create(s.state_dir, self._identity())
            self._log_file = attach_file(s.state_dir, LOG_FILE)
        else:
            self._check_resume()
            if self.state.phase != "INIT":
                self.state.mark_resumed()
                _remove_temp_files(self.target)
        self.progress = Progress(self.state, s, log)
        self.progress.config(new=s.new)
        if s.dry_run or s.dry_run_gb is not None or s.dry_run_count is not None:
            from .dryrun import dry_run

            dry_run(self.state, s, log, self._target_kind())
        state = self.state
        if state.phase == "INIT":
            self._init()
        if state.phase == "DONE":
            if state.count_problems() == 0:
                log.info("this transfer has already completed without errors")
                self.result.exit_code = 0
                self.result.published = True
                self._fill_result()
                return
            if not s.retry_errors:
                raise LoadError("this transfer completed with errors and --retry_errors is 0; nothing to do")
        if s.retry_errors and state.phase != "INIT":
            units, links = state.retry_failed()
            if units or links:
                log.info("retry_errors: %d directories and %d linked objects will be loaded again", units, links)
                state.set_phase("TRANSFER" if units else "RECONCILE")
        if state.phase == "TRANSFER":
            self._transfer()
        if state.phase == "RECONCILE":
            self._reconcile()
        if state.phase in ("FINALIZE", "DONE"):
            self._finalize()
        self._fill_result()

    def _fill_result(self) -> None:
        assert self.state is not None
        self.result.objects = self.state.counter("objects")
        self.result.source_bytes = self.state.counter("source_bytes")
        self.result.problems = self.state.count_problems()
        self.result.problem_list = list(itertools.islice(self.state.problems(), PROBLEM_LIST_MAX))

    def _target_kind(self) -> str:
        """``local`` or ``azure``: speeds differ too much to share a history."""
        return "local" if isinstance(self.target, LocalFolderTarget) else "azure"

    # --- identity and resume checks --------------------------------------------

    def _identity(self) -> Dict[str, str]:
        s = self.settings
        assert self.target is not None
        return {
            "tool_version": __version__,
            "phase": "INIT",
            "containerid": str(secrets.randbelow(0xFFFFFFFF) + 1),
            "fsid": str(secrets.randbelow(0xFFFFFFFF) + 1),
            "id_secret": secrets.token_hex(16),
            "bucket_uuid": _uuid4(),
            "compression": s.compression or "LZ4",
            "preserve_hardlinks": "1" if s.preserve_hardlinks else "0",
            "source": os.path.realpath(s.source),
            "source_arg": s.source,
            "target": self.target.describe(),
            "created": "%.3f" % time.time(),
        }

    def _check_resume(self) -> None:
        s, state = self.settings, self.state
        assert state is not None and self.target is not None
        mismatches = []
        if os.path.realpath(s.source) != state.get("source"):
            mismatches.append("source '%s' is not the one this transfer started with ('%s')" % (s.source, state.get("source")))
        source_id = state.get("source_id")
        if source_id and not mismatches:
            st = os.stat(s.source)
            if "%d:%d" % (st.st_dev, st.st_ino) != source_id:
                mismatches.append(
                    "source '%s' is another directory than the one this transfer started with "
                    "(it was replaced: device/inode differ)" % s.source
                )
        if self.target.describe() != state.get("target"):
            mismatches.append(
                "target %s is not the one this transfer started with (%s)" % (self.target.describe(), state.get("target"))
            )
        if s.compression and s.compression != state.get("compression"):
            mismatches.append("--compression %s differs from the stored %s" % (s.compression, state.get("compression")))
        if s.preserve_hardlinks is not None and int(s.preserve_hardlinks) != int(state.get("preserve_hardlinks") or 0):
            mismatches.append(
                "--preserve_hardlinks %d differs from the stored %s" % (int(s.preserve_hardlinks), state.get("preserve_hardlinks"))
            )
        if mismatches:
            raise LoadError("cannot resume: " + "; ".join(mismatches) + "; rerun with the original values")
        if state.phase != "INIT":
            self._check_bucket()

    def _check_bucket(self) -> None:
        assert self.state is not None and self.target is not None
        name = bucket_blob("").name
        try:
            obj = decode_payload(self.target.get(name), name)
        except BlobNotFoundError:
            raise LoadError(
                "the container has no bucket object (%s): it was emptied or is not the one this transfer wrote to" % name
            ) from None
        except FormatError as exc:
            raise LoadError("the container's bucket object is damaged: %s" % exc) from None
        found = dict(obj.extattrs or [])
        if found.get(BUCKET_UUID_KEY) != self.state.get("bucket_uuid"):
            raise LoadError("the container's bucket object belongs to another transfer (bucketUUID differs)")

    # --- INIT ------------------------------------------------------------------

    def params(self) -> RunParams:
        """The run's shared parameters, from the state store."""
        state = self.state
        assert state is not None
        return RunParams(
            containerid=int(state.get("containerid")),  # type: ignore[arg-type]
            fsid=int(state.get("fsid")),  # type: ignore[arg-type]
            secret=bytes.fromhex(state.get("id_secret")),  # type: ignore[arg-type]
            compress=state.get("compression") == "LZ4",
            preserve_hardlinks=state.get("preserve_hardlinks") == "1",
            batch_entries=_env_count("CLFSLOAD_BATCH_ENTRIES", BATCH_ENTRIES),
            range_segments=_env_count("CLFSLOAD_RANGE_SEGMENTS", RANGE_SEGMENTS),
        )

    def _init(self) -> None:
        state, target = self.state, self.target
        assert state is not None and target is not None
        self.progress.phase("init")
        names = [n for n in target.list_names() if n != bucket_blob("").name]
        if names:
            raise LoadError("container '%s' is not empty (%s ...); --new needs an empty container" % (self.settings.container, names[0]))
        sealed = seal(bucket_blob(state.get("bucket_uuid")), self.params().compress)  # type: ignore[arg-type]
        target.put(sealed.name, sealed.payload)
        crashpoints.reached("init")
        root_name = os.fsencode(os.path.basename(self.settings.source))
        root_path = os.fsencode(os.path.realpath(self.settings.source))
        root_stat = EntryStat.of(os.lstat(root_path))
        state.set("source_id", "%d:%d" % (root_stat.st_dev, root_stat.st_ino))
        state.add_unit(root_path, ROOT_ID, ROOT_ID, root_name, root_stat.pack())
        state.set_phase("TRANSFER")

    # --- TRANSFER and RECONCILE ----------------------------------------------------

    def _pool(self) -> UnitPool:
        s = self.settings
        config = WorkerConfig(s.account, s.container, s.credential, self.params(), s.upload_threads)
        if self._dask is None and self._dask_client is not None:
            self._dask = self._start_dask(config)  # the first phase with units; later phases reuse the run
        if self._dask is not None:
            return self._dask.pool()  # type: ignore[return-value]
        return UnitPool(config, s.processes or 0)

    def _start_dask(self, config: WorkerConfig):
        """Join the Dask cluster's workers to this run (each checks it sees SOURCE)."""
        from ..execute.dask_driver import DaskRun

        assert self.state is not None
        transfer = hashlib.blake2b(self.state.get("bucket_uuid", "").encode(), digest_size=8).hexdigest()  # type: ignore[union-attr]
        run = DaskRun(self._dask_client, owned=self.settings.dask_client is None, transfer=transfer)
        try:
            run.start(config, self.settings.source)
        except BaseException:
            run.close()
            raise
        self._dask_client = None  # the run owns it now (and closes it if we opened it)
        return run

    def _transfer(self) -> None:
        state = self.state
        assert state is not None and self.progress is not None
        self.progress.phase("transfer")
        errors = self._drain(
            fetch=lambda cursor, n: [(t.unit, t) for t in state.pending_units(cursor or 0, n)],
            record=self._record_unit,
        )
        if errors is not None:
            return
        if state.count_units() != 0:
            raise LoadError("internal error: transfer ended with %d directories pending; run again to resume" % state.count_units())
        progress = self.progress
        history.record(self._target_kind(), progress.objects, progress.source_bytes, progress.phase_seconds())
        state.set_phase("RECONCILE")

    def _reconcile(self) -> None:
        state = self.state
        assert state is not None and self.progress is not None
        self._settle_link_handles()
        self._store_deferred_dirs()
        if state.count_links():
            self.progress.phase("reconcile")
            errors = self._drain(
                fetch=lambda cursor, n: [(t.key, t) for t in state.pending_links(n, cursor or b"")],
                record=self._record_link,
            )
            if errors is not None:
                return
        state.set_phase("FINALIZE")

    def _settle_link_handles(self) -> None:
        """Give every hard-linked object its handle: the dmid of the directory its first backpointer names (FMT §2.2)."""
        assert self.state is not None
        dropped = handles.settle_link_handles(self.state, self._id_mint())
        if dropped:
            log.debug("%d hard-linked objects no path names any more are forgotten", dropped)

    def _store_deferred_dirs(self) -> None:
        """Store the directories whose listings name handles settled after their unit ran.

        They run as units in the pool (or on the Dask cluster), each writing
        the blobs its unit would have written; a run stopped part way stores
        the rest (the rows go as they are stored).
        """
        state = self.state
        assert state is not None
        total = state.count_deferred_dirs()
        if not total:
            return
        log.info("storing %d directories that list hard-linked objects or subdirectories named by the driver", total)
        self._drain(fetch=lambda cursor, n: [(w.task.fh, w) for w in handles.dir_writes(state, n, cursor or b"")],
                    record=self._record_dir_write)

    def _record_dir_write(self, task: DirWrite, outcome: Optional[Problem]) -> int:
        """A deferred directory is stored; one that could not be stops the run (a rerun stores it)."""
        assert self.state is not None
        if outcome is not None:
            raise LoadError("%s; run the same command again to resume" % outcome.line())
        self.state.complete_deferred_dir(task.task.fh)
        return 0

    def _id_mint(self) -> IdMint:
        state = self.state
        assert state is not None
        return IdMint(int(state.get("containerid")), bytes.fromhex(state.get("id_secret")))  # type: ignore[arg-type]

    def _record_unit(self, task, outcome) -> int:
        state = self.state
        assert state is not None and self.progress is not None
        if isinstance(task, EntryBatch):
            return self._record_batch(task, outcome)
        if isinstance(task, FileRange):
            return self._record_range(task, outcome)
        if isinstance(outcome, DirResult):
            assert state is not None
            if handles.name_subdirs(state, self._id_mint(), task, outcome) and "dir-nlink" not in self._noted:
                self._noted.add("dir-nlink")
                log.info("%s: has more subdirectories than its link count says; the driver names them, and such "
                         "directories are stored after their unit", os.fsdecode(task.path))
        if isinstance(outcome, DirResult) and outcome.split is not None:
            # Its batches or huge files run as units of their own; the
            # directory completes (and is stored) once all are back. Until then
            # its unit stays pending, so a run stopped meanwhile redoes it whole.
            split = outcome.split
            self._splits[task.unit] = _SplitProgress(task, outcome)
            self.progress.count(outcome.objects, outcome.source_bytes)  # the entries the unit stored itself
            self._extra.extend(split.batches)
            if split.batches:
                log.info("%s: %d entries, loaded in %d batches", os.fsdecode(task.path),
                         sum(len(b.entries) for b in split.batches), len(split.batches))
            errors = len(outcome.problems)
            per_range = self.params().range_segments
            for huge in split.files:
                stored = [(last, RangeDone(first, EntryStat.unpack(st), head, digest, nbytes))
                          for first, last, st, head, digest, nbytes in self.state.stored_ranges(huge.fh)]
                assembly = self._files[huge.fh] = FileAssembly(huge, per_range, stored)
                tasks = assembly.tasks()
                log.info("%s: %d bytes, loaded in %d ranges of up to %d segments%s", os.fsdecode(huge.path),
                         huge.stat.st_size, len(assembly.ranges), per_range,
                         "" if len(tasks) == len(assembly.ranges) else
                         " (%d stored by an earlier run)" % (len(assembly.ranges) - len(tasks)))
                if tasks:
                    self._extra.extend(tasks)
                else:
                    errors += self._settle_file(assembly)
            return errors
        return self._complete_unit(task, outcome)

    def _record_batch(self, batch: EntryBatch, outcome) -> int:
        merged = self._splits[batch.unit].result
        if isinstance(outcome, DirResult):
            for name in ("links", "problems", "notes", "checksums", "children"):
                getattr(merged, name).extend(getattr(outcome, name))
            merged.objects += outcome.objects
            merged.source_bytes += outcome.source_bytes
            merged.dirty = merged.dirty or outcome.dirty
            errors = len(outcome.problems)
            self.progress.count(outcome.objects, outcome.source_bytes)
        else:  # the whole batch failed (its workers died): its entries are left out
            merged.problems.append(outcome)
            errors = 1
        return errors + self._part_back(batch.unit)

    def _record_range(self, task: FileRange, outcome) -> int:
        """One range of a huge file is back; once all are, store the file (or plan it again)."""
        assembly = self._files[task.fh]
        if isinstance(outcome, RangeDone) and not outcome.changed:
            self.progress.count(0, outcome.nbytes)
            self.state.record_range(task.unit, task.fh, task.first, task.last, outcome.stat.pack(), outcome.head,
                                    outcome.digest, outcome.nbytes)
            self._commit()  # a range is up to 1 GiB of work: a resumed run must not redo it
        if not assembly.add(task, outcome):
            return 0
        return self._settle_file(assembly)

    def _settle_file(self, assembly: FileAssembly) -> int:
        """Every range of a huge file is back: store its inode, plan it again, or leave it out. Returns errors."""
        huge = assembly.huge
        merged = self._splits[huge.unit].result
        verdict = assembly.verdict()
        if verdict == "again":  # changed while read: its next attempt may write fewer segments
            merged.dirty = True
            self._extra.extend(assembly.tasks())
            return 0
        del self._files[huge.fh]
        errors = 0
        if verdict == "store":
            try:
                self._directory_writer().store_ranged_file(assembly)
            except UnitFailed as exc:
                verdict = exc.problem
            else:
                merged.children.append((huge.pos, huge.name, huge.fh))
                merged.objects += 1
                merged.source_bytes += assembly.stat.st_size
                self._checksum_log().add_ranged(*assembly.checksum())
                self.progress.count(1, 0)
        if verdict == "vanished":
            merged.notes.append(("", Problem(huge.path, VANISHED).line()))
        elif isinstance(verdict, Problem):
            merged.problems.append(verdict)
            errors = 1
        if assembly.attempt > 1 or verdict != "store":
            merged.dirty = True  # segments of an attempt or of a file left out may remain: the sweep finds them
        self.state.forget_ranges(huge.fh)
        return errors + self._part_back(huge.unit)

    def _part_back(self, unit: int) -> int:
        """One part of a split directory is done; store the directory once all are. Returns new errors."""
        progress = self._splits[unit]
        progress.left -= 1
        if progress.left:
            return 0
        del self._splits[unit]
        merged = progress.result
        split, merged.split = merged.split, None
        assert split is not None
        try:
            writer = self._directory_writer()
            if merged.links:  # stored before RECONCILE, once its linked objects' handles are settled
                writer.check_directory_attrs(progress.task, EntryStat.unpack(split.stat))
                merged.deferred = DeferredDir(split.stat, split_listing(split, merged.children), split.subdir_count)
            else:
                writer.store_split_directory(progress.task, split, merged.children)
        except UnitFailed as exc:
            self.state.fail_unit(unit, exc.problem)
            log.error("%s", exc.problem.line())
            return 1
        merged.children = []
        self._complete_unit(progress.task, merged, counted=True)
        return 0

    def _directory_writer(self) -> Worker:
        """Stores split directories and the inodes of ranged files, through the driver's target."""
        from ..work.upload import DirectUploader

        assert self.target is not None
        params = self.params()
        return Worker(params, DirectUploader(self.target, params.compress))

    def _complete_unit(self, task, outcome, counted: bool = False) -> int:
        """Record a unit's outcome; returns its errors. ``counted``: its entries' objects
        and problems were counted as its batches came back."""
        state = self.state
        assert state is not None and self.progress is not None
        if isinstance(outcome, DirResult):
            state.complete_unit(outcome)
            self._checksum_log().add(outcome.checksums)
            for key, line in outcome.notes:
                if not key or key not in self._noted:
                    self._noted.add(key)
                    log.warning("%s", line)
            for problem in outcome.problems:
                log.error("%s", problem.line())
            if counted:
                self.progress.count(1, 0)
                return 0
            self.progress.count(outcome.objects + 1, outcome.source_bytes)
            return len(outcome.problems)
        state.fail_unit(task.unit, outcome)
        log.error("%s", outcome.line())
        return 1

    def _record_link(self, task, outcome: Union[Problem, LinkDone]) -> int:
        assert self.state is not None and self.progress is not None
        if isinstance(outcome, Problem):
            self.state.complete_link(task.key, outcome)
            log.error("%s", outcome.line())
            return 1
        self.state.complete_link(task.key, None)
        self._checksum_log().add(outcome.checksums)
        self.progress.count(1, 0)
        return 0

    def _mark_repeated(self, task) -> None:
        """A unit that may have run twice (its Dask worker was lost): sweep what it owns in FINALIZE."""
        assert self.state is not None
        if isinstance(task, DirWrite):
            return  # both attempts wrote the same blobs
        if isinstance(task, FileRange):
            self.state.add_sweep(task.parent_fh, SWEEP_DIR)  # its directory's sweep checks the file's segments
        else:
            self.state.add_sweep(task.fh, SWEEP_OBJECT if isinstance(task, LinkTask) else SWEEP_DIR)
        log.info("%s: its worker was lost while it ran; it ran again, and FINALIZE sweeps what the lost "
                 "attempt left", os.fsdecode(task.path))

    def _commit(self) -> None:
        """Commit the state, the checksum records of the units it makes done first."""
        assert self.state is not None
        if self._checksums is not None:
            self._checksums.flush()
        self.state.commit()

    def _checksum_log(self) -> ChecksumLog:
        if self._checksums is None:
            self._checksums = ChecksumLog(self.settings.state_dir)
        return self._checksums

    def _drain(self, fetch, record) -> Optional[int]:
        """Run every pending unit ``fetch`` gives; None when all ran within the error budget."""
        state = self.state
        assert state is not None and self.progress is not None
        s = self.settings
        pool = self._pool()
        in_flight = {}
        cursor = None
        errors = 0
        last_commit = time.monotonic()
        stopping = False
        try:
            while True:
                while not stopping and self._extra and len(in_flight) < pool.capacity:
                    task = self._extra.popleft()
                    in_flight[pool.submit(task)] = task
                if not stopping and len(in_flight) < pool.capacity:
                    if state.batch_size:
                        state.commit()  # new units must be visible to the query
                    batch = fetch(cursor, pool.capacity - len(in_flight))
                    for key, task in batch:
                        in_flight[pool.submit(task)] = task
                        cursor = key
                if not in_flight:
                    break
                done, _ = wait(in_flight, timeout=self.progress.seconds_to_next(), return_when=FIRST_COMPLETED)
                for future in done:
                    task = in_flight.pop(future)
                    outcome = future.result()
                    if pool.repeated(future):
                        self._mark_repeated(task)
                    errors += record(task, outcome)
                if errors and s.max_errors and errors >= s.max_errors and not stopping:
                    stopping = True
                    log.error("phase aborting work because the error limit is reached (%d >= %d)", errors, s.max_errors)
                now = time.monotonic()
                if state.batch_size >= COMMIT_EVERY or now - last_commit >= COMMIT_SECONDS:
                    self._commit()
                    last_commit = now
                self.progress.tick()
        except KeyboardInterrupt:
            state.commit()
            pool.shutdown(cancel=True)
            raise Interrupted("interrupted; the state is saved: run the same command without --new to resume") from None
        except BaseException:
            state.commit()
            pool.shutdown(cancel=True)
            raise
        state.commit()
        pool.shutdown()
        self.progress.tick(force=True)
        if stopping:
            raise LoadError("phase aborted, error count %d >= max %d; fix the causes and run again to resume" % (errors, s.max_errors))
        return None

    # --- FINALIZE --------------------------------------------------------------

    def _finalize(self) -> None:
        state, target, s = self.state, self.target, self.settings
        assert state is not None and target is not None and self.progress is not None
        self.progress.phase("finalize")
        problems = self._write_problems()
        uploads = [LOG_FILE]
        if problems:
            uploads.append(PROBLEMS_FILE)
            log.warning("%d entries could not be loaded; they are listed in %s", problems,
                        os.path.join(s.state_dir, PROBLEMS_FILE))
        else:
            target.delete(PROBLEMS_FILE)  # a stale copy from an earlier run
        if problems and not s.publish_with_errors:
            self.result.message = (
                "load failed: %d problems; the container is not published. Fix them and run the same command "
                "again (it retries them), or pass --publish_with_errors to publish without those entries" % problems
            )
            return
        self._repair(prune=bool(problems))
        crashpoints.reached("finalize")
        for handler in log.handlers:
            handler.flush()
        for name in uploads:
            with open(os.path.join(s.state_dir, name), "rb") as f:
                target.put(name, f.read())
        crashpoints.reached("finalize")
        sealed = seal(bucket_blob(state.get("bucket_uuid"), uploads), self.params().compress)  # type: ignore[arg-type]
        target.put(sealed.name, sealed.payload)
        crashpoints.reached("finalize")
        self._publish_root()
        state.set_phase("DONE")
        self.result.published = True
        self.result.exit_code = 1 if problems else 0

    def _repair(self, prune: bool) -> None:
        """Make the stored tree match the state before it is published.

        Each step is idempotent, and its state rows change only after its
        blobs did, so a run killed part way repeats it.
        """
        state, target = self.state, self.target
        assert state is not None and target is not None
        mint = self._id_mint()
        compress = self.params().compress
        restore = state.pruned_to_restore()
        for parent, entries in group_by_parent(restore):
            edit_directory(target, mint, parent, compress, add=entries)
        if restore:
            state.drop_pruned(restore)
            log.info("%d entries that loaded since an earlier run left them out are back in their directories", len(restore))
        gone = state.gone_entries()
        for parent, entries in group_by_parent(gone):
            edit_directory(target, mint, parent, compress, remove=[name for name, _ in entries])
        failed = state.failed_entries() if prune else []
        for parent, entries in group_by_parent(failed):
            edit_directory(target, mint, parent, compress, remove=[name for name, _ in entries])
        if failed:
            state.add_pruned(failed)
            log.warning("--publish_with_errors: %d failed entries are left out of their directories", len(failed))
        dirs, objects = state.sweep_list()
        dead = [fh for _, _, fh in failed + gone]
        if dirs or objects or dead:
            state.drop_ranges()  # the sweep deletes segments no inode names: no later run may count on them
            sweeper = Sweeper(target, mint, self.settings.state_dir, log=lambda blob: log.debug("sweep: deleted %s", blob))
            deleted = sweeper.run(dirs, objects, strays=dead)
            log.info("sweep: %d directories and %d objects checked, %d leftover blobs deleted", len(dirs), len(objects), deleted)
        _remove_temp_files(target)
        state.clear_sweep()
        if gone:
            state.clear_gone()

    def _publish_root(self) -> None:
        target = self.target
        assert target is not None
        final = final_root_name()
        tmp = TMP_PREFIX + final
        try:
            payload = target.get(tmp)
        except BlobNotFoundError:
            try:
                target.get(final)  # an earlier FINALIZE already published it
            except BlobNotFoundError:
                raise LoadError("the root directory was not stored (see the problems above); nothing to publish") from None
            return
        envelope.unwrap(payload)  # never publish a root that does not decode
        target.put(final, payload)
        crashpoints.reached("finalize")
        target.delete(tmp)


def run_load(settings: Settings, logger: logging.Logger = log, result_only: bool = False):
    """Run a load and report it on the log; returns the exit code (0 done, 1 failed).

    With ``result_only`` it returns the :class:`LoadResult` instead (the library API).
    """
    loader = Loader(settings)
    status = "Failed"
    stopped: Optional[str] = None  # why an exception stopped the run
    try:
        result = loader.run()
        if result.exit_code == 0:
            status = "Completed"
            logger.info("all phases complete")
            logger.info("CLFSLoad succeeded")
        else:
            logger.error("%s", result.message or "load failed")
    except Interrupted as exc:
        status = "Aborted"
        stopped = str(exc)
    except (ClfsLoadError, TerminalError) as exc:
        stopped = str(exc)
    except KeyboardInterrupt:
        status = "Aborted"
        stopped = "interrupted; run the same command without --new to resume"
    except (sqlite3.Error, OSError) as exc:
        logger.debug("local failure", exc_info=True)
        stopped = describe_local_failure(exc, settings.state_dir)
    except Exception as exc:  # never a traceback for the user; the stack goes to DEBUG
        logger.debug("internal error", exc_info=True)
        stopped = "internal error: %s: %s (rerun with --log_level debug for details)" % (type(exc).__name__, exc)
    result = loader.result
    if stopped is not None:
        logger.error("%s", stopped)
        result.message = stopped
        result.exit_code = 1
    if loader.progress is not None:
        loader.progress.final(result, status)
    elif settings.azcopy:
        azcopy_final(logger, result, status)  # stopped before it began: AzCopy still gets its summary
    loader.close_log()
    if settings.output == "json":
        print(json.dumps(summary(result, status), sort_keys=True), flush=True)
    return result if result_only else result.exit_code


def summary(result: LoadResult, status: str) -> Dict[str, object]:
    """The end of a run as plain values (``--output json``)."""
    return {
        "status": status,
        "exit_code": result.exit_code,
        "published": result.published,
        "phase": result.phase,
        "objects": result.objects,
        "source_bytes": result.source_bytes,
        "problems": result.problems,
        "problem_paths": [os.fsdecode(p.path) for p in result.problem_list[:1000]],
        "elapsed_seconds": round(result.elapsed, 3),
        "message": result.message,
        "backend": BACKEND,
    }


def describe_local_failure(exc: BaseException, state_dir: str) -> str:
    """One line for a failure of the local disk: the state database or a file beside it."""
    full = isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
    full = full or (isinstance(exc, sqlite3.Error) and "full" in str(exc))
    if full:
        return (
            "the state directory '%s' is full (%s): free space there and run the same command to resume"
            % (state_dir, exc.strerror if isinstance(exc, OSError) else exc)
        )
    if isinstance(exc, sqlite3.Error):
        return "the state database in '%s' failed: %s; run the same command to resume" % (state_dir, exc)
    where = getattr(exc, "filename", None)
    return "%s%s; fix it and run the same command to resume" % ("'%s': " % where if where else "", exc.strerror or exc)


def _remove_temp_files(target: BlobTarget) -> None:
    """Temp files of writers killed mid-blob (local-folder target; Azure has none)."""
    remove = getattr(target, "remove_temp_files", None)
    if remove is not None:
        removed = remove()
        if removed:
            log.info("removed %d partial blob files left by an interrupted run", removed)


def _env_count(name: str, default: int) -> int:
    """A count from the environment (``CLFSLOAD_BATCH_ENTRIES``, ``CLFSLOAD_RANGE_SEGMENTS``), else ``default``."""
    text = os.environ.get(name, "").strip()
    return int(text) if text.isdigit() else default


def _uuid4() -> str:
    import uuid

    return str(uuid.uuid4())


__all__ = ["Loader", "LoadError", "LoadResult", "Interrupted", "StateError", "check_paths", "run_load"]
