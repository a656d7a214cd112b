"""The local-folder target: one file per blob, written atomically.

Layout: ``file:ROOT`` names an existing folder; the container is its
sub-folder ``ROOT/CONTAINER``; blob ``NAME`` is the file ``ROOT/CONTAINER/NAME``.

Decisions (the loader relies on them):

* **Container folder.** It must exist unless the target is opened with
  ``create=True``; then it and any missing folder above it are created, as
  ``mkdir -p`` does (mode 0o777 minus the umask), each durable in its
  parent. The loader passes ``create=True`` for ``--new`` only; a
  resume with the folder missing gets :class:`ContainerNotFoundError` naming
  the path.
* **Atomic writes.** ``put`` writes ``.clfsload-tmp-<pid>-<token>-<n>`` in the
  container folder, then ``os.replace`` puts it in place, so a reader (or a
  killed process) sees the old content or the new, never a torn file.
* **Durable in batches.** ``put`` and ``delete`` do not fsync: the target
  notes each blob written and whether the folder changed, and :meth:`sync`
  fsyncs those files (several threads share a batch: :mod:`.sync_batches`) and then the folder
  once; with several writer threads, a :meth:`sync` returns only once every
  blob noted before it began is durable, whichever thread's batch took it. Whoever records a blob as stored calls :meth:`sync` first: a worker
  before it hands back a unit's outcome, the driver before each state commit
  (:mod:`clfsload.execute.pool`, :class:`clfsload.driver.state.StateStore`).
  Until then a power loss may lose a blob, or, if another writer's folder
  fsync made its name durable first, leave it torn under its name: it belongs
  to work no state records, which a resume does again under the same names.
  :meth:`publish` writes one blob that must never be seen torn (the published
  root): its file is fsynced before the rename, the folder after.
* **Folders made durable.** ``create=True`` fsyncs the folders it creates
  into their parents, so a state that survived a power loss finds its
  container folder.
* **What is a blob.** Regular files whose names do not start with
  ``.clfsload-``. Temp files, sub-folders, symlinks and other entries are
  ignored by :meth:`list_names` and :meth:`is_empty`.
  :meth:`remove_temp_files` deletes leftovers of a crashed run; call it only
  when no other process writes to the folder.
* **Names.** Those :func:`check_blob_name` accepts, and at most 255 bytes.
* **Errors.** Permission errors, a full or read-only file system and a
  vanished container folder are terminal; other ``OSError`` are
  :class:`TargetError` for that blob.
"""

from __future__ import annotations

import errno
import itertools
import os
import stat
from typing import AsyncIterator, Iterator, List, Optional, Tuple

from .. import crashpoints
from .._native import blobfile
from ..durable import makedirs_durable
from ..errors import (
    AccessDeniedError,
    BlobNameError,
    BlobNotFoundError,
    ClfsLoadError,
    ContainerNotFoundError,
    TargetError,
    TerminalError,
)
from .base import RESERVED_PREFIX, AsyncBlobTarget, BlobTarget, Payload, check_blob_name
from .endpoint import check_local_container_name
from .sync_batches import SyncBatches

__all__ = ["LocalFolderTarget", "AsyncLocalFolderTarget", "TEMP_PREFIX"]

#: Prefix of the temp files ``put`` writes; never a CLFS blob name.
TEMP_PREFIX = RESERVED_PREFIX + "tmp-"

#: File systems limit one name component to 255 bytes.
_MAX_FILE_NAME_BYTES = 255

#: errnos that will fail every later write the same way: stop the run.
_TERMINAL_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS}

_O_WRITE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
_O_READ = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0)


class LocalFolderTarget(BlobTarget):
    """A container kept as a local folder (see the module docstring for the rules).

    *root* is the folder the ``file:`` URL names, *container* one path
    component under it. Thread-safe.
    """

    kind = "local"

    def __init__(self, root: str, container: str, *, create: bool = False) -> None:
        check_local_container_name(container)
        self._root = os.path.abspath(root)
        self._folder = os.path.join(self._root, container)
        self._prefix = os.path.join(self._folder, "")  # the folder and a separator
        self._container = container
        self._batches = SyncBatches(self._folder)  # what put and delete changed, durable at sync
        self._token = os.urandom(4).hex()  # secrets.token_hex(4), without secrets' import of hmac and OpenSSL
        self._counter = itertools.count()
        self._closed = False
        if create:
            self._create_folder()
        self._require_folder()

    # -- identity and checks ----------------------------------------------

    @property
    def folder(self) -> str:
        """Absolute path of the container folder."""
        return self._folder

    def describe(self) -> str:
        """``file:`` plus the absolute container folder path."""
        return f"file:{self._folder}"

    def check_access(self, *, read: bool = True, write: bool = True, delete: bool = True,
                     list_: bool = True) -> None:
        """Check the folder exists and allows the operations; writes and removes a probe file."""
        self._require_folder()
        if (read or list_) and not os.access(self._folder, os.R_OK | os.X_OK):
            raise AccessDeniedError(
                f"no permission to read folder '{self._folder}'; give this user read and execute (r-x) on it"
            )
        if write or delete:
            probe = self._temp_path()
            try:
                fd = os.open(probe, _O_WRITE, 0o600)
                os.close(fd)
                os.unlink(probe)
            except PermissionError:
                raise AccessDeniedError(
                    f"no permission to create and delete files in folder '{self._folder}'; "
                    "give this user write and execute (-wx) on it"
                ) from None
            except OSError as exc:
                raise self._error("check access to", None, exc) from None

    def is_empty(self) -> bool:
        """True if the folder holds no blob file (temp files and sub-folders do not count)."""
        for _ in self._scan(""):
            return False
        return True

    # -- blob operations ------------------------------------------------------

    def list_names(self, prefix: str = "") -> Iterator[str]:
        """Yield the blob names starting with *prefix*, sorted like Azure lists them."""
        return iter(self._list(prefix))

    def list_sizes(self, prefix: str = "") -> Iterator[Tuple[str, Optional[int]]]:
        """Yield ``(name, size)`` of the blobs starting with *prefix*, sorted like :meth:`list_names`."""
        sized = []
        for name in self._list(prefix):
            try:
                sized.append((name, os.lstat(self._prefix + name).st_size))
            except OSError:
                sized.append((name, None))  # gone since the scan
        return iter(sized)

    def put(self, name: str, payload: Payload) -> None:
        """Write *payload* to a temp file, then rename it over blob *name* (durable at the next :meth:`sync`)."""
        self._batches.note(self._write(name, payload, durable=False))

    def publish(self, name: str, payload: Payload) -> None:
        """Store blob *name* durably, never torn under its name: file fsynced, renamed, folder fsynced."""
        self._write(name, payload, durable=True)
        self._batches.note()  # the file is durable; its name is not yet
        self.sync()  # returns once the folder fsync that follows the rename is done

    def sync(self) -> None:
        """Make every blob written and every name changed before this call durable.

        Several threads share batches of fsyncs (:class:`SyncBatches`); an
        error is a :class:`TerminalError`, permanent for this target.
        """
        self._batches.sync()

    def _write(self, name: str, payload: Payload, durable: bool) -> str:
        """Write *payload* to a temp file (fsynced if *durable*) and rename it to blob *name*; returns its path."""
        path = self._path(name)
        tmp = self._temp_path()
        if not durable and not crashpoints.active():
            # every put: open, write, close, rename in one native call (one GIL release, not four);
            # a publish (rare) and the crash-test hook go call by call below
            try:
                blobfile.write_file(tmp, path, payload)
            except OSError as exc:
                raise self._error("put", name, exc) from None
            return path
        try:
            fd = os.open(tmp, _O_WRITE, 0o666)
        except OSError as exc:
            raise self._error("put", name, exc) from None
        try:
            try:
                view = memoryview(payload).cast("B")
                if crashpoints.active():  # test hook: a writer killed mid-blob
                    half = len(view) // 2
                    _write_all(fd, view[:half])
                    crashpoints.reached("put-partial")
                    view = view[half:]
                _write_all(fd, view)
                if durable:
                    os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, path)
        except OSError as exc:
            _unlink_quietly(tmp)
            raise self._error("put", name, exc) from None
        return path

    def get(self, name: str) -> bytes:
        """Read blob *name* whole."""
        path = self._path(name)
        try:
            fd = os.open(path, _O_READ)
        except OSError as exc:
            raise self._error("get", name, exc) from None
        try:
            size = os.fstat(fd).st_size
            chunks: List[bytes] = []
            while True:
                chunk = os.read(fd, max(size, 1 << 20))
                if not chunk:
                    break
                chunks.append(chunk)
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)
        except OSError as exc:
            raise self._error("get", name, exc) from None
        finally:
            os.close(fd)

    def delete(self, name: str, *, missing_ok: bool = True) -> None:
        """Remove blob *name*."""
        path = self._path(name)
        try:
            os.unlink(path)
            self._batches.note()
        except FileNotFoundError as exc:
            if missing_ok and os.path.isdir(self._folder):
                return
            raise self._error("delete", name, exc) from None
        except OSError as exc:
            raise self._error("delete", name, exc) from None

    def remove_temp_files(self) -> int:
        """Delete temp files left by crashed writers; return how many. Only with no other writer."""
        removed = 0
        with os.scandir(self._folder) as entries:
            for entry in entries:
                if entry.name.startswith(TEMP_PREFIX):
                    _unlink_quietly(entry.path)
                    removed += 1
        return removed

    def close(self) -> None:
        """Make what was written durable (:meth:`sync`), stop the fsync threads, mark the target closed."""
        try:
            self.sync()
        finally:
            self._closed = True
            self._batches.close()

    # -- internals -----------------------------------------------------------

    def _create_folder(self) -> None:
        """Create the container folder and any missing folder above it, as ``mkdir -p`` does, durably."""
        try:
            makedirs_durable(self._folder)
        except FileExistsError:  # a file where a folder should be
            raise ContainerNotFoundError(
                f"cannot create container folder '{self._folder}': a file is in the way; give another path"
            ) from None
        except PermissionError:
            raise AccessDeniedError(
                f"no permission to create container folder '{self._folder}'; create it or fix the permissions"
            ) from None
        except OSError as exc:
            raise TerminalError(f"cannot create container folder '{self._folder}': {exc.strerror}") from None

    def _require_folder(self) -> None:
        try:
            st = os.stat(self._folder)
        except FileNotFoundError:
            raise ContainerNotFoundError(
                f"container folder '{self._folder}' does not exist; create it, or start with --new"
            ) from None
        except OSError as exc:
            raise TerminalError(f"cannot stat container folder '{self._folder}': {exc.strerror}") from None
        if not stat.S_ISDIR(st.st_mode):
            raise ContainerNotFoundError(f"container path '{self._folder}' is not a folder")

    def _path(self, name: str) -> str:
        if self._closed:
            raise ClfsLoadError(f"target {self.describe()} is closed")
        check_blob_name(name)
        # A name of at most 63 characters is at most 252 bytes in UTF-8: no need to encode it.
        if len(name) > 63 and len(os.fsencode(name)) > _MAX_FILE_NAME_BYTES:
            raise BlobNameError(f"blob name {name!r} is longer than 255 bytes, the limit of a local file name")
        return self._prefix + name

    def _temp_path(self) -> str:
        return f"{self._prefix}{TEMP_PREFIX}{os.getpid()}-{self._token}-{next(self._counter)}"

    def _list(self, prefix: str) -> List[str]:
        names = list(self._scan(prefix))
        names.sort(key=_utf8_key)
        return names

    def _scan(self, prefix: str) -> Iterator[str]:
        try:
            with os.scandir(self._folder) as entries:
                for entry in entries:
                    name = entry.name
                    if (name.startswith(prefix) and not name.startswith(RESERVED_PREFIX)
                            and entry.is_file(follow_symlinks=False)):
                        yield name
        except OSError as exc:
            raise self._error("list", None, exc) from None

    def _error(self, op: str, name: "str | None", exc: OSError) -> ClfsLoadError:
        what = f"blob '{name}'" if name else "the container"
        where = f"folder '{self._folder}'"
        reason = exc.strerror or str(exc)
        if isinstance(exc, FileNotFoundError):
            if not os.path.isdir(self._folder):
                return ContainerNotFoundError(f"container folder '{self._folder}' disappeared during the run")
            if op in ("get", "delete"):
                return BlobNotFoundError(f"{op} {what}: no such blob in {where}")
        if isinstance(exc, PermissionError):
            return AccessDeniedError(f"{op} {what} in {where}: permission denied; fix the folder's permissions")
        if exc.errno in _TERMINAL_ERRNOS:
            return TerminalError(f"{op} {what} in {where}: {reason}; free space or fix the file system")
        return TargetError(f"{op} {what} in {where}: {reason}")


def _utf8_key(name: str) -> bytes:
    """Azure orders names by their UTF-8 bytes; sort local names the same way."""
    return name.encode("utf-8", "surrogateescape")


def _write_all(fd: int, view: memoryview) -> None:
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def _in_thread(fn, *args):
    """``fn(*args)`` in the running loop's default thread pool (an awaitable).

    asyncio is imported here, on first use: a load to a local folder runs
    no event loop (:class:`clfsload.work.upload.DirectUploader`), and
    importing asyncio costs a start-up tens of milliseconds of CPU.
    """
    import asyncio

    return asyncio.get_running_loop().run_in_executor(None, fn, *args)


class AsyncLocalFolderTarget(AsyncBlobTarget):
    """The asyncio face of :class:`LocalFolderTarget`.

    Small payloads are read and written on the event loop thread (a few
    microseconds each); payloads over *inline_limit* bytes and listings go to
    the loop's default thread pool so the loop is not blocked.
    """

    def __init__(self, root: str, container: str, *, create: bool = False,
                 inline_limit: int = 256 * 1024) -> None:
        self._sync = LocalFolderTarget(root, container, create=create)
        self._inline_limit = inline_limit

    def describe(self) -> str:
        """``file:`` plus the absolute container folder path."""
        return self._sync.describe()

    async def check_access(self, *, read: bool = True, write: bool = True, delete: bool = True,
                           list_: bool = True) -> None:
        """See :meth:`LocalFolderTarget.check_access`."""
        self._sync.check_access(read=read, write=write, delete=delete, list_=list_)

    async def is_empty(self) -> bool:
        """See :meth:`LocalFolderTarget.is_empty`."""
        return await _in_thread(self._sync.is_empty)

    async def list_names(self, prefix: str = "") -> AsyncIterator[str]:  # type: ignore[override]
        """Yield the blob names starting with *prefix*, sorted."""
        names = await _in_thread(self._sync._list, prefix)
        for name in names:
            yield name

    async def put(self, name: str, payload: Payload) -> None:
        """See :meth:`LocalFolderTarget.put`."""
        if len(payload) <= self._inline_limit:
            self._sync.put(name, payload)
        else:
            await _in_thread(self._sync.put, name, payload)

    async def sync(self) -> None:
        """See :meth:`LocalFolderTarget.sync` (in a thread: it waits for the disk)."""
        await _in_thread(self._sync.sync)

    async def get(self, name: str) -> bytes:
        """See :meth:`LocalFolderTarget.get` (large files are read in a thread)."""
        try:
            size = os.stat(self._sync._path(name)).st_size
        except OSError:
            size = 0  # let get() report the error
        if size <= self._inline_limit:
            return self._sync.get(name)
        return await _in_thread(self._sync.get, name)

    async def delete(self, name: str, *, missing_ok: bool = True) -> None:
        """See :meth:`LocalFolderTarget.delete`."""
        self._sync.delete(name, missing_ok=missing_ok)

    async def close(self) -> None:
        """See :meth:`LocalFolderTarget.close` (in a thread: it syncs)."""
        await _in_thread(self._sync.close)
