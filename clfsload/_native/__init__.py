"""The hot-path layer: each topic has a compiled twin and a pure-Python twin.

Import topics from here (``from clfsload._native import records``); only
tests import ``*_c`` or ``*_py`` directly. :data:`BACKEND` tells which twins
this process uses: ``"cython"``, ``"python"``, or ``"mixed"`` when a compiled
twin was missing and the pure one stood in.
"""

from . import blobfile, checksum, dirents, envelope, hashing, records, sourceio
from ._compat import LOADED, NO_EXTENSIONS, REQUIRE_EXTENSIONS

TOPICS = ("blobfile", "checksum", "dirents", "envelope", "hashing", "records", "sourceio")

_kinds = set(LOADED[t] for t in TOPICS)
BACKEND = _kinds.pop() if len(_kinds) == 1 else "mixed"
del _kinds

#: topic -> (pkg-config name, Debian package) of the system library its compiled twin links;
#: the same as gen_setup.py's NATIVE_MODULES (a test checks)
LIBRARIES = {"envelope": ("liblz4", "liblz4-dev"), "checksum": ("libxxhash", "libxxhash-dev")}


def backend_warning() -> str:
    """One line saying which compiled twins are missing, why, and the command that fixes it ('' if none is).

    pip hides the build's own message, so a machine without the system
    libraries gets a slower *mixed* install silently. Nothing is said when
    the pure twins were asked for (``CLFSLOAD_NO_EXTENSIONS``).
    """
    pure = [t for t in TOPICS if LOADED[t] == "python"]
    if not pure or NO_EXTENSIONS:
        return ""
    libraries = [LIBRARIES[t] for t in pure if t in LIBRARIES]
    packages = ["pkg-config"] + [debian for _, debian in libraries]
    if len(libraries) < len(pure):
        packages.insert(0, "build-essential")  # a twin that needs no library is missing: no compiler at build time
    if len(libraries) < len(pure):
        why = "the build had no C compiler"
    else:
        why = "the build found no %s" % ", ".join(name for name, _ in libraries)
    what = "twins of %s are" % ", ".join(pure) if len(pure) > 1 else "twin of %s is" % pure[0]
    return (
        "%s backend: the compiled %s missing (%s), so the load runs slower; fix: apt-get install %s "
        "&& pip install --force-reinstall --no-cache-dir --no-binary clfsload clfsload"
        % (BACKEND, what, why, " ".join(packages))
    )

__all__ = [
    "BACKEND",
    "LIBRARIES",
    "backend_warning",
    "NO_EXTENSIONS",
    "REQUIRE_EXTENSIONS",
    "TOPICS",
    "blobfile",
    "checksum",
    "dirents",
    "envelope",
    "hashing",
    "records",
    "sourceio",
]
