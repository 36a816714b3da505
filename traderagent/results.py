"""What the operator use-cases (`traderagent.control.Desk`, and the maintenance commands such as
`traderagent db copy`) return: one frozen dataclass per answer.

Frontends (Telegram, console, CLI) read these fields directly, so renaming one makes the type
checker and the tests point at every reader. Money is ``Decimal``, times are UTC ``datetime``,
states and phases are their upper/lower-case string values ("RUNNING", "phase_1_5pct"). A field
that may be unknown says so with ``| None``; every other field is always there.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from traderagent.utils.capital_manager import PhaseGates


# ---------------------------------------------------------------------- bots
@dataclass(frozen=True)
class PositionRisk:
    """The exchange's view of the account's position on a perpetual symbol (one net position, shared by
    the bots that trade the symbol on that account)."""

    symbol: str
    side: str  # "long" | "short"
    size: Decimal
    entry_price: Decimal
    mark_price: Decimal
    liq_price: Decimal | None  # None: ByBit shows none (beyond the price limits)
    liq_distance: Decimal | None  # |mark - liq| / mark
    margin: Decimal  # initial margin held
    leverage: Decimal | None
    unrealized_pnl: Decimal


@dataclass(frozen=True)
class PositionView:
    """An open position of a bot, marked at the bot's last price."""

    bot: str
    position_id: str
    side: str  # "long" | "short"
    size: Decimal
    entry_price: Decimal
    stop_loss: Decimal | None
    take_profit: Decimal | None
    current_price: Decimal
    unrealized_pnl: Decimal
    opened_at: dt.datetime | None
    exchange: PositionRisk | None = None  # linear: the account's position on the symbol, as ByBit shows it
    priced_at: dt.datetime | None = None  # a fleet's console: the bot's net position as its worker saved it
    # then (its worker did not answer); None: live


@dataclass(frozen=True)
class BotMark:
    """A bot marked at its last price, written by its worker at the desk's risk check (table ``bot_marks``,
    orchestrator/risk.py ``FleetRails``): the fleet's leader sums the unrealised PnL for the daily-loss rail,
    a fleet's console shows the desk from it without asking the workers (``priced_at``: how old it is)."""

    last_price: Decimal
    position_qty: Decimal  # net: long positive, short negative
    position_avg: Decimal | None  # average entry of the open positions; None when flat
    unrealized_pnl: Decimal
    exposure: Decimal  # positions and resting entries at the last price
    priced_at: dt.datetime  # when the price was seen


@dataclass(frozen=True)
class BotSummary:
    """One line of the desk: ``list_bots()``."""

    name: str
    strategy: str
    symbol: str
    market_type: str
    state: str
    paused_by: str | None  # "operator" | "risk" | "halt" | "liquidation" while PAUSED
    allocated_capital: Decimal
    realized_pnl: Decimal
    unrealized_pnl: Decimal
    open_positions: int
    open_orders: int
    last_price: Decimal | None  # None before the first tick
    last_error: str | None
    priced_at: dt.datetime | None = field(default=None, kw_only=True)  # a fleet's console: when the worker
    # saved the price and uPnL shown (None: live, from the desk's memory)


@dataclass(frozen=True)
class BotStatus(BotSummary):
    """One bot in detail: ``bot_status(name)``, and what start/pause/stop return."""

    ticks: int
    last_tick_at: dt.datetime | None
    tick_seconds: float
    timeframes: tuple[str, ...]
    params: Mapping[str, Any]
    positions: tuple[PositionView, ...]
    total_trades: int
    win_rate: float  # 0..1
    total_fees: Decimal
    day_pnl: Decimal


@dataclass(frozen=True)
class RefusedBot:
    name: str
    reason: str


@dataclass(frozen=True)
class DeskStatus:
    """The whole desk: ``bot_status()``. Capital fields are None on a desk without capital deployment."""

    bots: tuple[BotSummary, ...]
    states: Mapping[str, int]  # state -> how many bots
    refused: tuple[RefusedBot, ...]
    halted: bool
    halt_reason: str | None
    phase: str | None
    allocated_capital: Decimal | None
    exposure: Decimal
    exposure_limit: Decimal | None
    day_pnl: Decimal
    storage_lost: str | None  # why the database takes no writes (no entries until it does); None: fine
    exchange_positions: tuple[PositionRisk, ...] = ()  # the accounts' perpetual positions, as last checked
    workers: Mapping[str, str] = field(default_factory=dict)  # a fleet's console: bot -> the worker running it


# ---------------------------------------------------------------------- account and history
@dataclass(frozen=True)
class Wallet:
    """One account's balances per coin: ``balances()`` gives one per market type (one if shared)."""

    market_type: str
    free: Mapping[str, Decimal]
    used: Mapping[str, Decimal]
    total: Mapping[str, Decimal]


@dataclass(frozen=True)
class OrderView:
    bot: str
    client_order_id: str
    exchange_order_id: str | None
    symbol: str
    side: str
    order_type: str
    qty: Decimal
    price: Decimal | None  # None: a market order
    status: str
    filled_qty: Decimal
    tag: str | None
    created_at: dt.datetime


@dataclass(frozen=True)
class TradeView:
    id: int
    bot: str
    symbol: str
    side: str
    qty: Decimal
    entry_price: Decimal
    exit_price: Decimal | None  # None while open
    pnl: Decimal | None
    fees: Decimal
    opened_at: dt.datetime
    closed_at: dt.datetime | None
    tag: str | None


@dataclass(frozen=True)
class DailyPnl:
    date: dt.date
    pnl: Decimal


@dataclass(frozen=True)
class LogLine:
    bot: str | None  # None: a desk-wide line
    level: str
    message: str
    context: Mapping[str, Any] | None
    time: dt.datetime


@dataclass(frozen=True)
class EquityPoint:
    """Equity after one closed trade (``equity_curve()``, oldest first)."""

    time: dt.datetime
    equity: Decimal
    pnl: Decimal
    bot: str


# ---------------------------------------------------------------------- capital
@dataclass(frozen=True)
class PhaseRecord:
    """The record of one deployment phase (the current one or a finished one)."""

    phase: str
    started_at: dt.datetime
    duration_days: int
    total_trades: int
    winning_trades: int
    win_rate: float  # 0..1
    realized_pnl: Decimal
    unrealized_pnl: Decimal
    equity: Decimal
    max_drawdown_pct: float
    errors_count: int


@dataclass(frozen=True)
class CapitalReport:
    total_capital: Decimal
    phase: str
    allocated_capital: Decimal
    halted: bool
    halt_reason: str | None
    current: PhaseRecord | None  # None before phase 1
    gates: PhaseGates | None  # what the current phase must show to scale (None before phase 1)
    history: tuple[PhaseRecord, ...]


@dataclass(frozen=True)
class ScalingCheck:
    """``evaluate_scaling()``: may the next phase be approved now, and why (not)."""

    can_scale: bool
    current_phase: str
    next_phase: str | None  # None at full allocation
    reasons: tuple[str, ...]  # gates passed
    blockers: tuple[str, ...]  # gates failed


@dataclass(frozen=True)
class ScalingApproved:
    phase_from: str
    phase: str
    allocated_capital: Decimal
    approved_by: str
    decision: ScalingCheck


@dataclass(frozen=True)
class ScalingPending:
    """An approval counted, the step not yet taken: more distinct admins must approve
    (``SCALING_APPROVALS_REQUIRED``). ``repeated``: this approver had already approved."""

    phase: str
    next_phase: str
    approved_by: tuple[str, ...]  # who approved so far, in order
    required: int
    repeated: bool
    decision: ScalingCheck


@dataclass(frozen=True)
class ScalingRejected:
    phase: str
    rejected_phase: str | None
    rejected_by: str
    decision: ScalingCheck


@dataclass(frozen=True)
class HaltOutcome:
    reason: str
    paused: tuple[str, ...]  # bots the halt paused


@dataclass(frozen=True)
class StartAllOutcome:
    started: tuple[str, ...]  # bots started now (those already running are left alone)
    errors: tuple[str, ...]  # distinct reasons a start was refused


@dataclass(frozen=True)
class PauseAllOutcome:
    paused: tuple[str, ...]  # bots that were running and are paused now
    errors: tuple[str, ...]  # distinct reasons a pause was refused


@dataclass(frozen=True)
class StopAllOutcome:
    stopped: tuple[str, ...]  # bots stopped now
    errors: tuple[str, ...]  # "bot: why" for each that could not be stopped


@dataclass(frozen=True)
class ResumeOutcome:
    resumed: tuple[str, ...]  # bots the halt had paused, running again


# ---------------------------------------------------------------------- operators
@dataclass(frozen=True)
class AuditLine:
    """One operator action from chat: ``audit_log(n)``, newest first."""

    time: dt.datetime
    user_id: int | None
    user_name: str
    chat_id: int
    role: str  # the role the operator had when acting
    action: str  # "/halt", "button:approve"
    args: str  # masked, shortened
    outcome: str  # "ok", "denied", "refused", "usage", "expired", "error"
    detail: str  # the refusal or error message, the button's answer


# ---------------------------------------------------------------------- reports
@dataclass(frozen=True)
class BotDay:
    """One bot's part of a digest: the trades it closed in the digest's window."""

    name: str
    pnl: Decimal  # funding included
    trades: int
    fees: Decimal


@dataclass(frozen=True)
class Digest:
    """``digest()``: the day that ended at the digest time (operator's local time), the desk now."""

    day: dt.date  # the local date the window ends on
    timezone: str  # IANA name, e.g. "Europe/Berlin"
    since: dt.datetime  # UTC, window start (24 h before `until`)
    until: dt.datetime  # UTC
    bots: tuple[BotDay, ...]  # every bot of the desk, in desk order
    pnl: Decimal  # realised, net of fees, funding included, over the window
    trades: int  # closed in the window (funding settlements are not trades)
    fees: Decimal
    funding: Decimal  # funding paid (negative) or received in the window
    unrealized_pnl: Decimal  # now
    exposure: Decimal  # now
    exposure_limit: Decimal | None
    errors: int  # ERROR lines logged in the window
    scaling: ScalingCheck | None  # progress against each gate of the current phase; None without deployment


@dataclass(frozen=True)
class Check:
    """One part of the desk's health."""

    ok: bool
    detail: str


@dataclass(frozen=True)
class Health:
    """``health()``: is the desk alive. The endpoint answers 200 when every check is ok, else 503."""

    checks: Mapping[str, Check]  # "scheduler", "exchange", and "telegram" when configured

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks.values())


# ---------------------------------------------------------------------- maintenance
@dataclass(frozen=True)
class CopyReport:
    """``database.db_copy.copy_database``: rows copied per table, in copy order (equal in both databases
    when returned)."""

    revision: str
    counts: dict[str, int]
