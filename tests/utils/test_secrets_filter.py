"""SecretsFilter / mask / configure_logging: no secret reaches a log line, whatever the path."""

from __future__ import annotations

import io
import logging
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

from traderagent.config import Settings
from traderagent.utils import secrets_filter
from traderagent.utils.logging_setup import configure_logging, protect_all_handlers
from traderagent.utils.secrets_filter import SecretsFilter, mask, register_secret

API_KEY = "Kq8" + "vT3nR7wY2pL5sD9x"
API_SECRET = "Hh4" + "Jm7Nb2Vc5Xz8Lk1Pq6Rw3Ty9Ua"
TG_TOKEN = "612345678" + ":" + "AAF" + "x" * 6 + "Lm2Np5Rt8Vw1Yb4Cd7Fg0Hj6Ks"  # 35 after ':'
ODD_SECRET = "p+ss/w=rd" + "&more"  # audit: allow (test fixture)


@pytest.fixture(autouse=True)
def clean_state() -> Iterator[None]:
    root = logging.getLogger()
    saved = (root.handlers[:], root.level, sys.excepthook, threading.excepthook)
    secrets_filter.clear_secrets()
    yield
    secrets_filter.clear_secrets()
    for h in root.handlers[:]:
        if h not in saved[0]:
            root.removeHandler(h)
            h.close()
    root.setLevel(saved[1])
    sys.excepthook, threading.excepthook = saved[2], saved[3]
    logging.captureWarnings(False)


@pytest.fixture
def log() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s %(bot)s"))
    handler.addFilter(SecretsFilter())
    logger = logging.getLogger("test.secrets")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    yield logger, stream
    logger.removeHandler(handler)


def test_mask_replaces_registered_secrets_only_when_long_enough() -> None:
    register_secret(API_KEY)
    register_secret("abc")  # too short: would garble every "abc"
    assert mask(f"key={API_KEY} x") == "key=*** x"
    assert mask("abcdef abc") == "abcdef abc"
    assert secrets_filter.registered_count() >= 1


def test_mask_covers_url_encoded_form_and_patterns() -> None:
    register_secret(ODD_SECRET)
    assert ODD_SECRET not in mask(f"body={ODD_SECRET}")
    assert quote(ODD_SECRET, safe="") not in mask(f"q={quote(ODD_SECRET, safe='')}")
    # not registered, recognised by shape
    out = mask(f"POST https://api.telegram.org/bot{TG_TOKEN}/getUpdates")
    assert TG_TOKEN not in out and "getUpdates" in out
    pw = "hunter" + "22"
    assert mask(f"postgresql+asyncpg://trader:{pw}@db:5432/x") == "postgresql+asyncpg://trader:***@db:5432/x"


def test_mask_never_raises() -> None:
    class Broken:
        def __str__(self) -> str:
            raise RuntimeError("no")

    assert "unprintable" in mask(Broken())
    assert mask(12345678) == "12345678"


def test_filter_masks_message_args_and_extra(log: tuple[logging.Logger, io.StringIO]) -> None:
    logger, stream = log
    register_secret(API_SECRET)
    logger.info(f"secret in msg {API_SECRET}", extra={"bot": f"b-{API_SECRET}"})
    logger.warning("secret in args %s / %r", API_SECRET, {"k": API_SECRET}, extra={"bot": "x"})
    out = stream.getvalue()
    assert API_SECRET not in out
    assert out.count("***") >= 4 and "secret in args" in out


def test_filter_masks_exception_traceback(log: tuple[logging.Logger, io.StringIO]) -> None:
    logger, stream = log
    register_secret(API_KEY)
    try:
        raise ValueError(f"bad key {API_KEY}")
    except ValueError:
        logger.exception("failed with %s", API_KEY, extra={"bot": "b"})
    out = stream.getvalue()
    assert "Traceback" in out and "ValueError: bad key ***" in out
    assert API_KEY not in out


def test_filter_masks_stack_info(log: tuple[logging.Logger, io.StringIO]) -> None:
    logger, stream = log
    register_secret(API_KEY)
    logger.info("here", stack_info=True, extra={"bot": API_KEY})
    assert API_KEY not in stream.getvalue()


def test_filter_survives_bad_format_args(log: tuple[logging.Logger, io.StringIO]) -> None:
    logger, stream = log
    register_secret(API_KEY)
    logger.info("two %s %s", API_KEY, extra={"bot": "b"})  # one arg short
    out = stream.getvalue()
    assert "two" in out and API_KEY not in out


def _settings(**extra: str) -> Settings:
    env = {"BYBIT_API_KEY": API_KEY, "BYBIT_API_SECRET": API_SECRET, "TELEGRAM_BOT_TOKEN": TG_TOKEN,
           "TELEGRAM_CHAT_IDS": "1", **extra}
    return Settings.load(env=env, env_file=None)


def test_configure_logging_covers_third_party_loggers_and_file(tmp_path: Path) -> None:
    stream = io.StringIO()
    log_file = tmp_path / "logs" / "desk.log"
    db_pw = "Db" + "Passw0rdXyz"
    configure_logging(_settings(DATABASE_URL=f"postgresql+asyncpg://u:{db_pw}@db.example.com/x?ssl=require"),
                      stream=stream, log_file=log_file)
    logging.getLogger("aiohttp.client").error("auth header %s", API_SECRET)
    logging.getLogger("some.vendor.lib").warning(f"token {TG_TOKEN} key {API_KEY}")
    logging.getLogger("traderagent.db").error("connect failed: password %s", db_pw)
    try:
        {}["x"]
    except KeyError:
        logging.getLogger("vendor").exception(f"crash with {API_SECRET}")
    for handler in logging.getLogger().handlers:
        handler.flush()
    outputs = [stream.getvalue(), log_file.read_text()]
    for out in outputs:
        assert "some.vendor.lib" in out and "KeyError" in out
        for secret in (API_KEY, API_SECRET, TG_TOKEN, db_pw):
            assert secret not in out


def test_configure_logging_is_idempotent_and_protects_foreign_handlers() -> None:
    stream = io.StringIO()
    configure_logging(_settings(), stream=stream)
    configure_logging(_settings(), stream=stream)
    ours = [h for h in logging.getLogger().handlers if getattr(h, "_traderagent_handler", False)]
    assert len(ours) == 1
    foreign_stream = io.StringIO()
    vendor = logging.getLogger("vendor.own")
    foreign = logging.StreamHandler(foreign_stream)
    vendor.addHandler(foreign)
    try:
        assert protect_all_handlers() >= 1
        vendor.error("leak %s", API_KEY)
        assert API_KEY not in foreign_stream.getvalue() and "leak ***" in foreign_stream.getvalue()
    finally:
        vendor.removeHandler(foreign)


def test_uncaught_exceptions_go_through_the_filter() -> None:
    stream = io.StringIO()
    configure_logging(_settings(), stream=stream)
    try:
        raise RuntimeError(f"boom {API_SECRET}")
    except RuntimeError:
        sys.excepthook(*sys.exc_info())
    out = stream.getvalue()
    assert "Uncaught exception" in out and "RuntimeError: boom ***" in out and API_SECRET not in out


def test_debug_setting_lowers_the_level() -> None:
    configure_logging(_settings(DEBUG="true"), stream=io.StringIO())
    assert logging.getLogger().level == logging.DEBUG
    configure_logging(_settings(LOG_LEVEL="warning"), stream=io.StringIO())
    assert logging.getLogger().level == logging.WARNING
