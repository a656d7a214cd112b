# cython: language_level=3
"""Declarations from libxxhash's ``xxhash.h`` used by ``checksum_c``."""

from libc.stdint cimport uint64_t


cdef extern from "xxhash.h" nogil:
    ctypedef uint64_t XXH64_hash_t

    ctypedef struct XXH128_hash_t:
        XXH64_hash_t low64
        XXH64_hash_t high64

    ctypedef struct XXH128_canonical_t:
        unsigned char digest[16]

    unsigned XXH_versionNumber()
    XXH128_hash_t XXH3_128bits(const void* data, size_t len)
    void XXH128_canonicalFromHash(XXH128_canonical_t* dst, XXH128_hash_t hash)
