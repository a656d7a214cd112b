"""XXH3-128 checksums of object payloads.

Selector: exposes the compiled twin (``checksum_c``) or the pure one (``checksum_py``),
whose docstrings are the specification of both.
"""

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .checksum_py import *  # noqa: F401,F403
else:
    from ._compat import export

    export("checksum", globals())
    del export
