"""Fills heard on an account's private stream, booked into the bot whose orderLinkId they carry.

While the stream is healthy the bots skip their per-tick poll of open orders (``BotOrchestrator._tick``);
``reconcile`` (the same REST sync the poll does) runs after every (re)connect, since ByBit replays nothing,
and every ``RECONCILE_SECONDS`` as the backstop. The account's position and wallet pushes go to its bots'
market data (``MarketData.positions``, ``free_balance``). Booking is idempotent: a fill counts only when it raises
the order's cumulative filled quantity, a final order is booked once (``_book_fill``), and an order the bot no
longer tracks is already final. A liquidation or auto-deleveraging (no order of ours) has the symbol's bots,
signal and ladder alike, book it at once (``ExchangeProtection.book_exchange_close``). A refused auth stops every bot of the account with an ERROR
naming the cause.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from traderagent.api.markets import LIQUIDATION_TYPES, normalize_symbol
from traderagent.orchestrator.gate import LeaseLapsed
from traderagent.orchestrator.orders import FINAL, TrackedOrder
from traderagent.orchestrator.state import BotState
from traderagent.ports import StreamFill

if TYPE_CHECKING:
    from traderagent.orchestrator.bot_orchestrator import BotOrchestrator
    from traderagent.orchestrator.market_data import MarketData

log = logging.getLogger(__name__)

RECONCILE_SECONDS = 60.0
_UNFILLED_ENDS = frozenset({"cancelled", "rejected"})  # told on the order topic; fills come as executions


class AccountFills:
    """The bots trading through one account, fed from its private stream."""

    def __init__(self, bots: list[BotOrchestrator], on_booked: Callable[[StreamFill], None] | None = None) -> None:
        self.bots = bots
        self.booked = 0  # fills booked from the stream
        self.on_booked = on_booked  # benchmarks: the instant a fill reached its strategy
        self._tasks: set[asyncio.Task[None]] = set()

    def _bot(self, client_order_id: str) -> BotOrchestrator | None:
        for bot in self.bots:  # an account holds a handful of bots; a prefix is at most 16 chars
            if client_order_id.startswith(bot.prefix):
                return bot if bot.gate.holds(bot.name) else None  # fenced: its new owner books it
        return None

    async def on_fill(self, fill: StreamFill) -> None:
        if fill.exec_type in LIQUIDATION_TYPES:  # no order of ours: the position of the symbol's bots is gone
            for each in self.bots:
                if normalize_symbol(each.symbol) == fill.symbol and each.gate.holds(each.name):
                    self._spawn(each.book_exchange_close())
            return
        bot = self._bot(fill.client_order_id)
        if bot is None:
            return  # not this desk's order (a manual trade, another program on the account)
        self._spawn(self._on_fill(bot, fill))

    def _spawn(self, booking: Coroutine[Any, Any, None]) -> None:
        """Book without holding up the stream's reader: one bot busy (a tick, follow-up orders) must not
        delay the fills of the others. The bot's lock is FIFO, so its bookings keep the stream's order."""
        task = asyncio.create_task(self._fenced(booking))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @staticmethod
    async def _fenced(booking: Coroutine[Any, Any, None]) -> None:
        try:
            await booking
        except LeaseLapsed as exc:  # taken over meanwhile: the bot's new owner books it from REST
            log.warning("not booked here: %s", exc)

    async def drain(self) -> None:
        """Let the bookings under way finish (a stop: none is cut in half)."""
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _on_fill(self, bot: BotOrchestrator, fill: StreamFill) -> None:
        async with bot._lock:
            order = bot._orders.get(fill.client_order_id)
            if order is None or fill.cum_filled <= order.filled:
                return  # already final, or already counted (the REST reconcile got there first)
            try:
                await self._book(bot, order, fill)
            except LeaseLapsed as exc:  # fenced while booking: the bot's new owner books it from REST
                log.warning("%s: fill %s not booked here: %s", bot.name, fill.exec_id, exc)

    async def _book(self, bot: BotOrchestrator, order: TrackedOrder, fill: StreamFill) -> None:
        if order.filled == 0 and fill.leaves == 0:  # the whole order in one fill: the row says it all
            seen: dict[str, Any] | None = {"id": fill.order_id, "status": "filled", "filled": fill.qty,
                                           "avg_price": fill.price, "fee": fill.fee}
        else:  # a part, or rows missed in a gap: the order's cumulative figures come from REST
            seen = await bot.client.fetch_order(bot.symbol, client_order_id=order.client_order_id)
        if seen is not None:
            await bot._apply(order, seen)
            self.booked += 1
            if self.on_booked is not None:
                self.on_booked(fill)

    def _markets(self) -> list[MarketData]:
        return list({id(bot.market): bot.market for bot in self.bots}.values())

    def on_positions(self, rows: list[dict[str, Any]]) -> None:
        """The account's positions as the stream pushes them, kept by its bots' market data."""
        for market in self._markets():
            market.on_positions(rows)

    def on_wallet(self, balance: dict[str, dict[str, Any]]) -> None:
        for market in self._markets():
            market.on_wallet(balance)

    async def on_order(self, seen: dict[str, Any]) -> None:
        """A cancel or reject (with any part filled before it) ends the order here."""
        if seen.get("status") not in _UNFILLED_ENDS:
            return
        bot = self._bot(str(seen.get("client_order_id") or ""))
        if bot is None:
            return
        self._spawn(self._on_order(bot, seen))

    @staticmethod
    async def _on_order(bot: BotOrchestrator, seen: dict[str, Any]) -> None:
        async with bot._lock:
            order = bot._orders.get(seen["client_order_id"])
            if order is not None and order.status not in FINAL:
                await bot._apply(order, seen)

    async def reconcile(self) -> None:
        """Sync every bot's resting orders over REST (the poll a tick does without a stream), from one listing
        of the account's orders taken now (not one per bot: thousands of bots reconcile every minute)."""
        for market in self._markets():
            for symbol in {bot.symbol for bot in self.bots if bot.market is market}:
                market.invalidate("orders", symbol)
        for bot in self.bots:
            if bot.gate.holds(bot.name):
                await asyncio.shield(self._sync(bot))

    @staticmethod
    async def _sync(bot: BotOrchestrator) -> None:
        async with bot._lock:
            if not bot._orders:
                return
            try:
                await bot._sync_orders()
            except Exception as exc:  # the next reconcile, or the tick's poll, tries again
                log.warning("%s: reconcile after the stream failed: %s", bot.name, exc)

    async def on_auth_failed(self, cause: str) -> None:
        for bot in self.bots:
            bot.fill_stream = None  # polling again, for whatever the operator does next
            if bot.state is not BotState.ERROR:
                await bot.fail(f"ByBit refused the private stream's API key ({cause}): check the key and "
                               f"the host clock; trading on this account stopped")
