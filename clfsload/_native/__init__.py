"""The hot-path layer: each topic has a compiled twin and a pure-Python twin.

Import topics from here (``from clfsload._native import records``); only
tests import ``*_c`` or ``*_py`` directly. :data:`BACKEND` tells which twins
this process uses: ``"cython"``, ``"python"``, or ``"mixed"`` when a compiled
twin was missing and the pure one stood in.
"""

from . import checksum, dirents, envelope, hashing, records
from ._compat import LOADED, NO_EXTENSIONS, REQUIRE_EXTENSIONS

TOPICS = ("checksum", "dirents", "envelope", "hashing", "records")

_kinds = set(LOADED[t] for t in TOPICS)
BACKEND = _kinds.pop() if len(_kinds) == 1 else "mixed"
del _kinds

__all__ = [
    "BACKEND",
    "NO_EXTENSIONS",
    "REQUIRE_EXTENSIONS",
    "TOPICS",
    "checksum",
    "dirents",
    "envelope",
    "hashing",
    "records",
]
