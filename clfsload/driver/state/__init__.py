"""The local state of one transfer: a SQLite database in STATE_DIR, one writer.

Only the driver touches it, through this narrow interface. What it holds:

* ``meta``: the run's identity and settings (phase, container id, fsid, id
  secret, options, source root, target identity) and progress counters;
* ``units``: directories still to load (pending) or that failed; a loaded
  directory's row is deleted at once, so the table stays small on huge trees;
* ``problems``: source entries that could not be loaded, per unit or link;
* ``links`` and ``link_paths``: hard-linked objects and every path to them
  (``--preserve_hardlinks 1``), stored once each in RECONCILE; a link's
  settled handle (``final_fh``) is fixed before RECONCILE from its first
  backpointer, and its row is kept (state DONE) once stored, so a directory
  loaded again later names the same handle;
* ``deferred_dirs``: directories whose listing names handles settled later
  (hard-linked objects, subdirectories the driver minted): the driver stores
  them before RECONCILE stores the linked objects;
* the directory counter (``meta.dir_counter``, FMT §2.2): each unit row
  keeps the counter values reserved for its subdirectories
  (``dmid_base``, ``dmid_count``), so a rerun names the same handles;
* ``sweep``: directories and objects that may have been written more than
  once with different content (a unit cut short by a crash, a retry, a file
  read again): FINALIZE deletes what their earlier attempts left behind
  (:mod:`clfsload.driver.sweep`);
* ``pruned``: entries taken out of their directories because they failed
  and the run published anyway (``--publish_with_errors``); a successful
  retry puts them back;
* ``ranges``: the ranges of huge files (:mod:`clfsload.work.ranges`) stored so
  far, with the stat they read, so a resumed run loads only the rest of a
  file that has not changed since.

Writes are batched: results accumulate in one open transaction until
:meth:`StateStore.commit`. A crash loses at most the uncommitted batch, and
those units are simply loaded again (they write the same blobs). No secret is
ever stored here. A lock file keeps a second run off the same state dir.
"""

from .core import StateCore, StateError
from .links import LinksTable
from .ranges import RangesTable
from .recovery import Recovery
from .schema import DB_NAME, DONE, FAILED, FORMAT_VERSION, LOCK_NAME, PENDING, SWEEP_DIR, SWEEP_OBJECT
from .units import UnitsTable

__all__ = [
    "StateStore", "StateError", "FORMAT_VERSION", "DB_NAME", "LOCK_NAME",
    "PENDING", "DONE", "FAILED", "SWEEP_DIR", "SWEEP_OBJECT",
]


class StateStore(UnitsTable, LinksTable, RangesTable, Recovery, StateCore):
    """The state database of one transfer, opened by its only writer.

    One class for its callers, one module per job behind it: each mixin
    (:mod:`.units`, :mod:`.links`, :mod:`.ranges`, :mod:`.recovery`) owns its
    tables' methods over the connection, lock and batch of :class:`StateCore`
    (:mod:`.core`). Mixins rather than composition: the tables share one
    transaction, and the callers use one object with every method on it.
    """
