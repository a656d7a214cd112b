"""The live progress display on a terminal: one bar for objects, one for bytes.

Shown when standard output is a terminal (and not with ``--azcopy``, whose
reader parses lines); otherwise the periodic log lines of
:mod:`clfsload.driver.progress` are all there is. The bars (tqdm) show the phase,
what is done out of the totals of a dry run (or of what is known so far),
the rate, the ETA and the error count. Log lines keep going to the console,
printed above the bars, through the same handler and its redacting filter.
"""

import logging
import shutil
import sys
from typing import TYPE_CHECKING, Any, List, Optional, TextIO

from ..logsetup import LOGGER

if TYPE_CHECKING:  # tqdm loads with the first bars: a run whose output is not a terminal never needs it
    from tqdm import tqdm


def _tqdm() -> Any:
    """The ``tqdm`` class, imported on first use."""
    from tqdm import tqdm

    return tqdm


class _AboveBars:
    """A stream for the console log handler: writes each line above the bars."""

    def __init__(self, stream: TextIO):
        self._stream = stream

    def write(self, text: str) -> int:
        _tqdm().write(text, file=self._stream, end="")
        return len(text)

    def flush(self) -> None:
        self._stream.flush()


def wanted(settings, stream: Optional[TextIO] = None) -> bool:
    """True when the live display should be shown: a terminal, and no AzCopy lines."""
    stream = stream or sys.stdout
    return not settings.azcopy and hasattr(stream, "isatty") and stream.isatty()


class LiveDisplay:
    """Two bars per phase, updated as units finish (never more than 10 times a second)."""

    def __init__(self, stream: Optional[TextIO] = None):
        self.stream = stream or sys.stdout
        self._bars: "List[tqdm]" = []
        self._handlers: List[logging.StreamHandler] = []
        for handler in logging.getLogger(LOGGER).handlers:
            if getattr(handler, "_clfsload_console", False) and isinstance(handler, logging.StreamHandler):
                handler.setStream(_AboveBars(handler.stream))  # type: ignore[arg-type]
                self._handlers.append(handler)

    def phase(self, name: str, total_objects: Optional[int], total_bytes: Optional[int],
              done_objects: int, done_bytes: int) -> None:
        """Start the bars of a phase; totals None while unknown (no dry run)."""
        self._close_bars()
        # A terminal that reports no size (a bare pty) gets 100 x 24 instead of no bars at all.
        sized = shutil.get_terminal_size((0, 0)).columns > 0
        common = dict(file=self.stream, mininterval=0.1, dynamic_ncols=sized, ncols=None if sized else 100,
                      nrows=None if sized else 24, leave=True, smoothing=0.1)
        tqdm = _tqdm()
        self._bars = [
            tqdm(total=total_objects, initial=done_objects, desc="%-9s objects" % name, unit=" obj", **common),
            tqdm(total=total_bytes, initial=done_bytes, desc="%-9s data   " % name, unit="B", unit_scale=True,
                 unit_divisor=1024, **common),
        ]

    def update(self, objects: int, source_bytes: int, errors: int) -> None:
        """Objects and bytes finished since the last call; the error count so far."""
        if not self._bars:
            return
        objects_bar, bytes_bar = self._bars
        if errors:
            objects_bar.set_postfix_str("errors=%d" % errors, refresh=False)
        objects_bar.update(objects)
        bytes_bar.update(source_bytes)

    def _close_bars(self) -> None:
        for bar in self._bars:
            bar.close()
        self._bars = []

    def close(self) -> None:
        """Close the bars and give the console log its stream back."""
        self._close_bars()
        for handler in self._handlers:
            stream = handler.stream
            if isinstance(stream, _AboveBars):
                handler.setStream(stream._stream)
        self._handlers = []


__all__ = ["LiveDisplay", "wanted"]
