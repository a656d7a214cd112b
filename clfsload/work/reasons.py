"""Why an entry was not stored: the reason lines both read paths give (a whole file, a range of one).

One place for them, so that the single-stream path (:mod:`clfsload.work.transfer`)
and the ranges of huge files (:mod:`clfsload.work.ranges`) say the same thing
and retry the same number of times.
"""

from ..errors import TargetError

#: the warning of an entry gone since its directory was scanned (not an error, like rsync or tar)
VANISHED = "vanished since its directory was scanned; left out"

#: times a regular file (or a file loaded in ranges) is read again when it changes while being read
READ_ATTEMPTS = 3


def torn_read() -> str:
    """The reason of a file that kept changing while it was read: it is never stored torn."""
    return "changed while being read, %d times; not stored torn" % READ_ATTEMPTS


def store_failure(error: BaseException) -> str:
    """The reason line of an object whose upload failed."""
    if isinstance(error, TargetError):
        return "could not be stored: %s" % error
    return "could not be stored: %s: %s" % (type(error).__name__, error)
