"""The interfaces the work layer is typed against: an uploader, and what stores the blobs of one run.

:class:`BlobUploader` is met by :class:`clfsload.work.upload.Uploader` (an
event loop with many PUTs in flight) and :class:`~clfsload.work.upload.DirectUploader`
(blocking writes, for a local folder or the driver), and by the capturing
uploaders of the tests. :class:`RunStore` is what the range code
(:mod:`clfsload.work.ranges`) needs of whoever stores a file's blobs: the
unit runner in a worker, or the driver's directory writer.
"""

import os
from concurrent.futures import Future
from typing import TYPE_CHECKING, Protocol, Union

from ..clfs.objects import Blob, Sealed
from ..clfs.vattr import VAttr
from .ids import IdMint
from .scan import EntryStat

if TYPE_CHECKING:
    from .source_reads import SourceReads


class BlobUploader(Protocol):
    """Stores blobs: ``submit`` returns a future that is done once the blob is stored (or failed)."""

    compress: bool

    def submit(self, blob: Union[Blob, Sealed]) -> "Future[None]":
        """Seal (a :class:`Blob`) and store one blob."""

    def sync(self) -> None:
        """Make every blob whose future is done durable where it lives (before the unit is reported done)."""

    def close(self) -> None:
        """Wait for what is in flight, then release the target."""


class RunStore(Protocol):
    """The run's ids, attributes and uploader, as a store of one file's blobs uses them."""

    @property
    def mint(self) -> IdMint:
        """The run's handle and block-id mint."""

    @property
    def uploader(self) -> BlobUploader:
        """Where the blobs go."""

    def attrs(self, st: Union[EntryStat, os.stat_result], size: int, nlink: int = 1) -> VAttr:
        """The VATTR of an object of this stat, size and link count in this run."""


class ReadingRunStore(RunStore, Protocol):
    """A :class:`RunStore` that also reads the source: the unit runner, with its process's pipeline of reads."""

    @property
    def reads(self) -> "SourceReads":
        """This process's pipeline of source operations (:mod:`clfsload.work.source_reads`)."""
