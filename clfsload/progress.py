"""Progress reports: periodic log lines and, with ``--azcopy``, AzCopy's JSON lines.

The periodic line keeps the reference's fields (behaviour spec §8.3) with
honest units: objects/s and MB/s for the last interval and the phase,
counts done, and a percentage and ETA when a dry run gave totals. With
``--azcopy`` the ``AZCOPY-CONFIG``, ``AZCOPY-INFO``, ``AZCOPY`` and
``AZCOPY-FINAL`` lines of §8.6 are printed too (with bytes in bytes).
"""

import json
import logging
import time
from typing import Optional

from . import __version__, live


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
        show = settings.live_progress
        self.live: Optional[live.LiveDisplay] = None
        if show or (show is None and live.wanted(settings)):
            self.live = live.LiveDisplay()

    def _azcopy(self, tag: str, payload: dict) -> None:
        if self.settings.azcopy:
            self.log.info("%s\n%s:%s", tag.lower(), tag, json.dumps(payload, separators=(",", ":")))

    def config(self, new: bool) -> None:
        """Log the run's settings once (and AZCOPY-CONFIG)."""
        compression = self.state.get("compression")
        preserve = self.state.get("preserve_hardlinks") == "1"
        self.log.info("clfsload version %s", __version__)
        self.log.info("preserve_hardlinks %d", int(preserve))
        self.log.info("compression %s", compression)
        self._azcopy(
            "AZCOPY-CONFIG",
            {"compression": compression, "new": new, "preserve_hardlinks": preserve, "version": __version__},
        )

    def phase(self, name: str) -> None:
        """A phase starts."""
        self.phase_name = name
        self._phase_start = self._last = time.monotonic()
        self.objects = self.source_bytes = 0
        self._last_objects = self._last_bytes = 0
        self.log.info("begin phase %s", name)
        self._azcopy("AZCOPY-INFO", {"phase": name.capitalize()})
        if self.live is not None:
            done, done_bytes, total, total_bytes = self.totals()
            if name == "transfer":
                self.live.phase(name, total, total_bytes, done, done_bytes)
            elif name == "reconcile":
                self.live.phase(name, self.state.count_links(), None, 0, 0)
            else:
                self.live.phase(name, None, None, 0, 0)

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
        if errors:
            parts.append("errors=%d" % errors)
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
        self._azcopy(
            "AZCOPY-FINAL",
            {
                "elapsed": round(result.elapsed, 3),
                "files_completed_success": max(0, result.objects - result.problems),
                "files_completed_failed": result.problems,
                "files_skipped": 0,
                "files_total": result.objects,
                "final_job_status": status,
                "phase": result.phase.capitalize(),
                "total_bytes_transferred": result.source_bytes,
            },
        )
