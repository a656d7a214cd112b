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

The same holds after a power loss: nothing is recorded as stored before it
is durable where it lives (workers sync a unit's blobs before they report it,
the state syncs the driver's own writes before each commit, and every commit
is durable), and the root is published, then the phase DONE committed,
before the load reports success (:mod:`.finalize`).
"""

import itertools
import logging
import os
import sqlite3
import time
from typing import TYPE_CHECKING, Optional

from .. import crashpoints
from . import handles, history
from ..clfs.constants import ROOT_ID
from ..clfs.objects import bucket_blob, seal
from ..errors import ClfsLoadError, TerminalError
from ..logsetup import attach_file, detach
from ..settings import Settings
from ..targets import open_target
from ..targets.base import BlobTarget
from ..targets.endpoint import LocalFolder, parse_account
from ..work.checksum_log import FILE_NAME as CHECKSUM_FILE
from ..work.ids import IdMint
from ..work.scan import EntryStat
from ..work.source_reads import DEFAULT_BUDGET, DEFAULT_CONCURRENCY, per_process
from ..work.units import BATCH_ENTRIES, RANGE_SEGMENTS, RunParams
from .assembly import Assembly
from .failures import describe_local_failure, release_all
from .finalize import LOG_FILE, PROBLEMS_FILE, Finalizer, remove_temp_files, write_problems
from .opening import RunIdentity, check_paths, check_resume, new_identity, read_identity
from .progress import Progress, azcopy_final
from .pools import UnitPools
from .recording import Recorder, drain
from .result import PROBLEM_LIST_MAX, Interrupted, LoadError, LoadResult
from .state import StateError, StateStore

if TYPE_CHECKING:
    from ..work.directories import DirectoryWriter

log = logging.getLogger("clfsload")


class Loader:
    """One invocation of the loader over one state directory: the phase sequence.

    Opening the run is :mod:`.opening`, recording outcomes :mod:`.recording`,
    split directories and huge files :mod:`.assembly`, FINALIZE :mod:`.finalize`.
    """

    def __init__(self, settings: Settings):
        self.settings = settings
        self.state: Optional[StateStore] = None
        self.target: Optional[BlobTarget] = None
        self.result = LoadResult()
        self.progress: Optional[Progress] = None
        self._started = time.monotonic()
        self._log_file: Optional[logging.Handler] = None
        self._identity: Optional[RunIdentity] = None
        self._recorder: Optional[Recorder] = None
        self._assembly: Optional[Assembly] = None
        self._pools = UnitPools(settings)  # where TRANSFER's and RECONCILE's units run

    # --- top level -----------------------------------------------------------

    def run(self) -> LoadResult:
        """Run every phase still to do; returns the result.

        Raises the ClfsLoadError that stopped the run. The log file in the
        state dir stays attached until :meth:`close_log`, so the line the run
        ends with reaches it too.
        """
        stopped = True  # until _run returns: an error is on its way out, which _close must not replace
        try:
            self._run()
            stopped = False
        finally:
            self.result.elapsed = time.monotonic() - self._started
            if self.state is not None:
                self.result.phase = self.state.phase
                try:
                    self._fill_result()
                except sqlite3.Error:
                    pass  # the state database failed: the error that stopped the run says so
                try:
                    write_problems(self.state, self.settings.state_dir)
                except OSError as exc:
                    log.warning("cannot write %s: %s", PROBLEMS_FILE, exc.strerror)
            try:
                self._close()
            except Exception as exc:  # noqa: BLE001 - see below
                if not stopped:
                    raise
                log.warning("while closing the run after it stopped: %s", exc)  # the error that stopped it wins
        return self.result

    def _close(self) -> None:
        """Release what the run holds: the checksum log, the Dask run, the target, the state.

        Every step runs even if one before it fails (the state's lock must be
        released for a library caller's next load); the first failure is
        raised after them, the others are logged.
        """
        steps = [self._close_recorder, self._pools.close]
        if self.target is not None:
            steps.append(self.target.close)  # a file: target syncs what it wrote: can raise TerminalError
        if self.state is not None:
            steps.append(self.state.close)
        release_all(steps)

    def _close_recorder(self) -> None:
        if self._recorder is not None:
            try:
                self._recorder.close()
            except OSError as exc:
                log.warning("cannot write %s: %s", CHECKSUM_FILE, exc.strerror)

    def close_log(self) -> None:
        """Stop writing this run's log to the state dir."""
        detach(self._log_file)
        self._log_file = None

    def _run(self) -> None:
        s = self.settings
        state = self._open()
        self.progress = Progress(state, s, log)
        self.progress.config(new=s.new)
        if s.dry_run or s.dry_run_gb is not None or s.dry_run_count is not None:
            from .dryrun import dry_run

            dry_run(state, s, log, self._target().kind)
        initialised = state.phase == "INIT"
        if initialised:
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
        # Nothing can have failed in a transfer this run has just begun: no retry pass (and its commit).
        if s.retry_errors and not initialised and state.phase != "INIT":
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

    def _open(self) -> StateStore:
        """The checks, the Dask client, the state store and the target; returns the state."""
        s = self.settings
        crashpoints.check_process_group()
        check_paths(s.state_dir, s.source)
        self._pools.connect()  # before any state is written: the Dask cluster, or the forkserver
        if not s.new:
            # The state dir first: a missing or busy one says so before any network call.
            self.state = StateStore.open(s.state_dir)
            self._log_file = attach_file(s.state_dir, LOG_FILE)
        # A local folder target is created on --new; an Azure container never is (it must exist).
        local = isinstance(parse_account(s.account), LocalFolder) if s.account.strip() else False
        target = self.target = open_target(s.account, s.container, s.credential, create=s.new and local,
                                           options=s.switches.target_options(local))
        target.check_access()
        if s.new:
            if not target.is_empty():
                raise LoadError(
                    "container '%s' is not empty; --new needs an empty container (%s)" % (s.container, target.describe())
                )
            # Created only once every check passed, so a failed start leaves nothing to clean up.
            self.state = StateStore.create(s.state_dir, new_identity(s, target))
            self.state.before_commit = self._make_durable  # nothing recorded before it is durable
            self._log_file = attach_file(s.state_dir, LOG_FILE)
            return self.state
        assert self.state is not None
        self.state.before_commit = self._make_durable
        check_resume(s, self.state, target)
        if self.state.phase != "INIT":
            self.state.mark_resumed()
            remove_temp_files(target)
        return self.state

    def _make_durable(self) -> None:
        """Before each state commit: the driver's own target writes, and the checksum records, durable."""
        self._target().sync()
        if self._recorder is not None:
            self._recorder.flush_checksums()

    def _fill_result(self) -> None:
        assert self.state is not None
        self.result.objects = self.state.counter("objects")
        self.result.source_bytes = self.state.counter("source_bytes")
        self.result.problems = self.state.count_problems()
        self.result.problem_list = list(itertools.islice(self.state.problems(), PROBLEM_LIST_MAX))

    # --- what the phases share ----------------------------------------------------

    def _state(self) -> StateStore:
        assert self.state is not None, "the state is open once the run is"
        return self.state

    def _target(self) -> BlobTarget:
        assert self.target is not None, "the target is open once the run is"
        return self.target

    @property
    def identity(self) -> RunIdentity:
        """The transfer's ids and fixed options, read from the state once."""
        if self._identity is None:
            self._identity = read_identity(self._state())
        return self._identity

    def params(self) -> RunParams:
        """The run's shared parameters, from the state store."""
        ident = self.identity
        return RunParams(
            containerid=ident.containerid,
            fsid=ident.fsid,
            secret=ident.secret,
            compress=ident.compress,
            preserve_hardlinks=ident.preserve_hardlinks,
            batch_entries=_or_default(self.settings.switches.batch_entries, BATCH_ENTRIES),
            range_segments=_or_default(self.settings.switches.range_segments, RANGE_SEGMENTS),
            **self._source_limits(),
        )

    def _source_limits(self) -> dict:
        """One worker process's share of the node's source concurrency and read-ahead budget (a Dask worker's: all)."""
        s = self.settings
        share = 1 if s.uses_dask else max(1, s.processes or 0)
        return {"source_concurrency": per_process(s.source_concurrency or DEFAULT_CONCURRENCY, share),
                "source_budget": per_process(DEFAULT_BUDGET, share), "source_timeout": s.source_timeout}

    def _id_mint(self) -> IdMint:
        return IdMint(self.identity.containerid, self.identity.secret)

    def _records(self) -> Assembly:
        """Where units' outcomes are recorded (made once, with the phase that first runs units)."""
        if self._assembly is None:
            assert self.progress is not None
            self._recorder = self._recorder or Recorder(self.settings, self._state(), self.progress)
            self._assembly = Assembly(self._recorder, self.params(), self._id_mint(), self._directory_writer)
        return self._assembly

    def _directory_writer(self) -> "DirectoryWriter":
        """Stores split directories and the inodes of ranged files, through the driver's target.

        Made only for a run with such a directory or file (most have none), and imported then: the
        writer's modules are the worker side's (:mod:`clfsload.work.directories`, :mod:`~clfsload.work.ranges`).
        """
        from ..work.directories import DirectoryWriter
        from ..work.upload import DirectUploader

        params = self.params()
        return DirectoryWriter(params, DirectUploader(self._target(), params.compress))

    # --- INIT ------------------------------------------------------------------

    def _init(self) -> None:
        state, target = self._state(), self._target()
        assert self.progress is not None
        self.progress.phase("init")
        names = [n for n in target.list_names() if n != bucket_blob("").name]
        if names:
            raise LoadError("container '%s' is not empty (%s ...); --new needs an empty container" % (self.settings.container, names[0]))
        sealed = seal(bucket_blob(self.identity.bucket_uuid), self.identity.compress)
        target.put(sealed.name, sealed.payload)
        crashpoints.reached("init")
        root_name = os.fsencode(os.path.basename(self.settings.source))
        root_path = os.fsencode(os.path.realpath(self.settings.source))
        root_stat = EntryStat.of(os.lstat(root_path))
        state.set("source_id", "%d:%d" % (root_stat.st_dev, root_stat.st_ino))
        state.add_unit(root_path, ROOT_ID, ROOT_ID, root_name, root_stat.pack())
        state.set_phase("TRANSFER")

    # --- TRANSFER and RECONCILE ----------------------------------------------------

    def _drain(self, fetch) -> None:
        """Run the pending units ``fetch`` gives in a pool of this phase (:func:`.recording.drain`)."""
        records = self._records()
        assert self._recorder is not None
        pool = self._pools.pool(self.params(), self.identity.bucket_uuid)
        drain(pool, records, self._recorder, fetch, records.extra)

    def _transfer(self) -> None:
        state = self._state()
        assert self.progress is not None
        self.progress.phase("transfer")
        self._drain(lambda cursor, n: [(t.unit, t) for t in state.pending_units(cursor or 0, n, committed_only=True)])
        if state.count_units() != 0:
            raise LoadError("internal error: transfer ended with %d directories pending; run again to resume" % state.count_units())
        progress = self.progress
        history.record(self._target().kind, progress.objects, progress.source_bytes, progress.phase_seconds(),
                       self.settings.switches.history)
        state.set_phase("RECONCILE")

    def _reconcile(self) -> None:
        state = self._state()
        assert self.progress is not None
        self._settle_link_handles()
        self._store_deferred_dirs()
        if state.count_links():
            self.progress.phase("reconcile")
            self._drain(lambda cursor, n: [(t.key, t) for t in state.pending_links(n, cursor or b"")])
        state.set_phase("FINALIZE")

    def _settle_link_handles(self) -> None:
        """Give every hard-linked object its handle: the dmid of the directory its first backpointer names (FMT §2.2)."""
        dropped = handles.settle_link_handles(self._state(), self._id_mint())
        if dropped:
            log.debug("%d hard-linked objects no path names any more are forgotten", dropped)

    def _store_deferred_dirs(self) -> None:
        """Store the directories whose listings name handles settled after their unit ran.

        They run as units in the pool (or on the Dask cluster), each writing
        the blobs its unit would have written; a run stopped part way stores
        the rest (the rows go as they are stored).
        """
        state = self._state()
        total = state.count_deferred_dirs()
        if not total:
            return
        log.info("storing %d directories that list hard-linked objects or subdirectories named by the driver", total)
        self._drain(lambda cursor, n: [(w.task.fh, w) for w in handles.dir_writes(state, n, cursor or b"")])

    # --- FINALIZE --------------------------------------------------------------

    def _finalize(self) -> None:
        assert self.progress is not None
        self.progress.phase("finalize")
        Finalizer(self.settings, self._state(), self._target(), self.identity).run(self.result)


def run_load(settings: Settings, logger: logging.Logger = log) -> LoadResult:
    """Run a load and report its end on the log (and AzCopy's summary); returns its :class:`LoadResult`.

    Never raises for a failed run: ``result.status`` (``Completed``, ``Failed``,
    ``Aborted``), ``result.exit_code`` and ``result.message`` say how it ended.
    The command line renders the result (:mod:`clfsload.cli.report`).
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
    result.status = status
    if stopped is not None:
        logger.error("%s", stopped)
        result.message = stopped
        result.exit_code = 1
    if loader.progress is not None:
        loader.progress.final(result, status)
    elif settings.azcopy:
        azcopy_final(logger, result, status)  # stopped before it began: AzCopy still gets its summary
    loader.close_log()
    return result


def _or_default(count: Optional[int], default: int) -> int:
    """A count the switches set (``CLFSLOAD_BATCH_ENTRIES``, ``CLFSLOAD_RANGE_SEGMENTS``), else ``default``."""
    return default if count is None else count


__all__ = ["Loader", "LoadError", "LoadResult", "Interrupted", "StateError", "check_paths", "run_load"]
