"""Reading a small source file whole in one call (open, fstat, read, fstat, close).

Selector: exposes the compiled twin (``sourceio_c``) or the pure one (``sourceio_py``),
whose docstrings are the specification of both.
"""

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .sourceio_py import *  # noqa: F401,F403
else:
    from ._compat import export

    export("sourceio", globals())
    del export
