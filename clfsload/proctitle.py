"""Keep credentials out of the process list (``ps``, ``/proc/PID/cmdline``).

AzCopy, and the original's users, give the SAS in argv, where every local
user can read it for the whole load. :func:`hide_secrets` rewrites this
process's command line with those words redacted. ``CLFSLoad.py``,
``python -m clfsload`` and the ``clfsload`` console script
(:mod:`clfsload.cli.console`) call it before anything heavy is imported, so
the SAS is gone within the first tens of milliseconds; workers forked later
inherit the rewritten memory; the forkserver and the resource tracker, forked
from the command line (:mod:`clfsload.execute.fork_start`, only where
``setproctitle`` titles them), take titles of their own, or start from argvs
of their own as Dask workers do. This module imports nothing heavy on purpose.
"""

import base64
import binascii
import re
import sys
from typing import Optional

#: the same word as :data:`clfsload.targets.redaction.REDACTED` (not imported: that package is slow to load)
REDACTED = "REDACTED"


def looks_secret(token: str, bare_keys: bool = True) -> bool:
    """A command-line word that may be a credential: a SAS, a connection string or (``bare_keys``) an account key."""
    lowered = token.lower()
    if any(mark in lowered for mark in ("sig=", "accountkey=", "sharedaccesssignature=")):
        return True
    if not bare_keys:
        return False
    bare = token.strip()  # an account key: 88 base64 characters; never a path
    if len(bare) < 40 or bare.startswith("/") or not re.fullmatch(r"[A-Za-z0-9+/]+={0,2}", bare):
        return False
    if not (re.search(r"[a-z]", bare) and re.search(r"[A-Z]", bare) and re.search(r"[0-9]", bare)):
        return False
    try:
        return len(base64.b64decode(bare, validate=True)) >= 24
    except (binascii.Error, ValueError):
        return False


def hide_secrets(sas: Optional[str] = None) -> bool:
    """Rewrite this process's command line with credential words (and ``sas``) redacted; True if it did.

    Does nothing when no word is secret, or when ``setproctitle`` (a
    dependency) cannot be imported.
    """
    words = list(getattr(sys, "orig_argv", None) or [sys.executable] + sys.argv)
    secrets = {w for w in words if looks_secret(w)}
    if sas and sas.strip() not in ("", "-") and sas in words:
        secrets.add(sas)
    if not secrets:
        return False
    try:
        import setproctitle
    except ImportError:  # a broken install only loses this protection
        return False
    setproctitle.setproctitle(" ".join(REDACTED if w in secrets else w for w in words))
    return True

