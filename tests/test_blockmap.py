"""Block maps and indirect trees (§11), including the empty-block quirk (§11.4)."""

import itertools

import pytest

from clfsload.clfs.blockmap import (
    BlockMapBuilder,
    block_ids_in_order,
    segment_count,
    segment_offset,
)
from clfsload.clfs.constants import DIR_OTHER_SEGMENT_BYTES, FIRST_SEGMENT_BYTES, NULL_ID, OTHER_SEGMENT_BYTES
from clfsload.errors import EncodeError


class Recorder:
    """Collects emitted indirect blocks and hands out readable ids I1, I2, ..."""

    def __init__(self):
        self.blocks = []
        self._ids = ("I%d" % i for i in itertools.count(1))

    def new_id(self):
        return next(self._ids)

    def emit(self, block_id, children, offset):
        self.blocks.append((block_id, list(children), "t%d/L%d" % (offset >> 16, offset & 0xFFFF)))

    def children(self, block_id):
        return next(c for i, c, _ in self.blocks if i == block_id)


def scaled(n, direct=1, fanout=3):
    rec = Recorder()
    builder = BlockMapBuilder(rec.emit, new_id=rec.new_id, direct=direct, fanout=fanout)
    data = ["D%d" % (k + 1) for k in range(n)]
    for d in data:
        builder.add(d)
    direct_ids, roots = builder.finish()
    return rec, direct_ids, roots, data


def test_spec_example_tree1_exactly_full_leaf_gives_empty_block():
    rec, direct, roots, _ = scaled(1 + 3 + 3)
    assert direct == ["D1"]
    assert rec.blocks == [
        ("I1", ["D2", "D3", "D4"], "t0/L0"),
        ("I2", ["D5", "D6", "D7"], "t1/L1"),
        ("I3", [], "t1/L1"),
        ("I4", ["I2", "I3"], "t1/L0"),
    ]
    assert roots == ["I1", "I4", NULL_ID, NULL_ID]


def test_spec_example_tree1_with_four_ids_has_no_empty_block():
    rec, _, roots, _ = scaled(1 + 3 + 4)
    assert rec.blocks[1:] == [
        ("I2", ["D5", "D6", "D7"], "t1/L1"),
        ("I3", ["D8"], "t1/L1"),
        ("I4", ["I2", "I3"], "t1/L0"),
    ]
    assert roots[:2] == ["I1", "I4"]


def test_spec_example_tree2_exactly_nine_ids():
    rec, _, roots, _ = scaled(1 + 3 + 9 + 9)
    assert rec.blocks[-4:] == [
        ("I9", ["I6", "I7", "I8"], "t2/L1"),
        ("I10", [], "t2/L2"),
        ("I11", ["I10"], "t2/L1"),
        ("I12", ["I9", "I11"], "t2/L0"),
    ]
    assert roots == ["I1", "I5", "I12", NULL_ID]


@pytest.mark.parametrize("n", list(range(0, 60)))
def test_walk_returns_every_id_in_order(n):
    rec, direct, roots, data = scaled(n)
    assert block_ids_in_order(direct, roots, rec.children) == data


def test_tree0_full_then_tree1_starts_with_real_constants():
    rec = Recorder()
    builder = BlockMapBuilder(rec.emit, new_id=rec.new_id)
    ids = [b"%016d" % k for k in range(1023 + 4096 + 5)]
    for i in ids:
        builder.add(i)
    direct, roots = builder.finish()
    assert len(direct) == 1023
    assert [(len(c), where) for _, c, where in rec.blocks] == [(4096, "t0/L0"), (5, "t1/L1"), (1, "t1/L0")]
    assert roots[2:] == [NULL_ID, NULL_ID]
    assert block_ids_in_order(direct, roots, rec.children) == ids


def test_tree1_multiple_of_4096_gives_an_empty_leaf_with_real_constants():
    rec = Recorder()
    builder = BlockMapBuilder(rec.emit, new_id=rec.new_id)
    for k in range(1023 + 4096 + 4096):
        builder.add(b"%016d" % k)
    builder.finish()
    assert [(len(c), where) for _, c, where in rec.blocks[-3:]] == [(4096, "t1/L1"), (0, "t1/L1"), (2, "t1/L0")]


def test_overflowing_four_trees_is_an_encode_error():
    builder = BlockMapBuilder(lambda *a: None, new_id=lambda: "x", direct=0, fanout=1)
    for k in range(4):  # trees hold 1, 1, 1, 1 with fanout 1
        builder.add(k)
    with pytest.raises(EncodeError):
        builder.add(4)


@pytest.mark.parametrize(
    "size, count",
    [
        (0, 0),
        (1, 0),
        (FIRST_SEGMENT_BYTES, 0),
        (FIRST_SEGMENT_BYTES + 1, 1),
        (FIRST_SEGMENT_BYTES + OTHER_SEGMENT_BYTES, 1),
        (FIRST_SEGMENT_BYTES + OTHER_SEGMENT_BYTES + 1, 2),
        (20971520, 3),  # §18.8
        (8581562368, 1023),  # last size without indirect blocks (§11.2)
        (8581562369, 1024),
    ],
)
def test_segment_count(size, count):
    assert segment_count(size, FIRST_SEGMENT_BYTES, OTHER_SEGMENT_BYTES) == count


def test_segment_offsets():
    assert [segment_offset(k, FIRST_SEGMENT_BYTES, OTHER_SEGMENT_BYTES) for k in (1, 2, 3)] == [
        16384,
        8404992,
        16793600,
    ]
    assert segment_offset(2, FIRST_SEGMENT_BYTES, DIR_OTHER_SEGMENT_BYTES) == 16384 + 262144
