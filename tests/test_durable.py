"""clfsload.durable: a batch of fsyncs shared between threads, and a failure in any of them raised."""

import errno
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from clfsload import durable


def _files(tmp_path, count):
    paths = []
    for i in range(count):
        path = tmp_path / ("f%03d" % i)
        path.write_bytes(b"x")
        paths.append(str(path))
    return paths


def test_a_slow_batch_is_shared_between_threads_and_every_file_is_synced(tmp_path, monkeypatch):
    monkeypatch.setattr(durable, "_QUICK_S", -1.0)  # every fsync counts as slow (a disk): the batch goes to threads
    paths = _files(tmp_path, 40)
    synced, threads = [], set()
    real = os.fsync

    def fsync(fd):
        synced.append(os.fstat(fd).st_ino)
        threads.add(threading.get_ident())
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    with ThreadPoolExecutor(7) as executor:
        durable.fsync_paths(paths, executor, threads=8)
    assert sorted(synced) == sorted(os.stat(p).st_ino for p in paths)
    assert len(threads) > 1


def test_a_failure_in_another_thread_is_raised(tmp_path, monkeypatch):
    monkeypatch.setattr(durable, "_QUICK_S", -1.0)
    paths = _files(tmp_path, 40)
    bad = os.stat(paths[-1]).st_ino  # the last file: not in the caller's own chunk
    real = os.fsync

    def fsync(fd):
        if os.fstat(fd).st_ino == bad:
            raise OSError(errno.EIO, "Input/output error")
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    with ThreadPoolExecutor(7) as executor:
        with pytest.raises(OSError) as raised:
            durable.fsync_paths(paths, executor, threads=8)
    assert raised.value.errno == errno.EIO


def test_a_quick_batch_stays_in_the_caller(tmp_path, monkeypatch):
    monkeypatch.setattr(durable, "_QUICK_S", 3600.0)  # every fsync quick (tmpfs)
    paths = _files(tmp_path, 40)
    threads = set()
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (threads.add(threading.get_ident()), real(fd)))
    with ThreadPoolExecutor(7) as executor:
        durable.fsync_paths(paths, executor, threads=8)
    assert threads == {threading.get_ident()}
