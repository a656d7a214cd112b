"""The ``clfsload`` logger: ``time LVL message`` lines on stdout and in STATE_DIR/output.txt.

Levels print as three letters (DEB, INF, WAR, ERR, CRI) as the reference's do,
because AzCopy looks for ``ERR``. Every handler scrubs secrets.

``output.txt`` is created mode 0600 (the state dir is private, and so is its
log). When it cannot be written (the state dir's filesystem is full, an I/O
error), one ``WAR`` line on stdout says so and the log goes on on stdout
only, instead of a ``--- Logging error ---`` traceback per line.
"""

import logging
import os
import sys
from typing import Optional, TextIO

from .targets.redaction import RedactingFilter, protect_library_loggers

LOGGER = "clfsload"
FORMAT = "%(asctime)s %(levelname).3s %(message)s"


def console(level: str = "INFO", stream: Optional[TextIO] = None) -> logging.Logger:
    """Set up the console handler once (on ``stream``, default stdout); returns the logger."""
    log = logging.getLogger(LOGGER)
    log.setLevel(level)
    log.propagate = False
    if not any(getattr(h, "_clfsload_console", False) for h in log.handlers):
        handler = logging.StreamHandler(stream or sys.stdout)
        handler.setFormatter(logging.Formatter(FORMAT))
        handler.addFilter(RedactingFilter())
        handler._clfsload_console = True  # type: ignore[attr-defined]
        log.addHandler(handler)
    protect_library_loggers()
    # The SDK warns about what our retry layer handles ("Incomplete download."),
    # as bare lines on stderr; its real failures reach us as exceptions.
    azure = logging.getLogger("azure")
    azure.setLevel(logging.ERROR)
    if not any(isinstance(h, logging.NullHandler) for h in azure.handlers):
        azure.addHandler(logging.NullHandler())
    return log


class StateLogHandler(logging.FileHandler):
    """Appends to a private log file; gives up with one console line when the file cannot be written."""

    def __init__(self, path: str) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | getattr(os, "O_CLOEXEC", 0), 0o600)
        try:
            if os.fstat(fd).st_mode & 0o077:
                os.fchmod(fd, 0o600)  # a log left by an older version
        except OSError:
            pass
        finally:
            os.close(fd)
        super().__init__(path, encoding="utf-8")
        self.failure: Optional[OSError] = None

    def emit(self, record: logging.LogRecord) -> None:
        if self.failure is None:
            super().emit(record)

    def handleError(self, record: logging.LogRecord) -> None:
        exc = sys.exc_info()[1]
        if not isinstance(exc, OSError):
            super().handleError(record)
            return
        self.failure = exc
        stream, self.stream = self.stream, None  # type: ignore[assignment]
        try:
            if stream is not None:
                stream.close()  # drops what could not be written; the fd is closed all the same
        except OSError:
            pass
        reason = exc.strerror or str(exc)
        note = logging.LogRecord(
            LOGGER, logging.WARNING, __file__, 0,
            "cannot write the log file '%s': %s; the log goes on on stdout only", (self.baseFilename, reason), None,
        )  # fmt: skip
        for handler in logging.getLogger(LOGGER).handlers:
            if getattr(handler, "_clfsload_console", False):
                handler.handle(note)


def attach_file(state_dir: str, name: str = "output.txt") -> logging.Handler:
    """Append the log to ``STATE_DIR/name`` too; returns the handler to detach later."""
    handler = StateLogHandler(os.path.join(state_dir, name))
    handler.setFormatter(logging.Formatter(FORMAT))
    handler.addFilter(RedactingFilter())
    logging.getLogger(LOGGER).addHandler(handler)
    return handler


def detach(handler: Optional[logging.Handler]) -> None:
    """Stop writing to a handler from :func:`attach_file`."""
    if handler is not None:
        logging.getLogger(LOGGER).removeHandler(handler)
        handler.close()
