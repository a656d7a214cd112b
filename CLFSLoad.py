#!/usr/bin/env python3
"""CLFSLoad.py: load a directory tree into Azure Blob storage in CLFS format.

Same command line as CLFSLoad 1.0.24: ``CLFSLoad.py [--new] STATE_DIR SOURCE ACCOUNT CONTAINER SAS``.
"""

import sys

from clfsload.cli import main

if __name__ == "__main__":
    sys.exit(main())
