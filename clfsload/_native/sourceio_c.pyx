"""Reading a small source file whole in one call: the compiled twin of ``sourceio_py``.

Same names, arguments, results and exceptions as ``sourceio_py``, whose
docstrings are the specification. The chain open, fstat, read, fstat,
close runs with the GIL released once, not five times: on a thread of the
read pipeline each release is a hand-off to the consumer and back (a futex
wake and a context switch when it is busy), which cost more CPU than the
calls themselves through a slow source. The ``os.stat_result`` returned is
built from the ``struct stat`` field by field as ``os.fstat`` builds it.

The first fstat is a ``statx(AT_STATX_DONT_SYNC)`` where the system has it:
on a local file system the same answer, on FUSE or NFS the attributes the
open's lookup of the path brought back, without a round trip of its own
(one of a dozen per small file through a slow source). The torn-read rule
holds as before: those attributes are a state of the opened inode from
before the read, so a second fstat (a real one) showing the same inode,
size, mtime and ctime still means nothing changed across the read.
"""

import os

from cpython.object cimport PyObject
from cpython.ref cimport Py_XDECREF
from libc.errno cimport EACCES, EINTR, EINVAL, EPERM, errno
from posix.stat cimport S_ISREG, fstat, struct_stat
from posix.types cimport off_t
from posix.unistd cimport close, read

from .sourceio_py import NOATIME, OPEN_FLAGS, kind_of_mode

__all__ = ["kind_of_mode", "open_read"]


cdef extern from "<fcntl.h>" nogil:
    int c_open "open"(const char* path, int flags)

cdef extern from *:
    """
    #include <fcntl.h>
    #ifndef O_NOATIME
    #define O_NOATIME 0
    #endif
    #ifndef O_CLOEXEC
    #define O_CLOEXEC 0
    #endif
    """
    int O_RDONLY, O_NOFOLLOW, O_NONBLOCK, O_CLOEXEC, O_NOATIME

cdef extern from "Python.h":
    # raw-pointer forms, so that the result can be resized in place (as in envelope_c)
    PyObject* _bytes_new "PyBytes_FromStringAndSize"(const char* v, Py_ssize_t size) except NULL
    char* _bytes_data "PyBytes_AS_STRING"(PyObject* o) noexcept nogil
    int _PyBytes_Resize(PyObject** pv, Py_ssize_t newsize) except -1


cdef extern from *:
    """
    #include <string.h>
    #include <sys/stat.h>
    #include <sys/sysmacros.h>
    #include <fcntl.h>

    /* fstat(fd) from the attributes the kernel holds, where it can say so: statx with
       AT_STATX_DONT_SYNC asks a network or FUSE file system for no round trip (the
       attributes its lookup of the path brought back a moment ago, as the open resolved
       it); a local file system answers as fstat does. Any failure, or a reply without
       every basic field: a plain fstat. */
    static int clfs_fstat_held(int fd, struct stat* st) {
    #if defined(STATX_BASIC_STATS) && defined(AT_STATX_DONT_SYNC) && defined(AT_EMPTY_PATH)
        struct statx sx;
        if (statx(fd, "", AT_EMPTY_PATH | AT_STATX_DONT_SYNC, STATX_BASIC_STATS, &sx) == 0
                && (sx.stx_mask & STATX_BASIC_STATS) == STATX_BASIC_STATS) {
            memset(st, 0, sizeof(*st));
            st->st_dev = makedev(sx.stx_dev_major, sx.stx_dev_minor);
            st->st_ino = sx.stx_ino;
            st->st_mode = sx.stx_mode;
            st->st_nlink = sx.stx_nlink;
            st->st_uid = sx.stx_uid;
            st->st_gid = sx.stx_gid;
            st->st_rdev = makedev(sx.stx_rdev_major, sx.stx_rdev_minor);
            st->st_size = (off_t)sx.stx_size;
            st->st_blksize = sx.stx_blksize;
            st->st_blocks = (blkcnt_t)sx.stx_blocks;
            st->st_atim.tv_sec = sx.stx_atime.tv_sec;
            st->st_atim.tv_nsec = sx.stx_atime.tv_nsec;
            st->st_mtim.tv_sec = sx.stx_mtime.tv_sec;
            st->st_mtim.tv_nsec = sx.stx_mtime.tv_nsec;
            st->st_ctim.tv_sec = sx.stx_ctime.tv_sec;
            st->st_ctim.tv_nsec = sx.stx_ctime.tv_nsec;
            return 0;
        }
    #endif
        return fstat(fd, st);
    }
    """
    int clfs_fstat_held(int fd, struct_stat* st) nogil


cdef int _FLAGS = O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC
_stat_result = os.stat_result
cdef object _BILLION = 10 ** 9

# where the chain stopped (the errno of that call is the error)
cdef enum:
    FAILED_OPEN = 1
    FAILED_FSTAT = 2
    NOT_REGULAR = 3
    FAILED_READ = 4
    FAILED_RECHECK = 5
    FAILED_CLOSE = 6


cdef int _open(const char* path) noexcept nogil:
    cdef int fd = -1
    if O_NOATIME:
        while True:
            fd = c_open(path, _FLAGS | O_NOATIME)
            if fd >= 0 or errno != EINTR:
                break
        if fd >= 0 or (errno != EPERM and errno != EACCES):  # O_NOATIME needs ownership (or CAP_FOWNER)
            return fd
    while True:
        fd = c_open(path, _FLAGS)
        if fd >= 0 or errno != EINTR:
            return fd


cdef int _fstat(int fd, struct_stat* st) noexcept nogil:
    cdef int rc
    while True:
        rc = fstat(fd, st)
        if rc == 0 or errno != EINTR:
            return rc


cdef int _fstat_held(int fd, struct_stat* st) noexcept nogil:
    cdef int rc
    while True:
        rc = clfs_fstat_held(fd, st)
        if rc == 0 or errno != EINTR:
            return rc


cdef Py_ssize_t _read(int fd, char* buf, size_t size) noexcept nogil:
    cdef Py_ssize_t n
    while True:
        n = read(fd, buf, size)
        if n >= 0 or errno != EINTR:
            return n


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


cdef inline bint _same(struct_stat* a, struct_stat* b) noexcept nogil:
    """scan.same_content on two struct stat: inode, size, mtime and ctime (to the nanosecond)."""
    return (a.st_ino == b.st_ino and a.st_size == b.st_size
            and a.st_mtim.tv_sec == b.st_mtim.tv_sec and a.st_mtim.tv_nsec == b.st_mtim.tv_nsec
            and a.st_ctim.tv_sec == b.st_ctim.tv_sec and a.st_ctim.tv_nsec == b.st_ctim.tv_nsec)


def open_read(path, limit):
    """Open a regular file and, if smaller than ``limit``, read it whole: ``(fd, opened, data)`` (see ``sourceio_py``)."""
    cdef bytes cpath = os.fsencode(path)
    cdef const char* p = cpath
    cdef Py_ssize_t cap = limit
    cdef struct_stat opened, after
    cdef int fd = -1, failed = 0, err = 0
    cdef bint whole = False
    cdef Py_ssize_t n = -1
    cdef PyObject* data = NULL
    cdef char* buf = NULL
    if cap > 0:
        data = _bytes_new(NULL, cap)
        buf = _bytes_data(data)
    try:
        with nogil:
            fd = _open(p)
            if fd < 0:
                failed = FAILED_OPEN
            elif _fstat_held(fd, &opened) != 0:  # no round trip where the open's lookup brought them
                failed = FAILED_FSTAT
            elif not S_ISREG(opened.st_mode):
                failed = NOT_REGULAR
            elif opened.st_size < cap:
                n = _read(fd, buf, <size_t>cap)
                if n < 0:
                    failed = FAILED_READ
                elif n == opened.st_size:
                    if _fstat(fd, &after) != 0:
                        failed = FAILED_RECHECK
                    elif _same(&opened, &after):
                        whole = True
            err = errno
            if failed and fd >= 0:
                close(fd)  # the error is the failed call's, not close's
            elif whole:
                if close(fd) != 0:
                    failed = FAILED_CLOSE
                    err = errno
                fd = -1
        if failed == FAILED_OPEN:  # as os.open raises it: errno, its text, the path
            raise OSError(err, os.strerror(err), path)
        if failed == NOT_REGULAR:
            raise OSError(EINVAL, "no longer a regular file: it became %s since the scan"
                          % kind_of_mode(opened.st_mode))
        if failed:  # as os.fstat, os.read, os.close raise it
            raise OSError(err, os.strerror(err))
        if not whole:
            return fd, _stat(&opened), None
        _PyBytes_Resize(&data, n)
        result = <object>data
        return -1, _stat(&opened), result
    finally:
        Py_XDECREF(data)
