"""Filehandle rules that a canonical comparison cannot see (FMT §2.2).

The canonical form (§16.1) maps filehandles to paths, so two containers can
be canonical-equal while the bytes only the cache reads differ. These are
the rules the reference keeps in every container of an uninterrupted run:

* every generated handle's ``dmid_src`` (byte 4) is the ``dmid_tgt``
  (byte 5) of the directory its first backpointer names, the one whose
  listing holds it under the name of its NAME handle (0 under the root; a
  directory has no BACK handle: its one listing parent stands for it);
* a non-directory's ``dmid_tgt`` equals its ``dmid_src``;
* every dmid is below 48 (DIRMGR_COUNT);
* seqs (bytes 8-15) are unique and lie in ``[1001, 2^63)``, positive as
  signed 64-bit integers;
* over the run, the directories' ``dmid_tgt`` values are exactly
  ``{k mod 48 : k = 1..n}`` for ``n`` directories (the root excluded).

:func:`handle_rule_violations` checks them on a walked container.
"""

import collections
import struct
from typing import Counter, Dict, List, Optional, Set, Tuple

from .constants import DIRMGR_COUNT, FH_LEN, MIN_SEQ
from .container import Container

_SEQ = struct.Struct("<Q")


def dmid_histogram(container: Container) -> Counter:
    """How many directories (the root excluded) have each ``dmid_tgt`` value."""
    seen: Set[bytes] = set()
    counts: Counter = collections.Counter()
    for entry in container.walk():
        fh = entry.fh
        if entry.path and entry.inode.is_dir and fh not in seen:
            seen.add(fh)
            counts[fh[5]] += 1
    return counts


def even_spread(n: int) -> Counter:
    """The reference's spread of ``n`` directories: ``{k mod 48 : k = 1..n}``."""
    return collections.Counter(k % DIRMGR_COUNT for k in range(1, n + 1))


def spread_violation(counts: Counter, tolerance: Optional[float] = None) -> Optional[str]:
    """Why ``counts`` is not the reference's spread; None if it is.

    ``tolerance`` None asks for the exact multiset; a fraction (0.05) accepts
    per-id counts within that fraction of the even share (at least 1 off).
    """
    n = sum(counts.values())
    expected = even_spread(n)
    if tolerance is None:
        if counts == expected:
            return None
    else:
        share = n / DIRMGR_COUNT
        slack = max(1.0, tolerance * share)
        if all(abs(counts.get(d, 0) - share) <= slack for d in range(DIRMGR_COUNT)) and max(counts, default=0) < DIRMGR_COUNT:
            return None
    used = [counts.get(d, 0) for d in range(DIRMGR_COUNT)]
    return "directory dmid_tgt spread over %d directories is not %s: min %d, max %d per id (even: %d-%d)%s" % (
        n, "k mod 48 for k = 1..n" if tolerance is None else "within %.0f%% of even" % (100 * tolerance),
        min(used), max(used), min(expected.values(), default=0) if n >= DIRMGR_COUNT else 0,
        max(expected.values(), default=0),
        "; ids over 47: %s" % sorted(d for d in counts if d >= DIRMGR_COUNT) if max(counts, default=0) >= DIRMGR_COUNT else "")


def handle_rule_violations(container: Container, spread_tolerance: Optional[float] = None,
                           check_spread: bool = True) -> List[str]:
    """Every break of the FMT §2.2 handle rules in ``container`` (walked from its root); [] if none."""
    problems: List[str] = []
    listed: Dict[bytes, Set[Tuple[bytes, bytes]]] = collections.defaultdict(set)  # fh -> (parent fh, name)
    inodes = {}
    for entry in container.walk():
        if not entry.path:
            continue
        name = entry.path.rsplit(b"/", 1)[-1]
        listed[entry.fh].add((entry.parent_fh, name))
        inodes[entry.fh] = entry
    seqs: Dict[int, bytes] = {}
    for fh, entry in inodes.items():
        where = "%s (%s)" % (entry.path.decode("utf-8", "replace"), entry.inode.blob)
        if len(fh) != FH_LEN:
            problems.append("%s: handle of %d bytes, not %d" % (where, len(fh), FH_LEN))
            continue
        dmid_src, dmid_tgt = fh[4], fh[5]
        if dmid_src >= DIRMGR_COUNT or dmid_tgt >= DIRMGR_COUNT:
            problems.append("%s: dmid_src %d / dmid_tgt %d not below %d" % (where, dmid_src, dmid_tgt, DIRMGR_COUNT))
        obj = entry.inode.obj
        if entry.inode.is_dir:
            first = entry.parent_fh  # a directory has no BACK handle: its parent is its one listing (and ..)
        elif obj.back:
            first = obj.back[0]
        else:
            problems.append("%s: no backpointer" % where)
            continue
        if obj.name is None or (first, obj.name) not in listed[fh]:
            problems.append("%s: its NAME and first backpointer do not name a listing that holds it" % where)
        if dmid_src != first[5]:
            problems.append("%s: dmid_src %d is not the dmid_tgt %d of its first backpointer %s"
                            % (where, dmid_src, first[5], first.hex()))
        if not entry.inode.is_dir and dmid_tgt != dmid_src:
            problems.append("%s: a non-directory with dmid_tgt %d != dmid_src %d" % (where, dmid_tgt, dmid_src))
        seq = _SEQ.unpack_from(fh, 8)[0]
        if not MIN_SEQ <= seq < 1 << 63:
            problems.append("%s: seq %d is outside [%d, 2^63)" % (where, seq, MIN_SEQ))
        other = seqs.setdefault(seq, fh)
        if other != fh:
            problems.append("%s: seq %d is also the seq of %s" % (where, seq, other.hex()))
    if check_spread:
        problem = spread_violation(dmid_histogram(container), spread_tolerance)
        if problem:
            problems.append(problem)
    return problems
