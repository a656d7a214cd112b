"""clfsload: load a local directory tree into Azure Blob storage in the CLFS format.

The public API is what ``__all__`` lists; everything else is internal.
"""

__version__ = "0.1.0"

from .errors import ClfsLoadError, EncodeError, FormatError

__all__ = ["__version__", "ClfsLoadError", "EncodeError", "FormatError"]
