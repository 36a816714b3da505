"""Settings: the one place that reads the environment (and `.env`).

Every setting has a safe default so that `traderagent run` with no configuration at all
starts a paper desk against the built-in exchange simulator. Secrets are wrapped in
`Secret`, whose repr and str never show the value.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass, field, fields
from decimal import Decimal
from pathlib import Path
from typing import Any

from dotenv import dotenv_values

from traderagent.numbers import NumberError, to_decimal
from traderagent.strategies.params import RISK_DEFAULTS, RISK_RAILS, Param, ParamError

MODES = ("paper", "demo", "live")
MARKET_TYPES = ("linear", "spot")


class SettingsError(ValueError):
    """A setting has a value that cannot be used; the message names the variable."""


class Secret:
    """A string that never shows itself in a repr, str, log line or f-string."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def get(self) -> str:
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __repr__(self) -> str:
        return "Secret('***')" if self._value else "Secret('')"

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return repr(self)


def _env(name: str, source: dict[str, str], default: str = "") -> str:
    value = source.get(name)
    return default if value is None or value.strip() == "" else value.strip()


def _bool(name: str, source: dict[str, str], default: bool) -> bool:
    raw = _env(name, source, "").lower()
    if not raw:
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise SettingsError(f"{name}={raw!r} is not a boolean (use true/false)")


def _decimal(name: str, source: dict[str, str], default: str) -> Decimal:
    try:
        return to_decimal(_env(name, source, default), field=name)
    except NumberError as exc:
        raise SettingsError(str(exc)) from None


def _risk_rail(param: Param, source: dict[str, str]) -> Decimal:
    """A risk rail from its variable (the name upper-cased), checked against the rail's declared bounds."""
    name = param.name.upper()
    raw = _env(name, source, "")
    if not raw:
        return Decimal(param.default)
    try:
        return Decimal(param.parse(raw))
    except ParamError as exc:
        raise SettingsError(f"{name}={raw!r}: {exc.reason}") from None


def _float(name: str, source: dict[str, str], default: str) -> float:
    return float(_decimal(name, source, default))


def _choice(name: str, source: dict[str, str], default: str, choices: tuple[str, ...]) -> str:
    value = _env(name, source, default).lower()
    if value not in choices:
        raise SettingsError(f"{name}={value!r} must be one of {', '.join(choices)}")
    return value


def _chat_ids(name: str, source: dict[str, str], what: str = "chat") -> tuple[int, ...]:
    raw = _env(name, source, "")
    ids = []
    for part in raw.replace(";", ",").split(","):
        part = part.strip()
        if not part:
            continue
        try:
            ids.append(int(part))
        except ValueError:
            raise SettingsError(f"{name}: {part!r} is not a numeric {what} id") from None
    return tuple(ids)


def _user_ids(name: str, source: dict[str, str]) -> tuple[int, ...]:
    """Telegram user ids (positive; a negative id is a group chat, not a person)."""
    ids = _chat_ids(name, source, "user")
    if any(i <= 0 for i in ids):
        raise SettingsError(f"{name}: user ids are positive numbers (a negative id is a group chat)")
    return ids


def _int(name: str, source: dict[str, str], default: int, lo: int, hi: int) -> int:
    raw = _env(name, source, str(default))
    if not raw.isdigit() or not lo <= int(raw) <= hi:
        raise SettingsError(f"{name}={raw!r} must be a whole number from {lo} to {hi}")
    return int(raw)


def _port(name: str, source: dict[str, str], what: str) -> int:
    raw = _env(name, source, "0")
    if not raw.isdigit() or int(raw) > 65535:
        raise SettingsError(f"{name}={raw!r} must be a port number from 0 to 65535 (0: {what})")
    return int(raw)


def _time_of_day(name: str, source: dict[str, str], default: str) -> dt.time | None:
    raw = _env(name, source, default).lower()
    if raw == "off":
        return None
    try:
        return dt.time.fromisoformat(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} must be a time of day like 08:00 (or off)") from None


def _zone(name: str, source: dict[str, str]) -> str:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    raw = _env(name, source, "UTC")
    try:
        ZoneInfo(raw)
    except (ZoneInfoNotFoundError, ValueError):
        raise SettingsError(f"{name}={raw!r} is not an IANA time zone (e.g. Europe/Berlin, UTC)") from None
    return raw


def _check_database_url(url: str) -> None:
    """Refuse a DATABASE_URL that is not a URL at all (the scheme is checked by the database layer)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        make_url(url)
    except ArgumentError:
        raise SettingsError("DATABASE_URL is not a database URL: use sqlite+aiosqlite:///traderagent.db "
                            "or postgresql+asyncpg://user:password@host:5432/dbname") from None


FLEET_NEEDS_POSTGRESQL = ("a fleet's console and workers share one PostgreSQL database: set DATABASE_URL to "
                          "postgresql+asyncpg://user:password@host:5432/dbname")


@dataclass(frozen=True)
class Settings:
    """Typed settings. Build with `Settings.load()`; tests may pass an explicit environment."""

    mode: str = "paper"
    allow_live: bool = False
    allow_unbound_key: bool = False
    bybit_api_key: Secret = field(default_factory=lambda: Secret(""))
    bybit_api_secret: Secret = field(default_factory=lambda: Secret(""))
    bybit_base_url: str = ""
    market_type: str = "linear"
    database_url: str = "sqlite+aiosqlite:///traderagent.db"
    redis_url: str = ""
    master_key: Secret = field(default_factory=lambda: Secret(""))
    telegram_bot_token: Secret = field(default_factory=lambda: Secret(""))
    telegram_chat_ids: tuple[int, ...] = ()
    telegram_api_base_url: str = ""
    # operators' roles by Telegram user id; all empty: the user of an allowed private chat is admin
    telegram_admins: tuple[int, ...] = ()
    telegram_traders: tuple[int, ...] = ()
    telegram_viewers: tuple[int, ...] = ()
    scaling_approvals_required: int = 1  # distinct admins who must approve one scaling step
    telegram_outbox_max_age_hours: float = 24.0  # an undelivered message is given up (and logged) after this
    bots_file: Path = Path("bots.toml")
    total_capital: Decimal = Decimal("10000")
    risk_per_trade: Decimal = RISK_DEFAULTS["risk_per_trade"]
    max_exposure: Decimal = RISK_DEFAULTS["max_exposure"]
    max_daily_loss: Decimal = RISK_DEFAULTS["max_daily_loss"]
    liquidation_alert: Decimal = RISK_DEFAULTS["liquidation_alert"]  # LIQUIDATION_ALERT
    paper_balance: Decimal = Decimal("10000")
    paper_speed: float = 1.0
    paper_port: int = 0
    digest_time: dt.time | None = dt.time(8, 0)  # the daily digest, operator's local time; None: off
    timezone: str = "UTC"  # IANA name of the operator's zone (the digest time and day)
    health_port: int = 0  # GET /health on 127.0.0.1; 0: off
    offer_ttl_hours: float = 24.0  # how long a pushed scaling offer's buttons answer
    stall_ticks: int = 3  # alert when no tick completed for this many of the shortest tick interval
    lease_heartbeat: float = 5.0  # seconds between renewals of the desk's bot leases (orchestrator/lease.py)
    lease_timeout: float = 25.0  # a lease not renewed for this long may be taken over by another desk
    streams: bool = True  # fills heard on ByBit's private WebSocket; off: each bot polls its open orders
    console: str = "telegram"  # "external": a fleet worker; `traderagent console` runs Telegram (fleet/)
    log_level: str = "INFO"
    debug: bool = False

    @classmethod
    def load(cls, env: dict[str, str] | None = None, env_file: str | Path | None = ".env") -> Settings:
        """Read settings from `env` (default: os.environ overlaid on the `.env` file)."""
        if env is None:
            source: dict[str, str] = {}
            if env_file and Path(env_file).is_file():
                source.update({k: v for k, v in dotenv_values(env_file).items() if v is not None})
            source.update(os.environ)
        else:
            source = dict(env)
        key = _env("BYBIT_API_KEY", source)
        mode = _choice("TRADERAGENT_MODE", source, "paper", MODES)
        paper_port = _port("TRADERAGENT_PAPER_PORT", source, "any free port")
        settings = cls(
            mode=mode,
            allow_live=_bool("TRADERAGENT_ALLOW_LIVE", source, False),
            allow_unbound_key=_bool("TRADERAGENT_ALLOW_UNBOUND_KEY", source, False),
            bybit_api_key=Secret(key),
            bybit_api_secret=Secret(_env("BYBIT_API_SECRET", source)),
            bybit_base_url=_env("BYBIT_BASE_URL", source),
            market_type=_choice("BYBIT_MARKET_TYPE", source, "linear", MARKET_TYPES),
            database_url=_env("DATABASE_URL", source, cls.database_url),
            redis_url=_env("REDIS_URL", source),
            master_key=Secret(_env("TRADERAGENT_MASTER_KEY", source)),
            telegram_bot_token=Secret(_env("TELEGRAM_BOT_TOKEN", source)),
            telegram_chat_ids=_chat_ids("TELEGRAM_CHAT_IDS", source),
            telegram_api_base_url=_env("TELEGRAM_API_BASE_URL", source),
            telegram_admins=_user_ids("TELEGRAM_ADMINS", source),
            telegram_traders=_user_ids("TELEGRAM_TRADERS", source),
            telegram_viewers=_user_ids("TELEGRAM_VIEWERS", source),
            scaling_approvals_required=_int("SCALING_APPROVALS_REQUIRED", source, 1, 1, 5),
            telegram_outbox_max_age_hours=_float("TELEGRAM_OUTBOX_MAX_AGE_HOURS", source, "24"),
            bots_file=Path(_env("TRADERAGENT_BOTS_FILE", source, "bots.toml")),
            total_capital=_decimal("TRADERAGENT_TOTAL_CAPITAL", source, "10000"),
            **{p.name: _risk_rail(p, source) for p in RISK_RAILS},
            paper_balance=_decimal("TRADERAGENT_PAPER_BALANCE", source, "10000"),
            paper_speed=_float("TRADERAGENT_PAPER_SPEED", source, "1"),
            paper_port=paper_port,
            digest_time=_time_of_day("TRADERAGENT_DIGEST_TIME", source, "08:00"),
            timezone=_zone("TRADERAGENT_TIMEZONE", source),
            health_port=_port("TRADERAGENT_HEALTH_PORT", source, "off"),
            offer_ttl_hours=_float("TRADERAGENT_OFFER_TTL_HOURS", source, "24"),
            stall_ticks=_int("TRADERAGENT_STALL_TICKS", source, 3, 1, 1000),
            lease_heartbeat=_float("TRADERAGENT_LEASE_HEARTBEAT", source, "5"),
            lease_timeout=_float("TRADERAGENT_LEASE_TIMEOUT", source, "25"),
            streams=_bool("TRADERAGENT_STREAMS", source, True),
            console=_choice("TRADERAGENT_CONSOLE", source, "telegram", ("telegram", "external")),
            log_level=_choice("LOG_LEVEL", source, "info", ("debug", "info", "warning", "error")).upper(),
            debug=_bool("DEBUG", source, False),
        )
        settings.check()
        return settings

    def check(self) -> None:
        """Cross-field rules; each error names the variable to fix."""
        if self.mode == "live" and not self.allow_live:
            raise SettingsError("TRADERAGENT_MODE=live also needs TRADERAGENT_ALLOW_LIVE=true")
        if self.total_capital <= 0:
            raise SettingsError("TRADERAGENT_TOTAL_CAPITAL must be greater than 0")
        if self.telegram_outbox_max_age_hours <= 0:
            raise SettingsError("TELEGRAM_OUTBOX_MAX_AGE_HOURS must be greater than 0")
        if self.paper_speed < 0:
            raise SettingsError("TRADERAGENT_PAPER_SPEED must be 0 (manual) or positive")
        if self.paper_balance <= 0:
            raise SettingsError(f"TRADERAGENT_PAPER_BALANCE={self.paper_balance} must be greater than 0 "
                                "(the simulator's starting USDT)")
        if self.offer_ttl_hours <= 0:
            raise SettingsError("TRADERAGENT_OFFER_TTL_HOURS must be greater than 0")
        if self.lease_heartbeat <= 0:
            raise SettingsError("TRADERAGENT_LEASE_HEARTBEAT must be greater than 0 (seconds)")
        _check_database_url(self.database_url)
        if self.console == "external" and not self.on_postgresql:
            raise SettingsError(f"TRADERAGENT_CONSOLE=external: {FLEET_NEEDS_POSTGRESQL}")
        if self.scaling_approvals_required > 1 and self.scaling_approvals_required > len(self.possible_admins):
            raise SettingsError(f"SCALING_APPROVALS_REQUIRED={self.scaling_approvals_required} needs as many admins; "
                                f"there are {len(self.possible_admins)} (TELEGRAM_ADMINS)")

    @property
    def on_postgresql(self) -> bool:
        return self.database_url.strip().startswith(("postgresql", "postgres:"))

    @property
    def possible_admins(self) -> tuple[int, ...]:
        """Who can be admin: TELEGRAM_ADMINS, or with no role set the users of the allowed private chats."""
        if self.telegram_admins or self.telegram_traders or self.telegram_viewers:
            return self.telegram_admins
        return tuple(c for c in self.telegram_chat_ids if c > 0)

    @property
    def secrets(self) -> list[str]:
        """Every configured secret value, for the log-masking filter."""
        return [f.get() for f in self._secret_fields() if f]

    def _secret_fields(self) -> list[Secret]:
        return [getattr(self, f.name) for f in fields(self) if isinstance(getattr(self, f.name), Secret)]

    def public_dict(self) -> dict[str, Any]:
        """Settings with secrets masked, for display."""
        return {f.name: (repr(v) if isinstance(v := getattr(self, f.name), Secret) else v) for f in fields(self)}
