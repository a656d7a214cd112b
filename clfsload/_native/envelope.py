"""The 4-byte blob envelope with LZ4 framing and its raw fallbacks (spec §6).

Selector: exposes the compiled twin (``envelope_c``) or the pure one (``envelope_py``),
whose docstrings are the specification of both.
"""

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .envelope_py import *  # noqa: F401,F403
else:
    from ._compat import export

    export("envelope", globals())
    del export
