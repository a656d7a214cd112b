"""FINALIZE: repair the stored tree, upload the log and ``problems.txt``, publish the root.

Repair puts back entries that loaded since an earlier run left them out,
takes out entries gone from the source (and, with ``--publish_with_errors``,
failed ones), and sweeps what interrupted attempts left behind. The root is
published last, by copying its ``tmp`` inode to its final name. A run with
problems publishes nothing unless ``--publish_with_errors``. Every step is
idempotent, so a run killed part way repeats it.

Power loss: everything else is made durable (:meth:`BlobTarget.sync`) before
the root is published, and the root itself with
:meth:`BlobTarget.publish` (never seen torn); the phase DONE is committed
(durably) after it, and only then does the load report success.
"""

import itertools
import logging
import os

from .. import crashpoints
from ..durable import fsync_dir
from .._native import envelope
from ..clfs.constants import TMP_PREFIX
from ..clfs.objects import bucket_blob, final_root_name, seal
from ..errors import BlobNotFoundError
from ..settings import Settings
from ..targets.base import BlobTarget
from ..work.ids import IdMint
from .opening import RunIdentity
from .result import LoadError, LoadResult
from .state import StateStore

log = logging.getLogger("clfsload")

PROBLEMS_FILE = "problems.txt"
LOG_FILE = "output.txt"


def write_problems(state: StateStore, state_dir: str) -> int:
    """STATE_DIR/problems.txt: every recorded problem's path, one per line (none: no file).

    Durable when it returns: written to a temp name, fsynced, renamed, and the
    folder fsynced (the file a load that reports its end names is on disk).
    """
    path = os.path.join(state_dir, PROBLEMS_FILE)
    problems = state.problems()
    first = next(problems, None)
    if first is None:
        if os.path.exists(path):
            os.unlink(path)
            fsync_dir(state_dir)
        return 0
    count = 0
    tmp = path + ".tmp"
    if os.path.lexists(tmp):
        os.unlink(tmp)  # left by a run stopped while writing it
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        for p in itertools.chain([first], problems):
            f.write(p.path + b"\n")
            count += 1
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(state_dir)
    return count


def remove_temp_files(target: BlobTarget) -> None:
    """Temp files of writers killed mid-blob (a local-folder target has them; Azure has none)."""
    removed = target.remove_temp_files()
    if removed:
        log.info("removed %d partial blob files left by an interrupted run", removed)


class Finalizer:
    """The FINALIZE phase of one run."""

    def __init__(self, settings: Settings, state: StateStore, target: BlobTarget, identity: RunIdentity):
        self.settings = settings
        self.state = state
        self.target = target
        self.identity = identity
        self.mint = IdMint(identity.containerid, identity.secret)
        self.compress = identity.compress

    def run(self, result: LoadResult) -> None:
        """Publish the container (or say in ``result.message`` why not); sets the phase DONE once published."""
        state, target, s = self.state, self.target, self.settings
        problems = write_problems(state, s.state_dir)
        uploads = [LOG_FILE]
        if problems:
            uploads.append(PROBLEMS_FILE)
            log.warning("%d entries could not be loaded; they are listed in %s", problems,
                        os.path.join(s.state_dir, PROBLEMS_FILE))
        else:
            target.delete(PROBLEMS_FILE)  # a stale copy from an earlier run
        if problems and not s.publish_with_errors:
            result.message = (
                "load failed: %d problems; the container is not published. Fix them and run the same command "
                "again (it retries them), or pass --publish_with_errors to publish without those entries" % problems
            )
            return
        self.repair(prune=bool(problems))
        crashpoints.reached("finalize")
        for handler in log.handlers:
            handler.flush()
        for name in uploads:
            with open(os.path.join(s.state_dir, name), "rb") as f:
                target.put(name, f.read())
        crashpoints.reached("finalize")
        sealed = seal(bucket_blob(self.identity.bucket_uuid, uploads), self.compress)
        target.put(sealed.name, sealed.payload)
        crashpoints.reached("finalize")
        self.publish_root()
        state.set_phase("DONE")
        result.published = True
        result.exit_code = 1 if problems else 0

    def repair(self, prune: bool) -> None:
        """Make the stored tree match the state before it is published.

        Each step is idempotent, and its state rows change only after its
        blobs did, so a run killed part way repeats it.
        """
        state, target = self.state, self.target
        restore = state.pruned_to_restore()
        if restore:
            self._edit(restore, add=True)
            state.drop_pruned(restore)
            log.info("%d entries that loaded since an earlier run left them out are back in their directories", len(restore))
        gone = state.gone_entries()
        self._edit(gone)
        failed = state.failed_entries() if prune else []
        self._edit(failed)
        if failed:
            state.add_pruned(failed)
            log.warning("--publish_with_errors: %d failed entries are left out of their directories", len(failed))
        dirs, objects = state.sweep_list()
        dead = [fh for _, _, fh in failed + gone]
        if dirs or objects or dead:
            from .sweep import Sweeper  # a run with nothing to sweep (a first one) never loads it

            state.drop_ranges()  # the sweep deletes segments no inode names: no later run may count on them
            sweeper = Sweeper(target, self.mint, self.settings.state_dir, log=lambda blob: log.debug("sweep: deleted %s", blob))
            deleted = sweeper.run(dirs, objects, strays=dead)
            log.info("sweep: %d directories and %d objects checked, %d leftover blobs deleted", len(dirs), len(objects), deleted)
        remove_temp_files(target)
        state.clear_sweep()
        if gone:
            state.clear_gone()

    def _edit(self, entries, add: bool = False) -> None:
        """Add ``entries`` (parent, name, fh) to their stored directories, or take them out.

        :mod:`.relist` (and the container reader under it) loads only for
        a run with entries to edit: a first run has none.
        """
        if not entries:
            return
        from .relist import edit_directory, group_by_parent

        for parent, group in group_by_parent(entries):
            if add:
                edit_directory(self.target, self.mint, parent, self.compress, add=group)
            else:
                edit_directory(self.target, self.mint, parent, self.compress, remove=[name for name, _ in group])

    def publish_root(self) -> None:
        """Copy the root's ``tmp`` inode to its final name (the last write of the run), then drop the ``tmp`` one."""
        target = self.target
        final = final_root_name()
        tmp = TMP_PREFIX + final
        try:
            payload = target.get(tmp)
        except BlobNotFoundError:
            try:
                target.get(final)  # an earlier FINALIZE already published it
            except BlobNotFoundError:
                raise LoadError("the root directory was not stored (see the problems above); nothing to publish") from None
            return
        envelope.unwrap(payload)  # never publish a root that does not decode
        target.sync()  # everything the root reaches is durable before it is published
        target.publish(final, payload)
        crashpoints.reached("finalize")
        target.delete(tmp)


__all__ = ["Finalizer", "LOG_FILE", "PROBLEMS_FILE", "remove_temp_files", "write_problems"]
