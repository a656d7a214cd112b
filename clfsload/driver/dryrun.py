"""The dry run: count the objects and bytes a load will store, for percentages and ETAs.

Unlike the reference (behaviour spec §2.4, §12 item 9), an unreadable entry
does not abort the run: it is reported and the count goes on.
"""

import logging
import os
import stat
import time
from typing import Optional

from . import history
from ..work.prefetch import list_and_lstat
from ..work.scan import describe_oserror
from ..work.source_reads import SourceReads, walk_reads

GIB = 1 << 30


def count_tree(root: str, preserve_hardlinks: bool, log: logging.Logger, reads: Optional[SourceReads] = None):
    """(objects, bytes of regular files, unreadable entries) under ``root``, the root included.

    Each directory is listed, then its entries' lstats run in parallel
    through ``reads`` (:mod:`clfsload.work.source_reads`; a pool of the
    default depth for this walk if None): on a filer, one round trip per
    entry one after another would take days for a tree of a hundred million.
    """
    if reads is None:
        with walk_reads() as reads:
            return count_tree(root, preserve_hardlinks, log, reads)
    objects, size, unreadable = 1, 0, 0
    seen = set()
    stack = [os.fsencode(root)]
    while stack:
        path = stack.pop()
        try:
            entries, failed = list_and_lstat(reads, path)
        except OSError as exc:
            entries, failed = [], exc
        for _name, child, st in entries:
            if isinstance(st, OSError):
                unreadable += 1
                log.warning("dry run: '%s': %s", os.fsdecode(child), describe_oserror(st))
                continue
            if stat.S_ISDIR(st.st_mode):
                objects += 1
                stack.append(child)
                continue
            if preserve_hardlinks and st.st_nlink > 1:
                key = (st.st_dev, st.st_ino)
                if key in seen:
                    continue
                seen.add(key)
            objects += 1
            if stat.S_ISREG(st.st_mode):
                size += st.st_size
        if failed is not None:
            unreadable += 1
            log.warning("dry run: '%s': %s", os.fsdecode(path), describe_oserror(failed))
    return objects, size, unreadable


def dry_run(state, settings, log: logging.Logger, kind: str = "local") -> None:
    """Store the totals of a dry run (counted, or given with --dry_run_count/--dry_run_gb).

    With totals known, logs an estimate of the transfer time from the
    speeds of earlier loads into the same ``kind`` of target (:mod:`clfsload.driver.history`).
    """
    if settings.dry_run:
        start = time.monotonic()
        log.info("perform dry run on %s", settings.source)
        # the walk's own pool: its threads end with it (a library caller's process keeps none)
        with walk_reads(settings.source_concurrency or 0, settings.source_timeout) as reads:
            count, size, unreadable = count_tree(settings.source, state.get("preserve_hardlinks") == "1", log, reads)
        log.info(
            "dry run result count=%d GB=%.6f elapsed=%.3f%s",
            count,
            size / GIB,
            time.monotonic() - start,
            " unreadable=%d" % unreadable if unreadable else "",
        )
        state.set("dry_run_count", str(count))
        state.set("dry_run_bytes", str(size))
    if settings.dry_run_count is not None:
        state.set("dry_run_count", str(settings.dry_run_count))
    if settings.dry_run_gb is not None:
        state.set("dry_run_bytes", str(int(settings.dry_run_gb * GIB)))
    state.commit()
    count, size = state.get("dry_run_count"), state.get("dry_run_bytes")
    if count:
        found = history.estimate(kind, int(count), int(size or 0), settings.switches.history)
        if found is None:
            log.info("dry run: no earlier load into a %s target on this machine to estimate the time from", kind)
        else:
            log.info("dry run: estimated transfer time %s", history.describe(found))
