"""The library API for scripted migrations: :func:`load` a tree, then read it back.

::

    import clfsload

    result = clfsload.load("/var/lib/clfs/job1", "/data/project", "https://acct.blob.core.windows.net",
                           "project", credential=sas_token, new=True)
    if not result.ok:
        for problem in result.problem_list:
            print(problem.line())
    with clfsload.open_container("https://acct.blob.core.windows.net", "project", sas_token) as container:
        print(container.listdir(b""))

:func:`load` runs exactly what ``CLFSLoad.py`` runs, with the same state
directory, resume and publish rules, and returns a :class:`LoadResult`
instead of exiting. It logs to the ``clfsload`` logger and sets up no
handler: the application decides where log lines go.
"""

import os
from typing import Any, Optional

from .driver.engine import LoadResult, run_load
from .settings import COMPRESSIONS, Settings, Switches
from .targets.factory import CredentialLike, as_credential

__all__ = ["load", "LoadResult"]


def load(
    state_dir: str,
    source: str,
    account: str,
    container: str,
    credential: CredentialLike = None,
    *,
    new: bool = False,
    compression: Optional[str] = None,
    preserve_hardlinks: Optional[bool] = None,
    max_errors: int = 50,
    retry_errors: bool = True,
    publish_with_errors: bool = False,
    processes: Optional[int] = None,
    upload_threads: int = 0,
    source_concurrency: Optional[int] = None,
    source_timeout: float = 300.0,
    client: Optional[Any] = None,
) -> LoadResult:
    """Load ``source`` into ``container`` (or resume the load kept in ``state_dir``).

    The arguments are the command line's: ``account`` is an account name, a
    blob endpoint URL or ``file:/path`` for a local folder; ``credential`` a
    :class:`~clfsload.targets.credentials.Credential` or one string (a SAS,
    an account key, a connection string, ``"azure-ad"``; None for ``file:``).
    ``new`` starts a transfer (``--new``); without it the state in
    ``state_dir`` is resumed. ``compression`` ("LZ4" or "DISABLED") and
    ``preserve_hardlinks`` are fixed when a transfer starts; None keeps the
    default (or the stored value on a resume). ``processes`` defaults to the
    number of cores, 0 runs everything in this process.
    ``source_concurrency`` caps the source operations (lstat, open, read
    ...) in flight on this node, or per Dask worker (``--source_concurrency``;
    default 64), and ``source_timeout`` is the seconds after which an
    operation still outstanding is reported (``--source_timeout``). ``client``, a
    ``distributed.Client``, runs the directory units on its Dask cluster
    instead (``--dask`` on the command line); every worker must see
    ``source`` at the same path, and the client stays open.

    Returns the :class:`LoadResult`: ``ok``, ``exit_code`` (the command
    line's: 0 complete, 1 not), ``published``, ``objects``, ``source_bytes``,
    ``problems`` (a count), ``problem_list``, ``elapsed``, ``phase``,
    ``status`` and ``message`` (why it stopped, if it did). The run-time
    switches (``CLFSLOAD_*`` variables, see :class:`clfsload.settings.Switches`)
    are read from ``os.environ`` at this call. Raises ValueError for an
    argument that cannot be right; a load that fails is reported in the
    result, not raised.
    """
    if compression is not None and compression not in COMPRESSIONS:
        raise ValueError("compression must be one of %s, not %r" % (", ".join(COMPRESSIONS), compression))
    if source_concurrency is not None and source_concurrency < 1:
        raise ValueError("source_concurrency must be 1 or more, not %d" % source_concurrency)
    if max_errors < 0:
        raise ValueError("max_errors must be 0 (no limit) or more, not %d" % max_errors)
    settings = Settings(
        state_dir=str(state_dir),
        source=str(source),
        account=account,
        container=container,
        credential=as_credential(credential),
        new=new,
        compression=compression,
        preserve_hardlinks=preserve_hardlinks,
        max_errors=max_errors,
        retry_errors=retry_errors,
        publish_with_errors=publish_with_errors,
        processes=processes,
        upload_threads=upload_threads,
        source_concurrency=source_concurrency,
        source_timeout=source_timeout,
        live_progress=False,
        dask_client=client,
        switches=Switches.from_environ(os.environ),  # the edge: read at each call, never below
    )
    return run_load(settings)
