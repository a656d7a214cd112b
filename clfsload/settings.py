"""The options of one load, as typed values; built by the CLI or the library API.

Nothing below :mod:`clfsload.cli` and :mod:`clfsload.api` reads argparse
namespaces or the environment: they all take a :class:`Settings`. The
environment variables that tune a run (:class:`Switches`, a table of them in
:data:`SWITCHES` and in the README) are read there once, by
:meth:`Switches.from_environ`, and travel in ``Settings.switches`` to the
engine and in the worker config to every worker process and Dask worker.

Exceptions, each marked where it reads: :mod:`clfsload.crashpoints` (a test
hook armed in child processes), :mod:`clfsload._native._compat` (which twin
to import, decided at import time) and :mod:`clfsload.execute.dask_worker`
(a Dask worker's own environment, its edge: see :meth:`Switches.overlaid`).
"""

import os
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Collection, FrozenSet, Mapping, Optional

from .targets.credentials import Credential
from .targets.retry import TEST_RETRY_ENV, RetrySettings, default_retry_settings

if TYPE_CHECKING:  # imported where an Azure target's options are built: a local run never loads it
    from .targets.azure_common import AzureOptions

COMPRESSIONS = ("LZ4", "DISABLED")


def default_upload_threads() -> int:
    """The reference's worker_thread_count default: clamp(2 x cores, 8, 32)."""
    return min(32, max(8, 2 * (os.cpu_count() or 8)))


def history_path(environ: Mapping[str, str]) -> str:
    """Where the speed history of earlier loads lives (:mod:`clfsload.driver.history`).

    ``$CLFSLOAD_HISTORY``, else ``$XDG_STATE_HOME/clfsload/history.json``
    (``~/.local/state/clfsload/history.json``).
    """
    explicit = environ.get("CLFSLOAD_HISTORY")
    if explicit:
        return explicit
    base = environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return os.path.join(base, "clfsload", "history.json")


#: The run-time switches: (variable, :class:`Switches` field, effect). The README's table says the same.
SWITCHES = (
    ("CLFSLOAD_BATCH_ENTRIES", "batch_entries",
     "a directory of more than N non-directories is loaded in batches of N entries (default 10,000; 0: never)"),
    ("CLFSLOAD_RANGE_SEGMENTS", "range_segments",
     "ranges of a large file hold at most N data segments (default 128; 0: never split)"),
    ("CLFSLOAD_MAX_IN_FLIGHT", "max_in_flight",
     "requests each worker keeps in flight, instead of max(64, 4 x --worker_thread_count)"),
    ("CLFSLOAD_UNIT_THREADS", "unit_threads",
     "each worker process of this node runs up to N units at once, a thread each (default 8)"),
    ("CLFSLOAD_NO_UVLOOP", "no_uvloop", "uploads use asyncio's own event loop even when uvloop is installed"),
    ("CLFSLOAD_NO_PACING", "no_pacing", "the upload loop wakes for every answer (no turn pacing)"),
    (TEST_RETRY_ENV, "test_retry", "test hook: overrides of the retry settings, e.g. read_timeout=2,base_delay=0.05"),
    ("CLFSLOAD_DASK_WAIT", "dask_wait", "with --dask: seconds to wait for a first worker (default 120)"),
    ("CLFSLOAD_DASK_TIMEOUT", "dask_timeout", "with --dask: seconds to wait for the scheduler to answer (default 30)"),
    ("CLFSLOAD_HISTORY", "history", "the speed history file (default $XDG_STATE_HOME/clfsload/history.json)"),
)

#: the switches a Dask worker's own environment may set (see :meth:`Switches.overlaid`)
WORKER_SIDE = ("max_in_flight", "no_uvloop", "no_pacing", "test_retry")


def _count(environ: Mapping[str, str], name: str) -> Optional[int]:
    """A count of digits, else None (unset or not a count: the default applies)."""
    text = environ.get(name, "").strip()
    try:
        return int(text) if text.isdigit() else None
    except ValueError:  # digits int() does not take, such as superscripts
        return None


def _flag(environ: Mapping[str, str], name: str) -> bool:
    return environ.get(name, "") not in ("", "0")


def connection_cap() -> int:
    """The most connections one process's target may open: half its file-descriptor limit, at least 64.

    The other half is left to the source reads, the state and the sockets of
    the pool; past it a load would fail with EMFILE part way.
    """
    try:
        import resource  # POSIX only
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    except (ImportError, OSError, ValueError):
        return 64
    if soft == resource.RLIM_INFINITY:
        return 4096
    return max(64, soft // 2)


@dataclass(frozen=True)
class Switches:
    """Tuning, benchmark and test switches from the environment, read once at the edge.

    Built by :meth:`from_environ` in :mod:`clfsload.cli` and :func:`clfsload.load`;
    ``Switches()`` is "no variable set". None means the built-in default.
    Values whose parsing can fail (``test_retry``, ``dask_wait``,
    ``dask_timeout``) are kept as the text given and parsed where they are
    used, so a malformed one fails only the runs that use it, with the same
    message as before.
    """

    #: CLFSLOAD_BATCH_ENTRIES: non-directories per batch of a huge directory (0: never split)
    batch_entries: Optional[int] = None
    #: CLFSLOAD_RANGE_SEGMENTS: data segments per range of a huge file (0: never split)
    range_segments: Optional[int] = None
    #: CLFSLOAD_MAX_IN_FLIGHT: requests in flight per worker (positive)
    max_in_flight: Optional[int] = None
    #: CLFSLOAD_UNIT_THREADS: units each local worker process runs at once (positive)
    unit_threads: Optional[int] = None
    #: CLFSLOAD_NO_UVLOOP
    no_uvloop: bool = False
    #: CLFSLOAD_NO_PACING
    no_pacing: bool = False
    #: CLFSLOAD_TEST_RETRY, as given (:func:`clfsload.targets.retry.default_retry_settings`)
    test_retry: str = ""
    #: CLFSLOAD_DASK_WAIT, as given (seconds)
    dask_wait: str = "120"
    #: CLFSLOAD_DASK_TIMEOUT, as given (seconds)
    dask_timeout: str = "30"
    #: the history file (CLFSLOAD_HISTORY, XDG_STATE_HOME)
    history: str = field(default_factory=lambda: history_path({}))
    #: the variables of :data:`SWITCHES` that were set
    given: FrozenSet[str] = frozenset()

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> "Switches":
        """The switches ``environ`` sets (the edge passes ``os.environ``)."""
        in_flight = _count(environ, "CLFSLOAD_MAX_IN_FLIGHT")
        unit_threads = _count(environ, "CLFSLOAD_UNIT_THREADS")
        return cls(
            batch_entries=_count(environ, "CLFSLOAD_BATCH_ENTRIES"),
            range_segments=_count(environ, "CLFSLOAD_RANGE_SEGMENTS"),
            max_in_flight=in_flight if in_flight else None,
            unit_threads=unit_threads if unit_threads else None,
            no_uvloop=_flag(environ, "CLFSLOAD_NO_UVLOOP"),
            no_pacing=_flag(environ, "CLFSLOAD_NO_PACING"),
            test_retry=environ.get(TEST_RETRY_ENV, ""),
            dask_wait=environ.get("CLFSLOAD_DASK_WAIT", "120"),
            dask_timeout=environ.get("CLFSLOAD_DASK_TIMEOUT", "30"),
            history=history_path(environ),
            given=frozenset(name for name, _, _ in SWITCHES if name in environ),
        )

    @property
    def retry(self) -> RetrySettings:
        """The retry settings of every Azure target; ValueError naming the field if ``test_retry`` is malformed."""
        return default_retry_settings({TEST_RETRY_ENV: self.test_retry})

    @property
    def dask_wait_s(self) -> float:
        """Seconds to wait for the first worker of a Dask cluster that has none; ValueError if malformed."""
        return float(self.dask_wait)

    @property
    def dask_timeout_s(self) -> float:
        """Seconds to wait for the Dask scheduler to answer; ValueError if malformed."""
        return float(self.dask_timeout)

    def target_options(self, local: bool, in_flight: Optional[int] = None) -> "Optional[AzureOptions]":
        """The options to open a target with: an Azure one gets :attr:`retry`; a local folder (``local``) none.

        ``in_flight``: the requests its user keeps in flight (a worker's
        uploader); the target's connections follow it, so a deeper queue is
        not held back by the default pool of 64 connections, up to
        :func:`connection_cap` (each connection is a file descriptor).

        Built for Azure only, so a malformed ``CLFSLOAD_TEST_RETRY`` fails
        only what it applies to, as before.
        """
        if local:
            return None
        from .targets.azure_common import AzureOptions

        if in_flight is None:
            return AzureOptions(retry=self.retry)
        return AzureOptions(retry=self.retry, max_connections=max(1, min(in_flight, connection_cap())))

    def overlaid(self, local: "Switches", names: Collection[str] = WORKER_SIDE) -> "Switches":
        """These switches, with the fields in ``names`` that ``local`` was given put over them.

        A Dask worker runs in a process of its own, started with an
        environment of its own. It used to read the worker-side switches
        there; now the driver's travel with the run, and a variable set in
        the worker's own environment still wins over the driver's value.
        """
        mine = {f: name for name, f, _ in SWITCHES if name in local.given and f in names}
        if not mine:
            return self
        return replace(self, given=self.given | {name for f, name in mine.items()},
                       **{f: getattr(local, f) for f in mine})


@dataclass
class Settings:
    """Everything a load needs. ``None`` means "not given" where a resume keeps the stored value."""

    state_dir: str
    source: str
    account: str
    container: str
    credential: Credential
    new: bool = False
    #: "LZ4" or "DISABLED"; None: LZ4 for --new, the stored value on a resume
    compression: Optional[str] = None
    #: None: off for --new, the stored value on a resume
    preserve_hardlinks: Optional[bool] = None
    max_errors: int = 50
    retry_errors: bool = True
    publish_with_errors: bool = False
    log_level: str = "INFO"
    #: concurrent uploads per worker process (the reference's worker_thread_count)
    upload_threads: int = 0
    #: worker processes; 0 runs every unit in the driver process
    processes: Optional[int] = None
    #: source operations in flight per node (per Dask worker), one budget the worker
    #: processes share (:class:`clfsload.work.source_reads.NodeSlots`); None: 64, or one
    #: per worker process if more. A cap below the
    #: worker processes lowers them to it, so the cap holds.
    source_concurrency: Optional[int] = None
    #: seconds a source operation may be outstanding before a WARNING names it
    source_timeout: float = 300.0
    dry_run: bool = False
    dry_run_gb: Optional[float] = None
    dry_run_count: Optional[int] = None
    azcopy: bool = False
    progress_interval: Optional[float] = None
    #: the live bars: None shows them when stdout is a terminal (the CLI), False never (the library)
    live_progress: Optional[bool] = None
    #: "text", or "json": the end-of-run summary as one JSON object on stdout (the log on stderr)
    output: str = "text"
    #: run TRANSFER and RECONCILE on the Dask cluster whose scheduler is at this address
    dask: Optional[str] = None
    #: or on this ``distributed.Client`` (the library API); the caller keeps it open
    dask_client: Optional[Any] = None
    #: the run-time switches from the environment, read by the edge (:class:`Switches`)
    switches: Switches = field(default_factory=Switches)

    @property
    def uses_dask(self) -> bool:
        """True when the units run on a Dask cluster."""
        return bool(self.dask) or self.dask_client is not None

    def __post_init__(self) -> None:
        if self.upload_threads <= 0:
            self.upload_threads = default_upload_threads()
        if self.processes is None:
            self.processes = os.cpu_count() or 1
        if self.source_concurrency is None:
            self.source_concurrency = max(64, self.processes)
        elif not self.uses_dask and self.processes > self.source_concurrency:
            self.processes = self.source_concurrency  # each process keeps one operation in flight at least
        if self.progress_interval is None:
            self.progress_interval = 2.0 if self.azcopy else 30.0
