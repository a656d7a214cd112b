"""The ``clfsload`` console script.

:func:`~clfsload.proctitle.hide_secrets` runs before the command line
modules (and everything they import) load, so a SAS in argv leaves the
process list within the first tens of milliseconds.
"""

from ..proctitle import hide_secrets

__all__ = ["console_main"]


def console_main() -> int:
    """The ``clfsload`` console script: :func:`hide_secrets` first, then :func:`clfsload.cli.main.main`.

    Ends the process with its exit code (:func:`clfsload.cli.exiting.exit_program`: no interpreter teardown).
    """
    hide_secrets()
    from .exiting import exit_program
    from .main import main

    exit_program(main())
