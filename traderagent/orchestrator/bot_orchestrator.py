"""BotOrchestrator: one bot's trading loop (market data -> strategy -> orders -> positions -> events).

A tick (``await bot.tick()``, run by the scheduler every ``tick_seconds``):

1. market data: the ticker and CLOSED candles of every timeframe the strategy needs (shared
   per symbol by ``MarketData``; higher timeframes refetched only when a candle can have closed);
2. order sync: resting orders of this bot are compared with the exchange's open list; one that
   left it is confirmed with ``fetch_order`` (by orderLinkId) and its fill is booked: strategy
   (``on_order_filled`` / ``open_position`` / ``close_position``), runtime snapshot, trades, DB;
3. strategy, per ``traderagent/strategies/base.py``: signal strategies get exits every tick and
   ``on_candle_close`` + ``signal_at`` once per new closed entry candle; ladder strategies get
   ``on_candle_close`` per new candle and ``desired_orders`` every tick, applied as a diff by tag;
4. risk: exposure, daily loss, unrealised PnL; the runtime snapshot is saved when anything changed.

Orders are crash-safe (docs/architecture.md): the write-ahead -> send -> confirm -> reconcile
lifecycle, cancels, refusals and orders the database does not know live in ``orders.py``
(``OrderLifecycle``, which this class extends). Fills are booked here, exactly once: the ids of
booked orders live in the runtime snapshot, which is saved before the order row turns final.

States (``state.py``): PAUSED places no new entries but still manages exits; STOPPED cancels the
resting entry orders; an exception in a tick moves the bot to ERROR (an ERROR event, the process
keeps running) and only an operator's ``start()`` brings it back.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
import zlib
from bisect import bisect_left
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import pandas as pd

from traderagent.api.exceptions import (
    NetworkError,
    RateLimitError,
)
from traderagent.database.exceptions import DatabaseUnavailableError
from traderagent.numbers import to_decimal
from traderagent.orchestrator.analysis import AnalysisCache, prepare_shared
from traderagent.orchestrator.budget import AnalysisBudget
from traderagent.orchestrator.events import (
    ErrorRaised,
    EventBus,
    FundingBooked,
    Payload,
    RiskLimitHit,
    SignalGenerated,
    StatusChanged,
    TradeClosed,
    TradeOpened,
    TradingEvent,
)
from traderagent.orchestrator.gate import LeaseLapsed, SendGate
from traderagent.orchestrator.market_data import MarketData, RangeMark, traded_since
from traderagent.orchestrator.orders import (
    OrderLifecycle,
    OrderRefused,
    TrackedOrder,
    is_entry,
    link_prefix,
)
from traderagent.orchestrator.perp import FUNDING_KEYS, upgraded_funding_since
from traderagent.orchestrator.protection import EXIT_TAG, LIQUIDATED_BY, SINCE_MARGIN_MS, ExchangeProtection
from traderagent.orchestrator.risk import DeskRisk
from traderagent.orchestrator.state import TICKING_STATES, BotState, IllegalTransition, check_transition
from traderagent.orchestrator.storage import StorageWatch, UnsavedRows
from traderagent.ports import CapitalPort, ExchangePort, FillStream, RecoveryRows, StorePort, TradeRow
from traderagent.results import BotMark
from traderagent.strategies.base import BaseStrategy
from traderagent.strategies.frames import last_open_ms
from traderagent.strategies.types import (
    BaseSignal,
    ExitReason,
    OrderIntent,
    PositionInfo,
    PreparedData,
    SignalDirection,
)
from traderagent.timeframes import MINUTE_MS

if TYPE_CHECKING:
    from traderagent.orchestrator.perp import FundingCharge

log = logging.getLogger(__name__)

T = TypeVar("T")
ZERO = Decimal(0)
RUNTIME_VERSION = 1
STALE_SIGNAL = Decimal("0.02")  # reject a signal whose entry is more than 2% off the price
TRANSIENT_LIMIT = 3  # consecutive network-failed ticks before the bot goes to ERROR
BOOKED_KEEP = 500
SOFT_SAVE_S = 30.0
TICK_FAILED = "tick failed: "  # the log line of a failure (fail()): what the capital record counts as an error
RANGE_MINUTES = 1000  # 1m candles one request returns: the longest gap between exit checks seen whole

__all__ = ["BotOrchestrator", "BotState", "IllegalTransition", "TrackedOrder", "link_prefix"]


def soft_phase(name: str) -> float:
    """Where in each SOFT_SAVE_S window a bot saves its candle bookkeeping: set by its name, so the bots of a
    desk, which all start at once and see the same candle close, do not all save it in the same tick."""
    return SOFT_SAVE_S * zlib.crc32(name.encode()) / 2**32


def next_soft_save(now: float, phase: float) -> float:
    """The bot's first save moment strictly after ``now`` (monotonic seconds): ``phase`` into a window."""
    return phase + SOFT_SAVE_S * ((now - phase) // SOFT_SAVE_S + 1)


class BotOrchestrator(OrderLifecycle, ExchangeProtection):
    """Drives one strategy on one symbol; see the module docstring."""

    def __init__(
        self,
        name: str,
        strategy: BaseStrategy,
        client: ExchangePort,
        db_manager: StorePort,
        *,
        event_bus: EventBus | None = None,
        symbol: str,
        market_type: str = "linear",
        capital_manager: CapitalPort | None = None,
        risk: DeskRisk | None = None,
        market_data: MarketData | None = None,
        capital_share: Decimal | None = None,
        tick_seconds: float = 5.0,
        quote_coin: str = "USDT",
        clock: Callable[[], datetime] | None = None,
        analysis_budget: AnalysisBudget | None = None,
        analysis_cache: AnalysisCache | None = None,
        gate: SendGate | None = None,
        storage: StorageWatch | None = None,
    ) -> None:
        self.name = name
        self.gate = gate or SendGate()  # the desk's: closed at stop, no order is sent after it
        self.storage = storage or StorageWatch()  # the desk's: while its database is lost, no entries
        self.analysis_budget = analysis_budget
        self.analysis_cache = analysis_cache  # the desk's: one preparation per combination and candle
        self.strategy = strategy
        self.client = client
        self.db = db_manager
        self.event_bus = event_bus
        self.symbol = symbol.replace("/", "").split(":")[0]
        self.market_type = market_type
        self.capital_manager = capital_manager
        self.risk = risk or DeskRisk()
        self.market = market_data or MarketData(client)
        self.capital_share = capital_share
        self.tick_seconds = tick_seconds
        self.quote_coin = quote_coin
        self.clock = clock or (lambda: datetime.now(UTC))
        self.prefix = link_prefix(name)

        self.state = BotState.INITIALIZING
        self.paused_by: str | None = None  # "operator" | "risk" | "halt"
        self.last_error: str | None = None
        self.ticks = 0
        self.last_tick_at: datetime | None = None
        self.last_price: Decimal | None = None
        self.priced_at: datetime | None = None  # when last_price was seen
        self._orders: dict[str, TrackedOrder] = {}
        self._armed_stops: dict[str, OrderIntent] = {}
        self._rejected_until: dict[str, float] = {}
        self._refused: dict[str, tuple[str, Decimal, Decimal | None]] = {}  # tag -> the intent refused for good
        self._booked: deque[str] = deque(maxlen=BOOKED_KEEP)
        self._trade_ids: dict[str, list[Any]] = {}  # position_id -> [trade_id, fees at open]
        self._closed_seen = 0
        self._pending_entries: dict[str, dict[str, Any]] = {}
        self._pending_exits: dict[str, dict[str, Any]] = {}
        self._last_candle_ms: int | None = None
        self._entry_seen: pd.DataFrame | None = None  # the entry frame last analysed, or found with nothing new
        self._range_mark: RangeMark | None = None  # where the previous exit check stood (_traded_range)
        self._combo: tuple[Any, ...] | None = None  # this bot's analysis-cache combination
        self._seq = 0
        self._realized = ZERO
        self._risk_blocked = False
        self._day: date | None = None
        self._grid_saved: list[dict[str, Any]] | None = None
        self._grid_memo: tuple[object, Any, list[dict[str, Any]]] | None = None  # (intents token, key, rows)
        self._transient_failures = 0
        self._dirty = False
        self._soft_dirty = False  # candle bookkeeping only: saved once per SOFT_SAVE_S, at the bot's phase
        self._soft_phase = soft_phase(name)
        self._soft_due = 0.0  # when the bookkeeping dirtied last is saved (next_soft_save)
        self._strangers: list[str] = []  # our-prefix orders the database does not know (recover)
        self._funding_seen: deque[str] = deque(maxlen=BOOKED_KEEP)  # execIds of funding booked (perp.py)
        self._funding_since: int | None = None  # ms: settlements before the bot's first start are not its own
        self._funding_keys: str | None = FUNDING_KEYS  # what funding_seen holds (perp.py upgraded_funding_since)
        self._held: tuple[Decimal | None, Decimal | None] | None = None  # stops on the exchange (protection.py)
        self._spot_held: dict[str, tuple[str, Decimal]] = {}
        self._reconciled_at = 0.0
        self._orphan_told = False
        self._unsaved = UnsavedRows()  # order rows kept in memory while storage is lost
        self._writing: asyncio.Future[Any] | None = None  # the bot's last write of its progress (_committed)
        self._loaded = False  # its saved state was read (recover): before that it has nothing to write
        self._lock = asyncio.Lock()
        self.fill_stream: FillStream | None = None  # the account's private stream (orchestrator/fill_stream.py)

    # ------------------------------------------------------------------ properties
    @property
    def allocated_capital(self) -> Decimal:
        return self.strategy.allocated_capital

    @property
    def entries_allowed(self) -> bool:
        """New entries: RUNNING, and the capital manager (if any) deploys and is not halted."""
        if self.state is not BotState.RUNNING or not self.gate.admits(self.name) or self.storage.lost:
            return False
        return self.capital_manager is None or bool(self.capital_manager.can_open_positions)

    @property
    def open_orders(self) -> list[TrackedOrder]:
        return list(self._orders.values())

    # ------------------------------------------------------------------ events
    def _emit(self, payload: Payload) -> None:
        if self.event_bus is not None:
            self.event_bus.publish(TradingEvent.of(self.name, payload))

    # ------------------------------------------------------------------ state machine
    async def _set_state(self, target: BotState, reason: str = "", by: str = "desk") -> None:
        await self.gate.check_owner(self.name)
        check_transition(self.state, target, self.name)
        previous, self.state = self.state, target
        if target is not BotState.PAUSED:
            self.paused_by = None
        await self._save_state()
        await self._persist(force=True)
        self._emit(StatusChanged(previous, target, reason, by))
        log.debug("%s: %s -> %s %s (by %s)", self.name, previous.value, target.value, reason, by)  # the event prints it

    async def start(self, reason: str = "operator", *, by: str = "operator") -> None:
        """RUNNING from INITIALIZING, PAUSED, STOPPED or ERROR (an operator's start clears ERROR).

        ``reason`` of every change of state is also what a pause is remembered by ("operator",
        "risk", "halt"); ``by`` says who decided (an operator's name, "desk")."""
        async with self._lock:
            self._refused.clear()  # the operator has seen the alert: refused intents may be tried again
            if self.state is BotState.RUNNING:
                return
            if self._strangers:  # the operator takes over what the refusal at start-up reported
                await self._adopt_strangers()
            self.last_error = None
            self._transient_failures = 0
            await self._set_state(BotState.RUNNING, reason, by)

    async def pause(self, reason: str = "operator", *, by: str = "operator") -> None:
        """No new entries; exits (stops, targets, grid counter orders, DCA take-profit) still managed."""
        async with self._lock:
            if self.state is BotState.PAUSED:
                self.paused_by = self.paused_by or reason
                return
            await self._set_state(BotState.PAUSED, reason, by)
            self.paused_by = reason
            await self._persist(force=True)

    async def resume(self, reason: str = "operator", *, by: str = "operator") -> None:
        async with self._lock:
            if self.state is not BotState.PAUSED:
                raise IllegalTransition(self.state, BotState.RUNNING, self.name)
            await self._set_state(BotState.RUNNING, reason, by)

    async def stop(self, reason: str = "operator", *, by: str = "operator", cancel_entries: bool = True) -> None:
        """STOPPED: resting entry orders are cancelled; exit orders keep resting and are tracked again on start."""
        async with self._lock:
            if self.state is BotState.STOPPED:
                return
            check_transition(self.state, BotState.STOPPED, self.name)
            self.gate.abandon(self.name)  # its entries still queued never leave (one answered later is cancelled)
            if cancel_entries:
                await self._cancel_entry_orders()
            await self._set_state(BotState.STOPPED, reason, by)

    async def fail(self, exc: BaseException | str) -> None:
        """Move to ERROR with an ERROR event (never raises)."""
        text = exc if isinstance(exc, str) else f"{type(exc).__name__}: {exc}"
        self.last_error = text
        if not isinstance(exc, str):  # a told failure is the ERROR event's line; a bug also gets its traceback
            log.error("%s: tick failed: %s", self.name, text, exc_info=exc)
        self._emit(ErrorRaised(text, self.state))
        if self.capital_manager is not None and self.capital_manager.metrics is not None:
            self.capital_manager.record_error()
        try:
            await self.db.add_log(self.name, "ERROR", f"{TICK_FAILED}{text}")
            if self.state is not BotState.ERROR:
                await self._set_state(BotState.ERROR, text[:200])
        except Exception:  # the database itself may be what failed
            self.state = BotState.ERROR
            log.exception("%s: could not record the ERROR state", self.name)

    # ------------------------------------------------------------------ allocation
    def set_allocation(self, amount: Decimal) -> None:
        """Capital this bot may deploy (phase allocation x its share); applies to new decisions."""
        if amount > 0 and amount != self.strategy.allocated_capital:
            self.strategy.allocated_capital = amount
            self._dirty = True

    # ------------------------------------------------------------------ the tick
    async def tick(self) -> bool:
        """One pass of the loop; False when the state does not tick (STOPPED, ERROR, INITIALIZING)."""
        if self.state not in TICKING_STATES:
            return False
        async with self._lock:
            if self.state not in TICKING_STATES:
                return False
            try:
                if await self._guarded(self._tick()):
                    self._transient_failures = 0
            finally:
                self.ticks += 1
                self.last_tick_at = self.clock()
        return True

    async def _guarded(self, step: Awaitable[None]) -> bool:
        """Run a step of the bot (a tick, the booking of a queued send's answer; the caller holds the lock); a
        failure is handled as the bot's, never raised. False when it failed."""
        try:
            await step
            return True
        except LeaseLapsed as exc:  # another desk may run the bot now: its state is not ours to change
            log.warning("%s: %s", self.name, exc)
        except OrderRefused as exc:
            await self.fail(str(exc))
        except DatabaseUnavailableError as exc:  # not the bot's fault: the desk stops entries, it waits
            self.storage.trip(exc)
        except (NetworkError, RateLimitError) as exc:
            self._transient_failures += 1
            log.warning("%s: exchange unreachable this tick (%s)", self.name, exc)
            if self._transient_failures >= TRANSIENT_LIMIT:
                await self.fail(exc)
        except Exception as exc:
            await self.fail(exc)
        return False

    async def _tick(self) -> None:
        self.risk.roll_day()
        if self._day != self.risk.day:  # each bot sees the UTC date change once
            if self._day is not None:
                await self._on_new_day()
            self._day = self.risk.day
        strategy = self.strategy
        candles = strategy.history_candles
        # one after the other: both are almost always cached, and awaiting a cached value directly
        # costs no task (a gather would create two per bot per tick)
        ticker = await self.market.ticker(self.symbol)
        frames = await self.market.frames(self.symbol, tuple(strategy.timeframes), candles)
        price = to_decimal(ticker["last"])
        self.last_price, self.priced_at = price, self.clock()
        # with a healthy stream fills are heard as they happen; a create not confirmed yet (uncertain, or
        # unseen at start-up) is looked for all the same: the stream tells nothing of an order never placed.
        # One still in the send queue is not: its answer books it, and the sync would skip it anyway
        if (self.fill_stream is None or not self.fill_stream.healthy
                or any(o.status == "PENDING" and not o.in_flight for o in self._orders.values())):
            await self._sync_orders()
        if not self.gate.admits(self.name):  # stopping, or fenced: no decision can be sent any more
            return
        await self._update_risk(price)  # a loss booked since the last tick pauses the bot before it decides
        if strategy.is_ladder:
            await self._tick_ladder(price, frames)
        else:
            await self._tick_signal(price, frames)
        await self._update_risk(price)
        await self._persist()  # candle bookkeeping, and the grid table if orders were placed or ended

    # ------------------------------------------------------------------ signal strategies
    async def _tick_signal(self, price: Decimal, frames: dict[str, pd.DataFrame]) -> None:
        strategy = self.strategy
        high, low = await self._traded_range(price, watching=bool(strategy.open_positions))
        exits = list(strategy.check_exits(price, high=high, low=low))
        signal: BaseSignal | None = None
        analysed = await self._analyse(frames, strategy.min_candles)
        if analysed is not None:
            prepared, new = analysed
            seen = {p.position_id for p in exits}
            for i in new:  # every candle closed since the last analysis, oldest first
                fresh = [p for p in strategy.on_candle_close(prepared, i) if p.position_id not in seen]
                seen.update(p.position_id for p in fresh)
                exits += fresh
            if self.entries_allowed and not self._pending_entries:
                signal = strategy.signal_at(prepared, new[-1], await self._balance())
        for pos in await self._exits_left_to_desk(exits):
            await self._exit_position(pos)
        if signal is not None:
            await self._enter(signal, price)
        await self._protect()

    async def _analyse(self, frames: dict[str, pd.DataFrame], min_candles: int) -> tuple[PreparedData, range] | None:
        """The prepared frames and the entry candles closed since the last analysis (oldest first),
        or None: no new candle, too few candles, or the CPU budget defers it. A deferred candle
        stays unseen, so the next granted analysis walks it too (delayed, never skipped). The
        preparation is shared through the desk's analysis cache and runs in the analysis thread, off the
        event loop; a cache hit, or another bot's preparation in flight, costs no budget."""
        strategy = self.strategy
        entry = frames[strategy.timeframes[-1]]
        if entry is self._entry_seen:  # the very frame of a tick ago: no candle closed (MarketData keeps it)
            return None
        last_ms = last_open_ms(entry)
        if last_ms is None or last_ms == self._last_candle_ms or len(entry) < min_candles:
            self._entry_seen = entry
            return None
        ordered = [frames[tf] for tf in strategy.timeframes]
        if self._combo is None:  # the parameters are fixed for the strategy's life
            self._combo = AnalysisCache.combo(strategy, self.symbol)
        key = AnalysisCache.key(self._combo, ordered)
        prepared = await prepare_shared(self.analysis_cache, key, functools.partial(strategy.prepare, *ordered),
                                        self.analysis_budget)
        if prepared is None:
            return None
        last = len(prepared) - 1
        first = last if self._last_candle_ms is None else int(
            np.searchsorted(prepared.open_ms, self._last_candle_ms, side="right"))
        self._last_candle_ms = last_ms
        self._entry_seen = entry
        self._soft_changed()
        return prepared, range(min(first, last), last + 1)

    def _soft_changed(self) -> None:
        """The candle bookkeeping changed: saved at the bot's next phase, within SOFT_SAVE_S (a save of the
        snapshot for another reason takes it sooner)."""
        if not self._soft_dirty:
            self._soft_due = next_soft_save(time.monotonic(), self._soft_phase)
            self._soft_dirty = True

    async def _enter(self, signal: BaseSignal, price: Decimal) -> None:
        self._emit(SignalGenerated(self.symbol, signal.direction.value, signal.entry_price, signal.stop_loss,
                                   signal.take_profit, signal.size, signal.confidence, signal.signal_reason))
        if price > 0 and abs(signal.entry_price - price) / price > STALE_SIGNAL:
            log.info("%s: stale signal dropped (entry %s, price %s)", self.name, signal.entry_price, price)
            return
        size = signal.size
        if size <= 0:
            return
        if not self._exposure_ok(size * price):
            return
        self._seq += 1
        tag = f"entry-{self._seq}"
        self._pending_entries[tag] = _signal_to_dict(signal)
        self._dirty = True  # durable with the order's write-ahead row
        side = "buy" if signal.direction is SignalDirection.LONG else "sell"
        order = await self._place(OrderIntent(tag, side, "market", size, None))
        if order is None:
            self._pending_entries.pop(tag, None)
            self._dirty = True

    async def _exit_position(self, pos: PositionInfo) -> None:
        tag = f"{EXIT_TAG}{pos.position_id}"
        if any(o.tag == tag for o in self._orders.values()) or self._cooling(tag):
            return
        reason = pos.exit_reason.value if pos.exit_reason else ExitReason.MANUAL.value
        self._pending_exits[tag] = {"position_id": pos.position_id, "reason": reason}
        self._dirty = True  # durable with the order's write-ahead row
        side = "sell" if pos.is_long else "buy"
        await self._place(OrderIntent(tag, side, "market", pos.size, None, reduce_only=self.market_type == "linear"))

    # ------------------------------------------------------------------ ladder strategies
    async def _tick_ladder(self, price: Decimal, frames: dict[str, pd.DataFrame]) -> None:
        strategy = self.strategy
        # under the desk's CPU budget too: at a candle close hundreds of ladders re-prepare at
        # once; one refused keeps its ladder and takes the candle on a next tick
        analysed = await self._analyse(frames, 1)
        if analysed is not None:
            prepared, new = analysed
            for i in new:
                strategy.on_candle_close(prepared, i)
        balance = await self._balance()
        intents = strategy.desired_orders(price, balance)
        if await self._ladder_liquidation_seen(intents):  # booked first; the next tick decides afresh
            return
        high, low = await self._traded_range(price, watching=bool(self._armed_stops))
        await self._apply_intents(intents, price, high, low)

    async def _traded_range(self, price: Decimal, *, watching: bool) -> tuple[Decimal, Decimal]:
        """(high, low) traded since the previous exit check, the last price included, from the exchange's 1m
        candles (``traded_since``): a wick through a stop between two ticks exits as the backtest's candle
        range makes it exit. Not ``watching`` (nothing to check): only the mark moves, without a request."""
        now = await self.market.forming_minute(self.symbol)
        mark = self._range_mark if watching else None
        rows = [now] if now is not None else []
        if mark is not None and now is not None and int(now[0]) > mark.minute_ms:
            count = min((int(now[0]) - mark.minute_ms) // MINUTE_MS + 1, RANGE_MINUTES)
            rows = await self.market.minutes(self.symbol, count)
        high, low, self._range_mark = traded_since(rows, mark)
        return max(price, price if high is None else high), min(price, price if low is None else low)

    async def _apply_intents(self, intents: list[OrderIntent], price: Decimal, high: Decimal, low: Decimal) -> None:
        wanted = {i.tag: i for i in intents}
        resting = {o.tag: o for o in self._orders.values()}
        # reprice in place what is wanted at another price or size; cancel the rest of what changed
        stale = []
        for tag, order in list(resting.items()):
            intent = wanted.get(tag)
            if not self.gate.admits(self.name):
                return  # stopping, or fenced: the replacement could not be sent; the next start re-diffs
            if order.in_flight or order.status == "PENDING" or order.order_type != "limit" or (  # PENDING: kept until confirmed
                    intent is not None and intent.order_type == "limit"
                    and (_same(order, intent) or await self._amend(order, intent))):
                continue
            stale.append(order)
            resting.pop(tag, None)
            wanted.pop(tag, None)  # a replacement goes out next tick, after the fill (if any) is booked
        await self._cancel_many(stale, "replaced or not desired")
        self._armed_stops = {t: i for t, i in wanted.items() if i.order_type == "stop"}
        net = self._net_position()
        to_place = []
        for tag, intent in wanted.items():
            if tag in resting or self._cooling(tag) or self._was_refused(intent):
                continue
            if intent.order_type == "stop":
                if not _stop_triggered(intent, high, low):
                    continue
                intent = OrderIntent(tag, intent.side, "market", intent.qty, None, intent.reduce_only)
            if is_entry(intent, net):
                if not self.entries_allowed or not self._exposure_ok(intent.qty * (intent.price or price)):
                    continue
            to_place.append(intent)
        if to_place:
            # the strategy state that produced these intents (e.g. newly activated grid slots) must be
            # durable no later than their orders, or a fill after a crash would match no slot
            self._dirty = True
        await self._place_many(to_place)

    def _net_position(self) -> Decimal:
        return sum((p.size if p.is_long else -p.size for p in self.strategy.get_active_positions()), ZERO)

    # ------------------------------------------------------------------ booking
    async def _book_fill(self, order: TrackedOrder, filled: Decimal, avg: Decimal,
                         fee: Decimal) -> list[OrderIntent]:
        """Feed a final fill to the strategy exactly once (idempotent across restarts).

        Returns the strategy's follow-up intents (e.g. a grid counter order) for the caller to place.
        """
        if order.client_order_id in self._booked:
            return []
        qty, fee_quote = filled, fee
        if self.market_type == "spot" and order.side == "buy":
            qty, fee_quote = filled - fee, fee * avg  # spot buys pay the fee in the base coin
        follow: list[OrderIntent] = []
        if self.strategy.is_ladder:
            follow = self._book_ladder_fill(order, filled, avg, fee)
        elif order.tag in self._pending_entries:
            signal = _signal_from_dict(self._pending_entries.pop(order.tag))
            self.strategy.open_position(signal, qty, avg, fee=fee_quote, timestamp=self.clock())
        elif order.tag in self._pending_exits:
            info = self._pending_exits.pop(order.tag)
            try:
                self.strategy.close_position(info["position_id"], avg, info["reason"], fee=fee_quote,
                                             timestamp=self.clock())
            except KeyError:
                log.warning("%s: exit fill for unknown position %s", self.name, info["position_id"])
        else:
            log.warning("%s: fill of %s (tag %r) matches no intent", self.name, order.client_order_id, order.tag)
        self._booked.append(order.client_order_id)
        self._dirty = True  # durable together with the order's final status (_finish)
        return follow

    def _book_ladder_fill(self, order: TrackedOrder, filled: Decimal, avg: Decimal, fee: Decimal) -> list[OrderIntent]:
        """Feed a ladder the part of ``order``'s cumulative fill (``filled`` at ``avg``, ``fee``) it has not
        booked yet; returns its follow-up intents."""
        qty, value, fee = filled - order.filled, filled * avg - order.filled * (order.avg_price or ZERO), fee - order.fee
        if qty <= 0:
            return []
        price = value / qty
        if self.market_type == "spot" and order.side == "buy":
            qty, fee = qty - fee, fee * price  # spot buys pay the fee in the base coin
        self._dirty = True
        try:
            return self.strategy.on_order_filled(order.tag, price, qty, fee)
        except ValueError as exc:  # the strategy cannot place this fill: say so, keep trading
            log.error("%s: fill of %s not booked: %s", self.name, order.client_order_id, exc)
            self._emit(ErrorRaised(f"fill of {order.tag} not booked: {exc}", self.state, order.client_order_id))
            return []

    async def _apply_follow_ups(self, follow: list[OrderIntent]) -> None:
        follow = await self._exits_held(follow)
        tags = {o.tag for o in self._orders.values()}
        net = self._net_position()
        batch = []
        for intent in follow:
            if (intent.tag in tags or intent.order_type == "stop" or self._cooling(intent.tag)
                    or self._was_refused(intent)):
                continue
            if is_entry(intent, net) and not self.entries_allowed:
                continue
            tags.add(intent.tag)
            batch.append(intent)
        await self._place_many(batch)

    # ------------------------------------------------------------------ trades (positions -> DB)
    def _book_trades(self) -> tuple[list[PositionInfo], list[tuple[PositionInfo, int | None]],
                                    list[dict[str, Any]], list[tuple[int, dict[str, Any]]]]:
        """Positions the strategy opened and closed since the last write, as trade rows to insert
        and trade closes; moves the trade book (known ids, closed count, realised pnl) forward
        (``_persist`` puts it back if the write fails). Closed: (position, its trade id or None
        when it is inserted closed)."""
        opened = [p for p in self.strategy.get_active_positions() if p.position_id not in self._trade_ids]
        rows = [self._trade_row(p) for p in opened]
        closed: list[tuple[PositionInfo, int | None]] = []
        closes: list[tuple[int, dict[str, Any]]] = []
        for pos in self.strategy.closed_since(self._closed_seen):  # no copy of the whole record each tick
            known = self._trade_ids.pop(pos.position_id, None)
            closed.append((pos, None if known is None else known[0]))
            row = self._trade_row(pos, closed=True)
            if known is None:
                rows.append(row)
            else:
                closes.append((known[0], {"exit_price": row["exit_price"], "pnl": row["pnl"], "qty": row["qty"],
                                          "entry_price": row["entry_price"], "fees": pos.fees - Decimal(known[1])}))
            self._realized += row["pnl"]
            self._closed_seen += 1
        return opened, closed, rows, closes

    def _trade_row(self, pos: PositionInfo, *, closed: bool = False) -> dict[str, Any]:
        row = {"symbol": self.symbol, "side": "long" if pos.is_long else "short", "qty": pos.size,
               "entry_price": pos.entry_price, "fees": pos.fees, "tag": pos.position_id}
        if closed:
            row.update(exit_price=pos.exit_price or pos.entry_price, pnl=pos.realized_pnl or ZERO)
        return row

    def _trades_recorded(self, opened: list[PositionInfo], closed: list[tuple[PositionInfo, int | None]],
                         new_ids: list[int]) -> None:
        """The trade rows are durable: remember their ids, count closed pnl, announce them."""
        ids = iter(new_ids)
        for pos in opened:
            trade_id = next(ids)
            self._trade_ids[pos.position_id] = [trade_id, str(pos.fees)]
            self._emit(TradeOpened(trade_id, pos.position_id, self.symbol, self._trade_row(pos)["side"], pos.size,
                                   pos.entry_price, pos.stop_loss, pos.take_profit, self.quote_coin))
        for pos, known_id in closed:
            trade_id = known_id if known_id is not None else next(ids)
            row = self._trade_row(pos, closed=True)
            self.risk.add_realized(self.name, row["pnl"])
            if self.capital_manager is not None and self.capital_manager.metrics is not None:
                self.capital_manager.record_trade(row["pnl"] > 0, row["pnl"])
            held = pos.exit_time - pos.entry_time if pos.exit_time and pos.entry_time else None
            self._emit(TradeClosed(trade_id, pos.position_id, self.symbol, row["side"], pos.size, pos.entry_price,
                                   row["exit_price"], row["pnl"], pos.exit_reason.value if pos.exit_reason else None,
                                   self.quote_coin, held, self.risk.realized_today.get(self.name),
                                   summarised=self.strategy.is_ladder and pos.exit_reason is ExitReason.LIQUIDATION))

    async def _adopt_open_trades(self, rows: Sequence[TradeRow] | None = None) -> None:
        """Open trade rows of this bot (tagged with their position id) whose id the snapshot lacks (``rows``:
        those rows, read already)."""
        for trade in rows if rows is not None else await self.db.list_open_trades(self.name):
            if trade.tag and trade.tag not in self._trade_ids:
                self._trade_ids[trade.tag] = [trade.id, str(trade.fees)]

    # ------------------------------------------------------------------ funding (perpetuals: perp.py)
    @property
    def funding_since(self) -> int | None:
        """Epoch ms from which funding settlements may still be the bot's to book (None: not recovered yet)."""
        return self._funding_since

    async def book_funding(self, charges: Sequence[FundingCharge], looked_until: int | None = None) -> int:
        """Book the funding charges not booked yet (nor older than the bot), each a closed trade row in the
        same transaction as the snapshot that remembers it; returns how many were new. ``looked_until``
        (epoch ms): every settlement up to then is among ``charges``, so the next look may start there."""
        async with self._lock:
            await self._settled()
            since = self._funding_since or 0
            new = [c for c in charges if c.exec_id not in self._funding_seen
                   and c.time.timestamp() * 1000 >= since]
            if not new:
                if looked_until is not None and self._funding_since is not None:  # saved with the next snapshot
                    self._funding_since = max(since, looked_until)
                return 0
            before = (deque(self._funding_seen, maxlen=BOOKED_KEEP), self._realized, self._funding_since)
            self._funding_seen.extend(c.exec_id for c in new)
            self._realized += sum((c.pnl for c in new), ZERO)
            # the next look starts at the last settlement booked: all before it are booked
            self._funding_since = max(since, *(int(c.time.timestamp() * 1000) for c in new))

            async def write() -> int:
                try:
                    await self.db.save_bot_progress(self.name, runtime=self.runtime_snapshot(),
                                                    new_trades=[c.trade_row() for c in new])
                except BaseException:
                    self._funding_seen, self._realized, self._funding_since = before
                    raise
                for c in new:
                    self.risk.add_realized(self.name, c.pnl)
                    if self.capital_manager is not None and self.capital_manager.metrics is not None:
                        self.capital_manager.record_pnl(c.pnl)
                    self._emit(FundingBooked(c.symbol, c.pnl, c.rate, self.quote_coin))
                return len(new)

            return await self._committed(write())

    # ------------------------------------------------------------------ risk
    async def _balance(self) -> Decimal:
        """The bot's capital plus its realised pnl, capped by the free wallet balance."""
        own = self.strategy.allocated_capital + self._realized
        free = await self.market.free_balance(self.quote_coin)
        # our own resting orders already hold part of the wallet: they are ours, not a shortage
        mine = sum((o.qty * o.price for o in self._orders.values() if o.price is not None and not o.in_flight), ZERO)
        return max(min(own, free + mine), ZERO)

    def _exposure_ok(self, notional: Decimal) -> bool:
        deployed = self._deployed_capital()
        if deployed is None or self.risk.entry_allowed(self.name, notional, deployed):
            if self._risk_blocked:
                self._risk_blocked = False
            return True
        if not self._risk_blocked:
            self._risk_blocked = True
            self._emit(RiskLimitHit("max_exposure", self.risk.total_exposure(), self.risk.exposure_limit(deployed),
                                    notional))
        return False

    def _deployed_capital(self) -> Decimal | None:
        if self.capital_manager is not None:
            return self.capital_manager.allocated_capital
        return None

    def exposure(self, price: Decimal | None = None) -> Decimal:
        price = price or self.last_price or ZERO
        positions = sum((p.size * price for p in self.strategy.get_active_positions()), ZERO)
        net = self._net_position()
        resting = ZERO
        for o in self._orders.values():
            if is_entry(o, net):
                resting += o.qty * (o.price or price)
        return positions + resting

    def unrealized_pnl(self, price: Decimal | None = None) -> Decimal:
        price = price or self.last_price
        if price is None:
            return ZERO
        return sum((p.gross_pnl_at(price) - p.fees for p in self.strategy.get_active_positions()), ZERO)

    def mark(self) -> BotMark | None:
        """This bot at its last price, with the unrealised PnL and exposure its last tick gave the risk rails
        (None before its first tick); a fleet's worker writes it (risk.py ``FleetRails``)."""
        price, at = self.last_price, self.priced_at
        if price is None or at is None:
            return None
        positions = self.strategy.get_active_positions()
        size = sum((p.size for p in positions), ZERO)
        avg = sum((p.entry_price * p.size for p in positions), ZERO) / size if size else None
        return BotMark(price, self._net_position(), avg, self.risk.unrealized.get(self.name, ZERO),
                       self.risk.exposure.get(self.name, ZERO), at)

    async def _update_risk(self, price: Decimal) -> None:
        """The bot's exposure and unrealised PnL at ``price``; the daily-loss rail reached pauses it. Before a
        tick decides (a loss booked between ticks, from the stream or at start-up, lets no entry out first)
        and after (what the tick's fills booked)."""
        self.risk.set_exposure(self.name, self.exposure(price))
        self.risk.set_unrealized(self.name, self.unrealized_pnl(price))
        if self.state is BotState.RUNNING and self.risk.bot_loss_hit(self.name, self.strategy.allocated_capital):
            loss = -self.risk.bot_day_pnl(self.name)
            self._emit(RiskLimitHit("max_daily_loss", loss, self.risk.rails.max_daily_loss * self.strategy.allocated_capital))
            self.risk.paused_by_risk.add(self.name)
            await self._set_state(BotState.PAUSED, "max daily loss reached", "risk rail")
            self.paused_by = "risk"
            await self._persist(force=True)

    async def _on_new_day(self) -> None:
        """UTC date change: bots paused by the daily-loss rail trade again."""
        if self.state is BotState.PAUSED and self.paused_by == "risk":
            self.risk.paused_by_risk.discard(self.name)
            await self._set_state(BotState.RUNNING, "new UTC day: daily loss reset", "risk rail")

    def _cooling(self, tag: str) -> bool:
        until = self._rejected_until.get(tag)
        if until is None:
            return False
        if time.monotonic() >= until:
            del self._rejected_until[tag]
            return False
        return True

    # ------------------------------------------------------------------ persistence
    def runtime_snapshot(self) -> dict[str, Any]:
        return {
            "version": RUNTIME_VERSION,
            "state": self.state.value,
            "paused_by": self.paused_by,
            "strategy": self.strategy.get_state(),
            "allocated_capital": str(self.strategy.allocated_capital),
            "trade_ids": self._trade_ids,
            "closed_seen": self._closed_seen,
            "booked": list(self._booked),
            "pending_entries": self._pending_entries,
            "pending_exits": self._pending_exits,
            "last_candle_ms": self._last_candle_ms,
            "seq": self._seq,
            "realized": str(self._realized),
            "funding_seen": list(self._funding_seen),
            "funding_since": self._funding_since,
            "funding_keys": self._funding_keys,
            "liq_since": self._liq_since,
            "saved_at": self.clock().isoformat(),
        }

    async def save(self) -> None:
        """Persist the snapshot and the grid table now (after the tick in flight, if any)."""
        async with self._lock:
            await self._persist(force=True)

    async def _persist(self, *, new_orders: list[dict[str, Any]] | None = None,
                       order_updates: list[tuple[str, dict[str, Any]]] | None = None,
                       force: bool = False, announce: Payload | None = None, flush: bool = False) -> bool:
        """Write this step's order rows and order changes together with everything that changed
        with them, in ONE transaction: the runtime snapshot, the grid table, and the trade rows of
        positions opened or closed. So a fill, its booking and its trade are never apart, and a
        decision is durable no later than the orders it sends. The snapshot is due when something
        that matters changed (fills, orders, positions, state); candle bookkeeping alone is saved
        once per SOFT_SAVE_S, at the bot's phase in it (``_soft_changed``). ``announce``: the event
        of this change, published once it is durable and before the trade events it caused. Nothing
        is written by a desk unsure it still owns the bot (LeaseLapsed).
        While storage is lost (orchestrator/storage.py) the order rows wait in memory, the rest is
        written with them when it is back (``flush``: that write), and False is returned; the
        event is published anyway: the exchange did what it says. A caller cancelled mid-write (a
        stop, a timeout) leaves the write to finish and be booked on its own (``_committed``)."""
        await self.gate.check_owner(self.name)
        await self._settled()
        if self.storage.lost and not flush:
            return self._kept_unsaved(new_orders, order_updates, announce)
        before = (dict(self._trade_ids), self._closed_seen, self._realized, self._dirty, self._soft_dirty)
        opened, closed, new_trades, closes = self._book_trades()
        stored_upto = self._closed_seen  # closed records whose trade rows this write stores
        snapshot = None
        soft_due = self._soft_dirty and time.monotonic() >= self._soft_due
        if self._dirty or force or soft_due or opened or closed:
            self._dirty = self._soft_dirty = False
            snapshot = self.runtime_snapshot()
        grid = self._grid_rows()
        if grid == self._grid_saved:  # the table only changes with fills and placements
            grid = None
        if snapshot is None and grid is None and not new_orders and not order_updates and not self._unsaved:
            if announce is not None:  # nothing to write (nor any trade: it would come with a snapshot)
                self._emit(announce)
            return True

        async def write() -> bool:
            queued, queued_updates = self._unsaved.take()  # what storage could not take before goes first
            try:
                await self.gate.check_owner(self.name)  # again: this task starts a loop turn later
                new_ids = await self.db.save_bot_progress(
                    self.name, new_orders=[*queued, *(new_orders or ())],
                    order_updates=[*queued_updates, *(order_updates or ())], runtime=snapshot,
                    grid=grid, new_trades=new_trades, trade_closes=closes)
            except BaseException as exc:
                self._trade_ids, self._closed_seen, self._realized = before[:3]
                self._dirty |= before[3]  # or-ed: a change made meanwhile (its caller cancelled) stays due
                self._soft_dirty |= before[4]
                self._unsaved.add(queued, queued_updates)
                if not isinstance(exc, DatabaseUnavailableError):
                    raise
                self.storage.trip(exc)
                return self._kept_unsaved(new_orders, order_updates, announce)
            if grid is not None:
                self._grid_saved = grid
            if announce is not None:
                self._emit(announce)
            self._trades_recorded(opened, closed, new_ids)
            self.strategy.forget_closed(stored_upto)  # the database has them now
            return True

        return await self._committed(write())

    async def _committed(self, write: Coroutine[Any, Any, T]) -> T:
        """Run a write of the bot's progress and the bookkeeping of its outcome (trade ids, what is
        still unsaved) as one task that its caller's cancellation (a stop, a timeout) does not cut in
        half: the group commit finishes the write anyway, so the task books it, and the bot's next
        write waits for that (``_settled``). Booked half-way, a committed trade row would be inserted
        again by the next write."""
        task = asyncio.ensure_future(write)
        task.add_done_callback(_outcome_seen)
        self._writing = task
        return await asyncio.shield(task)

    async def _settled(self) -> None:
        """The bot's previous write (its caller cancelled, it went on) has finished and been booked."""
        if self._writing is not None and not self._writing.done():
            await asyncio.wait([self._writing])

    def _kept_unsaved(self, new_orders: list[dict[str, Any]] | None,
                      order_updates: list[tuple[str, dict[str, Any]]] | None, announce: Payload | None) -> bool:
        self._unsaved.add(new_orders or (), order_updates or ())
        self._dirty = True  # the snapshot goes with them
        if announce is not None:
            self._emit(announce)
        return False

    async def _save_state(self) -> None:
        """The bots table's state column (while storage is lost: written by ``resync_storage``)."""
        if self.storage.lost:
            return
        try:
            await self.db.save_bot_progress(self.name, state=self.state.value)  # shares a transaction with others
        except DatabaseUnavailableError as exc:
            self.storage.trip(exc)

    async def resync_storage(self) -> bool:
        """Storage may be back: write the bot's state and everything it kept in memory meanwhile, in
        one go. False (or DatabaseUnavailableError) when it is still lost; nothing is lost then."""
        if not self._loaded:  # never recovered: writing would overwrite its saved state with nothing
            return True
        async with self._lock:
            await self.db.set_bot_state(self.name, self.state.value)
            return await self._persist(force=True, flush=True)

    def _grid_rows(self) -> list[dict[str, Any]] | None:
        """Grid strategies: the level table with the client id of each level's resting order."""
        table = getattr(self.strategy, "level_table", None)
        if not callable(table):
            return None
        price = self.last_price
        # the rows follow from the intents, the orders placed for them and the levels below the price: while
        # none of those moved, the last rows stand (asked on every tick, they are rebuilt only on a change)
        token = self.strategy.intents_token()
        levels = getattr(self.strategy, "levels", None) or []
        key = (tuple((o.tag, o.client_order_id, o.in_flight) for o in self._orders.values()),
               None if price is None else bisect_left(levels, price))
        memo = self._grid_memo
        if token is not None and memo is not None and memo[0] is token and memo[1] == key:
            return memo[2]
        by_tag = {o.tag: o for o in self._orders.values()}
        rows = []
        for row in table():
            tag = row.pop("tag", None)
            if row.get("side") is None:  # an idle level: the side it would trade from here
                row["side"] = "buy" if price is None or Decimal(row["price"]) < price else "sell"
            order = by_tag.get(tag) if tag else None
            row["client_order_id"] = order.client_order_id if order is not None else None
            if order is not None and order.in_flight:
                row["status"] = "placing"  # queued: its level is taken, its order not on the exchange yet
            rows.append(row)
        self._grid_memo = (token, key, rows) if token is not None else None
        return rows

    def _load_runtime(self, snap: dict[str, Any]) -> None:
        if snap.get("version") != RUNTIME_VERSION:
            log.warning("%s: runtime snapshot version %r ignored", self.name, snap.get("version"))
            return
        if snap.get("strategy"):
            self.strategy.load_state(snap["strategy"])
        self._trade_ids = {k: list(v) for k, v in (snap.get("trade_ids") or {}).items()}
        self._closed_seen = int(snap.get("closed_seen", 0))
        self._booked = deque(snap.get("booked") or [], maxlen=BOOKED_KEEP)
        self._pending_entries = dict(snap.get("pending_entries") or {})
        self._pending_exits = dict(snap.get("pending_exits") or {})
        self._last_candle_ms = snap.get("last_candle_ms")
        self._entry_seen = None
        self._seq = int(snap.get("seq", 0))
        self._realized = Decimal(snap.get("realized", "0"))
        self._funding_seen = deque(snap.get("funding_seen") or [], maxlen=BOOKED_KEEP)
        self._funding_since = snap.get("funding_since")
        self._funding_keys = snap.get("funding_keys")
        self._liq_since = snap.get("liq_since")
        self.paused_by = snap.get("paused_by")
        if self.paused_by == "risk" and snap.get("saved_at"):  # a daily rail's pause ends once its UTC day is over
            self._day = datetime.fromisoformat(snap["saved_at"]).astimezone(UTC).date()

    # ------------------------------------------------------------------ start-up recovery
    async def recover(self, saved_state: str | None = None, loaded: RecoveryRows | None = None) -> dict[str, int]:
        """Rebuild from the database and the exchange; returns counts of what was reconciled.

        ``saved_state``: the state the database holds for this bot (RUNNING, PAUSED, ...); the
        bot returns to it afterwards (a new bot: RUNNING). ``loaded``: its rows, read already
        (``load_recoveries``). Call once, before the first tick.
        """
        async with self._lock:
            snap = loaded.runtime if loaded is not None else await self.db.load_bot_runtime(self.name)
            if snap:
                self._load_runtime(snap)
            self._loaded = True
            if self._funding_since is None:  # funding settled before the bot first ran is not its own
                self._funding_since = int(self.clock().timestamp() * 1000)
            if not snap:  # a new bot: what the exchange liquidated before it ran is not its own (protection.py)
                self._liq_since = time.time_ns() // 1_000_000 - SINCE_MARGIN_MS
            if self._funding_keys != FUNDING_KEYS:  # saved by a desk that keyed funding otherwise
                self._funding_since = await upgraded_funding_since(self.db, self.name, self._funding_since)
                self._funding_keys = FUNDING_KEYS
            # before anything is written: a known trade is never inserted twice
            await self._adopt_open_trades(loaded.open_trades if loaded is not None else None)
            counts = await self._reconcile_orders(loaded.orders if loaded is not None else None)
            tags = {o.tag for o in self._orders.values()}
            for tag in [t for t in self._pending_entries if t not in tags]:
                self._pending_entries.pop(tag)  # decided but never written: nothing was sent
            for tag in [t for t in self._pending_exits if t not in tags]:
                self._pending_exits.pop(tag)  # the exit is re-decided on the next tick
            self._dirty = True
            await self._persist()
            self._strangers = await self._find_strangers()
            if not self._strangers:
                await self._reconcile_protection()
        if self._strangers:  # the desk refuses the symbol (``unknown_on_symbol``, ``refuse``)
            counts["strangers"] = len(self._strangers)
            return counts
        target = BotState(saved_state) if saved_state else BotState.RUNNING
        if target is BotState.INITIALIZING:
            target = BotState.RUNNING
        if target is BotState.RUNNING and self.paused_by == LIQUIDATED_BY:  # booked before its pause was saved
            target = BotState.PAUSED
        paused_by = self.paused_by
        async with self._lock:
            await self._set_state(target, "restored" if snap else "new bot")
            if target is BotState.PAUSED:
                self.paused_by = paused_by or "operator"
                if self.paused_by == "risk":
                    self.risk.paused_by_risk.add(self.name)
                await self._persist(force=True)
        return counts


# ---------------------------------------------------------------------- helpers
def _outcome_seen(task: asyncio.Future[Any]) -> None:
    """A write's failure is its caller's to raise; one whose caller was cancelled is only logged here (its
    rows and trades were put back for the next write)."""
    if not task.cancelled() and task.exception() is not None:
        log.debug("write of a bot's progress failed: %r", task.exception())


def _same(order: TrackedOrder, intent: OrderIntent) -> bool:
    return (order.side == intent.side and order.qty == intent.qty and order.price == intent.price
            and order.reduce_only == intent.reduce_only)


def _stop_triggered(intent: OrderIntent, high: Decimal, low: Decimal) -> bool:
    """A driver-held stop is reached by the range traded since the last check (the backtest: the candle's)."""
    assert intent.price is not None
    return low <= intent.price if intent.side == "sell" else high >= intent.price


def _signal_to_dict(signal: BaseSignal) -> dict[str, Any]:
    return signal.to_dict()


def _signal_from_dict(data: dict[str, Any]) -> BaseSignal:
    def dec(key: str) -> Decimal | None:
        return to_decimal(data[key]) if data.get(key) is not None else None

    ts = data.get("timestamp")
    return BaseSignal(
        direction=SignalDirection(data["direction"]),
        entry_price=to_decimal(data["entry_price"]),
        stop_loss=to_decimal(data["stop_loss"]),
        take_profit=dec("take_profit"),
        size=to_decimal(data["size"]),
        confidence=float(data.get("confidence") or 0.0),
        timestamp=datetime.fromisoformat(ts) if ts else None,
        strategy_type=data.get("strategy_type", ""),
        signal_reason=data.get("signal_reason", ""),
        risk_reward_ratio=float(data.get("risk_reward_ratio") or 0.0),
        metadata=dict(data.get("metadata") or {}),
    )
