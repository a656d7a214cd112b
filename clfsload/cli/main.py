"""The command line: ``CLFSLoad.py [--new] STATE_DIR SOURCE ACCOUNT CONTAINER SAS``.

The argv of CLFSLoad 1.0.24 is accepted verbatim (AzCopy builds it), options
spelt with underscores as the original; each also has a kebab-case alias.

Exit codes: 0 the container is complete (or already was); 1 the load
failed or was interrupted (the state dir is kept: rerun without ``--new`` to
resume); 2 the command line is wrong.
"""

import argparse
import logging
import os
import sys
from typing import Callable, List, Optional, Union

from .. import __version__
from ..errors import ClfsLoadError
from ..logsetup import console
from ..proctitle import hide_secrets, looks_secret
from ..settings import COMPRESSIONS, Settings, Switches, default_upload_threads
from .common import ENV_ACCOUNT_KEY, ENV_CONNECTION_STRING, ENV_SAS, EXIT_FAILED, EXIT_OK, EXIT_USAGE
from .common import ScrubbingParser, credential_from

__all__ = [
    "EXIT_OK", "EXIT_FAILED", "EXIT_USAGE", "ENV_SAS", "ENV_ACCOUNT_KEY", "ENV_CONNECTION_STRING", "SUBCOMMANDS",
    "build_parser", "check_positionals", "credential_from", "settings_from", "version_text", "main",
]


def _bool_int(text: str) -> bool:
    try:
        return bool(int(text))
    except ValueError:
        raise argparse.ArgumentTypeError("expected 0 or 1, got %r" % text) from None


def _whole_number(least: int, meaning: str = "") -> Callable[[str], int]:
    """An argparse type: a whole number of at least ``least`` (``meaning`` says what the least one means)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError("expected a whole number, got %r" % text) from None
        if value < least:
            raise argparse.ArgumentTypeError("must be %d%s or more, got %d" % (least, meaning, value))
        return value

    return parse


_error_budget = _whole_number(0, " (no limit)")
_source_concurrency = _whole_number(1)


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError("expected a number of seconds, got %r" % text) from None
    if not value > 0:
        raise argparse.ArgumentTypeError("must be more than 0, got %s" % text)
    return value


def check_positionals(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Refuse a credential given in place of another argument (exit 2), before it can reach a path or the log.

    A SAS or key swapped into CONTAINER would otherwise name a folder of a
    ``file:`` target, or be quoted by the message that refuses the name. Paths
    are checked for SAS and connection-string fields only: a relative path
    may look like base64.
    """
    for value, metavar, bare_keys in (
        (args.local_state_path, "STATE_DIR", False),
        (args.source_root, "SOURCE", False),
        (args.target_storage_account, "ACCOUNT", True),
        (args.target_container, "CONTAINER", True),
    ):
        if looks_secret(value, bare_keys):
            parser.error(
                "%s looks like a credential (a SAS token or an account key); the arguments are "
                "STATE_DIR SOURCE ACCOUNT CONTAINER SAS, in that order" % metavar
            )


def _log_level(text: str) -> Union[str, int]:
    """A ``--log_level`` value: any level name Python's logging knows, in any case, or a number.

    The names are the original's: DEBUG, INFO, WARNING, WARN, ERROR,
    CRITICAL, FATAL, NOTSET (and any level a library registered).
    """
    try:
        number = int(text.strip())
    except ValueError:
        known = dict(logging._nameToLevel)  # what logging.getLevelNamesMapping() returns on 3.11+
        for name in (text.strip(), text.strip().upper()):
            if name in known:
                return logging.getLevelName(known[name])  # the canonical name: WARN -> WARNING
        raise argparse.ArgumentTypeError(
            "invalid log_level %r: give one of %s, or a number" % (text, ", ".join(sorted(known, key=known.get)))
        ) from None
    name = logging.getLevelName(number)
    return number if name.startswith("Level ") else name


def version_text() -> str:
    """The ``--version`` line, in the original's shape ``CLFSLoad X (Python ...)``, with the backend added."""
    import lz4

    from .._native import BACKEND

    return "CLFSLoad %s (Python %s; %s backend, lz4 %s)" % (
        __version__,
        sys.version.split("\n")[0].strip(),
        BACKEND,
        lz4.library_version_string(),
    )


class _VersionAction(argparse.Action):
    """``--version``: the line exactly as :func:`version_text` makes it (argparse's own action re-wraps it)."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, help=None):
        super().__init__(option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        sys.stdout.write(version_text() + "\n")
        parser.exit(0)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (original spellings, with kebab-case aliases)."""
    p = ScrubbingParser(
        prog="CLFSLoad.py",
        description="Load a local directory tree into an Azure Blob container (or a local folder) in CLFS format.",
        epilog="ACCOUNT: a storage account name, a blob endpoint URL (https://host/..., http://127.0.0.1:10000/"
        "devstoreaccount1 for Azurite), or file:/path for a local folder (then SAS is '-'). "
        "Exit codes: 0 done, 1 failed or interrupted (rerun without --new to resume), 2 usage.",
    )
    p.add_argument("local_state_path", metavar="STATE_DIR", help="local state directory (created by --new)")
    p.add_argument("source_root", metavar="SOURCE", help="directory tree to load")
    p.add_argument("target_storage_account", metavar="ACCOUNT", help="account name, blob endpoint URL, or file: URL")
    p.add_argument("target_container", metavar="CONTAINER", help="container (an existing, empty one for --new)")
    p.add_argument(
        "sas_token",
        metavar="SAS",
        help="SAS token for the container, or '-' to take the credential from --sas_token_file, "
        "$%s, $%s, $%s or --azure_ad" % (ENV_SAS, ENV_ACCOUNT_KEY, ENV_CONNECTION_STRING),
    )
    p.add_argument("--version", action=_VersionAction, help="print the version line and exit")
    p.add_argument("--new", action="store_true", help="start a new transfer (STATE_DIR must not exist)")
    p.add_argument("--dry_run", "--dry-run", action="store_true", help="count objects and bytes first, for progress and ETA")
    p.add_argument("--dry_run_gb", "--dry-run-gb", type=float, default=None, help="set the dry-run GiB without scanning")
    p.add_argument("--dry_run_count", "--dry-run-count", type=int, default=None, help="set the dry-run object count")
    p.add_argument("--compression", choices=COMPRESSIONS, default=None, help="default=LZ4 (fixed at --new)")
    p.add_argument("--max_errors", "--max-errors", type=_error_budget, default=50, help="errors per phase before it stops; 0 = unlimited")
    p.add_argument("--preserve_hardlinks", "--preserve-hardlinks", type=_bool_int, default=None,
                   help="0 (default): each path is a copy; 1: hard links share one inode (fixed at --new)")
    p.add_argument("--retry_errors", "--retry-errors", type=_bool_int, default=True,
                   help="1 (default): a resume retries the entries that failed")
    p.add_argument("--publish_with_errors", "--publish-with-errors", action="store_true",
                   help="publish the container even if entries failed (they are left out of their directories)")
    p.add_argument("--log_level", "--log-level", type=_log_level, default="INFO", help="debug, info, warning, error")
    p.add_argument("--sas_token_file", "--sas-token-file", default=None,
                   help="read the SAS token from this file (keeps it out of argv and shell history)")
    p.add_argument("--azure_ad", "--azure-ad", action="store_true", help="authenticate with Azure AD (azure-identity)")
    p.add_argument("--azcopy", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--output", choices=("text", "json"), default="text",
                   help="json: print the end-of-run summary as one JSON object on stdout (the log goes to stderr)")
    p.add_argument("--dask", metavar="SCHEDULER_ADDRESS", default=None,
                   help="run the load on the Dask cluster whose scheduler is at this address (e.g. tcp://host:8786); "
                   "every worker must see SOURCE at the same path (pip install \"clfsload[dask]\")")
    p.add_argument("--source_concurrency", "--source-concurrency", type=_source_concurrency, default=None,
                   metavar="N", help="source operations (lstat, open, read ...) in flight per node, one budget its "
                   "worker processes share, or per Dask worker (default 64): raise it for a fast parallel file "
                   "system, lower it to spare a filer")
    p.add_argument("--source_timeout", "--source-timeout", type=_positive_seconds, default=300.0, metavar="SECONDS",
                   help="warn about a source operation outstanding this long (default 300), again at a slowing rate")
    p.add_argument("--worker_thread_count", "--worker-thread-count", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--processes", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--progress_interval", type=float, default=None, help=argparse.SUPPRESS)
    return p


def settings_from(args: argparse.Namespace, log: logging.Logger, environ=os.environ) -> Settings:
    """Typed settings from parsed arguments and ``environ`` (the credential variables and the :class:`Switches`)."""
    threads = args.worker_thread_count
    if threads is not None and not 1 <= threads <= 200:
        clamped = min(200, max(1, threads))
        log.warning("adjusted worker_thread_count from %d to %d", threads, clamped)
        threads = clamped
    return Settings(
        state_dir=args.local_state_path,
        source=args.source_root,
        account=args.target_storage_account,
        container=args.target_container,
        credential=credential_from(args, environ, log),
        switches=Switches.from_environ(environ),
        new=args.new,
        compression=args.compression,
        preserve_hardlinks=args.preserve_hardlinks,
        max_errors=args.max_errors,
        retry_errors=args.retry_errors,
        publish_with_errors=args.publish_with_errors,
        log_level=args.log_level,
        upload_threads=threads or default_upload_threads(),
        processes=args.processes,
        source_concurrency=args.source_concurrency,
        source_timeout=args.source_timeout,
        dry_run=args.dry_run,
        dry_run_gb=args.dry_run_gb,
        dry_run_count=args.dry_run_count,
        azcopy=args.azcopy,
        progress_interval=args.progress_interval,
        output=args.output,
        dask=args.dask,
    )


#: words that start a reading command instead of a load (``clfsload verify ...``)
SUBCOMMANDS = ("verify", "ls", "cat", "get")


def main(argv: Optional[List[str]] = None) -> int:
    """Run the loader, or a reading command (verify, ls, cat, get); returns the exit code.

    A state directory literally named like a command is given as ``./verify``.
    """
    words = sys.argv[1:] if argv is None else list(argv)
    if words and words[0] in SUBCOMMANDS:
        from .commands import main as run_command  # the reading commands load only when asked

        return run_command(words, prog=os.path.basename(sys.argv[0]) or "clfsload")
    parser = build_parser()
    args = parser.parse_args(words)  # exits 2 on a usage error
    if argv is None:
        hide_secrets(args.sas_token)  # again: a SAS without the usual fields is known only now
    check_positionals(parser, args)
    if args.dask is None and (args.processes is None or args.processes > 0):
        from ..execute.forkserver import start_forkserver

        # A load with worker processes: the forkserver starts and imports the worker side
        # while this process imports the driver and opens the run (the engine's call is a no-op then).
        # Forked from this process, which runs no thread yet, before the log's handlers are set up:
        # the forkserver and its workers start with the logging of a fresh interpreter.
        try:
            start_forkserver(fork=True)
        except (OSError, ValueError):
            pass  # out of processes or descriptors: the engine's own start tries again and says so in one line
    # With --output json, stdout carries the summary object alone; the log goes to stderr
    # (not under AzCopy, which reads stdout only).
    log = console(args.log_level, sys.stderr if args.output == "json" and not args.azcopy else sys.stdout)
    from ..driver.engine import LoadResult, run_load
    from .report import render

    try:
        settings = settings_from(args, log)
    except ClfsLoadError as exc:
        log.error("%s", exc)
        if args.azcopy:
            from ..driver.progress import azcopy_final

            azcopy_final(log, LoadResult(), "Failed")
        return EXIT_FAILED
    return render(run_load(settings, log), settings)


if __name__ == "__main__":
    sys.exit(main())
