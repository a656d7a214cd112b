"""``python -m clfsload``: the same command line as ``CLFSLoad.py``."""

from .proctitle import hide_secrets

hide_secrets()  # the SAS out of `ps` before the slow imports below
from .cli.exiting import exit_program  # noqa: E402
from .cli.main import main  # noqa: E402

exit_program(main())  # SystemExit without the interpreter's teardown
