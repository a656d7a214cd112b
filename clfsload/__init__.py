"""clfsload: load a local directory tree into Azure Blob storage in the CLFS format.

The public API is what ``__all__`` lists; everything else is internal:

* :func:`load` runs a load (or resumes one) and returns a :class:`LoadResult`;
* :func:`open_container` opens a container for reading (walk, list, read
  files); :func:`compare_tree` compares one with a source folder and
  :func:`restore` copies a subtree back to local disk.

They are imported on first use, so ``import clfsload`` stays light.
"""

__version__ = "1.0.25"

import logging
from typing import Any

from .errors import ClfsLoadError, EncodeError, FormatError

# A library logs, the application decides where to: no output unless it sets up logging.
logging.getLogger("clfsload").addHandler(logging.NullHandler())

__all__ = [
    "__version__",
    "ClfsLoadError",
    "EncodeError",
    "FormatError",
    "load",
    "LoadResult",
    "open_container",
    "compare_tree",
    "restore",
]

_LAZY = {
    "load": ("clfsload.api", "load"),
    "LoadResult": ("clfsload.driver.result", "LoadResult"),
    "open_container": ("clfsload.read.readback", "open_container"),
    "compare_tree": ("clfsload.read.verify", "compare_tree"),
    "restore": ("clfsload.read.restore", "restore"),
}


def __getattr__(name: str) -> Any:
    try:
        module, attribute = _LAZY[name]
    except KeyError:
        raise AttributeError("module 'clfsload' has no attribute %r" % name) from None
    import importlib

    value = getattr(importlib.import_module(module), attribute)
    globals()[name] = value
    return value
