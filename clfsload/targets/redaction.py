"""Scrub credentials out of any text before it reaches a message, a log or a repr.

Every string the targets build from something they did not write themselves
(SDK exception text, URLs, server error bodies) goes through :func:`redact`.
It removes, wherever they appear:

* the values of SAS query parameters (``sig=``, ``se=``, ``sp=`` and the rest
  of the SAS field names), so a SAS URL or a bare token keeps its shape but
  none of its content;
* ``AccountKey=`` and ``SharedAccessSignature=`` values of connection strings;
* ``Authorization:`` header values (SharedKey signatures, bearer tokens);
* any literal string registered with :func:`register_secret` (the credential
  objects register theirs, so a key that shows up bare is caught too).

Libraries log URLs with their query at DEBUG (urllib3 logs every request
line). :func:`protect_library_loggers` puts a :class:`RedactingFilter` on
those loggers; the targets call it when they build a client. The CLI should
also put a :class:`RedactingFilter` on its own handlers, which covers every
logger.
"""

from __future__ import annotations

import logging
import re
import threading
import traceback
import urllib.parse
from typing import Set

__all__ = ["REDACTED", "redact", "register_secret", "RedactingFilter", "protect_library_loggers"]

REDACTED = "REDACTED"

#: Query parameters that make up a SAS (service, account and user-delegation
#: SAS). Their values are replaced; the names are kept so messages still show
#: that a SAS was there.
SAS_FIELDS = (
    "sig", "sv", "ss", "srt", "sp", "se", "st", "spr", "sip", "si", "sr", "sdd",
    "skoid", "sktid", "skt", "ske", "sks", "skv", "saoid", "suoid", "scid",
    "sduoid", "skdutid", "ses", "rscc", "rscd", "rsce", "rscl", "rsct",
)

# A SAS field at the start of the text or after a separator: ? & ; space,
# quote, bracket. The value runs to the next & or a character that cannot be
# in a URL query.
_SAS_RE = re.compile(
    r"(?:(?<=[?&;\s\"'(<\[{,=])|^)(" + "|".join(SAS_FIELDS) + r")=([^&\s\"'<>;)\]},]*)",
    re.IGNORECASE,
)
_CONN_RE = re.compile(r"\b(AccountKey|SharedAccessSignature)=([^;\s\"']*)", re.IGNORECASE)
_AUTH_RE = re.compile(
    r"(\bAuthorization['\"]?\s*[:=]\s*['\"]?)(SharedKey(?:Lite)?\s+[^:\s'\"]+:|Bearer\s+)?([^\s'\",}]+)",
    re.IGNORECASE,
)

_lock = threading.Lock()
_secrets: Set[str] = set()

#: Shorter strings are not registered: replacing them could garble ordinary text.
_MIN_SECRET_LEN = 8


def register_secret(secret: str) -> None:
    """Remember *secret* so :func:`redact` removes it wherever it appears.

    Its URL-quoted form is registered too, because a SAS signature or a key
    travels percent-encoded in URLs.
    """
    secret = secret.strip()
    if len(secret) < _MIN_SECRET_LEN:
        return
    with _lock:
        _secrets.add(secret)
        _secrets.add(urllib.parse.quote(secret, safe=""))
        _secrets.add(urllib.parse.quote_plus(secret, safe=""))


def redact(text: object) -> str:
    """Return ``str(text)`` with every credential in it replaced by ``REDACTED``."""
    out = str(text)
    with _lock:
        known = sorted(_secrets, key=len, reverse=True)
    for secret in known:
        if secret in out:
            out = out.replace(secret, REDACTED)
    out = _CONN_RE.sub(lambda m: f"{m.group(1)}={REDACTED}", out)
    out = _AUTH_RE.sub(lambda m: f"{m.group(1)}{m.group(2) or ''}{REDACTED}", out)
    out = _SAS_RE.sub(lambda m: f"{m.group(1)}={REDACTED}", out)
    return out


class RedactingFilter(logging.Filter):
    """A logging filter that scrubs each record's message, exception and stack text.

    Attach it to a handler (covers every record the handler emits) or to a
    logger (covers records logged on that logger only).
    """

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):
            return True
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and not record.exc_text:
            record.exc_text = redact("".join(traceback.format_exception(*record.exc_info)).rstrip("\n"))
        elif record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


#: Loggers of the HTTP stack that put request URLs in their messages.
LIBRARY_LOGGERS = (
    "urllib3.connectionpool",
    "urllib3.util.retry",
    "requests",
    "aiohttp.client",
    "aiohttp.internal",
    "azure.core.pipeline.policies.http_logging_policy",
    "azure.core.pipeline.transport",
    "azure.storage.blob",
    "azure.identity",
)

_FILTER = RedactingFilter()


def protect_library_loggers() -> None:
    """Put one shared :class:`RedactingFilter` on each of :data:`LIBRARY_LOGGERS` (idempotent)."""
    for name in LIBRARY_LOGGERS:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
