#!/usr/bin/env python3
"""Codec benchmark: encode + frame + compress + checksum, compiled twins vs pure twins.

usage: python bench/codec.py [--objects 20000] [--megabytes 512] [--repeat 3]

Prints, measured in this one run:
  * small objects (1-8 KiB, text-like regular-file inodes), each put through
    the loader's per-object path: blob name (hash64 + V2 name), record
    encoding, LZ4 envelope, XXH3 checksum; objects/s for each backend and the
    compiled/pure ratio (target: at least 5x);
  * large data (8 MiB file segments, half compressible, half random):
    MB/s for each backend next to raw ``lz4.frame.compress`` over the same
    bytes, and the time ratio to it (target: compiled within 1.25x).
Each figure is the best of ``--repeat`` passes, to damp noise from the machine.
"""

import argparse
import importlib
import os
import random
import sys
import time

import lz4.frame  # noqa: E402

from clfsload.clfs.constants import Btype, Ftype  # noqa: E402
from clfsload.clfs.handles import make_fh  # noqa: E402
from clfsload.clfs.vattr import VAttr  # noqa: E402

TOPICS = ("hashing", "records", "envelope", "checksum")
SEGMENT = 8 * 1024 * 1024
WORDS = [b"alpha ", b"beta ", b"gamma\n", b"delta ", b"omega\n", b"zeta ", b"0123 ", b"path/to/file "]


def twins(kind):
    """The hashing, records, envelope and checksum twins of one backend ('c' or 'py')."""
    return [importlib.import_module("clfsload._native.%s_%s" % (t, kind)) for t in TOPICS]


def text(rng, n):
    out = bytearray()
    while len(out) < n:
        out += rng.choice(WORDS)
    return bytes(out[:n])


def small_objects(count):
    rng = random.Random(20000)
    parent = make_fh(0x12345678, 0, 1, Ftype.DIR, 1001, 0x1111111111111111)
    objs = []
    for k in range(count):
        fh = make_fh(0x12345678, 1, 1, Ftype.REG, 2000 + k, rng.getrandbits(63) + 1)
        data = text(rng, rng.randint(1024, 8192))
        attrs = VAttr(0o100644, Btype.REG, 1000, 1000, len(data), 1700000000, 1, 1700000000, 2, 1700000000, 3, 7, 100 + k, 0, 0, 1, 0x12345678)
        objs.append((attrs, fh, parent, b"file-%06d.txt" % k, data))
    return objs


def run_small(kind, objs):
    hashing, records, envelope, checksum = twins(kind)
    blob_name, encode, wrap, digest = hashing.blob_name, records.encode_file_inode, envelope.wrap, checksum.checksum
    start = time.perf_counter()
    for attrs, fh, parent, name, data in objs:
        blob_name(fh, Btype.REG, parent)
        payload = wrap(encode(attrs, fh, (), (), (parent,), name, data), True)
        digest(payload)
    return time.perf_counter() - start


def large_segments(megabytes):
    rng = random.Random(512)
    count = max(2, megabytes * 1024 * 1024 // SEGMENT)
    block = text(rng, SEGMENT)
    segs = []
    for k in range(count):
        if k % 2 == 0:
            # compressible: the text rotated, so no two segments are equal
            segs.append(block[k:] + block[:k])
        else:
            segs.append(os.urandom(SEGMENT))
    return segs


def run_large(kind, segs):
    hashing, records, envelope, checksum = twins(kind)
    owner = make_fh(0x12345678, 1, 1, Ftype.REG, 5000, 42)
    start = time.perf_counter()
    for k, data in enumerate(segs, start=1):
        payload = envelope.wrap(records.encode_file_segment(data, 1700000000, 16384 + (k - 1) * SEGMENT, owner), True)
        checksum.checksum(payload)
    return time.perf_counter() - start


def run_raw_lz4(segs):
    start = time.perf_counter()
    for data in segs:
        lz4.frame.compress(data, block_size=lz4.frame.BLOCKSIZE_MAX256KB, block_linked=True, store_size=False)
    return time.perf_counter() - start


def best(fn, *args, repeat):
    return min(fn(*args) for _ in range(repeat))


def main(argv=None):
    parser = argparse.ArgumentParser(description="clfsload codec benchmark")
    parser.add_argument("--objects", type=int, default=20000)
    parser.add_argument("--megabytes", type=int, default=512)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    try:
        twins("c")
    except ImportError as exc:
        sys.exit("bench/codec.py needs the compiled twins (pip install . with liblz4-dev, libxxhash-dev): %s" % exc)

    objs = small_objects(args.objects)
    t_py = best(run_small, "py", objs, repeat=args.repeat)
    t_c = best(run_small, "c", objs, repeat=args.repeat)
    print("small objects: %d regular-file inodes, 1-8 KiB text: name+encode+frame+compress+checksum" % len(objs))
    print("  pure     %10.0f objects/s" % (len(objs) / t_py))
    print("  compiled %10.0f objects/s" % (len(objs) / t_c))
    print("  ratio compiled/pure: %.2fx (target >= 5x)" % (t_py / t_c))

    segs = large_segments(args.megabytes)
    total_mb = len(segs) * SEGMENT / 1e6
    t_raw = best(run_raw_lz4, segs, repeat=args.repeat)
    t_lpy = best(run_large, "py", segs, repeat=args.repeat)
    t_lc = best(run_large, "c", segs, repeat=args.repeat)
    print("large data: %d MB in 8 MiB segments, half text, half random" % total_mb)
    print("  raw lz4.frame.compress %8.0f MB/s (the limit)" % (total_mb / t_raw))
    print("  pure                   %8.0f MB/s  time ratio to raw LZ4: %.2fx" % (total_mb / t_lpy, t_lpy / t_raw))
    print("  compiled               %8.0f MB/s  time ratio to raw LZ4: %.2fx (target <= 1.25x)" % (total_mb / t_lc, t_lc / t_raw))


if __name__ == "__main__":
    main()
