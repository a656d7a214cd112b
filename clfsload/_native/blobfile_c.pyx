"""Writing one blob file of the ``file:`` target in one call: the compiled twin of ``blobfile_py``.

Same names, arguments, results and exceptions as ``blobfile_py``, whose
docstrings are the specification. The chain open, write, fsync, close,
rename runs with the GIL released once.
"""

import os

from libc.errno cimport EINTR, ENOENT, errno
from libc.stdlib cimport free, malloc
from libc.stdio cimport rename

from ._buffer cimport Span, span_close, span_open_buffer

__all__ = ["fsync_files", "write_file"]


cdef extern from "<fcntl.h>" nogil:
    int c_open "open"(const char* path, int flags, int mode)

cdef extern from "<unistd.h>" nogil:
    ssize_t c_write "write"(int fd, const void* buf, size_t count)
    int c_fsync "fsync"(int fd)
    int c_close "close"(int fd)
    int c_unlink "unlink"(const char* path)

cdef extern from *:
    """
    #include <fcntl.h>
    #ifndef O_CLOEXEC
    #define O_CLOEXEC 0
    #endif
    """
    int O_WRONLY, O_CREAT, O_EXCL, O_CLOEXEC


cdef int _FLAGS = O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC
cdef extern from *:
    """
    #include <fcntl.h>
    """
    int O_RDONLY


# which call failed (its errno is the error)
cdef enum:
    FAILED_OPEN = 1
    FAILED_WRITE = 2  # write, fsync or close
    FAILED_RENAME = 3


cdef int _write_chain(const char* tmp, const char* path, const unsigned char* data, Py_ssize_t size,
                      bint durable, int* err) noexcept nogil:
    """0, or the FAILED_* of the call that failed with ``err`` set to its errno (``tmp`` removed unless the open failed)."""
    cdef int stage = FAILED_WRITE
    cdef int fd
    cdef ssize_t n
    cdef int failed = 0
    while True:
        fd = c_open(tmp, _FLAGS, 0o666)
        if fd >= 0 or errno != EINTR:
            break
    if fd < 0:
        err[0] = errno
        return FAILED_OPEN
    while size > 0:
        n = c_write(fd, data, <size_t>size)
        if n < 0:
            if errno == EINTR:
                continue
            failed = errno
            break
        data += n
        size -= n
    if not failed and durable and c_fsync(fd) != 0:
        failed = errno
    if c_close(fd) != 0 and not failed:
        failed = errno
    if not failed and rename(tmp, path) != 0:
        failed = errno
        stage = FAILED_RENAME
    if failed:
        c_unlink(tmp)
        err[0] = failed
        return stage
    return 0


def write_file(tmp, path, payload, durable=False):
    """Write ``payload`` to the new file ``tmp``, fsync it if ``durable``, close it, rename it over ``path`` (see ``blobfile_py``)."""
    cdef Span span
    cdef int rc, err = 0
    cdef bint c_durable = bool(durable)
    cdef bytes ctmp, cpath
    cdef const char* c_tmp
    cdef const char* c_path
    keep = span_open_buffer(&span, payload)
    try:
        ctmp = os.fsencode(tmp)
        cpath = os.fsencode(path)
        c_tmp = ctmp
        c_path = cpath
        with nogil:
            rc = _write_chain(c_tmp, c_path, span.ptr, span.len, c_durable, &err)
    finally:
        span_close(&span)
    # as os.open, os.write / os.fsync / os.close and os.replace raise them
    if rc == FAILED_OPEN:
        raise OSError(err, os.strerror(err), tmp)
    if rc == FAILED_WRITE:
        raise OSError(err, os.strerror(err))
    if rc == FAILED_RENAME:
        raise OSError(err, os.strerror(err), tmp, None, path)


cdef Py_ssize_t _fsync_chain(const char** paths, Py_ssize_t count, int* stage, int* err) noexcept nogil:
    """-1 when every file is fsynced (or gone); else the index of the failed one, ``stage`` and ``err`` set."""
    cdef Py_ssize_t k
    cdef int fd, failed
    for k in range(count):
        while True:
            fd = c_open(paths[k], O_RDONLY | O_CLOEXEC, 0)
            if fd >= 0 or errno != EINTR:
                break
        if fd < 0:
            if errno == ENOENT:
                continue  # deleted since: its removal is the folder's to make durable
            stage[0] = FAILED_OPEN
            err[0] = errno
            return k
        failed = 0
        if c_fsync(fd) != 0:
            failed = errno
        if c_close(fd) != 0 and not failed:
            failed = errno
        if failed:
            stage[0] = FAILED_WRITE
            err[0] = failed
            return k
    return -1


def fsync_files(paths):
    """``fsync`` each file of ``paths`` in order, one gone since it was written skipped (see ``blobfile_py``)."""
    cdef list encoded = [os.fsencode(path) for path in paths]
    cdef Py_ssize_t count = len(encoded), k, failed_at
    cdef int stage = 0, err = 0
    cdef const char** c_paths = <const char**>malloc(count * sizeof(char*) + 1)
    if c_paths == NULL:
        raise MemoryError()
    try:
        for k in range(count):
            c_paths[k] = <bytes>encoded[k]
        with nogil:
            failed_at = _fsync_chain(c_paths, count, &stage, &err)
    finally:
        free(c_paths)
    if failed_at < 0:
        return
    if stage == FAILED_OPEN:  # as os.open raises it: with the path
        raise OSError(err, os.strerror(err), paths[failed_at])
    raise OSError(err, os.strerror(err))  # as os.fsync / os.close raise them
