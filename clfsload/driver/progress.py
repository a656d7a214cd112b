"""Progress reports: periodic log lines and, with ``--azcopy``, AzCopy's JSON lines.

The periodic line keeps the reference's fields (behaviour spec §8.3) with
honest units: objects/s and MB/s for the last interval and the phase,
counts done, and a percentage and ETA when a dry run gave totals. With
``--azcopy`` the ``AZCOPY-CONFIG``, ``AZCOPY-INFO``, ``AZCOPY`` and
``AZCOPY-FINAL`` lines of §8.6 are printed too, each a JSON object whose
fields have the types AzCopy's Go structs decode (integers for counts, numbers
for times, strings for names), in the original's order: the Init phase line
before the config lines, Cleanup after Reconcile, and a final line however the
run ends (:func:`azcopy_final`, also for a run stopped before it began).
"""

import json
import logging
import sqlite3
import time
from typing import Optional

from .. import __version__
from . import live
from ..work.source_reads import stuck_operations

#: what the original counts per directory in ``total_bytes_transferred`` (a directory's st_size on ext4)
DIRECTORY_BYTES = 4096


def azcopy_line(log: logging.Logger, tag: str, payload: dict) -> None:
    """Log one AzCopy line: ``TAG:{json}`` at the start of a line of its own (AzCopy strips the tag as a prefix).

    An INFO record whatever ``--log_level`` says: AzCopy passes its own
    ``--log-level`` (WARNING, ERROR too), and without these lines it has no
    progress and no summary to show.
    """
    args = (tag.lower(), tag, json.dumps(payload, separators=(",", ":")))
    log.handle(log.makeRecord(log.name, logging.INFO, __file__, 0, "%s\n%s:%s", args, None))


def directories_loaded(state) -> int:
    """Directories loaded so far over every run (each gets a unit number; the rows still there are not loaded)."""
    if state is None:
        return 0
    from .state import FAILED, PENDING

    return max(0, state.counter("next_unit") - 1 - state.count_units(PENDING) - state.count_units(FAILED))


def azcopy_final(log: logging.Logger, result, status: str, directories: int = 0) -> None:
    """The ``AZCOPY-FINAL`` line: AzCopy's summary of the run, whatever stopped it.

    ``total_bytes_transferred`` counts :data:`DIRECTORY_BYTES` per directory
    on top of the file bytes, as the original does.
    """
    azcopy_line(
        log,
        "AZCOPY-FINAL",
        {
            "elapsed": round(float(result.elapsed), 3),
            "files_completed_success": max(0, result.objects - result.problems),
            "files_completed_failed": result.problems,
            "files_skipped": 0,
            "files_total": result.objects,
            "final_job_status": status,
            "phase": result.phase.capitalize(),
            "total_bytes_transferred": result.source_bytes + DIRECTORY_BYTES * directories,
        },
    )


class Progress:
    """Counts what a run does and reports it every ``settings.progress_interval`` seconds."""

    def __init__(self, state, settings, log: logging.Logger):
        self.state = state
        self.settings = settings
        self.log = log
        self.interval = float(settings.progress_interval)
        self.phase_name = "init"
        self._phase_start = time.monotonic()
        self._last = self._phase_start
        self._last_objects = 0
        self._last_bytes = 0
        self.objects = 0  # this invocation, this phase
        self.source_bytes = 0
        self.run_objects = 0  # this invocation, every phase
        self.run_bytes = 0
        self._pct = 0.0
        self._announced: set = set()
        self._directories = 0  # directories loaded, as of the last report (the state is closed by the final one)
        show = settings.live_progress
        self.live: Optional[live.LiveDisplay] = None
        if show or (show is None and live.wanted(settings)):
            self.live = live.LiveDisplay()

    def _azcopy(self, tag: str, payload: dict) -> None:
        if self.settings.azcopy:
            azcopy_line(self.log, tag, payload)

    def _note_directories(self) -> None:
        if self.settings.azcopy:
            try:
                self._directories = directories_loaded(self.state)
            except sqlite3.Error:
                pass  # the state database failed: the error that stops the run says so

    def config(self, new: bool) -> None:
        """Log the run's settings once (and AZCOPY-CONFIG); a run still to initialise begins its Init phase first."""
        compression = self.state.get("compression")
        preserve = self.state.get("preserve_hardlinks") == "1"
        from .._native import BACKEND, backend_warning

        self.log.info("clfsload version %s (%s backend)", __version__, BACKEND)
        warning = backend_warning()
        if warning:
            self.log.warning("%s", warning)
        if self.state.phase == "INIT":
            self.phase("init")  # the original's order: Init, then the settings
        self.log.info("preserve_hardlinks %d", int(preserve))
        self.log.info("compression %s", compression)
        self._azcopy(
            "AZCOPY-CONFIG",
            {"compression": compression, "new": new, "preserve_hardlinks": preserve, "version": __version__},
        )
        self._note_directories()

    def phase(self, name: str) -> None:
        """A phase starts (announced once: INIT is begun by :meth:`config`).

        The sweep of what earlier attempts left behind runs in FINALIZE; after
        a Reconcile it is announced as the original's Cleanup phase.
        """
        if name == self.phase_name and name in self._announced:
            return
        if name == "finalize" and self.phase_name == "reconcile":
            self._announce("cleanup")
        self._announced.add(name)
        self._announce(name)
        if self.live is not None:
            done, done_bytes, total, total_bytes = self.totals()
            if name == "transfer":
                self.live.phase(name, total, total_bytes, done, done_bytes)
            elif name == "reconcile":
                self.live.phase(name, self.state.count_links(), None, 0, 0)
            else:
                self.live.phase(name, None, None, 0, 0)

    def _announce(self, name: str) -> None:
        self.phase_name = name
        self._phase_start = self._last = time.monotonic()
        self.objects = self.source_bytes = 0
        self._last_objects = self._last_bytes = 0
        self.log.info("begin phase %s", name)
        self._azcopy("AZCOPY-INFO", {"phase": name.capitalize()})
        self._note_directories()

    def count(self, objects: int, source_bytes: int) -> None:
        """Objects finished (and the source bytes they held)."""
        self.objects += objects
        self.source_bytes += source_bytes
        self.run_objects += objects
        self.run_bytes += source_bytes
        if self.live is not None:
            self.live.update(objects, source_bytes, self.state.count_problems())

    def phase_seconds(self) -> float:
        """Seconds since the current phase began."""
        return time.monotonic() - self._phase_start

    def seconds_to_next(self) -> float:
        """How long until the next report is due (at least 0.05 s)."""
        return max(0.05, self._last + self.interval - time.monotonic())

    def totals(self):
        """(objects, bytes) done over every run of this transfer, and the dry-run totals."""
        done = self.state.counter("objects")
        done_bytes = self.state.counter("source_bytes")
        total = self.state.get("dry_run_count")
        total_bytes = self.state.get("dry_run_bytes")
        return done, done_bytes, (int(total) if total else None), (int(total_bytes) if total_bytes else None)

    def tick(self, force: bool = False) -> None:
        """Report if the interval has passed (or ``force``)."""
        now = time.monotonic()
        if not force and now - self._last < self.interval:
            return
        span = max(now - self._last, 1e-9)
        elapsed = max(now - self._phase_start, 1e-9)
        recent = (self.objects - self._last_objects) / span
        recent_mb = (self.source_bytes - self._last_bytes) / span / 1e6
        self._last, self._last_objects, self._last_bytes = now, self.objects, self.source_bytes
        done, done_bytes, total, total_bytes = self.totals()
        parts = [
            "%s elapsed=%.1fs" % (self.phase_name, elapsed),
            "recent=%.1f obj/s %.2f MB/s" % (recent, recent_mb),
            "phase=%.1f obj/s %.2f MB/s" % (self.objects / elapsed, self.source_bytes / elapsed / 1e6),
            "done=%d objects %.3f GB" % (done, done_bytes / 1e9),
        ]
        eta: Optional[float] = None
        if total:
            pct = min(100.0, 100.0 * done / total)
            self._pct = max(self._pct, pct)
            parts.append("(%.1f%%)" % pct)
            rate = self.objects / elapsed
            if rate > 0 and done < total:
                eta = time.time() + (total - done) / rate
                parts.append("eta %s" % time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(eta)))
        errors = self.state.count_problems()
        self._note_directories()
        if errors:
            parts.append("errors=%d" % errors)
        stuck = stuck_operations()
        if stuck:  # a hung source (an NFS server gone): each is named in a WARNING
            parts.append("stuck=%d source operations" % stuck)
        self.log.info(" ".join(parts))
        self._azcopy(
            "AZCOPY",
            {
                "bytes_completed": done_bytes,
                "elapsed": round(elapsed, 3),
                "files_completed_failed": errors,
                "files_completed_success": max(0, done - errors),
                "files_pending": (total - done) if total else None,
                "files_skipped": 0,
                "files_total": total,
                "pct_complete": round(self._pct, 2) if total else None,
                "phase": self.phase_name.capitalize(),
                "throughput_Mbps": round(recent_mb * 8, 3),
                "throughput_delta_secs": round(span, 3),
                "time_eta": round(eta, 3) if eta else None,
                "time_report": round(time.time(), 3),
            },
        )

    def final(self, result, status: str) -> None:
        """The end-of-run summary line (and AZCOPY-FINAL)."""
        if self.live is not None:
            self.live.close()
            self.live = None
        elapsed = max(result.elapsed, 1e-9)
        self.log.info(
            "elapsed=%.3f GB=%.6f count=%d %.1f files/sec %.4f GB/s",
            result.elapsed,
            result.source_bytes / 1e9,
            result.objects,
            self.run_objects / elapsed,
            self.run_bytes / elapsed / 1e9,
        )
        if self.settings.azcopy:
            azcopy_final(self.log, result, status, self._directories)
