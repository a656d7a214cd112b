"""``python -m clfsload``: the same command line as ``CLFSLoad.py``."""

from .proctitle import hide_secrets

hide_secrets()  # the SAS out of `ps` before the slow imports below
from .cli.main import main  # noqa: E402

raise SystemExit(main())
