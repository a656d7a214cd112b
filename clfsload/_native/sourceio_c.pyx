"""Reading a small source file whole in one call: the compiled twin of ``sourceio_py``.

Same names, arguments, results and exceptions as ``sourceio_py``, whose
docstrings are the specification. The chain open, fstat, read, fstat,
close runs with the GIL released once, not five times: on a thread of the
read pipeline each release is a hand-off to the consumer and back (a futex
wake and a context switch when it is busy), which cost more CPU than the
calls themselves through a slow source. The ``os.stat_result`` returned is
built from the ``struct stat`` field by field as ``os.fstat`` builds it.
The chain is ``clfs_open_read`` of ``sourcerun.h``, the one a run's
``"open+read"`` items run on its threads.

The first fstat is a ``statx(AT_STATX_DONT_SYNC)`` where the system has it:
on a local file system the same answer, on FUSE or NFS the attributes the
open's lookup of the path brought back, without a round trip of its own
(one of a dozen per small file through a slow source). The torn-read rule
holds as before: those attributes are a state of the opened inode from
before the read, so a second fstat (a real one) showing the same inode,
size, mtime and ctime still means nothing changed across the read.
"""

import os

from libc.errno cimport EINVAL
from libc.stdint cimport int64_t
from libc.stdlib cimport free, malloc
from libc.string cimport memcpy
from posix.stat cimport struct_stat

from .sourceio_py import NOATIME, OPEN_FLAGS, kind_of_mode  # noqa: F401 - the same open flags, checked by the twin tests

__all__ = ["kind_of_mode", "open_read", "run_ahead"]

#: run_ahead runs its operations in parallel on threads of its own (the pure twin: one by one, as taken)
RUNS_IN_PARALLEL = True


cdef extern from "sourcerun.h" nogil:
    ctypedef struct clfs_slot:
        int failed
        int err
        int fd
        int whole
        struct_stat st
        char* data
        Py_ssize_t n
    void clfs_open_read(const char* path, Py_ssize_t limit, clfs_slot* slot)
    ctypedef struct clfs_run:
        pass
    clfs_run* clfs_run_new(int kind, Py_ssize_t limit, Py_ssize_t count, char* names, Py_ssize_t* offsets,
                           Py_ssize_t window, void* slots, int slot_run, int64_t fast_ns, int inline_mode)
    enum:
        CLFS_RUN_LSTAT
        CLFS_RUN_OPEN_READ
        CLFS_FAILED_OPEN
        CLFS_NOT_REGULAR
        CLFS_FAILED_LSTAT
    void clfs_run_start(clfs_run* run, int threads)
    clfs_slot* clfs_run_take(clfs_run* run, Py_ssize_t i)
    clfs_slot* clfs_run_try_take(clfs_run* run, Py_ssize_t i)
    int clfs_run_inline(clfs_run* run)
    void clfs_run_release(clfs_run* run, clfs_slot* slot)
    void clfs_run_close(clfs_run* run)
    void clfs_run_drop(clfs_run* run)
    void clfs_close_dropped()
    Py_ssize_t clfs_run_in_flight(clfs_run* run, Py_ssize_t* index, int64_t* start, Py_ssize_t cap)
    int64_t clfs_run_min_ns(clfs_run* run)


_stat_result = os.stat_result
cdef object _BILLION = 10 ** 9


cdef object _time(long long sec, long nsec, int kind):
    """One of st_atime's three forms, as posixmodule's fill_time makes them."""
    if kind == 0:
        return sec
    if kind == 1:
        return <double>sec + nsec * 1e-9
    return sec * _BILLION + nsec


cdef object _id(unsigned int value):
    """A uid or gid as _PyLong_FromUid gives it ((uid_t)-1 is -1)."""
    if value == <unsigned int>-1:
        return -1
    return value


cdef object _stat(struct_stat* st):
    """The os.stat_result of ``st``, field for field as os.fstat makes it (19 fields on Linux)."""
    return _stat_result((
        st.st_mode, <unsigned long long>st.st_ino, <unsigned long long>st.st_dev, <long>st.st_nlink,
        _id(st.st_uid), _id(st.st_gid), <long long>st.st_size,
        _time(st.st_atim.tv_sec, st.st_atim.tv_nsec, 0),
        _time(st.st_mtim.tv_sec, st.st_mtim.tv_nsec, 0),
        _time(st.st_ctim.tv_sec, st.st_ctim.tv_nsec, 0),
        _time(st.st_atim.tv_sec, st.st_atim.tv_nsec, 1),
        _time(st.st_mtim.tv_sec, st.st_mtim.tv_nsec, 1),
        _time(st.st_ctim.tv_sec, st.st_ctim.tv_nsec, 1),
        _time(st.st_atim.tv_sec, st.st_atim.tv_nsec, 2),
        _time(st.st_mtim.tv_sec, st.st_mtim.tv_nsec, 2),
        _time(st.st_ctim.tv_sec, st.st_ctim.tv_nsec, 2),
        <long>st.st_blksize, <long>st.st_blocks, <unsigned long long>st.st_rdev,
    ))


cdef object _opened(clfs_slot* slot, path):
    """What :func:`open_read` returns or raises for the chain ``clfs_open_read`` left in ``slot``.

    A descriptor left open becomes the caller's (``slot.fd`` is reset).
    """
    err = slot.err
    if slot.failed == CLFS_FAILED_OPEN:  # as os.open raises it: errno, its text, the path
        raise OSError(err, os.strerror(err), path)
    if slot.failed == CLFS_NOT_REGULAR:
        raise OSError(EINVAL, "no longer a regular file: it became %s since the scan"
                      % kind_of_mode(slot.st.st_mode))
    if slot.failed:  # as os.fstat, os.read, os.close raise it
        raise OSError(err, os.strerror(err))
    if slot.whole:
        return -1, _stat(&slot.st), (<char*>slot.data)[:slot.n]
    opened = _stat(&slot.st)
    fd, slot.fd = slot.fd, -1
    return fd, opened, None


def open_read(path, limit):
    """Open a regular file and, if smaller than ``limit``, read it whole: ``(fd, opened, data)`` (see ``sourceio_py``)."""
    cdef bytes cpath = os.fsencode(path)
    cdef const char* p = cpath
    cdef Py_ssize_t cap = limit
    cdef clfs_slot slot
    with nogil:
        clfs_open_read(p, cap, &slot)  # the chain of a run's "open+read" item (sourcerun.h), here
    try:
        return _opened(&slot, path)
    finally:
        free(slot.data)


# --- runs of operations ahead of an in-order consumer (sourcerun.h) ---------------------------

cdef dict _RUN_KINDS = {"lstat": CLFS_RUN_LSTAT, "open+read": CLFS_RUN_OPEN_READ}


cdef class _Run:
    """A run of source operations started by :func:`run_ahead` (see ``sourceio_py._Run``)."""

    cdef clfs_run* run
    cdef tuple paths
    cdef object slots  # the node's semaphore: kept alive while this run may post to it
    cdef int kind
    cdef Py_ssize_t taken
    cdef bint closed

    def __cinit__(self):
        self.run = NULL
        self.closed = True  # until run_ahead starts it

    def take(self, Py_ssize_t index):
        """Item ``index``'s result, or its OSError raised (items before it not taken are dropped)."""
        cdef clfs_slot* slot
        if self.closed:
            raise ValueError("the run is closed")
        if index < self.taken or index >= len(self.paths):
            raise IndexError("item %d is not among those still to take" % index)
        slot = clfs_run_try_take(self.run, index)  # back already: taken holding the GIL
        if slot == NULL:
            with nogil:
                slot = clfs_run_take(self.run, index)
        self.taken = index + 1
        try:
            return self._result(slot, index)
        finally:
            clfs_run_release(self.run, slot)

    cdef object _result(self, clfs_slot* slot, Py_ssize_t index):
        path = self.paths[index]
        if self.kind == CLFS_RUN_LSTAT:
            if slot.failed:  # as os.lstat raises it: errno, its text, the path
                raise OSError(slot.err, os.strerror(slot.err), path)
            return _stat(&slot.st)
        return _opened(slot, path)

    def close(self):
        """Drop every item not taken: nothing more starts; descriptors left open are closed."""
        if not self.closed:
            self.closed = True
            clfs_run_close(self.run)
            with nogil:
                clfs_close_dropped()  # descriptors left open by items not taken (a round trip each on FUSE)

    def in_flight(self):
        """``(path, started)`` of each item running now, ``started`` on ``time.monotonic``'s clock."""
        cdef Py_ssize_t cap = len(self.paths)
        cdef Py_ssize_t n, k
        cdef Py_ssize_t* index
        cdef int64_t* start
        if self.run == NULL:
            return []
        if cap > 4096:
            cap = 4096
        index = <Py_ssize_t*>malloc(cap * sizeof(Py_ssize_t) + 1)
        start = <int64_t*>malloc(cap * sizeof(int64_t) + 1)
        try:
            if index == NULL or start == NULL:
                raise MemoryError()
            n = clfs_run_in_flight(self.run, index, start, cap)
            return [(self.paths[index[k]], start[k] / 1e9) for k in range(n)]
        finally:
            free(index)
            free(start)

    def inline(self):
        """True if the consumer runs the items itself now: the run judged its operations fast."""
        return self.run != NULL and bool(clfs_run_inline(self.run))

    def fastest(self):
        """Seconds the fastest operation of the run took, or None before one ended."""
        if self.run == NULL:
            return None
        cdef int64_t ns = clfs_run_min_ns(self.run)
        return None if ns < 0 else ns / 1e9

    def __dealloc__(self):
        if self.run != NULL:
            clfs_run_drop(self.run)
            self.run = NULL


def run_ahead(kind, paths, limit, threads, slots, window, slot_run, fast=0.0, inline=False):
    """Start ``kind`` on every path, in parallel and in order, ahead of a consumer (see ``sourceio_py``)."""
    cdef int code = _RUN_KINDS[kind]
    cdef tuple names = tuple(paths)
    cdef Py_ssize_t count = len(names), total = 0, k, size
    cdef Py_ssize_t width = window
    cdef char* buffer
    cdef Py_ssize_t* offsets
    cdef void* handle = NULL
    cdef _Run result
    for name in names:
        if not isinstance(name, bytes):
            raise TypeError("run_ahead takes paths as bytes, not %s" % type(name).__name__)
        if b"\0" in name:
            raise ValueError("embedded null byte")
        total += len(<bytes>name) + 1
    if width < 1:
        width = 1
    if slots is not None:
        handle = <void*><size_t>slots._semlock.handle
    buffer = <char*>malloc(total + 1)
    offsets = <Py_ssize_t*>malloc(count * sizeof(Py_ssize_t) + 1)
    if buffer == NULL or offsets == NULL:
        free(buffer)
        free(offsets)
        raise MemoryError()
    total = 0
    for k in range(count):
        name = names[k]
        size = len(<bytes>name)
        offsets[k] = total
        memcpy(buffer + total, <char*>(<bytes>name), size)
        buffer[total + size] = 0
        total += size + 1
    result = _Run.__new__(_Run)
    result.paths = names
    result.slots = slots
    result.kind = code
    result.run = clfs_run_new(code, limit, count, buffer, offsets, width, handle, slot_run,
                              <int64_t>(fast * 1e9) if fast > 0 else 0, bool(inline))
    if result.run == NULL:
        raise MemoryError()
    result.closed = False
    clfs_run_start(result.run, threads)
    return result
