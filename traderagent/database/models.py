"""SQLAlchemy 2 models: the spec's six tables plus capital state, approvals, bot runtime and bot leases.

Money/quantities are `ExactDecimal` (exact on SQLite and PostgreSQL), times are `UTCDateTime`
(aware UTC on both). The schema itself is created by the Alembic migrations in
`migrations/versions/`; these classes must match the head revision (a test checks this).
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    false,
    select,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, column_property, mapped_column

from traderagent.database.types import ExactDecimal, UTCDateTime, json_type, utcnow

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# SQLite autoincrements only an INTEGER PRIMARY KEY; PostgreSQL gets a 64-bit id for big tables.
BigId = BigInteger().with_variant(Integer(), "sqlite")

ORDER_STATUSES = ("PENDING", "OPEN", "PARTIALLY_FILLED", "FILLED", "CANCELLED", "REJECTED", "FAILED")
FINAL_ORDER_STATUSES = ("FILLED", "CANCELLED", "REJECTED", "FAILED")
NON_FINAL_ORDER_STATUSES = ("PENDING", "OPEN", "PARTIALLY_FILLED")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {Decimal: ExactDecimal(), dt.datetime: UTCDateTime(), dict[str, Any]: json_type()}


class Credential(Base):
    """Exchange API credentials; both fields Fernet ciphertext under TRADERAGENT_MASTER_KEY."""

    __tablename__ = "credentials"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    api_key_encrypted: Mapped[str] = mapped_column(Text)
    api_secret_encrypted: Mapped[str] = mapped_column(Text)
    testnet: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    def __repr__(self) -> str:
        return f"Credential(name={self.name!r}, testnet={self.testnet}, api_key=***, api_secret=***)"


class BotModel(Base):
    """A configured bot: what it trades, with which strategy and capital, and its state."""

    __tablename__ = "bots"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    strategy: Mapped[str] = mapped_column(String(32))
    symbol: Mapped[str] = mapped_column(String(32))
    market_type: Mapped[str] = mapped_column(String(16))
    config: Mapped[dict[str, Any]] = mapped_column(default=dict)
    state: Mapped[str] = mapped_column(String(32), default="STOPPED", index=True)
    allocated_capital: Mapped[Decimal] = mapped_column(default=Decimal("0"))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    def __repr__(self) -> str:
        return f"BotModel(name={self.name!r}, strategy={self.strategy!r}, symbol={self.symbol!r}, state={self.state!r})"


def _bot_name_of(fk: Any) -> Any:
    # expire_on_flush=False: an UPDATE of the row never changes its bot, so keep the loaded name.
    return column_property(
        select(BotModel.name).where(BotModel.id == fk).correlate_except(BotModel).scalar_subquery(),
        expire_on_flush=False,
    )


class Order(Base):
    """One order as we sent it and as the exchange last reported it."""

    __tablename__ = "orders"
    __table_args__ = (Index("ix_orders_bot_id_status", "bot_id", "status"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    bot_id: Mapped[int] = mapped_column(ForeignKey("bots.id", ondelete="CASCADE"))
    client_order_id: Mapped[str] = mapped_column(String(64), unique=True)  # ByBit orderLinkId
    exchange_order_id: Mapped[str | None] = mapped_column(String(64), index=True)
    symbol: Mapped[str] = mapped_column(String(32))
    side: Mapped[str] = mapped_column(String(8))
    order_type: Mapped[str] = mapped_column(String(16))
    qty: Mapped[Decimal]
    price: Mapped[Decimal | None]
    status: Mapped[str] = mapped_column(String(20), default="PENDING", index=True)
    filled_qty: Mapped[Decimal] = mapped_column(default=Decimal("0"))
    avg_price: Mapped[Decimal | None]
    fee: Mapped[Decimal] = mapped_column(default=Decimal("0"))
    reduce_only: Mapped[bool] = mapped_column(Boolean, default=False)
    tag: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    bot_name: Mapped[str] = _bot_name_of(bot_id)

    @property
    def is_final(self) -> bool:
        return self.status in FINAL_ORDER_STATUSES

    def __repr__(self) -> str:
        return (
            f"Order({self.client_order_id!r} {self.side} {self.order_type} {self.qty} {self.symbol}"
            f" @ {self.price}, {self.status}, filled {self.filled_qty})"
        )


class Trade(Base):
    """A position round trip: open (no exit yet) or closed with realised PnL."""

    __tablename__ = "trades"
    __table_args__ = (Index("ix_trades_bot_id_closed_at", "bot_id", "closed_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    bot_id: Mapped[int] = mapped_column(ForeignKey("bots.id", ondelete="CASCADE"))
    symbol: Mapped[str] = mapped_column(String(32))
    side: Mapped[str] = mapped_column(String(8))
    qty: Mapped[Decimal]
    entry_price: Mapped[Decimal]
    exit_price: Mapped[Decimal | None]
    pnl: Mapped[Decimal | None]
    fees: Mapped[Decimal] = mapped_column(default=Decimal("0"))
    opened_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    closed_at: Mapped[dt.datetime | None] = mapped_column(index=True)
    tag: Mapped[str | None] = mapped_column(String(64))  # revision 0002

    bot_name: Mapped[str] = _bot_name_of(bot_id)

    @property
    def is_open(self) -> bool:
        return self.closed_at is None

    def __repr__(self) -> str:
        return f"Trade(id={self.id}, {self.side} {self.qty} {self.symbol} {self.entry_price}->{self.exit_price}, pnl={self.pnl})"


class GridLevel(Base):
    """One rung of a grid and the order currently linked to it (by client order id)."""

    __tablename__ = "grid_levels"
    __table_args__ = (UniqueConstraint("bot_id", "level_index", name="uq_grid_levels_bot_id_level_index"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    bot_id: Mapped[int] = mapped_column(ForeignKey("bots.id", ondelete="CASCADE"))
    level_index: Mapped[int] = mapped_column(Integer)
    price: Mapped[Decimal]
    side: Mapped[str] = mapped_column(String(8))
    qty: Mapped[Decimal | None]
    status: Mapped[str] = mapped_column(String(20), default="EMPTY")
    client_order_id: Mapped[str | None] = mapped_column(String(64))
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    bot_name: Mapped[str] = _bot_name_of(bot_id)

    @property
    def index(self) -> int:
        return self.level_index

    def __repr__(self) -> str:
        return f"GridLevel({self.level_index}: {self.side} @ {self.price}, {self.status}, order={self.client_order_id})"


class BotLog(Base):
    """Structured log line. Keyed by bot name (no foreign key) so system lines (None) and lines
    about a bot that was later deleted are kept; pruned to the newest N per bot name."""

    __tablename__ = "bot_logs"
    __table_args__ = (Index("ix_bot_logs_bot_name_id", "bot_name", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    bot_name: Mapped[str | None] = mapped_column(String(64))
    level: Mapped[str] = mapped_column(String(10))
    message: Mapped[str] = mapped_column(Text)
    context: Mapped[dict[str, Any] | None]
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    def __repr__(self) -> str:
        return f"BotLog({self.bot_name or '-'} {self.level}: {self.message[:60]!r})"


# --- revision 0002 ------------------------------------------------------------------------------


class CapitalState(Base):
    """CapitalManager.to_state() as JSON; a single row (id = 1)."""

    __tablename__ = "capital_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    state: Mapped[dict[str, Any]]
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Approval(Base):
    """Who decided a scaling step (approve/reject), when, and the decision it was shown."""

    __tablename__ = "approvals"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    action: Mapped[str] = mapped_column(String(32))
    phase_from: Mapped[str | None] = mapped_column(String(32))
    phase_to: Mapped[str | None] = mapped_column(String(32))
    approved_by: Mapped[str] = mapped_column(String(64))
    decision: Mapped[dict[str, Any]]
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow, index=True)

    def __repr__(self) -> str:
        return f"Approval({self.action} {self.phase_from}->{self.phase_to} by {self.approved_by} at {self.created_at})"


class BotRuntime(Base):
    """The latest JSON snapshot of a bot's strategy state (grid, DCA cycle, positions)."""

    __tablename__ = "bot_runtime"

    bot_id: Mapped[int] = mapped_column(ForeignKey("bots.id", ondelete="CASCADE"), primary_key=True)
    state: Mapped[dict[str, Any]]
    saved_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)


# --- revision 0005_audit ------------------------------------------------------------------------


class AuditEntry(Base):
    """One operator action from chat (a command or a button press): who, where, what, when, outcome.
    ``args`` are masked and shortened before they are written; a secret never reaches this table."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    user_id: Mapped[int | None] = mapped_column(BigInteger)
    user_name: Mapped[str] = mapped_column(String(80))
    chat_id: Mapped[int] = mapped_column(BigInteger)
    role: Mapped[str] = mapped_column(String(16))
    action: Mapped[str] = mapped_column(String(40))
    args: Mapped[str] = mapped_column(Text, default="")
    outcome: Mapped[str] = mapped_column(String(16))
    detail: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    def __repr__(self) -> str:
        return f"AuditEntry({self.user_name} {self.action} {self.args!r}: {self.outcome} at {self.created_at})"


# --- revision 0006_outbox ---------------------------------------------------------------------


class OutboxRow(Base):
    """An alert queued for one chat and not yet delivered (handlers/outbox.py); deleted once sent."""

    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_chat_id_id", "chat_id", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    chat_id: Mapped[int] = mapped_column(BigInteger)
    kind: Mapped[str] = mapped_column(String(32))  # the EventType
    bot_name: Mapped[str] = mapped_column(String(64))
    text: Mapped[str] = mapped_column(Text)  # HTML, as a message of its own
    line: Mapped[str] = mapped_column(Text)  # HTML, as one line of a merged burst (without emoji and time)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    # revision 0009: heard whatever the chat muted (a fleet's console filters the workers' rows again)
    urgent: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())


class AlertVerbosity(Base):
    """How much the chat hears about a bot ("bot:<name>") or a strategy ("strategy:<name>")."""

    __tablename__ = "alert_verbosity"

    scope: Mapped[str] = mapped_column(String(100), primary_key=True)
    level: Mapped[str] = mapped_column(String(16))
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)


# --- revision 0007_leases -----------------------------------------------------------------------


class BotLease(Base):
    """Which running desk owns a bot (orchestrator/lease.py): held until ``expires_at`` unless renewed.
    Keyed by bot name (no foreign key): a desk claims a bot before its row exists."""

    __tablename__ = "bot_leases"

    bot_name: Mapped[str] = mapped_column(String(64), primary_key=True)
    owner: Mapped[str] = mapped_column(String(128), index=True)  # host:pid:random of the desk process
    process_space: Mapped[str | None] = mapped_column(String(32))  # where that pid means that process
    acquired_at: Mapped[dt.datetime]
    expires_at: Mapped[dt.datetime]
    # revision 0008_fence: new at every acquisition by another owner; a bot's writes carry the token
    # of the lease they were made under and commit only while the row still holds it (lease.py)
    token: Mapped[str] = mapped_column(String(32), server_default="")

    def __repr__(self) -> str:
        return f"BotLease({self.bot_name!r} by {self.owner} until {self.expires_at:%H:%M:%S})"


# --- revision 0009_commands ---------------------------------------------------------------------


class DeskCommand(Base):
    """An operator's command for the worker that holds ``target``'s lease (traderagent/fleet/bus.py):
    pending -> running (claimed by one worker) -> done / refused / failed; or expired, unclaimed."""

    __tablename__ = "desk_commands"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    target: Mapped[str] = mapped_column(String(64))  # a bot name, or "@desk" (the leader worker)
    operation: Mapped[str] = mapped_column(String(40))  # the Desk use-case
    arguments: Mapped[dict[str, Any]]
    by: Mapped[str] = mapped_column(String(80))  # the operator
    status: Mapped[str] = mapped_column(String(16), index=True)
    result: Mapped[dict[str, Any] | None]  # the use-case's result (fleet/bus.py codec) or its refusal
    claimed_by: Mapped[str | None] = mapped_column(String(128))  # the worker's lease owner id
    created_at: Mapped[dt.datetime]
    deadline: Mapped[dt.datetime]  # unclaimed by then: never run
    claimed_at: Mapped[dt.datetime | None]
    finished_at: Mapped[dt.datetime | None]


# --- revision 0010_tokens -----------------------------------------------------------------------


class ButtonToken(Base):
    """One inline button's one-time token (handlers/tokens.py): what a press does, where, and until
    when; deleted when used. Kept so that a restarted desk still answers its offers' buttons."""

    __tablename__ = "button_tokens"

    token: Mapped[str] = mapped_column(String(16), primary_key=True)
    action: Mapped[str] = mapped_column(String(32))
    arg: Mapped[str] = mapped_column(Text)
    chat_id: Mapped[int] = mapped_column(BigInteger)
    token_group: Mapped[str] = mapped_column(String(16))  # the message's buttons: one press voids them all
    role: Mapped[int] = mapped_column(SmallInteger)  # the least handlers.auth.Role a press needs
    expires_at: Mapped[dt.datetime]


# --- revision 0012_view -------------------------------------------------------------------------


class DeskReport(Base):
    """A report a fleet's console sends once per period (the daily digest): the last period it went
    out for (an ISO date), claimed by one conditional write (reports.py)."""

    __tablename__ = "desk_reports"

    kind: Mapped[str] = mapped_column(String(32), primary_key=True)
    period: Mapped[str] = mapped_column(String(32))
    sent_at: Mapped[dt.datetime]



# --- revision 0011_fleet ------------------------------------------------------------------------




class DeskRail(Base):
    """A desk-wide rail of a fleet: tripped on ``day`` (UTC) by the leader, None while it holds; every
    worker pauses its running bots while it is tripped today."""

    __tablename__ = "desk_rails"

    rail: Mapped[str] = mapped_column(String(32), primary_key=True)
    day: Mapped[dt.date | None]
    updated_at: Mapped[dt.datetime]


# --- revision 0015_tidy --------------------------------------------------------------------------


class BotMarkRow(Base):
    """A bot marked at its last price (results.BotMark) as the worker running it last wrote it, at the desk's
    risk check (orchestrator/risk.py ``FleetRails``): the fleet's leader sums the unrealised PnL for the
    desk-wide daily-loss rail, the console shows each bot's price, position, uPnL and exposure from it."""

    __tablename__ = "bot_marks"

    bot_name: Mapped[str] = mapped_column(String(64), primary_key=True)
    last_price: Mapped[Decimal]
    position_qty: Mapped[Decimal]  # net: long positive, short negative
    position_avg: Mapped[Decimal | None]
    unrealized_pnl: Mapped[Decimal]
    exposure: Mapped[Decimal]
    priced_at: Mapped[dt.datetime]


__all__ = [
    "FINAL_ORDER_STATUSES",
    "NON_FINAL_ORDER_STATUSES",
    "ORDER_STATUSES",
    "AlertVerbosity",
    "Approval",
    "AuditEntry",
    "Base",
    "BotLease",
    "ButtonToken",
    "BotLog",
    "BotMarkRow",
    "BotModel",
    "BotRuntime",
    "CapitalState",
    "Credential",
    "DeskCommand",
    "DeskRail",
    "DeskReport",
    "GridLevel",
    "Order",
    "OutboxRow",
    "Trade",
]
