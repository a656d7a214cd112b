#!/usr/bin/env python3
"""CLFSLoad.py: load a directory tree into Azure Blob storage in CLFS format.

Same command line as CLFSLoad 1.0.24: ``CLFSLoad.py [--new] STATE_DIR SOURCE ACCOUNT CONTAINER SAS``.
"""

if __name__ == "__main__":
    from clfsload.proctitle import hide_secrets

    hide_secrets()  # the SAS out of `ps` before the slow imports below
    from clfsload.cli.exiting import exit_program
    from clfsload.cli.main import main

    exit_program(main())  # sys.exit without the interpreter's teardown
