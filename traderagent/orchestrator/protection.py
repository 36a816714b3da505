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
  rail like any other, which pauses the bot or not. The trade-close alert tells the operator the loss. An
  auto-deleveraging that leaves the position open closes the bot's share of it (a partial close).
* Ladders (grid, DCA) on a linear perp hold no exchange stop, but the exchange can liquidate them too:
  ``_ladder_liquidation_seen`` compares their inventory with the exchange's position before an exit goes
  out (and as streamed, and every RECONCILE_S); what the exchange closed is booked as above, then
  ``_ladder_liquidated`` pauses the bot, tells it in one LIQUIDATED alert and cancels its ladder.
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
from collections.abc import Callable, Sequence
from datetime import datetime
from decimal import ROUND_DOWN, Decimal
from typing import TYPE_CHECKING, Any

from traderagent.api.exceptions import ExchangeAPIError, InvalidOrderError, OrderNotFoundError
from traderagent.numbers import ZERO, to_decimal
from traderagent.orchestrator.crashpoints import crash_point
from traderagent.orchestrator.events import ErrorRaised, Liquidated, Payload, ProtectionRestored
from traderagent.orchestrator.market_data import MarketData
from traderagent.orchestrator.state import BotState
from traderagent.ports import ExchangePort, FillStream, HeldStops
from traderagent.strategies.base import BaseStrategy
from traderagent.strategies.types import ExitReason, OrderIntent, PositionInfo

if TYPE_CHECKING:
    from traderagent.orchestrator.orders import TrackedOrder

log = logging.getLogger(__name__)

RECONCILE_S = 60.0  # the backstop: what the exchange holds is compared this often
SINCE_MARGIN_MS = 60_000  # the exchange's clock may differ from ours; an older execution is _booked already
TARGET_TYPES = frozenset({"TakeProfit", "PartialTakeProfit"})
EXIT_TAG = "exit-"  # a signal bot's exit order: its tag is EXIT_TAG + the position id
REDUCE_ONLY_UNSATISFIED = 110017  # ByBit: a reduce-only order with no position (that side) to reduce
LIQUIDATED_BY = "liquidation"  # paused_by of a ladder whose inventory the exchange took over

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
    fill_stream: FillStream | None
    paused_by: str | None
    quote_coin: str
    clock: Callable[[], datetime]
    _liq_since: int | None = None  # epoch ms: liquidations until then are booked, or older than the bot
    _liq_looked: tuple[Decimal, float] | None = None  # a ladder's shortfall looked up: (exchange net, when)
    _reduced: HeldStops | None = None  # the exchange's position, found smaller than the bot's (_found_levels)

    if TYPE_CHECKING:
        _orders: dict[str, TrackedOrder]

        def _emit(self, payload: Payload) -> None: ...
        def _net_position(self) -> Decimal: ...
        async def _set_state(self, target: BotState, reason: str = "", by: str = "desk") -> None: ...
        async def _cancel_many(self, orders: list[TrackedOrder], why: str) -> None: ...
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

    async def _exits_the_exchange_made(self, refused: list[tuple[TrackedOrder, ExchangeAPIError]]
                                       ) -> list[tuple[TrackedOrder, ExchangeAPIError]]:
        """Exits refused for having nothing to reduce (110017) after ``_exits_left_to_desk`` saw the position
        open: the exchange's stop or target closed it before the send (the account's queue may hold a send
        for seconds). What it executed is booked; the refusals left are those of positions still open."""
        if not self.protected or not any(_nothing_to_reduce(o, exc) for o, exc in refused):
            return refused
        if await self._exchange_position_open():
            return refused
        await self._book_exchange_closes()
        open_ids = {p.position_id for p in self.strategy.get_active_positions()}
        return [(o, exc) for o, exc in refused
                if not _nothing_to_reduce(o, exc) or o.tag.removeprefix(EXIT_TAG) in open_ids]

    # ------------------------------------------------------------------ reconcile
    async def _reconcile_protection(self) -> None:
        """Compare the exchange's stops with the strategy's; restore a missing or wrong one (with an
        alert), book what the exchange closed meanwhile. Ladders: what the exchange liquidated."""
        if not self.protected:
            await self._ladder_liquidation_seen(fresh=True)
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
        if self._reduced is not None:  # smaller than the bot's: an auto-deleveraging took part of it
            await self._book_exchange_closes(self._reduced)
            want = self._wanted()
            if want is None:
                return
        if found != want and await self._hold(want):
            self._emit(ProtectionRestored(self.symbol, want[0], want[1], found[0], found[1]))
        self._held = want

    async def _found_levels(self) -> Levels | None:
        """The stop and target the exchange holds for the bot; None when it holds no position of it."""
        if self.market_type == "linear":
            held = await self.client.fetch_held_stops(self.symbol)
            self._reduced = None if held is None or self._holds_ours(_signed(held)) else held
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
        """Does the exchange still hold the bot's position? Linear: one on the bot's side (an opposite one, e.g.
        its reversal's entry filled meanwhile, is not it); spot has none: did none of our stops execute?"""
        if self.market_type == "linear":
            return self._on_bots_side(await self.client.fetch_held_stops(self.symbol))
        return not await self._stop_executions()

    def _held_since(self) -> int:
        """Epoch ms from which the exchange's executions may concern the open positions (0: not known)."""
        return min((int(p.metadata.get("held_since_ms", 0)) for p in self.strategy.get_active_positions()), default=0)

    async def _stop_executions(self) -> list[dict[str, Any]]:
        found = await self.client.fetch_stop_executions(self.symbol, self._held_since() or None)  # None: 7 days
        mine = [ex for ex in found if f"x:{ex['id']}" not in self._booked]
        if self.market_type == "spot":
            mine = [ex for ex in mine if ex["client_order_id"].startswith(self._protect_prefix)]
        return mine

    async def _liquidations(self) -> list[dict[str, Any]]:
        """The exchange's liquidations and auto-deleveragings of the account's position not booked yet (linear
        only): since the positions were held and after the last one booked (``_booked`` keeps only the latest
        ids, and a ladder's fills push them out)."""
        since = self._held_since()
        if self._liq_since is not None:
            since = max(since, self._liq_since + 1)
        found = await self.client.fetch_liquidations(self.symbol, since or None)
        return [ex for ex in found if f"x:{ex['id']}" not in self._booked]

    async def book_exchange_close(self) -> None:
        """The stream heard the exchange close or reduce the account's position itself (a liquidation, an
        auto-deleveraging): book it now rather than at the next reconcile; once, whichever comes first."""
        async with self._lock:
            if self.market_type != "linear" or not self.strategy.get_active_positions():
                return
            await self._book_exchange_closes(await self.client.fetch_held_stops(self.symbol))

    async def _book_exchange_closes(self, held: HeldStops | None = None) -> int:
        """Book, once, every stop/target execution and liquidation of the exchange that closed the bot's
        positions, and every auto-deleveraging that reduced them; returns how many. ``held``: the exchange's
        position now (None: flat). A stop execution is looked for only when it holds nothing on the bot's side
        (flat, or the other side's position: a reversal's entry, the operator's, opened after the stop)."""
        gone = not self._on_bots_side(held)  # nothing of the bot's side is left
        stops = await self._stop_executions() if self.protected and gone else []
        liquidations = await self._liquidations()
        closed_before = self.strategy.closed_count
        left = sum((ex["qty"] for ex in liquidations), ZERO)  # the account's qty liquidated from this one on
        for ex in sorted(stops + liquidations, key=lambda ex: ex.get("updated_at") or ex.get("timestamp") or 0):
            if "exec_type" in ex:  # BustTrade, AdlTrade
                before = (ZERO if gone or held is None else held.size) + left  # the account's position before it
                left -= ex["qty"]
                self._book_liquidation(ex, before, whole=gone and not left)
            else:
                self._book_stop_execution(ex)
            self._booked.append(f"x:{ex['id']}")
            self._dirty = True
        if self.market_type == "spot":
            for link, _ in list(self._spot_held.values()):
                await self._cancel_spot(link)
            self._spot_held.clear()
        if liquidations and not self.protected:
            await self._ladder_liquidated(liquidations[-1], self.strategy.closed_since(closed_before))
        elif stops or liquidations:
            if gone:
                self._held = None
            if liquidations:
                crash_point("before_liquidation_booked")  # the e2e test's kill -9 midway through the booking
            await self._persist()
        elif (self.protected and gone and self.strategy.get_active_positions() and not self._orphan_told
              and not self._own_exit_unbooked()):
            self._orphan_told = True
            side = "" if held is None else " on the bot's side"
            self._emit(ErrorRaised(f"the exchange holds no {self.symbol} position{side} but the bot does, and no stop or "
                                   "target or liquidation of the exchange closed it (closed by hand?)", self.state))
        return len(stops) + len(liquidations)

    def _own_exit_unbooked(self) -> bool:
        """An exit of the bot's own is out and its answer or fill not booked yet: the exchange may be flat
        because of it (its fill closes the trade when the stream or the next sync brings it)."""
        return any(o.tag.startswith(EXIT_TAG) for o in self._orders.values())

    def _book_stop_execution(self, ex: dict[str, Any]) -> None:
        """A stop or target the exchange executed closed the positions on its side."""
        closing_long = ex["side"] == "sell"
        positions = [p for p in self.strategy.get_active_positions() if p.is_long == closing_long]
        size = sum((p.size for p in positions), ZERO)
        price, fee = to_decimal(ex["avg_price"]), to_decimal(ex["fee"] or 0)
        for pos in positions:
            self.strategy.close_position(pos.position_id, price, self._reason(ex, pos), fee=fee * pos.size / size)
        log.info("%s: the exchange executed %s at %s: %d position(s) closed", self.name, ex.get("stop_order_type"),
                 price, len(positions))

    def _book_liquidation(self, ex: dict[str, Any], before: Decimal, *, whole: bool) -> None:
        """The exchange took over (or auto-deleveraged) ``ex["qty"]`` of the account's position, which was
        ``before``: the bot's part of it is closed at the execution's price, reason liquidation. ``whole``: the
        account's position is gone, and so is all the bot held on that side; else the bot's part is its share
        of the account's position (several bots of one account and symbol share one position)."""
        longs = ex["side"] == "sell"
        mine = sum((p.size for p in self.strategy.get_active_positions() if p.is_long == longs), ZERO)
        qty = mine
        if not whole and before > ex["qty"]:
            step = self.client.market(self.symbol).qty_step
            qty = min(mine, (ex["qty"] * mine / before / step).to_integral_value(rounding=ROUND_DOWN) * step)
        price, fee = to_decimal(ex["avg_price"]), to_decimal(ex["fee"] or 0)
        if qty > 0:
            self.strategy.reduce_side(longs, qty, price, ExitReason.LIQUIDATION, fee=fee * min(qty / ex["qty"], 1),
                                      timestamp=self.clock())
        self._liq_since = max(self._liq_since or 0, int(ex.get("timestamp") or 0))
        log.warning("%s: the exchange's %s of %s %s at %s closed %s of the bot's", self.name, ex["exec_type"],
                    ex["qty"], self.symbol, price, qty)

    async def _ladder_liquidated(self, last: dict[str, Any], closed: list[PositionInfo]) -> None:
        """A ladder's inventory closed (or reduced) by the exchange, booked in memory: written with the pause in
        one transaction, then told in one LIQUIDATED alert, then its resting orders cancelled.

        A ladder whose inventory the exchange took over whole goes to PAUSED (``paused_by`` "liquidation"), not
        to ERROR: the desk knows exactly what happened and has booked it, so nothing is left for an operator to
        repair, and a paused bot still ticks -- its orders stay in sync, funding and risk stay booked -- while it
        sends no entry. What it must not do is re-place its ladder as if nothing happened: its price range or
        leverage did not survive this market, which only the operator can judge (``/start`` restarts the
        ladder from the current price, ``/stop`` ends it). Not even a new UTC day resumes it (the daily-loss
        rail's pause does). A partial auto-deleveraging leaves the rest held and the ladder running."""
        if not closed:  # the account's, none of the bot's (it held the other side)
            await self._persist()
            return
        flat = not self.strategy.get_active_positions()
        pausing = flat and self.state in (BotState.RUNNING, BotState.PAUSED, BotState.INITIALIZING)
        if pausing:  # in the snapshot with the booking: a restart in between still pauses (recover)
            self.paused_by = LIQUIDATED_BY
        crash_point("before_liquidation_booked")  # the e2e test's kill -9 midway through the booking
        await self._persist()
        if pausing and self.state is BotState.RUNNING:
            await self._set_state(BotState.PAUSED, "liquidated by the exchange", "exchange")
        self._emit(Liquidated(
            self.symbol, "liquidated" if last["exec_type"] == "BustTrade" else "auto-deleveraged",
            "long" if closed[0].is_long else "short", sum((p.size for p in closed), ZERO), to_decimal(last["avg_price"]),
            sum((p.realized_pnl or ZERO for p in closed), ZERO), len(closed),
            sum((p.size for p in self.strategy.get_active_positions()), ZERO),
            BotState.PAUSED if pausing else self.state, self.quote_coin, self.name))
        if flat:
            resting = [o for o in self._orders.values() if o.order_type == "limit" and not o.in_flight
                       and o.status != "PENDING"]
            try:
                await self._cancel_many(resting, "liquidated by the exchange")
            except ExchangeAPIError as exc:  # ByBit cancelled them before the takeover; the sync settles it
                log.warning("%s: cancelling the ladder after the liquidation: %s", self.name, exc)

    # ------------------------------------------------------------------ ladders
    async def _ladder_liquidation_seen(self, wanted: Sequence[OrderIntent] = (), *, fresh: bool = False) -> bool:
        """Linear ladders, before the tick places ``wanted``: did the exchange close or reduce the inventory
        the bot holds (a liquidation, an auto-deleveraging)? Then it is booked here (``_book_exchange_closes``)
        and True returned: the tick stops, so the ladder never re-places reduce-only exits on a position that
        is gone. The exchange's position is looked at when an exit is about to go out, at start-up
        (``fresh``), and otherwise as streamed (no request), or read every RECONCILE_S without a stream; a
        shortfall is looked up once per size the exchange shows and RECONCILE_S."""
        if self.market_type != "linear" or not self.strategy.get_active_positions():
            return False
        exits = {i.tag for i in wanted if i.reduce_only and i.order_type != "stop"}  # driver-held stops wait
        if exits:
            exits -= {o.tag for o in self._orders.values()}  # resting already: nothing goes out
        streamed = self.fill_stream is not None and self.fill_stream.healthy
        due = time.monotonic() - self._reconciled_at >= RECONCILE_S
        if not (fresh or exits or streamed or due):
            return False
        if fresh or (due and not streamed):
            self._reconciled_at = time.monotonic()
        short, theirs, held = await self._shortfall(fresh=fresh or (due and not streamed))
        if not short:
            self._liq_looked = None
            return False
        now = time.monotonic()
        if self._liq_looked is not None and self._liq_looked[0] == theirs and now - self._liq_looked[1] < RECONCILE_S:
            return False  # looked already (another bot's share of the account's position, a hand trade)
        self._liq_looked = (theirs, now)
        return await self._book_exchange_closes(held) > 0

    async def _exits_held(self, follow: list[OrderIntent]) -> list[OrderIntent]:
        """Linear ladders: a fill's reduce-only follow-ups go out only while the exchange holds the bot's
        inventory; else it closed it (a liquidation: the fills before it are booked first, then the tick books
        the liquidation over all of them)."""
        if self.market_type != "linear" or not self.strategy.is_ladder or not any(i.reduce_only for i in follow):
            return follow
        short, _, _ = await self._shortfall(fresh=False)
        return [i for i in follow if not i.reduce_only] if short else follow

    async def _shortfall(self, *, fresh: bool) -> tuple[bool, Decimal, HeldStops | None]:
        """Does the exchange's position hold less than the bot's inventory (a shortfall seen in market data is
        confirmed by a read now: a push or a shared read may predate the fill just booked)? With the account's
        net position and the position itself."""
        theirs, held = await self._exchange_net(fresh=fresh)
        if not fresh and not self._holds_ours(theirs):
            theirs, held = await self._exchange_net(fresh=True)
        return not self._holds_ours(theirs), theirs, held

    async def _exchange_net(self, *, fresh: bool) -> tuple[Decimal, HeldStops | None]:
        """The account's net position in the symbol (> 0 long) and as ``HeldStops`` (None: flat): ``fresh``
        read now, else as the account's market data has it (streamed, or read for all its bots at once)."""
        if fresh:
            held = await self.client.fetch_held_stops(self.symbol)
        else:
            rows = await self.market.positions()
            held = next((HeldStops(r["side"], r["size"], None, None) for r in rows if r["symbol"] == self.symbol), None)
        return _signed(held), held

    def _on_bots_side(self, held: HeldStops | None) -> bool:
        """The exchange's position (None: flat) is on the side the bot holds (an opposite one is not the bot's)."""
        return _signed(held) * self._net_position() > 0

    def _holds_ours(self, theirs: Decimal) -> bool:
        """The exchange's net position holds the bot's inventory (and maybe more: other bots', the operator's)."""
        net = self._net_position()
        return net == 0 or theirs >= net > 0 or theirs <= net < 0

    def _reason(self, ex: dict[str, Any], pos: PositionInfo) -> ExitReason:
        if "exec_type" in ex:  # BustTrade, AdlTrade
            return ExitReason.LIQUIDATION
        kind = ex["stop_order_type"]
        target = kind in TARGET_TYPES or (kind not in ("StopLoss", "TrailingStop", "PartialStopLoss")
                                          and ex["client_order_id"].startswith(self._protect_prefix + "t"))
        if target:
            return ExitReason.TAKE_PROFIT
        return ExitReason(pos.metadata.get("stop_reason", ExitReason.STOP_LOSS.value))


def _nothing_to_reduce(order: TrackedOrder, exc: ExchangeAPIError) -> bool:
    return order.reduce_only and order.tag.startswith(EXIT_TAG) and exc.ret_code == REDUCE_ONLY_UNSATISFIED


def _signed(held: HeldStops | None) -> Decimal:
    """An exchange position's net size: > 0 long, < 0 short, 0 flat."""
    return ZERO if held is None else held.size if held.side == "long" else -held.size


def _levels(levels: Levels | None) -> str:
    if levels is None:
        return "(none)"
    return f"stop {levels[0] if levels[0] is not None else '–'} / target {levels[1] if levels[1] is not None else '–'}"
