"""A small single-threaded container builder for the tests: walk a tree with ``lstat``, write CLFS.

It drives the per-object functions of :mod:`objects` through every phase of
a clean run (INIT, TRANSFER, RECONCILE, CLEANUP, FINALIZE) into any store
with ``put``/``delete``. It exists to check the format layer end to end
against the original tool's containers (tests/test_encoder_golden.py); the
load engine, and its ids (:mod:`clfsload.work.ids`), are separate. Its
filehandles come from :class:`FhFactory` over a :class:`SeqRange`: plain
random tails and ``seq % 48`` directory manager ids, test-only (moved here
from the package, which never used them).
"""

import os
import random
import uuid
from typing import Dict, Iterable, List, Optional, Protocol, Tuple

from clfsload._native import envelope, hashing, records
from clfsload.clfs.constants import DIRMGR_COUNT, FH_SEQ_FIRST, ROOT_ID, TMP_PREFIX, Ftype, Obtype
from clfsload.clfs.handles import dmid_of, make_fh
from clfsload.clfs.objects import (
    Blob,
    InodeName,
    bucket_blob,
    directory_blobs,
    file_blobs,
    final_root_name,
    replace_handles,
    root_extattrs,
    seal,
    special_blob,
    symlink_blob,
    symlink_size,
    yield_all,
)
from clfsload.clfs.vattr import VAttr, ftype_of_mode, vattr_from_stat
from clfsload.errors import EncodeError

RECONCILED_VERSION = 11  # 9 -> 10 when parked, 10 -> 11 when reconciled (§4.3)
_TAIL_MAX = (1 << 64) - 1


class SeqRange:
    """A contiguous block ``[start, stop)`` of sequence numbers owned by one worker."""

    __slots__ = ("next", "stop")

    def __init__(self, start: int, stop: int):
        if not 0 < start <= stop:
            raise ValueError("bad sequence range [%d, %d)" % (start, stop))
        self.next = start
        self.stop = stop

    def __len__(self) -> int:
        return self.stop - self.next

    def take(self) -> int:
        """Return the next sequence number; raises LookupError when the range is used up."""
        if self.next >= self.stop:
            raise LookupError("sequence range exhausted")
        seq = self.next
        self.next += 1
        return seq


class FhFactory:
    """Makes filehandles for one unit of work from its container id and a seq range."""

    def __init__(self, containerid: int, seqs: SeqRange, rng: Optional[random.Random] = None):
        if not 0 < containerid <= 0xFFFFFFFF:
            raise EncodeError("containerid %r is not in [1, 2^32-1]" % (containerid,))
        self.containerid = containerid
        self.seqs = seqs
        self._rng = rng or random.SystemRandom()

    def new(self, parent_fh: bytes, ftype: int) -> bytes:
        """A fresh fh for a child of ``parent_fh`` of type ``ftype``.

        The random tail is redrawn while the fh's fnv1_variant is 0, which
        CLFS rejects (§2.2).
        """
        seq = self.seqs.take()
        dmid_src = dmid_of(parent_fh)
        dmid_tgt = seq % DIRMGR_COUNT if ftype == Ftype.DIR else dmid_src
        while True:
            fh = make_fh(self.containerid, dmid_src, dmid_tgt, ftype, seq, self._rng.randint(1, _TAIL_MAX))
            if hashing.fnv1_variant(fh) != 0:
                return fh



class BlobSink(Protocol):
    """Where blobs go: a local folder, Azure, or memory."""

    def put(self, name: str, payload: bytes) -> None: ...

    def delete(self, name: str) -> None: ...


class MemoryStore:
    """Blobs in a dict; both a sink and a source for the container reader."""

    def __init__(self) -> None:
        self.blobs: Dict[str, bytes] = {}

    def put(self, name: str, payload: bytes) -> None:
        self.blobs[name] = bytes(payload)

    def delete(self, name: str) -> None:
        del self.blobs[name]

    def names(self) -> Iterable[str]:
        return sorted(self.blobs)

    def read(self, name: str) -> bytes:
        return self.blobs[name]


class _Linked:
    """A non-directory seen under several paths (preserve_hardlinks)."""

    __slots__ = ("fh", "attrs", "first_parent", "extra_parents", "parked_name")

    def __init__(self, fh: bytes, first_parent: bytes):
        self.fh = fh
        self.attrs: Optional[VAttr] = None
        self.first_parent = first_parent
        self.extra_parents: List[bytes] = []
        self.parked_name = ""


class Builder:
    """Writes one container for one source tree; see :func:`build`."""

    def __init__(
        self,
        sink: BlobSink,
        compress: bool = True,
        preserve_hardlinks: bool = False,
        containerid: Optional[int] = None,
        fsid: Optional[int] = None,
        rng: Optional[random.Random] = None,
    ):
        rng = rng or random.SystemRandom()
        self.sink = sink
        self.compress = compress
        self.preserve_hardlinks = preserve_hardlinks
        self.containerid = containerid or rng.randint(1, 0xFFFFFFFF)
        self.fsid = fsid or rng.randint(1, 0xFFFFFFFF)
        self.fhs = FhFactory(self.containerid, SeqRange(FH_SEQ_FIRST, 1 << 62), rng)
        self.links: Dict[Tuple[int, int, int], _Linked] = {}

    def _put(self, blob: Blob) -> None:
        sealed = seal(blob, self.compress)
        self.sink.put(sealed.name, sealed.payload)

    def _attrs(self, st: os.stat_result, size: int = 0, nlink: int = 1) -> VAttr:
        return vattr_from_stat(st, size, nlink, self.fsid, self.containerid)

    def build(self, source: str) -> None:
        """Run every phase for the tree at ``source`` (name of the root as typed)."""
        bucket_uuid = str(uuid.uuid4())
        self._put(bucket_blob(bucket_uuid))  # INIT
        root_st = os.lstat(source)
        root_name = os.fsencode(os.path.basename(source))
        self._directory(source, root_st, ROOT_ID, ROOT_ID, root_name)  # TRANSFER
        self._reconcile()
        # FINALIZE: bucket, then publish the root under its final name.
        self._put(bucket_blob(bucket_uuid))
        tmp_name = TMP_PREFIX + final_root_name()
        self.sink.put(final_root_name(), self._read_back(tmp_name))
        self.sink.delete(tmp_name)

    def _read_back(self, name: str) -> bytes:
        return self.sink.read(name)  # type: ignore[attr-defined]

    def _directory(self, path: str, st: os.stat_result, fh: bytes, parent: bytes, name: bytes) -> None:
        children: List[Tuple[bytes, bytes]] = []
        subdirs = 0
        with os.scandir(path) as it:
            for entry in it:
                child_st = entry.stat(follow_symlinks=False)
                ftype = ftype_of_mode(child_st.st_mode)
                child_fh = self._child(entry.path, child_st, ftype, fh, os.fsencode(entry.name))
                children.append((os.fsencode(entry.name), child_fh))
                if ftype == Ftype.DIR:
                    subdirs += 1
        extattrs = root_extattrs() if fh == ROOT_ID else None
        for blob in directory_blobs(self._attrs(st), fh, parent, children, subdirs, name, InodeName(parent), extattrs):
            self._put(blob)

    def _child(self, path: str, st: os.stat_result, ftype: Ftype, parent: bytes, name: bytes) -> bytes:
        if ftype == Ftype.DIR:
            fh = self.fhs.new(parent, ftype)
            self._directory(path, st, fh, parent, name)
            return fh
        linked = None
        if self.preserve_hardlinks and st.st_nlink != 1:
            key = (st.st_dev, st.st_ino, int(ftype))
            linked = self.links.get(key)
            if linked is not None:
                linked.extra_parents.append(parent)
                return linked.fh
            linked = self.links[key] = _Linked(self.fhs.new(parent, ftype), parent)
        fh = linked.fh if linked else self.fhs.new(parent, ftype)
        where = InodeName.parked() if linked else InodeName(parent)
        back = [parent]
        if ftype == Ftype.REG:
            with open(path, "rb", buffering=0) as stream:
                gen = file_blobs(stream, self._attrs(st), fh, back, name, where)
                attrs = yield_all(gen, self._put)
        elif ftype == Ftype.LNK:
            target = os.readlink(os.fsencode(path))
            attrs = self._attrs(st, symlink_size(target))
            self._put(symlink_blob(target, attrs, fh, back, name, where))
        else:
            attrs = self._attrs(st, st.st_size)
            self._put(special_blob(attrs, fh, back, name, where))
        if linked:
            linked.attrs = attrs
            linked.parked_name = hashing.blob_name(fh, attrs.btype, where.owner, where.version)
        return fh

    def _reconcile(self) -> None:
        """RECONCILE + CLEANUP: rewrite parked inodes with their final links (§13).

        The parked inode is read back and only its VATTR (nlink) and BACK
        handles change; every other handle is copied byte for byte.
        """
        for linked in self.links.values():
            back = [linked.first_parent] + linked.extra_parents
            attrs = linked.attrs._replace(nlink=len(back))
            body = envelope.unwrap(self.sink.read(linked.parked_name))  # type: ignore[attr-defined]
            body = replace_handles(body, {Obtype.VATTR: records.encode_vattr(attrs), Obtype.BACK: records.encode_back(back)})
            name = hashing.blob_name(linked.fh, attrs.btype, linked.first_parent, RECONCILED_VERSION)
            self._put(Blob(name, body))
            self.sink.delete(linked.parked_name)


def build(source: str, sink: BlobSink, **options) -> Builder:
    """Write the container of the tree at ``source`` into ``sink``; options as :class:`Builder`."""
    builder = Builder(sink, **options)
    builder.build(source)
    return builder
