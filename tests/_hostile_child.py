"""Run one read command (``python _hostile_child.py ls ACCOUNT CONTAINER ...``) for the hostile-container tests.

The same as ``python -m clfsload COMMAND ...``, plus one test hook: when
``$CLFSLOAD_FUZZ_UNREADABLE`` names a blob, the local target's ``get``
raises ``PermissionError`` for it, as reading a blob the account may not
read would (the tests run as root, for whom ``chmod 000`` changes nothing).
"""

import os
import sys

from clfsload.cli.commands import main
from clfsload.targets import local

_UNREADABLE = os.environ.get("CLFSLOAD_FUZZ_UNREADABLE")

if _UNREADABLE:
    _get = local.LocalFolderTarget.get

    def _denied(self, name):
        if name == _UNREADABLE:
            raise self._error("get", name, PermissionError(13, "Permission denied", name))
        return _get(self, name)

    local.LocalFolderTarget.get = _denied

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
