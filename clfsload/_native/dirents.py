"""Directory entry packing, splitting and unpacking (spec §8.2, §12).

Selector: exposes the compiled twin (``dirents_c``) or the pure one (``dirents_py``),
whose docstrings are the specification of both.
"""

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .dirents_py import *  # noqa: F401,F403
else:
    from ._compat import export

    export("dirents", globals())
    del export
