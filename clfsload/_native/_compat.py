"""Which twin of each hot path to load: the compiled one or the pure-Python one.

``CLFSLOAD_NO_EXTENSIONS=1`` forces the pure twins (always so off CPython).
``CLFSLOAD_REQUIRE_EXTENSIONS=1`` turns a missing compiled twin into an
ImportError instead of a silent fallback; CI and wheel builds set it.
"""

import importlib
import os
import platform
from types import ModuleType


def _flag(name: str) -> bool:
    # Read here, not at the edge: the twin is chosen at import time, before any Settings exist.
    return os.environ.get(name, "").strip() not in ("", "0")


NO_EXTENSIONS = _flag("CLFSLOAD_NO_EXTENSIONS") or platform.python_implementation() != "CPython"
REQUIRE_EXTENSIONS = _flag("CLFSLOAD_REQUIRE_EXTENSIONS") and not NO_EXTENSIONS

#: topic -> "cython" or "python", filled as the selectors import their twins
LOADED: dict = {}


def select(topic: str) -> ModuleType:
    """Import and return the twin of ``topic`` that this process should use."""
    if not NO_EXTENSIONS:
        try:
            module = importlib.import_module("clfsload._native.%s_c" % topic)
        except ImportError as exc:
            if REQUIRE_EXTENSIONS:
                raise ImportError(
                    "clfsload: compiled module clfsload._native.%s_c is missing (%s); "
                    "rebuild with 'pip install .' or unset CLFSLOAD_REQUIRE_EXTENSIONS" % (topic, exc)
                ) from exc
        else:
            LOADED[topic] = "cython"
            return module
    module = importlib.import_module("clfsload._native.%s_py" % topic)
    LOADED[topic] = "python"
    return module


def export(topic: str, namespace: dict) -> None:
    """Copy the public names of the selected ``topic`` twin into ``namespace``."""
    module = select(topic)
    namespace.update({name: getattr(module, name) for name in module.__all__})
    namespace["__all__"] = list(module.__all__)
    namespace["IMPLEMENTATION"] = module
