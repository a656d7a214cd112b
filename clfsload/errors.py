"""Exception hierarchy shared by both native twins, the format layer and the CLI.

Every error the package raises on purpose derives from :class:`ClfsLoadError`.
Exceptions keep their arguments plain (strings and ints) so they pickle across
worker processes unchanged.
"""


class ClfsLoadError(Exception):
    """Base class of every error clfsload raises on purpose."""


class FormatError(ClfsLoadError, ValueError):
    """CLFS data that does not follow the format: bad magic, truncation, bad lengths.

    The message names the blob (when known) and the byte offset of the fault.
    """


class EncodeError(ClfsLoadError, ValueError):
    """A value that cannot be represented in the CLFS format.

    Examples: a time before 1970 or past 2^32 seconds, an id longer than
    65,535 bytes, more direct block pointers than a block map holds.
    """
