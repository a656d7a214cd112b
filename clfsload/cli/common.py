"""What the loader's command line (:mod:`.main`) and the reading commands (:mod:`.commands`) share.

Exit codes, the credential environment variables, the argument parser that
scrubs credentials out of its error messages, and the credential lookup.
Both command modules import it; it imports neither, so they do not import
each other at load time.
"""

import argparse
import logging
import os
import sys
from typing import List, Mapping, Optional

from ..errors import ClfsLoadError
from ..logsetup import console
from ..proctitle import looks_secret
from ..targets.credentials import Credential
from ..targets.endpoint import LocalFolder, parse_account
from ..targets.redaction import REDACTED, redact

__all__ = [
    "EXIT_OK", "EXIT_FAILED", "EXIT_USAGE", "ENV_SAS", "ENV_ACCOUNT_KEY", "ENV_CONNECTION_STRING",
    "ScrubbingParser", "credential_from", "is_local_target",
]

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
ENV_SAS = "CLFSLOAD_SAS_TOKEN"
ENV_ACCOUNT_KEY = "CLFSLOAD_ACCOUNT_KEY"
ENV_CONNECTION_STRING = "CLFSLOAD_CONNECTION_STRING"


class ScrubbingParser(argparse.ArgumentParser):
    """argparse with its error messages scrubbed: a usage error may quote any word of argv, the SAS too."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.secret_words: List[str] = []

    def parse_args(self, args=None, namespace=None):  # type: ignore[override]
        words = sys.argv[1:] if args is None else list(args)
        self.secret_words = sorted((w for w in words if looks_secret(w)), key=len, reverse=True)
        self.azcopy = "--azcopy" in words
        return super().parse_args(words, namespace)

    def error(self, message: str):  # type: ignore[override]
        for word in self.secret_words:
            message = message.replace(word, REDACTED)
        message = redact(message)
        if getattr(self, "azcopy", False):
            # AzCopy reads stdout only and shows the lines holding ERR; stderr goes nowhere.
            console("INFO", sys.stdout).error("%s: error: %s", self.prog, message)
        super().error(message)


def is_local_target(account: str) -> bool:
    """True when ``account`` names a local folder (``file:``); False for Azure or a value the target layer rejects."""
    try:
        return isinstance(parse_account(account), LocalFolder)
    except ClfsLoadError:
        return False  # the target layer says what is wrong with it


def credential_from(args: argparse.Namespace, environ: Mapping[str, str] = os.environ, log: Optional[logging.Logger] = None) -> Credential:
    """The credential, from the first of: --azure_ad, --sas_token_file, SAS, the environment.

    A ``file:`` target takes no credential. One given explicitly (argv,
    --sas_token_file, --azure_ad) is an error the target reports; one merely
    present in the environment is ignored, so an exported
    ``$CLFSLOAD_SAS_TOKEN`` does not break a local load that passes ``-``.
    """
    if args.azure_ad:
        return Credential.azure_ad()
    if args.sas_token_file:
        try:
            with open(args.sas_token_file, encoding="utf-8") as f:
                return Credential.sas(f.read())
        except OSError as exc:
            raise ClfsLoadError("cannot read --sas_token_file '%s': %s" % (args.sas_token_file, exc.strerror)) from None
    if args.sas_token.strip() not in ("", "-"):
        return Credential.sas(args.sas_token)
    if is_local_target(args.target_storage_account):
        present = [name for name in (ENV_SAS, ENV_ACCOUNT_KEY, ENV_CONNECTION_STRING) if environ.get(name)]
        if present and log is not None:
            log.info("a file: target takes no credential; $%s ignored", ", $".join(present))
        return Credential.none()
    if environ.get(ENV_SAS):
        return Credential.sas(environ[ENV_SAS])
    if environ.get(ENV_ACCOUNT_KEY):
        return Credential.account_key(environ[ENV_ACCOUNT_KEY])
    if environ.get(ENV_CONNECTION_STRING):
        return Credential.connection_string(environ[ENV_CONNECTION_STRING])
    return Credential.none()
