"""Writing one blob file of the ``file:`` target in one call (open, write, fsync if durable, close, rename).

Selector: exposes the compiled twin (``blobfile_c``) or the pure one (``blobfile_py``),
whose docstrings are the specification of both.
"""

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .blobfile_py import *  # noqa: F401,F403
else:
    from ._compat import export

    export("blobfile", globals())
    del export
