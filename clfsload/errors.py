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


# --- storage targets (clfsload.targets) -------------------------------------
#
# Two families: TargetError is about one blob and counts against the error
# budget; TerminalError stops the whole run (the credential, the container or
# the endpoint is unusable, so every later call would fail the same way).


class TargetError(ClfsLoadError):
    """A storage-target operation on one blob failed; the run goes on.

    The message names the blob and the operation. It never holds a secret.
    """


class BlobNotFoundError(TargetError):
    """The named blob does not exist in the container."""


class TransientError(TargetError):
    """A retryable failure (throttling, 5xx, network) that outlasted the retry budget."""


class BlobNameError(ClfsLoadError, ValueError):
    """A blob name the targets refuse: empty, ``.``/``..``, or holding ``/``, ``\\`` or NUL."""


class TerminalError(ClfsLoadError):
    """A failure that stops the whole run: no point in trying other objects.

    Examples: the credential is rejected or lacks a permission, the container
    does not exist, the target description cannot be used.
    """


class AccessDeniedError(TerminalError):
    """The credential was rejected, has expired, or lacks a permission the run needs."""


class ContainerNotFoundError(TerminalError):
    """The container (or, for a local target, the container folder) does not exist."""


class TargetConfigError(TerminalError, ValueError):
    """The target or credential given on the command line cannot be used as written."""
