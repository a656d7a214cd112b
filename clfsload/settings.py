"""The options of one load, as typed values; built by the CLI or the library API.

Nothing below :mod:`clfsload.cli` reads argparse namespaces or the
environment: they all take a :class:`Settings`.
"""

import os
from dataclasses import dataclass
from typing import Any, Optional

from .targets.credentials import Credential

COMPRESSIONS = ("LZ4", "DISABLED")


def default_upload_threads() -> int:
    """The reference's worker_thread_count default: clamp(2 x cores, 8, 32)."""
    return min(32, max(8, 2 * (os.cpu_count() or 8)))


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
    #: source operations in flight per node (per Dask worker), spread over the worker
    #: processes; None: 64, or one per worker process if more. A cap below the
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
