"""``python -m clfsload``: the same command line as ``CLFSLoad.py``."""

from .cli import main

raise SystemExit(main())
