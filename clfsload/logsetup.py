"""The ``clfsload`` logger: ``time LVL message`` lines on stdout and in STATE_DIR/output.txt.

Levels print as three letters (DEB, INF, WAR, ERR, CRI) as the reference's do,
because AzCopy looks for ``ERR``. Every handler scrubs secrets.
"""

import logging
import os
import sys
from typing import Optional

from .targets.redaction import RedactingFilter, protect_library_loggers

LOGGER = "clfsload"
FORMAT = "%(asctime)s %(levelname).3s %(message)s"


def console(level: str = "INFO") -> logging.Logger:
    """Set up the console handler once; returns the logger."""
    log = logging.getLogger(LOGGER)
    log.setLevel(level)
    log.propagate = False
    if not any(getattr(h, "_clfsload_console", False) for h in log.handlers):
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter(FORMAT))
        handler.addFilter(RedactingFilter())
        handler._clfsload_console = True  # type: ignore[attr-defined]
        log.addHandler(handler)
    protect_library_loggers()
    return log


def attach_file(state_dir: str, name: str = "output.txt") -> logging.Handler:
    """Append the log to ``STATE_DIR/name`` too; returns the handler to detach later."""
    handler = logging.FileHandler(os.path.join(state_dir, name), encoding="utf-8")
    handler.setFormatter(logging.Formatter(FORMAT))
    handler.addFilter(RedactingFilter())
    logging.getLogger(LOGGER).addHandler(handler)
    return handler


def detach(handler: Optional[logging.Handler]) -> None:
    """Stop writing to a handler from :func:`attach_file`."""
    if handler is not None:
        logging.getLogger(LOGGER).removeHandler(handler)
        handler.close()
