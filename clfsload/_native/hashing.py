"""Object-id hashes and blob names (spec §3, §4).

Selector: exposes the compiled twin (``hashing_c``) or the pure one (``hashing_py``),
whose docstrings are the specification of both.
"""

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .hashing_py import *  # noqa: F401,F403
else:
    from ._compat import export

    export("hashing", globals())
    del export
