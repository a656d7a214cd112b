"""Where one run's units run: this node's worker processes, or the workers of a Dask cluster (:class:`UnitPools`)."""

from dataclasses import replace
from typing import Optional

from ..execute.base import Pool
from ..execute.pool import UnitPool, WorkerConfig, source_is_slow, start_forkserver
from ..settings import Settings
from ..work.units import RunParams


class UnitPools:
    """The pool of each phase that runs units (TRANSFER, RECONCILE), for one run.

    With a Dask client (``--dask ADDRESS``, or ``load(..., client=...)``) the
    first such phase joins the cluster's workers to the run and the later
    ones reuse it; without, each phase gets a :class:`UnitPool` of this
    node's worker processes. SOURCE is judged slow or not once per run (a
    few timed ``lstat`` calls, :func:`clfsload.execute.pool.source_is_slow`),
    whatever the number of phases.
    """

    def __init__(self, settings: Settings):
        self.settings = settings
        self._client = None  # distributed.Client, until the Dask run owns it
        self._dask = None  # clfsload.execute.dask_driver.DaskRun, once a phase with units starts
        self._source_slow: Optional[bool] = None

    def connect(self) -> None:
        """Connect to the Dask cluster (with one), or start the forkserver the workers fork from.

        Called before any state is written: a wrong Dask address stops the
        run with nothing to clean up; the forkserver's imports overlap the
        checks that follow.
        """
        s = self.settings
        if s.uses_dask:
            from ..execute.dask_driver import connect

            self._client = s.dask_client
            if self._client is None:
                assert s.dask is not None  # uses_dask
                self._client = connect(s.dask, s.switches.dask_timeout_s)
        elif s.processes:
            start_forkserver()

    def pool(self, params: RunParams, bucket_uuid: str) -> Pool:
        """A pool for the next phase's units, with the run's ``params`` (``bucket_uuid`` names the transfer on Dask)."""
        s = self.settings
        config = WorkerConfig(s.account, s.container, s.credential, params, s.upload_threads, s.switches)
        if self._dask is None and self._client is not None:
            self._dask = self._start_dask(config, bucket_uuid)
        if self._dask is not None:
            return self._dask.pool()
        if self._source_slow is None:
            self._source_slow = bool(s.processes) and source_is_slow(s.source)
        if self._source_slow:  # several units at once, big files read ahead from the first read
            config = replace(config, params=replace(params, source_slow=True))
        return UnitPool(config, s.processes or 0, s.source_concurrency or 0)  # the node's cap, shared

    def _start_dask(self, config: WorkerConfig, bucket_uuid: str):
        """Join the Dask cluster's workers to this run (each checks it sees SOURCE)."""
        import hashlib

        from ..execute.dask_driver import DaskRun

        transfer = hashlib.blake2b(bucket_uuid.encode(), digest_size=8).hexdigest()
        run = DaskRun(self._client, owned=self.settings.dask_client is None, transfer=transfer)
        try:
            run.start(config, self.settings.source)
        except BaseException:
            run.close()
            raise
        self._client = None  # the run owns it now (and closes it if we opened it)
        return run

    def close(self) -> None:
        """End the Dask run, or close the client this run opened (a caller's own stays open)."""
        if self._dask is not None:
            self._dask.close()
        elif self._client is not None and self.settings.dask_client is None:
            self._client.close()
