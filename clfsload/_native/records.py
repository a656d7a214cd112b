"""Handle and object-body encoders (spec §7-§9).

Selector: exposes the compiled twin (``records_c``) or the pure one (``records_py``),
whose docstrings are the specification of both.
"""

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .records_py import *  # noqa: F401,F403
else:
    from ._compat import export

    export("records", globals())
    del export
