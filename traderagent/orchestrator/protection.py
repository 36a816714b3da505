"""Exchange-held protection: a signal strategy's stop and target live on ByBit, not only in this process.

``ExchangeProtection`` is the part of ``BotOrchestrator`` that keeps them there (a mixin, like
``OrderLifecycle``):

* ``_protect`` (every tick, after the strategy's exits and entries): when the levels the bot's open
  positions want differ from those last put on the exchange (a new position, a trailing stop that
  moved), it puts them there: linear through ``/v5/position/trading-stop`` (tpslMode Full: market on
  trigger, by last price, as the backtest fills), spot as conditional market sells
  (``orderFilter=StopOrder``) under the bot's protection link prefix.
* ``_reconcile_protection`` (at start and every ``RECONCILE_S``): compares what the exchange holds with
  what the strategy wants and restores a missing or wrong stop with a ``ProtectionRestored`` alert; an
  exchange position found flat while the strategy still holds one was closed by the exchange.
* ``_book_exchange_closes``: a stop or target the exchange executed (order history, ``stopOrderType``)
  is booked ONCE as the close of the positions it closed (reason stop/target): the executed order's
  id joins the booked ids, saved in the same transaction as the trade close, so a crash or a second
  look never books it twice. The operator hears of it through the trade-close alert.
* Liquidations: a position the exchange took over (``execType`` BustTrade, or AdlTrade for an
  auto-deleveraging) is booked the same way, once, as the close of the bot's positions at the
  liquidation's price (reason ``liquidation``, its fee in the PnL): from the execution stream at once
  (``book_exchange_close``), else from the tick's or the reconcile's look at the exchange (after a restart
  too). The strategy is then flat: no stop to hold, no exit to send; the loss counts towards the daily-loss
  rail like any other, which pauses the bot or not. The trade-close alert tells the operator the loss.
* ``_exits_left_to_desk``: before the desk exits a protected position (its own check saw the stop
  reached, or a reversal), it looks at the exchange: a stop the exchange executed meanwhile is booked;
  only if the position is still open does the desk send its market exit, as before.

Trailing stops stay the desk's to move, as a new ``stopLoss``: the trend follower trails at
``close -/+ trailing_atr_mult x ATR`` decided at each candle close, a distance that changes with the ATR
every candle and ratchets on closes only. ByBit's ``trailingStop`` keeps one fixed price distance from the
best last price traded, intrabar, so it would exit at other prices than the strategy and its backtest
decide. The exchange still holds the current level between ticks and across a crash of the desk. (The
simulator implements ByBit's ``trailingStop`` for a strategy with those semantics: sim/protection.py.)

One-way mode: a symbol's positions of one bot share one exchange position, so they share one stop
(the tightest of theirs) and one target (the nearest).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import deque
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from traderagent.api.exceptions import InvalidOrderError, OrderNotFoundError
from traderagent.numbers import ZERO, to_decimal
from traderagent.orchestrator.crashpoints import crash_point
from traderagent.orchestrator.events import ErrorRaised, Payload, ProtectionRestored
from traderagent.orchestrator.market_data import MarketData
from traderagent.orchestrator.state import BotState
from traderagent.ports import ExchangePort
from traderagent.strategies.base import BaseStrategy
from traderagent.strategies.types import ExitReason, PositionInfo

log = logging.getLogger(__name__)

RECONCILE_S = 60.0  # the backstop: what the exchange holds is compared this often
SINCE_MARGIN_MS = 60_000  # the exchange's clock may differ from ours; an older execution is _booked already
TARGET_TYPES = frozenset({"TakeProfit", "PartialTakeProfit"})

Levels = tuple[Decimal | None, Decimal | None]  # (stop, target)


class ExchangeProtection:
    """The protection half of ``BotOrchestrator`` (see the module docstring)."""

    name: str
    symbol: str
    market_type: str
    prefix: str
    state: BotState
    client: ExchangePort
    market: MarketData
    strategy: BaseStrategy
    _booked: deque[str]
    _dirty: bool
    _held: Levels | None  # what the exchange holds as far as we know (None: nothing, or not known yet)
    _spot_held: dict[str, tuple[str, Decimal]]  # spot: "s"/"t" -> (orderLinkId, trigger) of our conditionals
    _reconciled_at: float
    _orphan_told: bool  # the bot's position missing on the exchange was told (once)
    _lock: asyncio.Lock

    if TYPE_CHECKING:
        def _emit(self, payload: Payload) -> None: ...
        async def _persist(self, *, new_orders: list[dict[str, Any]] | None = None,
                           order_updates: list[tuple[str, dict[str, Any]]] | None = None,
                           force: bool = False, announce: Payload | None = None, flush: bool = False) -> bool: ...

    @property
    def protected(self) -> bool:
        """Signal strategies hold their stops on the exchange (ladders keep their own driver-held stops)."""
        return not self.strategy.is_ladder

    # ------------------------------------------------------------------ levels
    def _wanted(self) -> Levels | None:
        """The stop and target the bot's open positions want on the exchange; None when flat."""
        positions = self.strategy.get_active_positions()
        if not positions:
            return None
        long = positions[0].is_long
        stops = [p.stop_loss for p in positions if p.stop_loss is not None]
        targets = [p.take_profit for p in positions if p.take_profit is not None]
        pick = max if long else min  # the tightest stop
        stop = self._to_tick(pick(stops)) if stops else None
        target = self._to_tick((min if long else max)(targets)) if targets else None
        return stop, target

    def _to_tick(self, price: Decimal) -> Decimal:
        tick = self.client.market(self.symbol).tick_size
        return (price / tick).to_integral_value() * tick

    # ------------------------------------------------------------------ every tick
    async def _protect(self) -> None:
        """Put changed levels on the exchange (a new position, a trailing stop that moved); every
        RECONCILE_S compare them with what the exchange holds."""
        if not self.protected:
            return
        if time.monotonic() - self._reconciled_at >= RECONCILE_S:
            await self._reconcile_protection()
            return
        want = self._wanted()
        if want != self._held:
            await self._hold(want)

    async def _hold(self, want: Levels | None) -> bool:
        """Put ``want`` on the exchange; False when it refused (told as an error)."""
        for pos in self.strategy.get_active_positions():
            if "held_since_ms" not in pos.metadata:  # where to look for the exchange's executions of it
                pos.metadata["held_since_ms"] = time.time_ns() // 1_000_000 - SINCE_MARGIN_MS
                self._dirty = True
        try:
            if self.market_type == "linear":
                if want is not None:  # flat: ByBit clears a position's TP/SL itself
                    await self.client.set_trading_stop(self.symbol, stop_loss=want[0], take_profit=want[1])
            else:
                await self._hold_spot(want)
        except InvalidOrderError as exc:  # e.g. the price is already past the stop: the desk's own check exits
            log.warning("%s: the exchange refused the stop %s (%s)", self.name, want, exc)
            self._emit(ErrorRaised(f"the exchange refused to hold the stop/target {_levels(want)} on "
                                   f"{self.symbol}: {exc}; the desk keeps watching them", self.state))
            self._held = want  # not again until the levels change
            return False
        self._held = want
        return True

    async def _hold_spot(self, want: Levels | None) -> None:
        """Spot: one conditional market sell per level (assets reserved on trigger only)."""
        size = sum((p.size for p in self.strategy.get_active_positions()), ZERO)
        qty_step = self.client.market(self.symbol).qty_step
        qty = (size / qty_step).to_integral_value(rounding="ROUND_FLOOR") * qty_step
        levels = dict(zip("st", want or (None, None), strict=True))
        for kind, level in levels.items():
            held = self._spot_held.get(kind)
            if held is not None and (level is None or held[1] != level):
                await self._cancel_spot(held[0])
                del self._spot_held[kind]
            if level is not None and kind not in self._spot_held and qty > 0:
                link = f"{self._protect_prefix}{kind}{uuid.uuid4().hex[:8]}"
                await self.client.create_conditional_order(self.symbol, "sell", qty, level, client_order_id=link)
                self._spot_held[kind] = (link, level)

    async def _cancel_spot(self, link: str) -> None:
        try:
            await self.client.cancel_order(None, self.symbol, client_order_id=link)
        except (OrderNotFoundError, InvalidOrderError):  # triggered or gone meanwhile: booked from the history
            pass

    @property
    def _protect_prefix(self) -> str:
        """orderLinkIds of our spot conditionals: not under ``prefix``, so never taken for strangers."""
        return "p" + self.prefix

    async def _exits_left_to_desk(self, exits: list[PositionInfo]) -> list[PositionInfo]:
        """Before the desk exits a position the exchange protects, look there first: a stop or target
        it executed (on the prices the desk just saw, or just before a reversal exit) is booked; only
        what is still open goes out as the desk's market exit."""
        if not exits or not self.protected or self._held is None:
            return exits
        if await self._exchange_position_open():
            return exits
        await self._book_exchange_closes()
        open_ids = {p.position_id for p in self.strategy.get_active_positions()}
        return [p for p in exits if p.position_id in open_ids]

    # ------------------------------------------------------------------ reconcile
    async def _reconcile_protection(self) -> None:
        """Compare the exchange's stops with the strategy's; restore a missing or wrong one (with an
        alert), book what the exchange closed meanwhile."""
        if not self.protected:
            return
        first = not self._reconciled_at
        self._reconciled_at = time.monotonic()
        want = self._wanted()
        if want is None:
            if self.market_type == "spot" and (first or self._spot_held):
                await self._found_levels()  # conditionals left over from before a restart go too
                await self._hold_spot(None)
            self._held = None
            return
        found = await self._found_levels()
        if found is None:  # the exchange closed the position meanwhile (or someone else did: told once)
            await self._book_exchange_closes()
            self._held = self._wanted()  # nothing to hold a stop on
            return
        if found != want and await self._hold(want):
            self._emit(ProtectionRestored(self.symbol, want[0], want[1], found[0], found[1]))
        self._held = want

    async def _found_levels(self) -> Levels | None:
        """The stop and target the exchange holds for the bot; None when it holds no position of it."""
        if self.market_type == "linear":
            held = await self.client.fetch_held_stops(self.symbol)
            return (held.stop_loss, held.take_profit) if held is not None else None
        if await self._stop_executions():
            return None
        orders = await self.client.fetch_open_orders(self.symbol)
        start = len(self._protect_prefix)
        self._spot_held.clear()  # what the exchange holds is what we hold (after a restart we knew nothing)
        for o in orders:
            link, level = o["client_order_id"], o.get("trigger_price")
            if not link.startswith(self._protect_prefix) or link[start:start + 1] not in ("s", "t"):
                continue
            if link[start] in self._spot_held or level is None:  # one per level: an extra one goes
                await self._cancel_spot(link)
            else:
                self._spot_held[link[start]] = (link, to_decimal(level))
        return tuple(self._spot_held[k][1] if k in self._spot_held else None for k in "st")  # type: ignore[return-value]

    async def _exchange_position_open(self) -> bool:
        if self.market_type == "linear":
            return await self.client.fetch_held_stops(self.symbol) is not None
        return not await self._stop_executions()  # spot has no position: did one of ours execute?

    async def _stop_executions(self) -> list[dict[str, Any]]:
        positions = self.strategy.get_active_positions()
        since = min((int(p.metadata.get("held_since_ms", 0)) for p in positions), default=0)
        found = await self.client.fetch_stop_executions(self.symbol, since or None)  # None: ByBit's last 7 days
        mine = [ex for ex in found if f"x:{ex['id']}" not in self._booked]
        if self.market_type == "spot":
            mine = [ex for ex in mine if ex["client_order_id"].startswith(self._protect_prefix)]
        return mine

    async def _liquidations(self) -> list[dict[str, Any]]:
        """The exchange's liquidations of the account's position not booked yet (linear only)."""
        positions = self.strategy.get_active_positions()
        since = min((int(p.metadata.get("held_since_ms", 0)) for p in positions), default=0)
        found = await self.client.fetch_liquidations(self.symbol, since or None)
        return [ex for ex in found if f"x:{ex['id']}" not in self._booked]

    async def book_exchange_close(self) -> None:
        """The stream heard the exchange close the account's position itself (a liquidation): book it now
        rather than at the next reconcile; once, whichever comes first."""
        async with self._lock:
            if not self.protected or not self.strategy.get_active_positions():
                return
            if await self._exchange_position_open():  # a partial auto-deleveraging: not a close of ours
                log.warning("%s: the exchange reduced the %s position; it is still open", self.name, self.symbol)
                return
            await self._book_exchange_closes()

    async def _book_exchange_closes(self) -> None:
        """Book, once, every stop/target execution and liquidation of the exchange that closed the bot's
        positions."""
        executions = await self._stop_executions() + await self._liquidations()
        for ex in sorted(executions, key=lambda ex: ex.get("updated_at") or ex.get("timestamp") or 0):
            closing_long = ex["side"] == "sell"
            positions = [p for p in self.strategy.get_active_positions() if p.is_long == closing_long]
            size = sum((p.size for p in positions), ZERO)
            price, fee = to_decimal(ex["avg_price"]), to_decimal(ex["fee"] or 0)
            for pos in positions:
                reason = self._reason(ex, pos)
                self.strategy.close_position(pos.position_id, price, reason, fee=fee * pos.size / size)
            self._booked.append(f"x:{ex['id']}")
            self._dirty = True
            log.log(logging.WARNING if "exec_type" in ex else logging.INFO,
                    "%s: the exchange executed %s at %s: %d position(s) closed", self.name,
                    ex.get("stop_order_type") or ex.get("exec_type"), price, len(positions))
        if self.market_type == "spot":
            for link, _ in list(self._spot_held.values()):
                await self._cancel_spot(link)
            self._spot_held.clear()
        if executions:
            self._held = None
            if any("exec_type" in ex for ex in executions):
                crash_point("before_liquidation_booked")  # the e2e test's kill -9 midway through the booking
            await self._persist()
        elif self.strategy.get_active_positions() and not self._orphan_told:
            self._orphan_told = True
            self._emit(ErrorRaised(f"the exchange holds no {self.symbol} position but the bot does, and no stop or "
                                   "target or liquidation of the exchange closed it (closed by hand?)", self.state))

    def _reason(self, ex: dict[str, Any], pos: PositionInfo) -> ExitReason:
        if "exec_type" in ex:  # BustTrade, AdlTrade
            return ExitReason.LIQUIDATION
        kind = ex["stop_order_type"]
        target = kind in TARGET_TYPES or (kind not in ("StopLoss", "TrailingStop", "PartialStopLoss")
                                          and ex["client_order_id"].startswith(self._protect_prefix + "t"))
        if target:
            return ExitReason.TAKE_PROFIT
        return ExitReason(pos.metadata.get("stop_reason", ExitReason.STOP_LOSS.value))


def _levels(levels: Levels | None) -> str:
    if levels is None:
        return "(none)"
    return f"stop {levels[0] if levels[0] is not None else '–'} / target {levels[1] if levels[1] is not None else '–'}"
