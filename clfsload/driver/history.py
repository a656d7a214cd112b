"""Speeds of earlier loads on this machine, for the dry run's time estimate.

After each TRANSFER phase that ran long enough to mean something, the
objects per second and bytes per second it reached are appended to a small
JSON file, with the target kind (``local`` or ``azure``) and the mean file
size; the newest :data:`KEEP` entries are kept. A dry run then estimates
the transfer time of the tree it counted from the earlier runs into the
same kind of target whose mean file size is within a factor of 4 of this
tree's (all runs of that kind when none is that close): the median object
rate and byte rate, the slower of the two limits winning.

The file is ``$CLFSLOAD_HISTORY``, else ``$XDG_STATE_HOME/clfsload/history.json``
(``~/.local/state/clfsload/history.json``), resolved at the edge
(:func:`clfsload.settings.history_path`, ``Settings.switches.history``) and
passed in. It holds no path, name or secret. Failing to read or write it
never fails a load.
"""

import json
import os
import tempfile
import time
from typing import List, NamedTuple, Optional

KEEP = 50
MIN_SECONDS = 5.0  # shorter phases say more about start-up than about speed
SIZE_FACTOR = 4.0


class Estimate(NamedTuple):
    """A transfer time estimate and what it rests on."""

    seconds: float
    runs: int
    objects_per_second: float
    bytes_per_second: float


def _load(path: str) -> List[dict]:
    try:
        with open(path, encoding="utf-8") as f:
            runs = json.load(f)
    except (OSError, ValueError):
        return []
    return [r for r in runs if isinstance(r, dict)] if isinstance(runs, list) else []


def record(kind: str, objects: int, source_bytes: int, seconds: float, path: str) -> bool:
    """Append one TRANSFER phase's speed; False when it was too short or the file cannot be written."""
    if seconds < MIN_SECONDS or objects <= 0:
        return False
    runs = _load(path)
    runs.append({
        "kind": kind,
        "when": round(time.time()),
        "objects_per_second": objects / seconds,
        "bytes_per_second": source_bytes / seconds,
        "mean_file_bytes": source_bytes / objects,
    })
    try:
        os.makedirs(os.path.dirname(path) or ".", mode=0o700, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".history-", dir=os.path.dirname(path) or ".")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(runs[-KEEP:], f)
        os.replace(tmp, path)
    except OSError:
        return False
    return True


def estimate(kind: str, objects: int, source_bytes: int, path: str) -> Optional[Estimate]:
    """The transfer time of ``objects`` holding ``source_bytes``, from earlier runs into ``kind``; None without any."""
    runs = [r for r in _load(path) if r.get("kind") == kind]
    if not runs or objects <= 0:
        return None
    mean = max(1.0, source_bytes / objects)
    close = [r for r in runs if 1 / SIZE_FACTOR <= max(1.0, r.get("mean_file_bytes", 0)) / mean <= SIZE_FACTOR]
    chosen = close or runs
    import statistics  # only for an estimate (a dry run): not loaded at start-up

    obj_rate = statistics.median(r["objects_per_second"] for r in chosen)
    byte_rate = statistics.median(r["bytes_per_second"] for r in chosen)
    seconds = objects / obj_rate if obj_rate > 0 else 0.0
    if byte_rate > 0:
        seconds = max(seconds, source_bytes / byte_rate)
    return Estimate(seconds, len(chosen), obj_rate, byte_rate)


def describe(found: Estimate) -> str:
    """``about 0:12:34 (from 3 earlier runs at 850 objects/s, 45.0 MB/s)``."""
    seconds = int(round(found.seconds))
    return "about %d:%02d:%02d (from %d earlier run%s at %.0f objects/s, %.1f MB/s)" % (
        seconds // 3600, seconds // 60 % 60, seconds % 60, found.runs, "" if found.runs == 1 else "s",
        found.objects_per_second, found.bytes_per_second / 1e6)


__all__ = ["Estimate", "describe", "estimate", "record"]
