"""Canonical, run-independent form of a container, for diffing (spec §16, §16.1).

Two runs over the same tree differ in random ids, filehandles, readdir order
and times (§16). :func:`canonical_form` maps a walked :class:`Container` to a
JSON-able structure where those differences are gone:

* objects are keyed by path; a hard-linked object (one fh, several paths)
  by the JSON list of its sorted paths;
* fhs inside dirents, BACK, DATABACK and ``BMAP.direct[0]`` become those
  keys; segment and indirect-block ids become positions (block index, or
  ``t<tree>/L<level>/#<ordinal>``);
* VATTR fsid and containerid are zeroed (their consistency across the
  container is recorded once instead), atime is masked;
* the UUID-valued ext-attrs and the ``logfile*`` keys are dropped;
* dirents become a name -> key mapping and BACK a sorted list (set and
  multiset comparison, whatever the readdir order); a directory's
  size is kept only when it has a single segment (§16 item 10);
* the NAME of a hard-linked object becomes :data:`LINK_NAME` when it is the
  name of one of its links;
* file contents are an XXH3-128 digest plus a length.

Handle order, the envelope compression mode of every blob and the name
version are kept. Names and paths are text decoded with ``surrogateescape``,
so any bytes survive. :func:`diff_canonical` lists differences readably.
"""

import json
from dataclasses import dataclass
from typing import Any, Dict, Iterable, List, Optional, Union

import xxhash

from .constants import NULL_FH, ORPHAN_PARENT_ID, ROOT_ID, Btype, Obtype
from .container import Container, Inode
from .decode import DataBack, DecodedObject

__all__ = [
    "MASKABLE",
    "MASKED",
    "LINK_NAME",
    "ABSENT",
    "canonical_form",
    "canonical_json",
    "Difference",
    "diff_canonical",
]

#: extra fields a caller may mask (atime is always masked)
MASKABLE = frozenset(("fileid", "ctime", "mtime", "uid", "gid", "compression", "version"))
#: the value that replaces a masked field
MASKED = "*"
#: NAME of a hard-linked object when it equals one of its links' names
LINK_NAME = "<name of one of its links>"
# ext-attrs whose values are random per run (§16 items 7, 8)
_UUID_ATTRS = frozenset(("bucketUUID", "massUUID", "wipeEpoch"))
_LOGFILE_PREFIX = "logfile"

Json = Any


def _text(raw: bytes) -> str:
    """Lossless text of raw name bytes (undecodable bytes become surrogates)."""
    return raw.decode("utf-8", "surrogateescape")


def _path_text(path: bytes) -> str:
    return "/" + _text(path)


def _handles(obj: DecodedObject) -> List[str]:
    return [t.name if isinstance(t, Obtype) else str(int(t)) for t in obj.handle_types]


def _btype_name(code: int) -> Json:
    try:
        return Btype(code).name
    except ValueError:
        return code


def _filter_attrs(pairs: Optional[Iterable[tuple]]) -> Optional[List[List[str]]]:
    if pairs is None:
        return None
    return [[k, v] for k, v in pairs if k not in _UUID_ATTRS and not k.startswith(_LOGFILE_PREFIX)]


class _Canonicalizer:
    """Builds the canonical form of one container; see the module docstring."""

    def __init__(self, container: Container, mask: Iterable[str]) -> None:
        self.mask = frozenset(mask)
        unknown = self.mask - MASKABLE
        if unknown:
            raise ValueError("cannot mask %s; maskable fields: %s" % (sorted(unknown), sorted(MASKABLE)))
        self.container = container
        self.inodes: Dict[bytes, Inode] = {e.fh: e.inode for e in container.walk()}
        self.paths = {fh: sorted(_path_text(p) for p in container.links(fh)) for fh in self.inodes}
        self.keys = {fh: p[0] if len(p) == 1 else json.dumps(p) for fh, p in self.paths.items()}

    def masked(self, name: str, value: Json) -> Json:
        return MASKED if name in self.mask else value

    def key(self, fh: bytes) -> str:
        """The canonical key of a filehandle."""
        found = self.keys.get(fh)
        if found is not None:
            return found
        if fh == NULL_FH:
            return "<NULL>"
        if fh == ORPHAN_PARENT_ID:
            return "<ORPHAN>"
        return "<unreached %s>" % fh.hex()

    def blob_info(self, obj: DecodedObject) -> Dict[str, Json]:
        return {"handles": _handles(obj), "compression": self.masked("compression", obj.compression)}

    def databack(self, back: Optional[DataBack]) -> Optional[Dict[str, Json]]:
        if back is None:
            return None
        return {"ctime": self.masked("ctime", back.ctime), "offset": back.offset, "owner": self.key(back.owner)}

    def vattr(self, inode: Inode, keep_size: bool) -> Dict[str, Json]:
        decoded = inode.obj.vattr
        assert decoded is not None
        v = decoded.vattr
        size = v.size if keep_size else MASKED
        return {
            "mode": "0o%o" % v.mode,
            "btype": v.btype,
            "uid": self.masked("uid", v.uid),
            "gid": self.masked("gid", v.gid),
            "size": size,
            "used": decoded.used if keep_size else MASKED,
            "mtime": self.masked("mtime", [v.mtime_sec, v.mtime_nsec]),
            "ctime": self.masked("ctime", [v.ctime_sec, v.ctime_nsec]),
            "atime": MASKED,
            "fsid": 0,
            "containerid": 0,
            "fileid": self.masked("fileid", v.fileid),
            "rdev": [v.rdev_major, v.rdev_minor],
            "nlink": v.nlink,
            "flags": decoded.flags,
            "spare": decoded.spare,
            "dtime": [decoded.dtime_sec, decoded.dtime_nsec],
            "ha_version": decoded.ha_version,
        }

    def block_map(self, inode: Inode) -> Dict[str, Json]:
        bmap = inode.obj.bmap
        assert bmap is not None
        positions = {ref.obj_id: ref.index for ref in inode.segments}
        used_trees = {r.tree for r in inode.indirects if r.level == 0}
        return {
            "first_segment_bytes": bmap.first_segment_bytes,
            "other_segment_bytes": bmap.other_segment_bytes,
            "direct": [self.key(bmap.direct[0])] + [positions.get(i, "?") for i in bmap.direct[1:]],
            "tree_roots": [("t%d" % t) if t in used_trees else None for t in range(len(bmap.tree_roots))],
        }

    def indirects(self, inode: Inode) -> List[Dict[str, Json]]:
        where: Dict[bytes, Json] = {ref.obj_id: ref.index for ref in inode.segments}
        where.update({r.obj_id: "t%d/L%d/#%d" % (r.tree, r.level, r.ordinal) for r in inode.indirects})
        out = []
        for r in inode.indirects:
            out.append(
                dict(
                    self.blob_info(r.obj),
                    position="t%d/L%d/#%d" % (r.tree, r.level, r.ordinal),
                    children=[where.get(i, "?") for i in r.obj.indir or []],
                    databack=self.databack(r.obj.databack),
                )
            )
        return out

    def name(self, inode: Inode) -> Optional[str]:
        raw = inode.obj.name
        if raw is None:
            return None
        paths = self.paths[inode.fh]
        if len(paths) > 1 and _text(raw) in {p.rsplit("/", 1)[1] for p in paths}:
            return LINK_NAME
        return _text(raw)

    def inode(self, inode: Inode) -> Dict[str, Json]:
        obj = inode.obj
        record: Dict[str, Json] = dict(
            self.blob_info(obj),
            type=_btype_name(inode.btype),
            version=self.masked("version", inode.name.version),
            bmap=self.block_map(inode),
            name=self.name(inode),
        )
        if obj.back is not None:
            record["back"] = sorted(self.key(b) for b in obj.back)
        if obj.extattrs is not None:
            record["extattrs"] = _filter_attrs(obj.extattrs)
        if inode.indirects:
            record["indirects"] = self.indirects(inode)
        if inode.is_dir:
            segments = self.container.dir_segments(inode)
            record["vattr"] = self.vattr(inode, keep_size=not segments)
            entries = (obj.dirents or []) + [e for _, seg in segments for e in seg.dirents or []]
            # names are unique within a directory (the walk checks it), so a dict is a set
            record["dirents"] = {_text(n): self.key(fh) for n, fh in entries}
            record["segments"] = [
                dict(self.blob_info(seg), block=ref.index, databack=self.databack(seg.databack))
                for ref, seg in segments
            ]
            return record
        record["vattr"] = self.vattr(inode, keep_size=True)
        if inode.btype == Btype.REG:
            digest = xxhash.xxh3_128()
            digest.update(obj.data or b"")
            length = len(obj.data or b"")
            segments = []
            for ref, seg in self.container.file_segments(inode):
                data = seg.data or b""
                digest.update(data)
                length += len(data)
                segments.append(
                    dict(self.blob_info(seg), block=ref.index, length=len(data), databack=self.databack(seg.databack))
                )
            record["content"] = {"length": length, "xxh3_128": digest.hexdigest()}
            record["segments"] = segments
        elif inode.btype == Btype.LNK:
            record["target"] = _text(obj.data or b"")
        elif obj.data is not None:
            record["data"] = {"length": len(obj.data), "xxh3_128": xxhash.xxh3_128_hexdigest(obj.data)}
        return record

    def run_ids_consistent(self) -> bool:
        """True if every inode carries the same fsid and containerid, and fh words agree (§2.2, §10.6)."""
        fsids = {inode.vattr.fsid for inode in self.inodes.values()}
        containerids = {inode.vattr.containerid for inode in self.inodes.values()}
        if len(fsids) != 1 or len(containerids) != 1:
            return False
        # fh word = ((containerid & 0x07FFFFFF) << 5) | 0x11 for every generated fh
        word = ((containerids.pop() & 0x07FFFFFF) << 5) | 0x11
        return all(int.from_bytes(fh[:4], "little") == word for fh in self.inodes if fh != ROOT_ID)

    def form(self) -> Dict[str, Json]:
        bucket = self.container.bucket
        return {
            "bucket": dict(self.blob_info(bucket), extattrs=_filter_attrs(bucket.extattrs)),
            "objects": {self.keys[fh]: self.inode(inode) for fh, inode in self.inodes.items()},
            "run_ids_consistent": self.run_ids_consistent(),
            "strays": len(self.container.strays()),
            "finished": self.container.finished,
        }


def canonical_form(container: Container, mask: Iterable[str] = frozenset()) -> Dict[str, Json]:
    """The canonical structure of ``container`` (JSON-able; see the module docstring).

    ``mask`` names extra fields to replace by :data:`MASKED`, from
    :data:`MASKABLE`: e.g. ``{"fileid", "ctime"}`` for containers written
    from different machines (``ctime`` covers VATTR and DATABACK ctimes).
    Reads every blob the walk reaches, file data included.
    """
    return _Canonicalizer(container, mask).form()


def canonical_json(container: Container, mask: Iterable[str] = frozenset()) -> str:
    """:func:`canonical_form` as stable JSON text: sorted keys, ASCII only, one line.

    Use :func:`diff_canonical` to compare two of them readably.
    """
    return json.dumps(canonical_form(container, mask), sort_keys=True, ensure_ascii=True)


@dataclass(frozen=True)
class Difference:
    """One difference between two canonical forms.

    ``path`` is the object key (``"/"`` is the root) or a top-level section;
    ``field`` the dotted location inside it; ``left``/``right`` the values
    (:data:`ABSENT` when one side lacks the item).
    """

    path: str
    field: str
    left: Json
    right: Json

    def __str__(self) -> str:
        where = "%s: %s" % (self.path, self.field) if self.field else self.path
        return "%s: %s != %s" % (where, _short(self.left), _short(self.right))


ABSENT = "<absent>"


def _short(value: Json, limit: int = 160) -> str:
    text = json.dumps(value, sort_keys=True, ensure_ascii=True)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _diff(path: str, where: str, left: Json, right: Json, out: List[Difference]) -> None:
    if isinstance(left, dict) and isinstance(right, dict):
        for k in sorted(set(left) | set(right)):
            _diff(path, "%s.%s" % (where, k) if where else k, left.get(k, ABSENT), right.get(k, ABSENT), out)
    elif isinstance(left, list) and isinstance(right, list) and len(left) == len(right):
        for i, (a, b) in enumerate(zip(left, right)):
            _diff(path, "%s[%d]" % (where, i), a, b, out)
    elif left != right:
        out.append(Difference(path, where, left, right))


def diff_canonical(left: Union[str, Dict[str, Json]], right: Union[str, Dict[str, Json]]) -> List[Difference]:
    """Differences between two canonical forms (structures or their JSON text).

    Objects are matched by key; inside an object, dicts are compared field
    by field and equal-length lists item by item, so each Difference names
    the smallest differing part. An empty list means "equivalent".
    """
    a = json.loads(left) if isinstance(left, str) else left
    b = json.loads(right) if isinstance(right, str) else right
    out: List[Difference] = []
    for section in sorted((set(a) | set(b)) - {"objects"}):
        _diff(section, "", a.get(section, ABSENT), b.get(section, ABSENT), out)
    objects_a = a.get("objects", {})
    objects_b = b.get("objects", {})
    for key in sorted(set(objects_a) | set(objects_b)):
        _diff(key, "", objects_a.get(key, ABSENT), objects_b.get(key, ABSENT), out)
    return out
