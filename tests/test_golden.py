"""Walk the golden containers written by clfsload 1.0.24 and compare them with their source trees.

Also covers the container reader's sanity checks (on mutated copies of the
goldens and on a synthetic container with indirect-block trees) and the
canonical form used to diff containers.
"""

import dataclasses
import functools
import json
import os
import re
from collections import defaultdict
from pathlib import Path
from typing import Callable, Dict, List, Tuple

import pytest

from clfsload._native import dirents, envelope, hashing, records
from clfsload.clfs.canonical import LINK_NAME, MASKED, canonical_form, canonical_json, diff_canonical
from clfsload.clfs.constants import (
    BUCKET_FIXED_ATTRS,
    BUCKET_ID,
    NULL_ID,
    ROOT_ID,
    Btype,
    Obtype,
)
from clfsload.clfs.container import (
    Container,
    FolderSource,
    UnfinishedTransferError,
    parse_blob_name,
)
from clfsload.clfs.decode import DecodedObject, decode_body, decode_payload
from clfsload.errors import FormatError
from clfsload.read.verify import compare_tree

# source_trees is a session fixture: importing it here is what makes pytest see it.
from _trees import GOLDEN_RUNS, golden_dir, source_trees  # noqa: F401

GOLDEN_NAMES = sorted(GOLDEN_RUNS)
UUID4 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
@functools.lru_cache(maxsize=None)
def walked(name: str) -> Container:
    """The golden container ``name``, walked once per session (strict)."""
    container = Container(FolderSource(golden_dir(name)))
    container.walk()
    return container


@pytest.fixture(params=GOLDEN_NAMES)
def golden(request: pytest.FixtureRequest, source_trees: Path) -> Tuple[str, Container, Path]:
    name = request.param
    tree, _, _ = GOLDEN_RUNS[name]
    return name, walked(name), source_trees / tree


# --- golden containers against their source trees ---------------------------


def test_container_equals_its_source_tree(golden) -> None:
    """Paths both ways, types, modes, owners, sizes, mtimes (§10.4), contents, symlink targets,
    devices, directory nlink and hard-link structure: clfsload.read.verify.compare_tree, deep."""
    name, _, root = golden
    _, preserve, _ = GOLDEN_RUNS[name]
    lenient = Container(FolderSource(golden_dir(name)), strict=False)
    differences = compare_tree(lenient, str(root), deep=True, hardlinks=preserve)
    assert differences == [], "\n".join(map(str, differences[:20]))


def test_sizes_and_root_name(golden) -> None:
    name, container, root = golden
    for entry in container.walk():
        assert entry.inode.vattr.size == entry.inode.obj.vattr.used, (name, entry.path)
        if entry.inode.btype == Btype.LNK:
            assert entry.inode.segments == [], (name, entry.path)
    # the root's NAME is the last component of the source argument
    assert container.lookup(b"").inode.obj.name == os.fsencode(root.name)


def test_special_files_exist() -> None:
    """The device nodes of 'special' are in the golden data (and need root to rebuild)."""
    container = walked("special")
    devices = {e.path: e.inode.vattr for e in container.walk() if e.inode.btype in (Btype.CHR, Btype.BLK)}
    assert {p: (v.btype, v.rdev_major, v.rdev_minor) for p, v in devices.items()} == {
        b"dev/null-like": (Btype.CHR, 1, 3),
        b"dev/block-like": (Btype.BLK, 7, 0),
    }
    kinds = {e.path: e.inode.btype for e in container.walk()}
    assert kinds[b"dev/fifo"] == Btype.FIFO
    assert container.lookup(b"setuid").inode.vattr.mode == 0o104755
    assert container.read_file(b"longest-symlink") == b"x" * 1023


def test_hard_links(golden) -> None:
    """What compare_tree does not look at: BACK, NAME and the version of reconciled objects."""
    name, container, root = golden
    by_fh: Dict[bytes, List[bytes]] = defaultdict(list)
    for entry in container.walk():
        if not entry.inode.is_dir:
            by_fh[entry.fh].append(entry.path)
    for paths in by_fh.values():
        inode = container.lookup(paths[0]).inode
        assert len(inode.obj.back) == len(paths)
        # NAME is the name of the first link found
        assert inode.obj.name in {os.path.basename(p) for p in paths}
        # reconciled objects (§13) carry version 11, the others 9
        assert inode.name.version == (11 if len(paths) > 1 else 9), (name, paths)
    if name in ("basic", "hardlinks"):  # the tree does have hard links, which these loads split
        assert any(os.lstat(p).st_nlink > 1 for p in root.rglob("*") if not p.is_dir())
        assert compare_tree(container, str(root), deep=False, hardlinks=True) != []


def test_container_is_clean(golden) -> None:
    name, container, _ = golden
    assert container.finished
    assert container.tmp_names == [] and container.tmp_root is None
    assert container.other_names == []  # the README: log blobs were left out
    assert container.strays() == []
    assert container.verify() == []
    assert container.problems == []
    versions = {n.version for n in container.clfs_names}
    assert versions <= {9, 11}


def test_compression_modes(golden) -> None:
    name, container, _ = golden
    _, _, compressed = GOLDEN_RUNS[name]
    inode_modes = {e.inode.obj.compression for e in container.walk()}
    if compressed:
        assert inode_modes == {1} and container.bucket.compression == 1
    else:
        source = container.source
        assert {decode_payload(source.read(n.blob), n.blob).compression for n in container.clfs_names} == {0}


def test_bucket_and_root_ext_attrs(golden) -> None:
    name, container, _ = golden
    assert container.bucket_name == hashing.bucket_blob_name()
    pairs = container.bucket_extattrs
    assert pairs[:3] == list(BUCKET_FIXED_ATTRS)
    assert pairs[3][0] == "bucketUUID" and UUID4.match(pairs[3][1])
    logs = pairs[4:]
    assert logs, "FINALIZE appends at least one logfileNNN"
    assert [k for k, _ in logs] == ["logfile%03d" % i for i in range(1, len(logs) + 1)]
    values = [v for _, v in logs]
    assert values == sorted(values) and "output.txt" in values
    assert all(v.endswith(".txt") for v in values)
    root = container.lookup(b"").inode
    assert root.obj.handle_types == [Obtype.VATTR, Obtype.BMAP, Obtype.NAME, Obtype.DIRENTS, Obtype.EXTATTRS]
    (k0, v0), (k1, v1), (k2, v2) = root.obj.extattrs
    assert (k0, v0, k1, k2) == ("containeridEpoch", "2", "massUUID", "wipeEpoch")
    assert UUID4.match(v1) and UUID4.match(v2)


def reencode(obj: DecodedObject) -> bytes:
    """Re-encode a decoded body handle by handle with the project's encoders."""
    parts = []
    for t in obj.handle_types:
        if t == Obtype.VATTR:
            parts.append(records.encode_vattr(obj.vattr.vattr))
        elif t == Obtype.BMAP:
            b = obj.bmap
            parts.append(records.encode_bmap(b.direct[0], b.direct[1:], b.tree_roots, b.other_segment_bytes))
        elif t == Obtype.BACK:
            parts.append(records.encode_back(obj.back))
        elif t == Obtype.NAME:
            parts.append(records.encode_name(obj.name))
        elif t == Obtype.DATA:
            parts.append(records.encode_data(obj.data))
        elif t == Obtype.DIRENTS:
            parts.append(records.encode_dirents(dirents.pack_entries(obj.dirents)))
        elif t == Obtype.DATABACK:
            d = obj.databack
            parts.append(records.encode_databack(d.ctime, d.offset, d.owner))
        elif t == Obtype.EXTATTRS:
            parts.append(records.encode_extattrs(obj.extattrs))
        elif t == Obtype.INDIR:
            parts.append(records.encode_indir(obj.indir))
        else:
            raise AssertionError("unexpected handle type %r" % t)
    return b"".join(parts)


@pytest.mark.parametrize("name", GOLDEN_NAMES)
def test_every_golden_blob_decodes_losslessly(name: str) -> None:
    """Decoding loses nothing: re-encoding every decoded body gives the same bytes."""
    source = FolderSource(golden_dir(name))
    for blob in source.names():
        body = envelope.unwrap(source.read(blob))
        assert reencode(decode_body(body, blob)) == body, blob


# --- canonical form -------------------------------------------------------------

MASK = {"fileid", "ctime"}  # differ between the golden machine and this one


@functools.lru_cache(maxsize=None)
def canonical(name: str) -> str:
    return canonical_json(walked(name), mask=MASK)


@pytest.mark.parametrize("name", GOLDEN_NAMES)
def test_canonical_json_is_stable(name: str) -> None:
    text = canonical(name)
    assert canonical_json(Container(FolderSource(golden_dir(name))), mask=MASK) == text
    assert json.loads(text)["strays"] == 0
    assert json.loads(text)["run_ids_consistent"] is True  # one fsid/containerid, matching every fh word
    assert diff_canonical(text, text) == []


def test_canonical_masks_and_normalizes() -> None:
    form = canonical_form(walked("basic"), mask=MASK)
    hello = form["objects"]["/a/hello.txt"]
    assert hello["vattr"]["atime"] == MASKED and hello["vattr"]["fileid"] == MASKED
    assert hello["vattr"]["ctime"] == MASKED and (hello["vattr"]["fsid"], hello["vattr"]["containerid"]) == (0, 0)
    assert hello["back"] == ["/a"] and hello["bmap"]["direct"] == ["/a/hello.txt"]
    assert hello["content"]["length"] == 6 and hello["name"] == "hello.txt"
    big = form["objects"]["/big.txt"]
    assert big["bmap"]["direct"] == ["/big.txt", 1]
    assert big["segments"][0]["databack"] == {"ctime": MASKED, "offset": 16384, "owner": "/big.txt"}
    assert form["objects"]["/link"]["target"] == "a/hello.txt"
    assert form["bucket"]["extattrs"] == [list(p) for p in BUCKET_FIXED_ATTRS]
    assert form["objects"]["/"]["extattrs"] == [["containeridEpoch", "2"]]
    assert form["run_ids_consistent"] is True
    unmasked = canonical_form(walked("basic"))["objects"]["/a/hello.txt"]
    assert isinstance(unmasked["vattr"]["fileid"], int) and isinstance(unmasked["vattr"]["ctime"], list)
    with pytest.raises(ValueError):
        canonical_form(walked("basic"), mask={"no-such-field"})


def test_canonical_bigdir_masks_multi_segment_dir_size() -> None:
    objects = json.loads(canonical("bigdir"))["objects"]
    many = objects["/many"]
    assert len(many["segments"]) >= 1  # more than 16,360 bytes of entries
    assert many["vattr"]["size"] == MASKED and many["vattr"]["used"] == MASKED
    assert len(many["dirents"]) == 3000 + 2 + 40 + 2
    assert isinstance(objects["/many/sub-00"]["vattr"]["size"], int)


def test_basic_vs_nocompress_differ_only_in_compression() -> None:
    differences = diff_canonical(canonical("basic"), canonical("basic-nocompress"))
    assert differences
    assert {d.field.split(".")[-1].split("[")[0] for d in differences} == {"compression"}
    assert all(d.right == 0 for d in differences)


def test_basic_vs_preserve_differ_in_hard_link_structure() -> None:
    linked = json.dumps(["/a/hardlink.txt", "/a/hello.txt"])
    differences = diff_canonical(canonical("basic"), canonical("basic-preserve"))
    assert {d.path for d in differences} == {"/a", "/a/hello.txt", "/a/hardlink.txt", linked}
    assert {(d.path, d.field) for d in differences if d.path == "/a"} == {
        ("/a", "dirents.hardlink.txt"),
        ("/a", "dirents.hello.txt"),
    }
    obj = json.loads(canonical("basic-preserve"))["objects"][linked]
    assert obj["back"] == ["/a", "/a"] and obj["vattr"]["nlink"] == 2
    assert obj["name"] == LINK_NAME and obj["version"] == 11
    assert "hardlink.txt" in str(differences[0]) or "hello.txt" in str(differences[0])


def test_hardlinks_vs_preserve() -> None:
    differences = diff_canonical(canonical("hardlinks"), canonical("hardlinks-preserve"))
    objects = json.loads(canonical("hardlinks-preserve"))["objects"]
    three = objects[json.dumps(["/x/three", "/y/three-b", "/z/deep/three-c"])]
    assert three["back"] == ["/x", "/y", "/z/deep"] and three["vattr"]["nlink"] == 3
    pipe = objects[json.dumps(["/x/pipe", "/y/pipe-link"])]
    assert pipe["type"] == "FIFO" and pipe["vattr"]["nlink"] == 2
    touched = {d.path for d in differences}
    assert "/x/one" in touched and "/" not in touched and "/z/deep" in touched


# --- container sanity checks on mutated goldens ---------------------------------


class DictSource:
    """An in-memory BlobSource."""

    def __init__(self, blobs: Dict[str, bytes]) -> None:
        self.blobs = dict(blobs)

    def names(self) -> List[str]:
        return sorted(self.blobs)

    def read(self, name: str) -> bytes:
        return self.blobs[name]


def golden_blobs(name: str) -> Dict[str, bytes]:
    source = FolderSource(golden_dir(name))
    return {n: source.read(n) for n in source.names()}


def blob_of(path: bytes, golden: str = "basic") -> str:
    return walked(golden).lookup(path).inode.blob


def rewrite(blobs: Dict[str, bytes], blob: str, change: Callable[[DecodedObject], None]) -> None:
    obj = decode_payload(blobs[blob], blob)
    change(obj)
    blobs[blob] = envelope.wrap(reencode(obj), compress=False)


def patch_body(blobs: Dict[str, bytes], blob: str, offset: int, value: int) -> None:
    """Overwrite the u32 at ``offset`` of a blob's body (for fields the encoders fix)."""
    body = bytearray(envelope.unwrap(blobs[blob]))
    body[offset : offset + 4] = value.to_bytes(4, "little")
    blobs[blob] = envelope.wrap(bytes(body), compress=False)


def first_segment_blob(path: bytes) -> str:
    return walked("basic").lookup(path).inode.segments[0].blob


def _set_vattr(**fields: int) -> Callable[[DecodedObject], None]:
    def change(obj: DecodedObject) -> None:
        obj.vattr = dataclasses.replace(obj.vattr, vattr=obj.vattr.vattr._replace(**fields))

    return change


def _set_databack(**fields: int) -> Callable[[DecodedObject], None]:
    def change(obj: DecodedObject) -> None:
        obj.databack = dataclasses.replace(obj.databack, **fields)

    return change


def _set_bmap(**fields) -> Callable[[DecodedObject], None]:
    def change(obj: DecodedObject) -> None:
        obj.bmap = dataclasses.replace(obj.bmap, **fields)

    return change


def _mut_segment_owner(b: Dict[str, bytes]) -> None:
    rewrite(b, first_segment_blob(b"big.txt"), _set_databack(owner=walked("basic").lookup(b"zero").fh))


MUTATIONS: Dict[str, Tuple[Callable[[Dict[str, bytes]], None], str]] = {
    "segment DATABACK owner": (_mut_segment_owner, "DATABACK owner"),
    "segment DATABACK offset": (
        lambda b: rewrite(b, first_segment_blob(b"big.txt"), _set_databack(offset=0)),
        "DATABACK offset 0, expected 16384",
    ),
    "segment DATABACK ctime": (
        lambda b: rewrite(b, first_segment_blob(b"big.txt"), _set_databack(ctime=5)), "DATABACK ctime 5"),
    "segment too short": (
        lambda b: rewrite(b, first_segment_blob(b"a/b/rand.bin"), lambda o: setattr(o, "data", o.data[:-1])),
        "segment holds 83615 bytes, expected 83616",
    ),
    "missing segment": (lambda b: b.pop(first_segment_blob(b"big.txt")), "has no blob"),
    "missing inode": (lambda b: b.pop(blob_of(b"exec.sh")), "dangling entry"),
    "nlink": (lambda b: rewrite(b, blob_of(b"a/hello.txt"), _set_vattr(nlink=2)), "nlink 2 but 1 backpointers"),
    "btype": (lambda b: rewrite(b, blob_of(b"private"), _set_vattr(btype=5)), "VATTR btype 5"),
    "mode": (lambda b: rewrite(b, blob_of(b"private"), _set_vattr(mode=0o60600)), "does not match btype"),
    "file size": (lambda b: rewrite(b, blob_of(b"exec.sh"), _set_vattr(size=19)), "inode DATA holds 18 bytes"),
    "dir size": (lambda b: rewrite(b, blob_of(b"a/b"), _set_vattr(size=1)), "directory size 1"),
    "direct[0]": (lambda b: rewrite(b, blob_of(b"zero"), _set_bmap(direct=[ROOT_ID])), "BMAP.direct[0]"),
    "otherSegmentBytes": (
        lambda b: rewrite(b, blob_of(b"zero"), _set_bmap(other_segment_bytes=262144)), "otherSegmentBytes is 262144"),
    "firstSegmentBytes": (lambda b: patch_body(b, blob_of(b"zero"), 148, 4096), "firstSegmentBytes is 4096"),
    "dir ..": (
        lambda b: rewrite(b, blob_of(b"a/b"), lambda o: o.dirents.__setitem__(1, (b"..", ROOT_ID))),
        "the .. entry",
    ),
    "first backpointer": (
        lambda b: rewrite(b, blob_of(b"a/hello.txt"), lambda o: setattr(o, "back", [ROOT_ID])),
        "first backpointer",
    ),
    "handle order": (
        lambda b: rewrite(b, blob_of(b"exec.sh"), lambda o: o.handle_types.insert(2, o.handle_types.pop(3))),
        "handles VATTR,BMAP,NAME,BACK,DATA, expected VATTR,BMAP,BACK,NAME,DATA",
    ),
    "duplicate name": (
        lambda b: rewrite(b, blob_of(b"a"), lambda o: o.dirents.append(o.dirents[-1])),
        "duplicate entry name",
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(MUTATIONS))
def test_sanity_violations(case: str) -> None:
    mutate, message = MUTATIONS[case]
    blobs = golden_blobs("basic")
    mutate(blobs)
    with pytest.raises(FormatError, match=re.escape(message)):
        Container(DictSource(blobs)).verify()
    lenient = Container(DictSource(blobs), strict=False)
    problems = lenient.verify()
    assert any(message in p for p in problems), problems
    assert lenient.verify() == problems  # lazy checks that run again do not repeat problems


def test_directory_segment_needs_empty_data() -> None:
    blobs = golden_blobs("bigdir")
    segment = walked("bigdir").lookup(b"many").inode.segments[0].blob
    rewrite(blobs, segment, lambda o: o.handle_types.remove(Obtype.DATA))
    with pytest.raises(FormatError, match="directory segment is not DIRENTS, empty DATA, DATABACK"):
        Container(DictSource(blobs)).walk()


def test_stray_blobs_are_reported() -> None:
    blobs = golden_blobs("basic")
    big = walked("basic").lookup(b"big.txt").inode
    orphan = hashing.blob_name(bytes(range(16)), Btype.SEGMENT, big.fh)
    blobs[orphan] = blobs[big.segments[0].blob]
    blobs["output.txt"] = b"a log, not a CLFS object"
    container = Container(DictSource(blobs))
    container.walk()
    assert container.strays() == [orphan]
    assert container.other_names == ["output.txt"]
    with pytest.raises(FormatError, match="stray blob"):
        container.verify()
    assert Container(DictSource(blobs), strict=False).verify() == [orphan + ": stray blob: not reachable from the root"]


def test_highest_version_wins_and_lower_is_stray() -> None:
    blobs = golden_blobs("basic-preserve")
    linked = walked("basic-preserve").lookup(b"a/hello.txt").inode
    assert linked.name.version == 11
    older = linked.blob.replace(".00000000011.", ".00000000009.")
    blobs[older] = blobs[blob_of(b"a/b", "basic-preserve")]  # any content: it must not be read
    container = Container(DictSource(blobs))
    assert container.lookup(b"a/hello.txt").inode.blob == linked.blob
    assert container.strays() == [older]


def test_unfinished_transfer() -> None:
    blobs = golden_blobs("special")
    root = hashing.blob_name(ROOT_ID, Btype.DIR, ROOT_ID)
    blobs["tmp" + root] = blobs.pop(root)
    container = Container(DictSource(blobs))
    assert not container.finished and container.tmp_root == "tmp" + root
    with pytest.raises(UnfinishedTransferError, match="did not finish"):
        container.walk()
    lenient = Container(DictSource(blobs), allow_unfinished=True)
    assert [e.path for e in lenient.walk()] == [e.path for e in walked("special").walk()]
    assert lenient.strays() == []
    blobs["tmp" + root + "x"] = b""
    del blobs["tmp" + root]
    with pytest.raises(FormatError, match="no root inode"):
        Container(DictSource(blobs)).walk()


def test_tmp_root_next_to_final_root_is_stray() -> None:
    blobs = golden_blobs("special")
    root = hashing.blob_name(ROOT_ID, Btype.DIR, ROOT_ID)
    blobs["tmp" + root] = blobs[root]
    container = Container(DictSource(blobs))
    assert container.finished and container.strays() == ["tmp" + root]


def test_parse_blob_name_18_2() -> None:
    docs = (
        "8CD16A362DE4529F_11CF8A4600010100E9030000000000001111111111111111"
        ".0002.0000006457871C6B.00000000009.FFFFFFFF.0002"
    )
    parsed = parse_blob_name(docs)
    assert (parsed.name_version, parsed.btype, parsed.version, parsed.snapshot) == (2, 2, 9, 0xFFFFFFFF)
    assert parsed.obj_id == bytes.fromhex("11CF8A4600010100E9030000000000001111111111111111")
    assert (parsed.id_hash, parsed.owner_hash) == (0x8CD16A362DE4529F, 0x0000006457871C6B)
    bucket = parse_blob_name("00000063_00000000000000000000000000000063.00000000009.FFFFFFFF.0001")
    assert (bucket.name_version, bucket.obj_id, bucket.version, bucket.btype) == (1, BUCKET_ID, 9, None)
    assert parse_blob_name("tmp" + hashing.blob_name(ROOT_ID, Btype.DIR, ROOT_ID)) is None
    assert parse_blob_name("output.txt") is None
    assert parse_blob_name(docs.lower()) is None


# --- synthetic container with indirect-block trees (§11.3, §11.4) ---------------

CONTAINERID = 0x12345678
FH_WORD = (((CONTAINERID & 0x07FFFFFF) << 5) | 0x11).to_bytes(4, "little")
CTIME = 1600000001


def make_fh(ftype: int, seq: int, dmid: int) -> bytes:
    """A generated filehandle (§2.2)."""
    return FH_WORD + bytes((0, dmid, ftype, 0)) + seq.to_bytes(8, "little") + (seq * 7919).to_bytes(8, "little")


def segment_id(index: int) -> bytes:
    """A recognizable 16-byte segment id (well clear of the well-known ids)."""
    return b"\x5e" + index.to_bytes(15, "big")


def indirect_id(ident: int) -> bytes:
    return b"\x1d" + ident.to_bytes(15, "big")


def synthetic_bigdir(tree1_ids: int = 4096) -> Tuple[Dict[str, bytes], List[bytes], bytes]:
    """A root holding dir ``big`` with 1023 direct segments, a full tree 0 and ``tree1_ids`` in tree 1.

    With ``tree1_ids == 4096`` the leaf of tree 1 closes full, so the final
    close emits the empty INDIR block of §11.4: tree 1 = L0[L1(4096), L1()].
    Segments are empty except for a few that each hold one hard link to file
    ``f``; the names record the block index. Returns the blobs, the expected
    listing of ``big`` and big's fh.
    """
    big_fh, file_fh = make_fh(1, 1001, 1), make_fh(2, 1002, 1)
    total = 1023 + 4096 + tree1_ids
    linked_blocks = [1, 1023, 1024, 5119, 5120, total]
    seg_ids = [segment_id(i) for i in range(1, total + 1)]
    blobs: Dict[str, bytes] = {}

    def put(obj_id: bytes, btype: int, owner: bytes, body: bytes) -> None:
        blobs[hashing.blob_name(obj_id, btype, owner)] = envelope.wrap(body, compress=False)

    entries_bytes = 0
    for index, seg_id in enumerate(seg_ids, 1):
        entries = [(b"f%05d" % index, file_fh)] if index in linked_blocks else []
        packed = dirents.pack_entries(entries)
        entries_bytes += 4 + len(packed)
        offset = 16384 + (index - 1) * 262144
        put(seg_id, Btype.SEGMENT, big_fh, records.encode_dir_segment(packed, CTIME, offset, big_fh))

    def indirect(ident: int, children: List[bytes], tree: int, level: int) -> bytes:
        block_id = indirect_id(ident)
        body = records.encode_indirect_block(children, CTIME, (tree << 16) + level, big_fh)
        put(block_id, Btype.INDIRECT, big_fh, body)
        return block_id

    tree0 = indirect(1, seg_ids[1023:5119], 0, 0)
    leaves = [indirect(2, seg_ids[5119:5119 + min(tree1_ids, 4096)], 1, 1)]
    leaves.append(indirect(3, seg_ids[5119 + 4096:], 1, 1))  # empty when tree 1 got exactly 4096 ids
    tree1 = indirect(4, leaves, 1, 0)
    attrs = (0o40755, 2, 0, 0, 0, 1, 2, CTIME, 3, 4, 5, 77, 1, 0, 0, 2, CONTAINERID)
    first = dirents.pack_entries([(b".", big_fh), (b"..", ROOT_ID)])
    size = 4 + len(first) + entries_bytes
    body = records.encode_dir_inode(
        attrs[:4] + (size,) + attrs[5:], big_fh, seg_ids[:1023], [tree0, tree1, NULL_ID, NULL_ID], b"big", first
    )
    put(big_fh, Btype.DIR, ROOT_ID, body)
    data = b"linked\n"
    file_attrs = (0o100644, 1, 0, 0, len(data), 1, 2, CTIME, 3, 4, 5, 77, 2, 0, 0, len(linked_blocks), CONTAINERID)
    back = [big_fh] * len(linked_blocks)
    put(file_fh, Btype.REG, big_fh, records.encode_file_inode(file_attrs, file_fh, [], [], back, b"f00001", data))
    root_entries = dirents.pack_entries([(b".", ROOT_ID), (b"..", ROOT_ID), (b"big", big_fh)])
    root_attrs = (0o40755, 2, 0, 0, 4 + len(root_entries), 1, 2, CTIME, 3, 4, 5, 77, 0, 0, 0, 3, CONTAINERID)
    extattrs = [("containeridEpoch", "2"), ("massUUID", "m"), ("wipeEpoch", "w")]
    put(ROOT_ID, Btype.DIR, ROOT_ID,
        records.encode_dir_inode(root_attrs, ROOT_ID, [], [], b"src", root_entries, extattrs))  # fmt: skip
    bucket_attrs = list(BUCKET_FIXED_ATTRS) + [("bucketUUID", "u")]
    blobs[hashing.bucket_blob_name()] = envelope.wrap(records.encode_extattrs(bucket_attrs), compress=False)
    return blobs, [b"f%05d" % i for i in linked_blocks], big_fh


@functools.lru_cache(maxsize=None)
def synthetic() -> Tuple[Dict[str, bytes], List[bytes], bytes]:
    return synthetic_bigdir()


def test_indirect_trees_with_empty_block() -> None:
    blobs, expected_listing, big_fh = synthetic()
    container = Container(DictSource(blobs))
    assert container.verify() == []
    assert container.strays() == []
    assert container.listdir(b"big") == expected_listing
    big = container.lookup(b"big").inode
    assert [ref.index for ref in big.segments] == list(range(1, 1023 + 8192 + 1))
    assert [ref.obj_id for ref in big.segments] == [segment_id(i) for i in range(1, 9216)]
    shape = [(r.tree, r.level, r.ordinal, len(r.obj.indir)) for r in big.indirects]
    assert shape == [(0, 0, 0, 4096), (1, 0, 0, 2), (1, 1, 0, 4096), (1, 1, 1, 0)]
    linked = container.lookup(b"big/f05120").inode
    assert linked.vattr.nlink == 6 and container.links(linked.fh) == [b"big/" + n for n in expected_listing]
    form = canonical_form(container)
    indirects = form["objects"]["/big"]["indirects"]
    assert [(i["position"], i["children"][:2], len(i["children"])) for i in indirects] == [
        ("t0/L0/#0", [1024, 1025], 4096),
        ("t1/L0/#0", ["t1/L1/#0", "t1/L1/#1"], 2),
        ("t1/L1/#0", [5120, 5121], 4096),
        ("t1/L1/#1", [], 0),
    ]
    assert indirects[1]["databack"] == {"ctime": CTIME, "offset": (1 << 16) + 0, "owner": "/big"}
    assert form["objects"]["/big"]["bmap"]["tree_roots"] == ["t0", "t1", None, None]


def test_indirect_tree_violations() -> None:
    blobs, _, big_fh = synthetic()
    blobs = dict(blobs)
    big_blob = hashing.blob_name(big_fh, Btype.DIR, ROOT_ID)
    # a tree 1 leaf whose DATABACK claims level 0
    leaf = next(n for n in blobs if n.startswith(hashing.name_prefix(indirect_id(2))))
    rewrite(blobs, leaf, _set_databack(offset=1 << 16))
    with pytest.raises(FormatError, match="DATABACK offset 65536, expected 65537"):
        Container(DictSource(blobs)).walk()
    # tree roots used while the direct blocks are not full
    rewrite(blobs, big_blob, lambda o: o.bmap.direct.pop())
    problems = Container(DictSource(blobs), strict=False).verify(read_data=False)
    assert any("tree 0 used with only 1023 direct blocks" in p for p in problems), problems


def test_canonical_flags_inconsistent_run_ids() -> None:
    blobs = golden_blobs("basic")
    hello = walked("basic").lookup(b"a/hello.txt").inode
    rewrite(blobs, hello.blob, _set_vattr(containerid=hello.vattr.containerid + 1))
    form = canonical_form(Container(DictSource(blobs)))
    assert form["run_ids_consistent"] is False
    differences = diff_canonical(canonical_form(walked("basic")), form)
    assert [(d.path, d.field, d.left, d.right) for d in differences] == [
        ("run_ids_consistent", "", True, False),  # top-level sections come first
        ("/a/hello.txt", "compression", 1, 0),  # rewritten raw
    ]
    assert [str(d) for d in differences] == ["run_ids_consistent: true != false", "/a/hello.txt: compression: 1 != 0"]
