"""Opening a run: the paths checked, the identity of a new transfer, and the checks before a resume.

:func:`check_paths` runs before anything is written; :func:`new_identity`
is what ``--new`` stores; :func:`check_resume` refuses a rerun whose source,
target or options differ from the transfer's, or whose container lost its
bucket object. :func:`read_identity` reads the run's ids once, typed.
"""

import os
import random
import stat
import time
import uuid
from typing import Dict, NamedTuple

from .. import __version__
from ..clfs.constants import BUCKET_UUID_KEY
from ..clfs.objects import bucket_blob
from ..errors import BlobNotFoundError, FormatError
from ..settings import Settings
from ..targets.base import BlobTarget
from .result import LoadError
from .state import StateError, StateStore


class RunIdentity(NamedTuple):
    """The ids and fixed options of a transfer, as the state store holds them since ``--new``."""

    containerid: int
    fsid: int
    secret: bytes
    compress: bool
    preserve_hardlinks: bool
    bucket_uuid: str


def read_identity(state: StateStore) -> RunIdentity:
    """The run's identity from the state store; StateError if a value ``--new`` stores is missing."""
    values = {}
    for key in ("containerid", "fsid", "id_secret", "bucket_uuid"):
        value = state.get(key)
        if value is None:
            raise StateError("the state database has no %s; it is damaged: start again with --new" % key)
        values[key] = value
    return RunIdentity(
        containerid=int(values["containerid"]),
        fsid=int(values["fsid"]),
        secret=bytes.fromhex(values["id_secret"]),
        compress=state.get("compression") == "LZ4",
        preserve_hardlinks=state.get("preserve_hardlinks") == "1",
        bucket_uuid=values["bucket_uuid"],
    )


def check_paths(state_dir: str, source: str) -> None:
    """SOURCE is a readable directory and neither path lies inside the other (real paths)."""
    try:
        st = os.lstat(source)
    except OSError as exc:
        raise LoadError("source '%s' cannot be read: %s" % (source, exc.strerror)) from None
    if stat.S_ISLNK(st.st_mode):
        raise LoadError("source '%s' is a symlink; give the directory it points to" % source)
    if not stat.S_ISDIR(st.st_mode):
        raise LoadError("source '%s' is not a directory" % source)
    if not os.access(source, os.R_OK | os.X_OK):
        raise LoadError("source '%s' cannot be listed: permission denied" % source)
    real_state = os.path.realpath(state_dir) + os.sep
    real_source = os.path.realpath(source) + os.sep
    if real_state.startswith(real_source) or real_source.startswith(real_state):
        raise LoadError(
            "state directory '%s' and source '%s' overlap; put the state directory outside the tree you load"
            % (state_dir, source)
        )


def new_identity(s: Settings, target: BlobTarget) -> Dict[str, str]:
    """What ``--new`` stores: fresh random ids, the fixed options, and where from and to.

    The ids come from the system's random source, as :mod:`secrets` draws them
    (its ``randbelow`` and ``token_hex`` are these calls), without the module:
    it imports :mod:`hmac` and with it OpenSSL, 2-3 ms at every start.
    """
    system = random.SystemRandom()
    return {
        "tool_version": __version__,
        "phase": "INIT",
        "containerid": str(system.randrange(0xFFFFFFFF) + 1),
        "fsid": str(system.randrange(0xFFFFFFFF) + 1),
        "id_secret": os.urandom(16).hex(),
        "bucket_uuid": str(uuid.uuid4()),
        "compression": s.compression or "LZ4",
        "preserve_hardlinks": "1" if s.preserve_hardlinks else "0",
        "source": os.path.realpath(s.source),
        "source_arg": s.source,
        "target": target.describe(),
        "created": "%.3f" % time.time(),
    }


def check_resume(s: Settings, state: StateStore, target: BlobTarget) -> None:
    """A rerun loads the same source to the same target with the same options; LoadError if not."""
    mismatches = []
    if os.path.realpath(s.source) != state.get("source"):
        mismatches.append("source '%s' is not the one this transfer started with ('%s')" % (s.source, state.get("source")))
    source_id = state.get("source_id")
    if source_id and not mismatches:
        st = os.stat(s.source)
        if "%d:%d" % (st.st_dev, st.st_ino) != source_id:
            mismatches.append(
                "source '%s' is another directory than the one this transfer started with "
                "(it was replaced: device/inode differ)" % s.source
            )
    if target.describe() != state.get("target"):
        mismatches.append(
            "target %s is not the one this transfer started with (%s)" % (target.describe(), state.get("target"))
        )
    if s.compression and s.compression != state.get("compression"):
        mismatches.append("--compression %s differs from the stored %s" % (s.compression, state.get("compression")))
    if s.preserve_hardlinks is not None and int(s.preserve_hardlinks) != int(state.get("preserve_hardlinks") or 0):
        mismatches.append(
            "--preserve_hardlinks %d differs from the stored %s" % (int(s.preserve_hardlinks), state.get("preserve_hardlinks"))
        )
    if mismatches:
        raise LoadError("cannot resume: " + "; ".join(mismatches) + "; rerun with the original values")
    if state.phase != "INIT":
        check_bucket(state, target)


def check_bucket(state: StateStore, target: BlobTarget) -> None:
    """The container's bucket object is this transfer's (same bucketUUID); LoadError if not."""
    from ..clfs.decode import decode_payload  # a resumed run's only decode: a new run never loads the decoder

    name = bucket_blob("").name
    try:
        obj = decode_payload(target.get(name), name)
    except BlobNotFoundError:
        raise LoadError(
            "the container has no bucket object (%s): it was emptied or is not the one this transfer wrote to" % name
        ) from None
    except FormatError as exc:
        raise LoadError("the container's bucket object is damaged: %s" % exc) from None
    found = dict(obj.extattrs or [])
    if found.get(BUCKET_UUID_KEY) != state.get("bucket_uuid"):
        raise LoadError("the container's bucket object belongs to another transfer (bucketUUID differs)")


__all__ = ["RunIdentity", "check_bucket", "check_paths", "check_resume", "new_identity", "read_identity"]
