"""CLFS blob names: parsing them (§4, §17.2 step 1) and the index of a container's names (§4.5, §4.6)."""

import dataclasses
import re
from dataclasses import dataclass
from typing import Dict, Iterable, List, Optional, Tuple

from ..._native import hashing
from ...errors import FormatError
from ..constants import BUCKET_ID, ROOT_ID, TMP_PREFIX

__all__ = ["BlobName", "parse_blob_name", "UnfinishedTransferError", "BlobNames"]


class UnfinishedTransferError(FormatError):
    """The container holds only the ``tmp`` root: the transfer never finalized (§4.5)."""


# §17.2 step 1. V2: hash64(id) _ HEX(id) . btype . hash64(owner) . version . snapshot . 0002
_V2_NAME = re.compile(
    r"^([0-9A-F]{16})_([0-9A-F]{32}|[0-9A-F]{48})\.(\d{4})\.([0-9A-F]{16})\.(\d{11})\.([0-9A-F]{8})\.0002$"
)
# V1 (§4.2): fnv1_variant(id) _ HEX(id) . version . snapshot . 0001
_V1_NAME = re.compile(r"^([0-9A-F]{8})_([0-9A-F]{32})\.(\d{11})\.([0-9A-F]{8})\.0001$")


@dataclass(frozen=True)
class BlobName:
    """A parsed CLFS blob name (§4). ``btype`` and ``owner_hash`` are None for V1 names."""

    blob: str
    name_version: int  # 1 (V1, bucket) or 2 (V2, everything else)
    obj_id: bytes
    version: int
    snapshot: int
    id_hash: int  # the leading hash token: hash64 (V2) or fnv1_variant (V1)
    btype: Optional[int] = None
    owner_hash: Optional[int] = None


def parse_blob_name(blob: str) -> Optional[BlobName]:
    """Parse a V1 or V2 CLFS name; None for anything else (``tmp`` names, logs)."""
    m = _V2_NAME.match(blob)
    if m:
        return BlobName(
            blob=blob,
            name_version=2,
            obj_id=bytes.fromhex(m.group(2)),
            version=int(m.group(5)),
            snapshot=int(m.group(6), 16),
            id_hash=int(m.group(1), 16),
            btype=int(m.group(3)),
            owner_hash=int(m.group(4), 16),
        )
    m = _V1_NAME.match(blob)
    if m:
        return BlobName(
            blob=blob,
            name_version=1,
            obj_id=bytes.fromhex(m.group(2)),
            version=int(m.group(3)),
            snapshot=int(m.group(4), 16),
            id_hash=int(m.group(1), 16),
        )
    return None



class BlobNames:
    """A container's blob names, classified (§17.2 step 1): CLFS names by id and version, ``tmp`` names, the rest.

    ``allow_unfinished``: :meth:`root_name` gives the ``tmp`` root when no
    final root exists, instead of raising :class:`UnfinishedTransferError`.
    """

    def __init__(self, blobs: Iterable[str], allow_unfinished: bool = False) -> None:
        self.allow_unfinished = allow_unfinished
        #: every V1 and V2 name, every version
        self.clfs_names: List[BlobName] = []
        #: ``tmp``-prefixed names (§4.5)
        self.tmp_names: List[str] = []
        #: anything else: the log texts (§9.10)
        self.other_names: List[str] = []
        self._latest: Dict[Tuple[int, bytes], BlobName] = {}  # (name version, id) -> highest version
        for blob in blobs:
            self._classify(blob)

    def _classify(self, blob: str) -> None:
        if blob.startswith(TMP_PREFIX):
            self.tmp_names.append(blob)
            return
        parsed = parse_blob_name(blob)
        if parsed is None:
            self.other_names.append(blob)
            return
        self.clfs_names.append(parsed)
        key = (parsed.name_version, parsed.obj_id)
        best = self._latest.get(key)
        if best is None or parsed.version > best.version:
            self._latest[key] = parsed

    def latest(self, obj_id: bytes) -> Optional[BlobName]:
        """The highest-version V2 name of ``obj_id`` (§4.6), or None."""
        return self._latest.get((2, bytes(obj_id)))

    @property
    def bucket_name(self) -> Optional[str]:
        """The bucket's V1 blob name, or None if it is missing."""
        found = self._latest.get((1, BUCKET_ID))
        return found.blob if found else None

    def _tmp_root_name(self) -> Optional[BlobName]:
        """The highest-version ``tmp`` + root V2 name, parsed (its ``blob`` keeps the prefix)."""
        best: Optional[BlobName] = None
        for blob in self.tmp_names:
            parsed = parse_blob_name(blob[len(TMP_PREFIX) :])
            if parsed is None or parsed.name_version != 2 or parsed.obj_id != ROOT_ID:
                continue
            if best is None or parsed.version > best.version:
                best = dataclasses.replace(parsed, blob=blob)
        return best

    @property
    def tmp_root(self) -> Optional[str]:
        """The ``tmp`` root name (§4.5), if one is present."""
        found = self._tmp_root_name()
        return found.blob if found else None

    @property
    def finished(self) -> bool:
        """True when the final root name exists, the mark of a finalized transfer (§4.5)."""
        return self.latest(ROOT_ID) is not None

    def root_name(self) -> BlobName:
        """The root's blob name. Raises UnfinishedTransferError if only ``tmp`` exists."""
        final = self.latest(ROOT_ID)
        if final is not None:
            return final
        tmp = self._tmp_root_name()
        if tmp is None:
            raise FormatError("container has no root inode (%s*)" % hashing.name_prefix(ROOT_ID))
        if not self.allow_unfinished:
            raise UnfinishedTransferError(
                "%s: only the tmp root exists: the transfer did not finish (no finalize phase)" % tmp.blob
            )
        return tmp
