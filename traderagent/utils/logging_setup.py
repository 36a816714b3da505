"""Root logging for the desk, with secrets masked on every handler.

Entry points for start-up wiring (call once, first thing after `Settings.load()`):

    from traderagent.utils.logging_setup import configure_logging, protect_all_handlers

    handlers = configure_logging(settings, log_file=None, stream=None, install_excepthooks=True)
    ...                      # build the app; libraries may add their own handlers while importing
    protect_all_handlers()   # optional: also puts the filter on handlers third parties attached later

`configure_logging`:
- registers `settings.secrets` and the passwords inside `settings.database_url` / `settings.redis_url`
  with `secrets_filter` (so `mask()` elsewhere knows them too);
- sets the root level from `settings.log_level` (DEBUG when `settings.debug`);
- replaces the handlers it installed before (it is idempotent) with a stream handler (stderr by
  default) and, when `log_file` is given, a file handler; each carries a `SecretsFilter`;
- adds a `SecretsFilter` to every other handler already on the root logger;
- routes `warnings` and uncaught exceptions (sys/threading excepthooks) through logging, so their
  tracebacks are masked too instead of being printed raw to stderr.
"""

from __future__ import annotations

import logging
import sys
import threading
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

from traderagent.utils.secrets_filter import SecretsFilter, register_secret, register_secrets

LOG_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
# Chatty libraries: their INFO lines (one per HTTP request, one per Alembic plugin) drown the desk's own log.
QUIET_LOGGERS = ("httpx", "httpcore", "aiosqlite", "apscheduler", "telegram.ext", "asyncio", "urllib3", "alembic")
_MARK = "_traderagent_handler"


def url_password(url: str) -> str:
    """The password inside `scheme://user:password@host` ('' when none or unparsable)."""
    try:
        return urlsplit(url).password or ""
    except ValueError:
        return ""


def configure_logging(
    settings: Any,
    *,
    log_file: str | Path | None = None,
    stream: IO[str] | None = None,
    install_excepthooks: bool = True,
) -> list[logging.Handler]:
    """Configure the root logger from `settings` (a `traderagent.config.Settings`); returns our handlers."""
    register_secrets(settings.secrets)
    for url in (getattr(settings, "database_url", ""), getattr(settings, "redis_url", "")):
        register_secret(url_password(url or ""))

    debug = bool(getattr(settings, "debug", False))
    level = logging.DEBUG if debug else logging.getLevelName(str(getattr(settings, "log_level", "INFO")).upper())
    if not isinstance(level, int):
        level = logging.INFO
    root = logging.getLogger()
    root.setLevel(level)
    for handler in [h for h in root.handlers if getattr(h, _MARK, False)]:
        root.removeHandler(handler)
        handler.close()

    ours: list[logging.Handler] = [logging.StreamHandler(stream or sys.stderr)]
    if log_file:
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        ours.append(logging.FileHandler(log_file, encoding="utf-8"))
    for handler in ours:
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
        setattr(handler, _MARK, True)
        root.addHandler(handler)
    protect_handlers(root)

    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.DEBUG if debug else logging.WARNING)
    logging.captureWarnings(True)
    if install_excepthooks:
        _install_excepthooks()
    return ours


def protect_handlers(logger: logging.Logger) -> int:
    """Add a SecretsFilter to each handler of `logger` that lacks one; returns how many were added."""
    added = 0
    for handler in logger.handlers:
        if not any(isinstance(f, SecretsFilter) for f in handler.filters):
            handler.addFilter(SecretsFilter())
            added += 1
    return added


def protect_all_handlers() -> int:
    """protect_handlers() on the root and on every logger that exists now (third-party ones included)."""
    added = protect_handlers(logging.getLogger())
    for logger in list(logging.Logger.manager.loggerDict.values()):
        if isinstance(logger, logging.Logger):
            added += protect_handlers(logger)
    return added


def _install_excepthooks() -> None:
    log = logging.getLogger("traderagent")

    def sys_hook(exc_type: type[BaseException], exc: BaseException, tb: Any) -> None:
        if issubclass(exc_type, KeyboardInterrupt):
            sys.__excepthook__(exc_type, exc, tb)
            return
        log.critical("Uncaught exception", exc_info=(exc_type, exc, tb))

    def thread_hook(args: threading.ExceptHookArgs) -> None:
        if args.exc_type is SystemExit:
            return
        log.critical(
            "Uncaught exception in thread %s",
            getattr(args.thread, "name", "?"),
            exc_info=(args.exc_type, args.exc_value or args.exc_type(), args.exc_traceback),
        )

    sys.excepthook = sys_hook
    threading.excepthook = thread_hook
