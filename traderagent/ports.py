"""What the orchestrator and `control.Desk` need from their collaborators, as Protocols.

The ports, each listing exactly the members its users call:

* ``ExchangePort``: one exchange account of one market type (``ByBitDirectClient`` live or
  against the simulator); prices and sizes are ``Decimal``, orders are dicts in the client's
  shape (``id``, ``client_order_id``, ``status``, ``amount``, ``filled``, ...).
* ``StorePort``: the database (``DatabaseManager``); rows come back as the ``*Row`` shapes below.
* ``LeaseStorePort``: the bot leases in the database (``DatabaseManager``), for ``orchestrator/lease.py``.
* ``FleetStorePort``: a fleet's bot marks and desk rails in the database (``DatabaseManager``), for
  ``orchestrator/risk.py`` ``FleetRails`` and the capital record of a fleet's leader.
* ``CapitalPort``: the capital deployment state (``CapitalManager``) as the orchestrator sees it.
* ``OutboxStore``: where the Telegram outbox keeps undelivered alerts and the alert verbosity
  (``DatabaseManager`` too; handlers/outbox.py).
* ``DeskPort``: the operator use-cases as handlers/ call them: ``control.Desk`` in one process,
  ``fleet.console.ConsoleDesk`` in front of a fleet of desk workers.
* ``TokenStorePort``: where the inline buttons' one-time tokens outlive a restart (``DatabaseManager``;
  handlers/tokens.py).
* ``NotifierPort``: what a fleet worker's console link (fleet/link.py) needs of the alert renderer
  (``handlers.notifier.Notifier``, built by the composition root: the link never imports handlers/).

A core module (layer 0): it imports no adapter, so a backtest, the paper desk and the live desk
each plug in their own implementation. mypy checks that the real adapters fit where the
composition root (``traderagent/app.py``) hands them over.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from traderagent.orchestrator.events import EventBus, Subscription
    from traderagent.results import (
        AuditLine,
        BotMark,
        BotStatus,
        BotSummary,
        CapitalReport,
        DailyPnl,
        DeskStatus,
        Digest,
        EquityPoint,
        HaltOutcome,
        LogLine,
        OrderView,
        PauseAllOutcome,
        PositionView,
        ResumeOutcome,
        ScalingApproved,
        ScalingCheck,
        ScalingPending,
        ScalingRejected,
        StartAllOutcome,
        StopAllOutcome,
        TradeView,
        Wallet,
    )


# ---------------------------------------------------------------------- exchange
@dataclass(frozen=True)
class LimitOrder:
    """One resting order of a batch: what ``create_limit_order`` takes, as a value."""

    side: str
    amount: Decimal
    price: Decimal
    client_order_id: str
    reduce_only: bool = False


@dataclass(frozen=True)
class OrderKey:
    """An order named by the exchange's id (wins when both are given) or by our orderLinkId."""

    order_id: str | None
    client_order_id: str


@dataclass(frozen=True)
class StreamFill:
    """One fill heard on an account's private stream (an execution row, parsed). The order's cumulative
    filled quantity is ``order_qty - leaves``."""

    exec_id: str
    client_order_id: str
    order_id: str
    symbol: str
    side: str
    price: Decimal
    qty: Decimal
    fee: Decimal
    order_qty: Decimal
    leaves: Decimal
    exec_time: int
    seq: int
    exec_type: str = "Trade"  # "BustTrade" / "AdlTrade": the exchange closed the position (no order of ours)

    @property
    def cum_filled(self) -> Decimal:
        return self.order_qty - self.leaves


class StreamLink(Protocol):
    """A WebSocket connection: up or not, and how often it (re)connected (``api.bybit_streams``)."""

    @property
    def healthy(self) -> bool: ...

    @property
    def connects(self) -> int: ...


class FillStream(StreamLink, Protocol):
    """An account's private stream (``api.bybit_streams.PrivateStream``): while ``healthy``, its fills are
    booked as they are heard and the bots stop polling their open orders."""

    def start(self) -> None: ...

    async def close(self) -> None: ...


class PublicStreamsPort(Protocol):
    """The desk's shared public streams (``api.bybit_streams.PublicStreams``): topics per market type."""

    async def watch(self, category: str, topic: str, callback: Callable[[dict[str, Any]], Any]) -> None: ...

    def connection(self, category: str) -> StreamLink | None: ...


class InstrumentRules(Protocol):
    """The rounding steps of one symbol."""

    @property
    def qty_step(self) -> Decimal: ...

    @property
    def tick_size(self) -> Decimal: ...


class ExchangePort(Protocol):
    @property
    def market_type(self) -> str: ...

    def market(self, symbol: str) -> InstrumentRules: ...

    async def fetch_ticker(self, symbol: str) -> dict[str, Any]: ...

    async def fetch_klines(self, symbol: str, interval: str, limit: int = 200) -> list[list[Any]]: ...

    async def fetch_balance(self) -> dict[str, dict[str, Decimal]]: ...

    async def fetch_open_orders(self, symbol: str | None = None) -> list[dict[str, Any]]: ...

    async def fetch_my_trades(self, symbol: str, limit: int = 50) -> list[dict[str, Any]]: ...

    async def fetch_order(self, symbol: str, order_id: str | None = None,
                          client_order_id: str | None = None) -> dict[str, Any] | None: ...

    async def create_limit_order(self, symbol: str, side: str, amount: Decimal, price: Decimal, *,
                                 client_order_id: str | None = None, reduce_only: bool = False) -> dict[str, Any]: ...

    async def create_market_order(self, symbol: str, side: str, amount: Decimal, *,
                                  client_order_id: str | None = None, reduce_only: bool = False,
                                  reference_price: Decimal | None = None) -> dict[str, Any]: ...

    async def cancel_order(self, order_id: str | None, symbol: str, *,
                           client_order_id: str | None = None) -> dict[str, Any]: ...

    # batches (one request for many orders; per item: the order dict or the exception that item got)
    async def place_orders_batch(self, symbol: str, orders: Sequence[LimitOrder]) -> list[dict[str, Any] | Exception]: ...

    async def cancel_orders_batch(self, symbol: str,
                                  refs: Sequence[OrderKey]) -> list[dict[str, Any] | Exception]: ...

    async def amend_order(self, symbol: str, ref: OrderKey, *, amount: Decimal | None = None,
                          price: Decimal | None = None) -> dict[str, Any]: ...

    # perpetuals (linear); a spot client answers "one-way" and empty lists
    async def position_mode(self, symbol: str) -> str: ...  # "one-way" | "hedge"

    async def set_leverage(self, symbol: str, leverage: Any) -> Decimal: ...

    async def fetch_positions(self, symbol: str | None = None) -> list[dict[str, Any]]: ...

    async def fetch_funding(self, symbol: str | None, since_ms: int | None = None) -> list[dict[str, Any]]: ...

    async def fetch_liquidations(self, symbol: str, since_ms: int | None = None) -> list[dict[str, Any]]: ...
    # exchange-held protection (orchestrator/protection.py)
    async def set_trading_stop(self, symbol: str, *, stop_loss: Decimal | None, take_profit: Decimal | None,
                               trigger_by: str = "LastPrice") -> None: ...

    async def fetch_held_stops(self, symbol: str) -> HeldStops | None: ...

    async def create_conditional_order(self, symbol: str, side: str, amount: Any, trigger_price: Any, *,
                                       client_order_id: str | None = None) -> dict[str, Any]: ...

    async def fetch_stop_executions(self, symbol: str, since_ms: int | None = None) -> list[dict[str, Any]]: ...


@dataclass(frozen=True)
class HeldStops:
    """A linear position as the exchange holds it: its size and the stop/target ByBit executes (None: none)."""

    side: str  # "long" | "short"
    size: Decimal
    stop_loss: Decimal | None
    take_profit: Decimal | None


# ---------------------------------------------------------------------- store rows
class BotRow(Protocol):
    state: str


class OrderRow(Protocol):
    bot_name: str
    client_order_id: str
    exchange_order_id: str | None
    symbol: str
    side: str
    order_type: str
    qty: Decimal
    price: Decimal | None
    status: str
    filled_qty: Decimal
    avg_price: Decimal | None
    fee: Decimal
    reduce_only: bool
    tag: str | None
    created_at: dt.datetime


class TradeRow(Protocol):
    id: int
    bot_name: str
    symbol: str
    side: str
    qty: Decimal
    entry_price: Decimal
    exit_price: Decimal | None
    pnl: Decimal | None
    fees: Decimal
    opened_at: dt.datetime
    closed_at: dt.datetime | None
    tag: str | None


class LogRow(Protocol):
    bot_name: str | None
    level: str
    message: str
    context: dict[str, Any] | None
    created_at: dt.datetime


class AuditRow(Protocol):
    user_id: int | None
    user_name: str
    chat_id: int
    role: str
    action: str
    args: str
    outcome: str
    detail: str
    created_at: dt.datetime


class ApprovalRow(Protocol):
    id: int
    action: str  # "approve" | "reject" | "offer"
    phase_from: str | None
    phase_to: str | None
    decision: dict[str, Any]
    created_at: dt.datetime


LogLineSpec = tuple[str | None, str, str, Mapping[str, Any] | None]  # bot_name, level, message, context


# ---------------------------------------------------------------------- store
class RecoveryRows(Protocol):
    """A bot's rows its start-up recovery reads, read for every bot at once (``load_recoveries``)."""

    @property
    def row(self) -> BotRow | None: ...  # None: a new bot
    @property
    def runtime(self) -> dict[str, Any] | None: ...
    @property
    def open_trades(self) -> Sequence[TradeRow]: ...
    @property
    def orders(self) -> Sequence[OrderRow]: ...  # the non-final ones, oldest first


class StorePort(Protocol):
    # bots
    async def create_bot(self, name: str, strategy: str, symbol: str, market_type: str, config: dict[str, Any],
                         allocated_capital: Decimal) -> BotRow: ...

    async def get_bot(self, name: str) -> BotRow | None: ...

    async def update_bot(self, name: str, /, **fields: Any) -> BotRow: ...

    async def set_bot_state(self, name: str, state: str) -> BotRow: ...

    async def load_bot_runtime(self, name: str) -> dict[str, Any] | None: ...

    async def load_recoveries(self, names: Iterable[str]) -> Mapping[str, RecoveryRows]: ...

    def fence_writes(self, token_of: Callable[[str], str | None]) -> None: ...

    async def save_bot_progress(self, name: str, *, new_orders: Iterable[Mapping[str, Any]] = (),
                                order_updates: Iterable[tuple[str, Mapping[str, Any]]] = (),
                                runtime: dict[str, Any] | None = None,
                                grid: Sequence[Mapping[str, Any]] | None = None,
                                new_trades: Iterable[Mapping[str, Any]] = (),
                                trade_closes: Iterable[tuple[int, Mapping[str, Any]]] = (),
                                state: str | None = None) -> list[int]: ...

    # orders and trades
    async def get_order(self, client_order_id: str) -> OrderRow | None: ...

    async def list_non_final_orders(self, bot_name: str | None = None) -> Sequence[OrderRow]: ...

    async def list_trades(self, bot_name: str | None = None, limit: int = 20, *,
                          closed_only: bool = False) -> Sequence[TradeRow]: ...

    async def list_open_trades(self, bot_name: str | None = None) -> Sequence[TradeRow]: ...

    async def closed_trades(self, since: dt.datetime, until: dt.datetime | None = None) -> Sequence[TradeRow]: ...
    async def newest_trade_close(self, bot_name: str, tag_prefix: str) -> dt.datetime | None: ...

    async def realized_pnl(self, bot_name: str | None = None, *, since: dt.datetime | None = None) -> Decimal: ...

    async def realized_pnl_by_bot(self, *, since: dt.datetime) -> Mapping[str, Decimal]: ...

    async def daily_pnl(self, days: int = 7, bot_name: str | None = None) -> Sequence[tuple[dt.date, Decimal]]: ...

    # log and capital
    async def add_log(self, bot_name: str | None, level: str, message: str,
                      context: dict[str, Any] | None = None) -> None: ...

    async def add_logs(self, lines: Iterable[LogLineSpec]) -> int: ...

    async def get_logs(self, bot_name: str | None = None, limit: int = 50) -> Sequence[LogRow]: ...

    async def count_logs(self, level: str, since: dt.datetime, *, starting: str = "") -> int: ...

    async def bot_marks(self) -> Mapping[str, BotMark]: ...

    async def fleet_unrealized(self) -> Decimal: ...  # the sum of the marks' unrealised PnL

    async def record_approval(self, action: str, phase_from: str | None, phase_to: str | None,
                              approved_by: str, decision: dict[str, Any]) -> object: ...

    async def list_approvals(self, limit: int = 50) -> Sequence[ApprovalRow]: ...

    async def save_capital_state(self, state: dict[str, Any]) -> None: ...

    # operators' audit trail
    async def add_audit(self, *, user_id: int | None, user_name: str, chat_id: int, role: str, action: str,
                        args: str, outcome: str, detail: str = "") -> None: ...

    async def list_audit(self, limit: int = 20) -> Sequence[AuditRow]: ...

    async def load_capital_state(self) -> dict[str, Any] | None: ...

    # health (orchestrator/storage.py)
    async def check_storage(self) -> None: ...

    async def restore_storage(self) -> str | None: ...


# ---------------------------------------------------------------------- leases
class LeaseRow(Protocol):
    bot_name: str
    owner: str
    process_space: str | None
    expires_at: dt.datetime
    token: str  # the fencing token, new at every acquisition by another owner


class LeaseStorePort(Protocol):
    async def acquire_leases(self, bots: Sequence[str], owner: str, now: dt.datetime, expires_at: dt.datetime,
                             *, process_space: str | None = None, dead: Sequence[str] = ()) -> Sequence[LeaseRow]: ...

    async def renew_leases(self, owner: str, expires_at: dt.datetime) -> Sequence[str]: ...

    async def lease_holders(self, bots: Sequence[str]) -> Sequence[LeaseRow]: ...

    async def leases_named(self, prefix: str) -> Sequence[LeaseRow]: ...

    async def release_leases(self, owner: str, bots: Sequence[str] | None = None) -> None: ...


# ---------------------------------------------------------------------- a fleet's desk-wide risk
class FleetStorePort(Protocol):
    async def save_marks(self, marks: Mapping[str, BotMark]) -> None: ...

    async def fleet_unrealized(self) -> Decimal: ...

    async def prune_marks(self, keep: Collection[str]) -> int: ...

    async def realized_pnl(self, bot_name: str | None = None, *, since: dt.datetime | None = None) -> Decimal: ...

    async def running_bots(self) -> int: ...

    async def trip_rail(self, rail: str, day: dt.date) -> bool: ...

    async def clear_rail(self, rail: str) -> None: ...

    async def rail_day(self, rail: str) -> dt.date | None: ...


# ---------------------------------------------------------------------- capital
class CapitalPort(Protocol):
    """What a bot asks of the capital deployment state (``CapitalManager``)."""

    @property
    def allocated_capital(self) -> Decimal: ...

    @property
    def can_open_positions(self) -> bool: ...

    @property
    def metrics(self) -> object | None: ...  # None before phase 1: no record to add trades or errors to

    def record_trade(self, won: bool, pnl: Decimal) -> None: ...

    def record_pnl(self, pnl: Decimal) -> None: ...

    def record_error(self) -> None: ...


# ---------------------------------------------------------------------- outbox
class OutboxRow(Protocol):
    id: int
    chat_id: int
    kind: str
    bot_name: str
    text: str
    line: str
    created_at: dt.datetime
    urgent: bool


@runtime_checkable
class OutboxStore(Protocol):
    async def add_outbox(self, rows: Iterable[Mapping[str, Any]], *, notify: str | None = None) -> list[int]: ...

    async def pending_outbox(self, chat_ids: Iterable[int]) -> Sequence[OutboxRow]: ...

    async def delete_outbox(self, ids: Iterable[int]) -> None: ...

    async def save_verbosity(self, scope: str, level: str) -> None: ...

    async def load_verbosity(self) -> dict[str, str]: ...


# ---------------------------------------------------------------------- the desk, as the frontends see it
class DeskPort(Protocol):
    """Exactly what handlers/ call (see control.py for what each use-case does). A ``ControlError``
    raised by any of them is the operator's answer."""

    @property
    def db(self) -> StorePort: ...

    @property
    def clock(self) -> Callable[[], dt.datetime]: ...

    def bot_names(self) -> Sequence[str]: ...

    def strategy_of(self, name: str) -> str | None: ...

    def resolve_bot(self, prefix: str) -> str: ...

    async def list_bots(self) -> list[BotSummary]: ...

    async def desk_status(self) -> DeskStatus: ...

    async def bot_status(self, name: str) -> BotStatus: ...

    async def start_bot(self, name: str, by: str = "operator") -> BotStatus: ...

    async def pause_bot(self, name: str, by: str = "operator") -> BotStatus: ...

    async def stop_bot(self, name: str, by: str = "operator") -> BotStatus: ...

    async def start_all(self, by: str = "operator") -> StartAllOutcome: ...

    async def pause_all(self, by: str = "operator") -> PauseAllOutcome: ...

    async def stop_all(self, by: str = "operator") -> StopAllOutcome: ...

    async def balances(self) -> list[Wallet]: ...

    async def positions(self) -> list[PositionView]: ...

    async def open_orders(self, name: str | None = None) -> list[OrderView]: ...

    async def recent_trades(self, n: int = 10) -> list[TradeView]: ...

    async def daily_pnl(self, days: int = 7) -> list[DailyPnl]: ...

    async def logs(self, n: int = 20) -> list[LogLine]: ...

    async def equity_curve(self, name: str | None = None) -> list[EquityPoint]: ...

    async def capital_report(self) -> CapitalReport: ...

    async def evaluate_scaling(self) -> ScalingCheck: ...

    async def approve_scaling(self, approved_by: str, *,
                              approver: str | None = None) -> ScalingApproved | ScalingPending: ...

    async def reject_scaling(self, by: str) -> ScalingRejected: ...

    async def halt(self, reason: str, by: str) -> HaltOutcome: ...

    async def resume_trading(self, by: str) -> ResumeOutcome: ...

    async def digest(self, day_end: dt.datetime) -> Digest: ...

    async def record_action(self, *, user_id: int | None, user_name: str, chat_id: int, role: str, action: str,
                            args: str = "", outcome: str = "ok", detail: str = "") -> None: ...

    async def audit_log(self, n: int = 20) -> list[AuditLine]: ...


# ---------------------------------------------------------------------- button tokens
class ButtonTokenRow(Protocol):
    token: str
    action: str
    arg: str
    chat_id: int
    token_group: str
    role: int
    expires_at: dt.datetime


@runtime_checkable
class TokenStorePort(Protocol):
    async def save_tokens(self, rows: Iterable[Mapping[str, Any]]) -> None: ...

    async def delete_tokens(self, tokens: Iterable[str] = (), *, expired_before: dt.datetime | None = None) -> None: ...

    async def load_tokens(self) -> Sequence[ButtonTokenRow]: ...


# ---------------------------------------------------------------------- a fleet worker's alerts
class NotifierPort(Protocol):
    """Turns a desk's events into alerts (``handlers.notifier.Notifier``; a fleet worker's stores them
    for the console)."""

    async def load(self) -> None: ...  # the alert verbosity the operator set (read again every few seconds)

    def attach(self, bus: EventBus) -> Subscription: ...
