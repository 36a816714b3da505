"""Secrets hygiene: mask configured secrets in any text, and a logging filter that does it for every record.

Entry points (for start-up wiring and for any code that sends text out of the process):

    from traderagent.utils.secrets_filter import SecretsFilter, mask, register_secret, register_secrets

    register_secrets(settings.secrets)     # done by logging_setup.configure_logging(settings)
    register_secret(value)                 # a secret learned at run time (e.g. credentials loaded from the DB)
    mask(text) -> str                      # use before sending chat messages / exception texts anywhere
    handler.addFilter(SecretsFilter())     # logging_setup installs it on every handler it creates

What is masked:
- every registered secret of at least MIN_SECRET_LENGTH (6) characters, also in its URL-encoded form
  (shorter strings are not masked: replacing e.g. "abc" everywhere would garble the output);
- whatever the patterns below recognise even when nobody registered it: a Telegram bot token
  (`123456789:AA...`, which HTTP client logs print inside Bot API URLs) and the password of a
  `scheme://user:password@host` URL.

The filter must sit on *handlers* (not loggers): a logger's filters never see records propagated from
child loggers, so only handler filters cover third-party libraries.
"""

from __future__ import annotations

import logging
import re
import threading
import traceback
from collections.abc import Iterable
from urllib.parse import quote, quote_plus

MIN_SECRET_LENGTH = 6
MASK = "***"

_lock = threading.Lock()
_secrets: set[str] = set()
_pattern: re.Pattern[str] | None = None

# Telegram bot token: <bot id>:<35 chars>; appears in https://api.telegram.org/bot<token>/method URLs.
_TELEGRAM_TOKEN = re.compile(r"(?<![0-9])\d{8,10}:[A-Za-z0-9_-]{35}(?![A-Za-z0-9_-])")
# scheme://user:password@host -> keep the user, hide the password.
_URL_PASSWORD = re.compile(r"(?P<head>\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s:/@'\"]*:)(?P<pw>[^\s@'\"/]+)(?P<at>@)")


def register_secret(value: str | None) -> None:
    """Mask `value` from now on (ignored when shorter than MIN_SECRET_LENGTH)."""
    register_secrets([value] if value else [])


def register_secrets(values: Iterable[str | None]) -> None:
    global _pattern
    with _lock:
        before = len(_secrets)
        for value in values:
            if not value or len(value) < MIN_SECRET_LENGTH:
                continue
            # The same secret may travel URL-encoded (query strings, DSNs).
            _secrets.update({value, quote(value, safe=""), quote_plus(value, safe="")})
        if len(_secrets) != before:
            _pattern = _compile(_secrets)


def clear_secrets() -> None:
    """Forget every registered secret (tests; a restart of the settings)."""
    global _pattern
    with _lock:
        _secrets.clear()
        _pattern = None


def registered_count() -> int:
    return len(_secrets)


def _compile(values: set[str]) -> re.Pattern[str] | None:
    if not values:
        return None
    # Longest first so that a secret containing another is masked whole.
    return re.compile("|".join(re.escape(v) for v in sorted(values, key=len, reverse=True)))


def mask(text: object) -> str:
    """`text` as a string with every secret replaced by '***'. Never raises."""
    try:
        out = text if isinstance(text, str) else str(text)
    except Exception:  # a broken __str__ must not break logging
        out = f"<unprintable {type(text).__name__}>"
    pattern = _pattern
    if pattern is not None:
        out = pattern.sub(MASK, out)
    if ":" in out:
        out = _TELEGRAM_TOKEN.sub(MASK, out)
        out = _URL_PASSWORD.sub(lambda m: m["head"] + MASK + m["at"] if m["pw"] != MASK else m[0], out)
    return out


# Attributes every LogRecord has; anything else came from `extra=` and may hold secrets too.
_STANDARD_ATTRS = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


class SecretsFilter(logging.Filter):
    """Masks secrets in a record's message, args, exception/stack text and string `extra` fields.

    The record is rewritten in place (msg formatted with its args, then masked; args cleared; the
    traceback rendered into exc_text and masked; exc_info dropped so that no formatter can render
    the unmasked traceback again). It always returns True: it hides, it never drops.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # bad %-args: keep what we can, masked
            message = f"{record.msg!s} {record.args!r}"
        record.msg = mask(message)
        record.args = ()
        if record.exc_info:
            if not record.exc_text:
                record.exc_text = "".join(traceback.format_exception(*record.exc_info)).rstrip("\n")
            record.exc_info = None
        if record.exc_text:
            record.exc_text = mask(record.exc_text)
        if record.stack_info:
            record.stack_info = mask(record.stack_info)
        for key, value in list(record.__dict__.items()):
            if key not in _STANDARD_ATTRS and isinstance(value, str):
                setattr(record, key, mask(value))
        return True
