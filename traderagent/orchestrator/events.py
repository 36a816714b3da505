"""Trading events, their typed payloads and the in-process event bus.

An event is ``TradingEvent(event_type, bot_name, data=payload)``, or ``TradingEvent.of(bot_name,
payload)``: each EventType has one frozen payload dataclass (PAYLOADS), built by the code that
emits the event. The console, the chat and the database log all render from that payload, so
what an alert shows is checked by the type checker, not discovered blank in the operator's chat.

Publishing never blocks and never fails: every subscriber has its own unbounded queue and
worker task, so a slow subscriber (Telegram) delays only itself and loses nothing, and a
subscriber that raises is logged and keeps receiving events.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Any, ClassVar

from traderagent.orchestrator.state import BotState
from traderagent.results import Digest
from traderagent.utils.capital_manager import DeploymentPhase
from traderagent.utils.plain import decimal_text, json_safe

log = logging.getLogger(__name__)


class EventType(StrEnum):
    # the spec's eight
    TRADE_OPENED = "TRADE_OPENED"
    TRADE_CLOSED = "TRADE_CLOSED"
    ORDER_PLACED = "ORDER_PLACED"
    ORDER_FILLED = "ORDER_FILLED"
    ORDER_CANCELLED = "ORDER_CANCELLED"
    SIGNAL_GENERATED = "SIGNAL_GENERATED"
    ERROR = "ERROR"
    STATUS_CHANGE = "STATUS_CHANGE"
    # what the desk needs besides
    ORDER_FAILED = "ORDER_FAILED"
    PHASE_CHANGED = "PHASE_CHANGED"
    SCALING_DECISION = "SCALING_DECISION"
    HALTED = "HALTED"
    RESUMED = "RESUMED"
    RISK_LIMIT = "RISK_LIMIT"
    # perpetual futures
    LIQUIDATION_RISK = "LIQUIDATION_RISK"
    LIQUIDATED = "LIQUIDATED"
    FUNDING = "FUNDING"
    # the desk reporting in
    DESK_STARTED = "DESK_STARTED"
    DESK_STOPPING = "DESK_STOPPING"
    SCALING_OFFERED = "SCALING_OFFERED"
    DAILY_DIGEST = "DAILY_DIGEST"
    TICKS_STALLED = "TICKS_STALLED"
    PROTECTION_RESTORED = "PROTECTION_RESTORED"
    # the desk's database
    STORAGE_LOST = "STORAGE_LOST"
    STORAGE_RESTORED = "STORAGE_RESTORED"


# Events an operator can never mute: they mean money is at risk or trading stopped.
UNMUTABLE_EVENTS = frozenset({EventType.ERROR, EventType.HALTED, EventType.RISK_LIMIT, EventType.LIQUIDATION_RISK,
                              EventType.LIQUIDATED,
                              EventType.TICKS_STALLED, EventType.PROTECTION_RESTORED,
                              EventType.STORAGE_LOST})


def _num(value: Decimal | None, places: int | None = None) -> str:
    return "–" if value is None else decimal_text(value, places)


def _money(value: Decimal, coin: str = "") -> str:
    return f"{decimal_text(value, 2, grouped=True)} {coin}".rstrip()


def _pnl(value: Decimal, coin: str) -> str:
    return f"{decimal_text(value, 2, signed=True, grouped=True)} {coin}"


def _capital(value: Decimal, coin: str) -> str:
    """A phase's capital: "2,500 USDT" (cents only when there are any)."""
    return f"{decimal_text(value, None if value == value.to_integral_value() else 2, grouped=True)} {coin}"


def phase_name(phase: DeploymentPhase | str) -> str:
    """"Phase 2" (of 3), "not started" before phase 1; never the stored value ("phase_2_25pct")."""
    try:
        number = list(DeploymentPhase).index(DeploymentPhase(phase))
    except ValueError:
        return str(phase)
    return f"Phase {number}" if number else "not started"


def _phase(phase: DeploymentPhase) -> str:
    """phase_name in running text: "phase 2"."""
    name = phase_name(phase)
    return name[0].lower() + name[1:]


_USER_ID = re.compile(r"^(.+) \(\d+\)$")  # handlers' user_label: "@name (12345)"


def operator_name(by: str) -> str:
    """Who acted, for people: an operator's "@name" without the numeric id the audit keeps."""
    match = _USER_ID.match(by)
    return match.group(1) if match else by


def _by(reason: str, by: str) -> str:
    """"operator @name", "halt, operator @name", "risk, by risk rail"."""
    parts = [reason] if reason and reason != "operator" and reason != by else []
    if _USER_ID.match(by):
        parts.append(f"operator {operator_name(by)}")
    elif by and by != reason:
        parts.append(f"by {by}")
    return ", ".join(parts) or reason


def short_id(value: str, keep: int = 8) -> str:
    """An order or position id by its distinctive tail: "…3fa9c2d1"."""
    return value if len(value) <= keep + 1 else "…" + value[-keep:]


def duration(span: timedelta) -> str:
    """"3 d 4 h", "2 h 05 min", "4 min 10 s", "12 s"."""
    seconds = max(int(span.total_seconds()), 0)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes:02d} min"
    return f"{minutes} min {secs:02d} s" if minutes else f"{secs} s"


# ---------------------------------------------------------------------- payloads
# One frozen dataclass per EventType, built by the code that emits the event. Every renderer
# reads the attributes (a renamed field is a type error); `summary()` is the one-line text the
# console and the chat show, `to_dict()` the JSON form the database log keeps.


@dataclass(frozen=True)
class Payload:
    EVENT: ClassVar[EventType]

    def summary(self) -> str:
        """One line for the console and the chat (an error text's own line breaks collapsed)."""
        return " ".join(self._text().split())

    def _text(self) -> str:
        raise NotImplementedError

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe and flat: an order event's OrderRef fields sit beside its own (as the database
        log rows have always had them)."""
        out: dict[str, Any] = {}
        for key, value in json_safe(self).items():
            if isinstance(value, dict):
                out.update(value)
            else:
                out[key] = value
        return out


@dataclass(frozen=True)
class OrderRef:
    """The order an order event is about."""

    client_order_id: str
    tag: str
    symbol: str
    side: str  # "buy" | "sell"
    order_type: str  # "limit" | "market"
    qty: Decimal
    price: Decimal | None  # the limit price; None at market
    quote_coin: str

    def __str__(self) -> str:
        at = f" @ {_num(self.price)}" if self.price is not None else " at market"
        return f"{self.side} {self.order_type} {_num(self.qty)} {self.symbol}{at} ({self.tag})"


@dataclass(frozen=True)
class OrderPlaced(Payload):
    EVENT = EventType.ORDER_PLACED
    order: OrderRef

    def _text(self) -> str:
        return str(self.order)


@dataclass(frozen=True)
class OrderFilled(Payload):
    EVENT = EventType.ORDER_FILLED
    order: OrderRef
    filled: Decimal
    avg_price: Decimal | None  # None only when the exchange reported none
    fee: Decimal
    fee_coin: str  # a spot buy pays its fee in the base coin

    @property
    def value(self) -> Decimal | None:
        return None if self.avg_price is None else self.filled * self.avg_price

    def _text(self) -> str:
        o = self.order
        of = f" of {_num(o.qty)}" if self.filled != o.qty else ""
        limit = f" (limit {_num(o.price)})" if o.price is not None and o.price != self.avg_price else ""
        value = "" if self.value is None else f" = {_money(self.value, o.quote_coin)}"
        return (f"{o.side} {o.order_type} {_num(self.filled)}{of} {o.symbol} @ {_num(self.avg_price)}{limit}{value} · "
                f"fee {_num(self.fee)} {self.fee_coin} ({o.tag})")


@dataclass(frozen=True)
class OrderCancelled(Payload):
    EVENT = EventType.ORDER_CANCELLED
    order: OrderRef
    filled: Decimal  # what was filled before the cancel (already announced with its booking)

    def _text(self) -> str:
        return f"{self.order} · {_num(self.filled)} filled"


@dataclass(frozen=True)
class OrderFailed(Payload):
    EVENT = EventType.ORDER_FAILED
    order: OrderRef
    status: str  # "REJECTED" | "FAILED"
    error: str

    def _text(self) -> str:
        return f"{self.order} {self.status.lower()}: {self.error}"


@dataclass(frozen=True)
class TradeOpened(Payload):
    EVENT = EventType.TRADE_OPENED
    trade_id: int
    position_id: str
    symbol: str
    side: str  # "long" | "short"
    qty: Decimal
    entry_price: Decimal
    stop: Decimal | None  # ladder positions (grid, DCA) have no stop or target of their own
    target: Decimal | None
    quote_coin: str

    def _text(self) -> str:
        levels = "".join(f" · {name} {_num(level)}" for name, level in (("stop", self.stop), ("target", self.target))
                         if level is not None)
        return (f"{self.side} {_num(self.qty)} {self.symbol} @ {_num(self.entry_price)} = "
                f"{_money(self.qty * self.entry_price, self.quote_coin)}{levels} (trade #{self.trade_id})")


@dataclass(frozen=True)
class TradeClosed(Payload):
    EVENT = EventType.TRADE_CLOSED
    trade_id: int
    position_id: str
    symbol: str
    side: str
    qty: Decimal
    entry_price: Decimal
    exit_price: Decimal
    pnl: Decimal  # net of fees
    reason: str | None
    quote_coin: str
    held: timedelta | None = None  # from entry to exit
    day_pnl: Decimal | None = None  # the bot's realised PnL today, this trade included
    summarised: bool = False  # one lot of a ladder the exchange closed: told by the one LIQUIDATED alert

    @property
    def pnl_pct(self) -> Decimal | None:
        """The PnL against the position's entry value."""
        cost = self.qty * self.entry_price
        return None if not cost else self.pnl / cost * 100

    def _text(self) -> str:
        pct = f" ({decimal_text(self.pnl_pct, 2, signed=True)} %)" if self.pnl_pct is not None else ""
        why = f" · {self.reason.replace('_', ' ')}" if self.reason else ""
        held = f" · held {duration(self.held)}" if self.held is not None else ""
        today = f" · bot today {_pnl(self.day_pnl, self.quote_coin)}" if self.day_pnl is not None else ""
        return (f"{self.side} {_num(self.qty)} {self.symbol} {_num(self.entry_price)} → {_num(self.exit_price)} · "
                f"PnL {_pnl(self.pnl, self.quote_coin)}{pct}{why}{held}{today} (trade #{self.trade_id})")


@dataclass(frozen=True)
class SignalGenerated(Payload):
    EVENT = EventType.SIGNAL_GENERATED
    symbol: str
    direction: str  # "long" | "short"
    entry: Decimal
    stop: Decimal
    target: Decimal | None
    size: Decimal
    confidence: float  # 0..1
    reason: str

    def _text(self) -> str:
        why = f" · {self.reason}" if self.reason else ""
        return (f"{self.direction} {self.symbol} entry {_num(self.entry)} stop {_num(self.stop)} "
                f"target {_num(self.target)} size {_num(self.size)} · confidence {self.confidence:.0%}{why}")


@dataclass(frozen=True)
class ErrorRaised(Payload):
    EVENT = EventType.ERROR
    error: str
    state: BotState | None = None  # the bot's state when it happened
    client_order_id: str | None = None

    def _text(self) -> str:
        where = [f"while {self.state.value.lower()}"] if self.state else []
        where += [f"order {short_id(self.client_order_id)}"] if self.client_order_id else []
        return self.error + (f" ({', '.join(where)})" if where else "")


@dataclass(frozen=True)
class StatusChanged(Payload):
    EVENT = EventType.STATUS_CHANGE
    old: BotState
    new: BotState
    reason: str
    by: str  # an operator, or the part of the desk that decided ("risk rail", "desk")

    def _text(self) -> str:
        why = _by(self.reason, self.by)
        return f"{self.old.value.lower()} → {self.new.value.lower()}" + (f" ({why})" if why else "")


@dataclass(frozen=True)
class PhaseChanged(Payload):
    EVENT = EventType.PHASE_CHANGED
    phase: DeploymentPhase
    previous: DeploymentPhase
    share: Decimal  # of the total capital, 0..1
    allocated: Decimal  # the capital the phase deploys
    approved_by: str | None  # None: phase 1, started by the desk
    coin: str = "USDT"

    def _text(self) -> str:
        who = f" · approved by {operator_name(self.approved_by)}" if self.approved_by else ""
        return (f"{phase_name(self.phase)} · {_num(self.share * 100)} % · {_capital(self.allocated, self.coin)} "
                f"(was {_phase(self.previous)}){who}")


@dataclass(frozen=True)
class ScalingDecisionMade(Payload):
    EVENT = EventType.SCALING_DECISION
    can_scale: bool
    current_phase: DeploymentPhase
    next_phase: DeploymentPhase | None
    passed: tuple[str, ...]
    blocked: tuple[str, ...]

    def _text(self) -> str:
        step = f" → {_phase(self.next_phase)}" if self.next_phase else " (the last)"
        verdict = "ready to scale, awaiting approval" if self.can_scale else "scaling blocked"
        gates = [f"✓ {gate}" for gate in self.passed] + [f"✗ {gate}" for gate in self.blocked]
        return " · ".join([f"{_phase(self.current_phase)}{step}: {verdict}", *gates])


@dataclass(frozen=True)
class Halted(Payload):
    EVENT = EventType.HALTED
    reason: str
    by: str
    paused: tuple[str, ...]  # the bots the halt paused

    def _text(self) -> str:
        return (f"trading halted by {operator_name(self.by)}: {self.reason} · "
                f"paused: {', '.join(self.paused) or 'none running'}")


@dataclass(frozen=True)
class Resumed(Payload):
    EVENT = EventType.RESUMED
    by: str
    resumed: tuple[str, ...]  # the bots the halt had paused

    def _text(self) -> str:
        return f"trading resumed by {operator_name(self.by)} · running again: {', '.join(self.resumed) or 'none'}"


@dataclass(frozen=True)
class RiskLimitHit(Payload):
    EVENT = EventType.RISK_LIMIT
    rail: str  # "max_exposure" | "max_daily_loss" | "max_daily_loss (desk)"
    value: Decimal  # the exposure or the day's loss
    limit: Decimal
    wanted: Decimal | None = None  # the entry's notional the rail refused

    def _text(self) -> str:
        refused = f" · entry of {_money(self.wanted)} refused" if self.wanted is not None else ""
        return f"{self.rail}: {_money(self.value)} against a limit of {_money(self.limit)}{refused}"


@dataclass(frozen=True)
class LiquidationNear(Payload):
    """The mark price of an account's position came within ``threshold`` of its liquidation price."""

    EVENT = EventType.LIQUIDATION_RISK
    symbol: str
    side: str  # "long" | "short"
    size: Decimal
    mark_price: Decimal
    liq_price: Decimal
    distance: Decimal  # |mark - liq| / mark
    threshold: Decimal

    def _text(self) -> str:
        return (f"{self.side} {_num(self.size)} {self.symbol}: mark {_num(self.mark_price)} is "
                f"{decimal_text(self.distance * 100)} % from liquidation at {_num(self.liq_price)} "
                f"(alert under {decimal_text(self.threshold * 100)} %)")


@dataclass(frozen=True)
class Liquidated(Payload):
    """The exchange closed (``rest`` 0) or reduced a ladder bot's inventory itself: a liquidation or an
    auto-deleveraging, booked at its price; ``state`` is the bot's afterwards."""

    EVENT = EventType.LIQUIDATED
    symbol: str
    how: str  # "liquidated" | "auto-deleveraged"
    side: str  # "long" | "short": the inventory's
    qty: Decimal  # of the bot's inventory closed
    price: Decimal
    pnl: Decimal  # of what was closed, net of fees
    lots: int  # position records closed
    rest: Decimal  # inventory the bot still holds
    state: BotState
    quote_coin: str
    bot: str  # for the commands the operator may answer with

    def _text(self) -> str:
        what = (f"ByBit {self.how} the bot's {self.side} {_num(self.qty)} {self.symbol} at {_num(self.price)}: "
                f"PnL {_pnl(self.pnl, self.quote_coin)} over {self.lots} lot{'s' if self.lots != 1 else ''}")
        if self.rest:
            return f"{what}; {_num(self.rest)} still held, the ladder of {self.bot} carries on ({self.state.value})"
        return (f"{what}. Its ladder orders are cancelled and {self.bot} is {self.state.value}: /start {self.bot} "
                f"restarts the ladder from the current price (lower the leverage or widen the range first), "
                f"/stop {self.bot} ends it")


@dataclass(frozen=True)
class FundingBooked(Payload):
    """A funding settlement booked to the bot: ``pnl`` < 0 paid, > 0 received."""

    EVENT = EventType.FUNDING
    symbol: str
    pnl: Decimal
    rate: Decimal
    quote_coin: str

    def _text(self) -> str:
        return f"funding {self.symbol} at rate {_num(self.rate)}: {_pnl(self.pnl, self.quote_coin)}"


@dataclass(frozen=True)
class DeskStarted(Payload):
    EVENT = EventType.DESK_STARTED
    mode: str  # "paper" | "demo" | "live"
    bots: tuple[str, ...]
    phase: DeploymentPhase | None  # None: no capital deployment
    fills_while_down: int  # orders found filled on the exchange at start-up, now booked
    adopted: int  # orders the database knew, found on the exchange and tracked again
    failed: int  # orders the database knew that the exchange never had (marked FAILED)
    problems: tuple[str, ...]  # "bot: what went wrong" for each bot recovery left in ERROR

    def _text(self) -> str:
        phase = f" · {_phase(self.phase)}" if self.phase else ""
        found = [f"{self.fills_while_down} fill(s) booked while down", f"{self.adopted} order(s) adopted"]
        found += [f"{self.failed} order(s) failed"] if self.failed else []
        problems = "".join(f" · ⚠️ {p}" for p in self.problems)
        return (f"{self.mode} desk started · {len(self.bots)} bot(s): {', '.join(self.bots)}{phase} · "
                f"recovery: {', '.join(found)}{problems}")


@dataclass(frozen=True)
class DeskStopping(Payload):
    EVENT = EventType.DESK_STOPPING
    reason: str  # "SIGTERM", "Ctrl-C", "--ticks reached", ...

    def _text(self) -> str:
        return f"desk stopping ({self.reason}): no new order from now; orders on the exchange stay"


@dataclass(frozen=True)
class ScalingOffered(Payload):
    """Every gate of the current phase passes: the operator is asked to approve the next phase."""

    EVENT = EventType.SCALING_OFFERED
    current_phase: DeploymentPhase
    next_phase: DeploymentPhase
    passed: tuple[str, ...]
    times: int  # 1 for the first offer of this phase, then one more per daily re-offer
    expires_at: datetime  # the offer's buttons answer "expired" after this

    def _text(self) -> str:
        return (f"{_phase(self.current_phase)} → {_phase(self.next_phase)}: every gate passes, approve or reject "
                f"(offer {self.times}, answers until {self.expires_at:%Y-%m-%d %H:%M} UTC) · "
                + " · ".join(f"✓ {gate}" for gate in self.passed))


@dataclass(frozen=True)
class DailyDigest(Payload):
    EVENT = EventType.DAILY_DIGEST
    digest: Digest

    def _text(self) -> str:
        d = self.digest
        return (f"digest {d.day:%Y-%m-%d}: PnL {_pnl(d.pnl, 'USDT')} · {d.trades} trade(s) · "
                f"fees {_money(d.fees, 'USDT')} · funding {_pnl(d.funding, 'USDT')} · "
                f"exposure {_money(d.exposure, 'USDT')} · {d.errors} error(s)")


@dataclass(frozen=True)
class TicksStalled(Payload):
    EVENT = EventType.TICKS_STALLED
    silent_seconds: float  # since the last completed tick (or the start)
    limit_seconds: float  # N x the shortest tick interval
    worker: str | None = None  # a fleet's worker whose ticks stalled (its lease owner id); None: the desk

    def _text(self) -> str:
        where = f"on worker {self.worker}: " if self.worker else ""
        return (f"{where}no tick completed for {self.silent_seconds:.0f} s (limit {self.limit_seconds:.0f} s): "
                f"{'its' if self.worker else 'the'} bots are not trading; check the logs and the exchange")


@dataclass(frozen=True)
class ProtectionRestored(Payload):
    """The exchange did not hold the stop/target the strategy wants (missing or wrong); the desk put
    them back (orchestrator/protection.py)."""

    EVENT = EventType.PROTECTION_RESTORED
    symbol: str
    stop_loss: Decimal | None  # what the exchange holds now
    take_profit: Decimal | None
    found_stop: Decimal | None  # what it held before (None: nothing)
    found_target: Decimal | None

    def _text(self) -> str:
        return (f"{self.symbol}: the exchange held stop {_num(self.found_stop)} / target {_num(self.found_target)}; "
                f"restored to stop {_num(self.stop_loss)} / target {_num(self.take_profit)}")


@dataclass(frozen=True)
class StorageLost(Payload):
    EVENT = EventType.STORAGE_LOST
    error: str  # DatabaseUnavailableError's text: which database, and what happened to it

    def _text(self) -> str:
        return (f"database lost: {self.error}. No new entries; open positions stay protected (exits and "
                "stops are still sent, their records kept in memory) until it takes writes again")


@dataclass(frozen=True)
class StorageRestored(Payload):
    EVENT = EventType.STORAGE_RESTORED
    lost_seconds: Decimal
    bots: int  # bots whose state and kept records were written
    file_restored: str | None = None  # the deleted SQLite file written back from the connection still holding it

    def _text(self) -> str:
        restored = (f" · the deleted database file {self.file_restored} was written back from the desk's open "
                    "connection, history intact" if self.file_restored else "")
        return (f"database writable again after {_num(self.lost_seconds)} s: {self.bots} bot(s) saved what they "
                f"kept in memory; entries allowed again{restored}")


@dataclass(frozen=True)
class Details(Payload):
    """A plain mapping given as ``data`` by code outside the desk (the spec's own example passes a
    dict). The desk's emitters always build the typed payload; this keeps such an event renderable
    everywhere instead of refusing it."""

    EVENT = EventType.ERROR  # unused: a Details payload is accepted for every event type
    fields: Mapping[str, Any]

    def _text(self) -> str:
        return " · ".join(f"{key} {value}" for key, value in json_safe(self.fields).items())

    def to_dict(self) -> dict[str, Any]:
        return dict(json_safe(self.fields))

    def __getitem__(self, key: str) -> Any:
        return self.fields[key]


PAYLOADS: dict[EventType, type[Payload]] = {cls.EVENT: cls for cls in (
    OrderPlaced, OrderFilled, OrderCancelled, OrderFailed, TradeOpened, TradeClosed, SignalGenerated, ErrorRaised,
    StatusChanged, PhaseChanged, ScalingDecisionMade, Halted, Resumed, RiskLimitHit, LiquidationNear, Liquidated,
    FundingBooked,
    DeskStarted, DeskStopping, ScalingOffered, DailyDigest, TicksStalled, ProtectionRestored,
    StorageLost, StorageRestored)}


def never_muted(event: TradingEvent) -> bool:
    """The operator hears it whatever was muted: an UNMUTABLE_EVENTS type, or a trade the exchange
    closed by liquidating it (money lost; a ladder's lots are told together, by one LIQUIDATED)."""
    return event.event_type in UNMUTABLE_EVENTS or (isinstance(event.data, TradeClosed) and not event.data.summarised
                                                    and event.data.reason == "liquidation")


@dataclass(frozen=True)
class TradingEvent:
    """``data`` is the payload type of ``event_type`` (PAYLOADS); a plain mapping becomes `Details`;
    anything else is refused here, where it is built, not later in a renderer."""

    event_type: EventType
    bot_name: str
    data: Payload
    timestamp: datetime = field(default_factory=lambda: datetime.now(UTC))

    def __post_init__(self) -> None:
        if isinstance(self.data, Mapping):
            object.__setattr__(self, "data", Details(dict(self.data)))
            return
        wanted = PAYLOADS[self.event_type]
        if type(self.data) not in (wanted, Details):
            raise TypeError(f"{self.event_type.value} event: data must be {wanted.__name__}, "
                            f"not {type(self.data).__name__}")

    @classmethod
    def of(cls, bot_name: str, payload: Payload) -> TradingEvent:
        return cls(payload.EVENT, bot_name, payload)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form (Decimals as strings, timestamp ISO 8601 UTC)."""
        return {
            "event_type": self.event_type.value,
            "bot_name": self.bot_name,
            "timestamp": self.timestamp.isoformat(),
            "data": self.data.to_dict(),
        }


Subscriber = Callable[[TradingEvent], Awaitable[None]]
BatchSubscriber = Callable[[list[TradingEvent]], Awaitable[None]]


class Subscription:
    """One subscriber's queue and worker; created by `EventBus.subscribe`."""

    def __init__(self, callback: Subscriber | BatchSubscriber, name: str, types: frozenset[EventType] | None,
                 batch: bool = False) -> None:
        self.callback = callback
        self.name = name
        self.types = types
        self.batch = batch
        self.queue: asyncio.Queue[TradingEvent] = asyncio.Queue()
        self.task: asyncio.Task[None] | None = None
        self.delivered = 0
        self.failed = 0

    def wants(self, event: TradingEvent) -> bool:
        return self.types is None or event.event_type in self.types

    async def run(self) -> None:
        while True:
            events = [await self.queue.get()]
            while self.batch and not self.queue.empty():
                events.append(self.queue.get_nowait())
            try:
                await self.callback(events if self.batch else events[0])  # type: ignore[arg-type]
                self.delivered += len(events)
            except Exception:
                self.failed += len(events)
                log.exception("event subscriber %r failed on %s", self.name, events[0].event_type)
            finally:
                for _ in events:
                    self.queue.task_done()


class EventBus:
    """Fan-out of TradingEvents to async subscribers, each at its own pace."""

    def __init__(self) -> None:
        self._subscriptions: list[Subscription] = []
        self._running = False

    def subscribe(
        self, callback: Subscriber | BatchSubscriber, *, name: str, types: Iterable[EventType] | None = None,
        batch: bool = False,
    ) -> Subscription:
        """``batch``: the callback takes a list: every event queued since its last call (for a
        writer that stores many events in one go)."""
        sub = Subscription(callback, name, frozenset(types) if types is not None else None, batch)
        self._subscriptions.append(sub)
        if self._running:
            sub.task = asyncio.create_task(sub.run(), name=f"events:{name}")
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        self._subscriptions.remove(sub)
        if sub.task:
            sub.task.cancel()

    def publish(self, event: TradingEvent) -> None:
        """Queue the event for every interested subscriber; returns at once.

        Events published before `start()` wait in the queues and are delivered once started.
        """
        for sub in self._subscriptions:
            if sub.wants(event):
                sub.queue.put_nowait(event)

    @property
    def pending(self) -> int:
        return sum(sub.queue.qsize() for sub in self._subscriptions)

    async def start(self) -> None:
        self._running = True
        for sub in self._subscriptions:
            if sub.task is None or sub.task.done():
                sub.task = asyncio.create_task(sub.run(), name=f"events:{sub.name}")

    async def drain(self, timeout: float | None = None) -> bool:
        """Wait until every queued event was handled; False when the timeout ran out first."""
        try:
            await asyncio.wait_for(asyncio.gather(*(s.queue.join() for s in self._subscriptions)), timeout)
            return True
        except TimeoutError:
            return False

    async def stop(self, timeout: float = 10.0) -> None:
        """Deliver what is queued (up to `timeout` seconds), then stop the workers."""
        if self._running and not await self.drain(timeout):
            log.warning("event bus stopped with %d undelivered events", self.pending)
        self._running = False
        tasks = [s.task for s in self._subscriptions if s.task]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for sub in self._subscriptions:
            sub.task = None
