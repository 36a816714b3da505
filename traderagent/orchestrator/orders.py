"""The crash-safe order lifecycle of one bot: write-ahead -> send -> confirm -> reconcile.

``OrderLifecycle`` is the part of ``BotOrchestrator`` that talks orders with the exchange: a PENDING
row with a fresh orderLinkId is written first, then the order is sent, then the exchange's id and
status are recorded; the orders one tick decides go as a batch (``_place_many``): every PENDING row
in one transaction, the sends handed to the account's queue (the tick goes on), every acknowledgement
in one transaction when the answers come (``_send_queued``). Resting orders
are synced with the exchange's open list each tick (``_sync_orders``); a final one is booked through
the orchestrator's ``_book_fill``. At start-up ``_reconcile_orders`` adopts or fails every non-final
order by orderLinkId (one whose create may still be on its way stays tracked until it can no longer
arrive, ``PENDING_GRACE_S``), and orders under the bot's prefix the database does not know ("strangers")
are refused, then adopted on an operator's start. Permanent refusals are told once
(``_on_refused``); a refused exit stops the bot (``OrderRefused``).

It is a mixin, not a collaborator object: the lifecycle and the strategy driving share the bot's
order table, persistence and events, and one ``self`` keeps each of those in one place.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, TypeVar

from traderagent.api.exceptions import (
    AuthenticationError,
    DuplicateOrderError,
    ExchangeAPIError,
    InvalidOrderError,
    NetworkError,
    OrderNotFoundError,
    RateLimitError,
)
from traderagent.api.markets import market_side_price
from traderagent.numbers import to_decimal
from traderagent.orchestrator.crashpoints import crash_point
from traderagent.orchestrator.events import (
    ErrorRaised,
    OrderCancelled,
    OrderFailed,
    OrderFilled,
    OrderPlaced,
    OrderRef,
    Payload,
)
from traderagent.orchestrator.gate import NeverSent, SendGate, SendsStopped
from traderagent.orchestrator.market_data import MarketData
from traderagent.orchestrator.state import TICKING_STATES, BotState
from traderagent.orchestrator.storage import UnsavedRows
from traderagent.ports import ExchangePort, LimitOrder, OrderKey, OrderRow, StorePort
from traderagent.strategies.base import BaseStrategy
from traderagent.strategies.types import OrderIntent

log = logging.getLogger(__name__)
T = TypeVar("T")

ZERO = Decimal(0)
REJECT_COOLDOWN_S = 30.0  # a tag refused for a transient reason (rate limit) is not retried before this
# A create is written to the exchange (first try or retry, each signed afresh) no later than SEND_WINDOW_S
# after its write-ahead row, so one the exchange does not show PENDING_GRACE_S after it never will: its
# signature's window (the client's recv_window, 10 s) has passed, with a margin for the clocks' skew. Until
# then an unseen order stays tracked (PENDING) and is looked for again by orderLinkId, at start-up too.
SEND_WINDOW_S = 20.0
RECV_WINDOW_S = 10.0  # the client's (RECV_WINDOW in api/bybit_direct_client.py)
PENDING_GRACE_S = SEND_WINDOW_S + RECV_WINDOW_S + 5.0

_STATUS = {
    "open": "OPEN",
    "partially_filled": "PARTIALLY_FILLED",
    "filled": "FILLED",
    "cancelled": "CANCELLED",
    "rejected": "REJECTED",
}
FINAL = frozenset({"FILLED", "CANCELLED", "REJECTED", "FAILED"})


class OrderRefused(Exception):
    """The exchange permanently refused an order the bot cannot do without (an exit): the tick stops
    and the bot goes to ERROR with this message."""


def link_prefix(bot_name: str) -> str:
    """Deterministic orderLinkId prefix of a bot: up to 10 name chars + 4 hex of its hash."""
    clean = re.sub(r"[^A-Za-z0-9]", "", bot_name)[:10] or "bot"
    return f"{clean}-{hashlib.sha1(bot_name.encode()).hexdigest()[:4]}-"


@dataclass
class TrackedOrder:
    """A non-final order of this bot, as we last saw it."""

    client_order_id: str
    tag: str
    side: str
    order_type: str
    qty: Decimal
    price: Decimal | None
    reduce_only: bool = False
    status: str = "PENDING"
    exchange_order_id: str | None = None
    filled: Decimal = ZERO
    sent_at: float = field(default_factory=time.monotonic)
    misses: int = 0
    avg_price: Decimal | None = None  # of ``filled``; with ``fee``: the part a ladder has booked
    fee: Decimal = ZERO
    in_flight: bool = False  # in the account's queue: written, its answer not booked yet
    written_at: datetime | None = None  # its write-ahead row's time (the bot's clock): see PENDING_GRACE_S

    @classmethod
    def from_row(cls, row: OrderRow) -> TrackedOrder:
        return cls(row.client_order_id, row.tag or "", row.side, row.order_type, row.qty, row.price,
                   bool(row.reduce_only), row.status, row.exchange_order_id, row.filled_qty or ZERO,
                   sent_at=0.0, avg_price=row.avg_price, fee=row.fee or ZERO, written_at=row.created_at)


class OrderLifecycle:
    """The order half of ``BotOrchestrator`` (see the module docstring). The attributes and methods
    declared here are the bot's (set in its ``__init__``, defined on it): what this half reads and calls."""

    name: str
    symbol: str
    market_type: str
    quote_coin: str
    prefix: str
    state: BotState
    last_error: str | None
    last_price: Decimal | None
    clock: Callable[[], datetime]
    gate: SendGate
    client: ExchangePort
    db: StorePort
    market: MarketData
    strategy: BaseStrategy
    _orders: dict[str, TrackedOrder]
    _rejected_until: dict[str, float]
    _refused: dict[str, tuple[str, Decimal, Decimal | None]]
    _pending_entries: dict[str, dict[str, Any]]
    _pending_exits: dict[str, dict[str, Any]]
    _strangers: list[str]
    _unsaved: UnsavedRows
    _dirty: bool
    _lock: asyncio.Lock

    if TYPE_CHECKING:
        def _emit(self, payload: Payload) -> None: ...
        def _net_position(self) -> Decimal: ...
        def _book_ladder_fill(self, order: TrackedOrder, filled: Decimal, avg: Decimal,
                              fee: Decimal) -> list[OrderIntent]: ...
        async def _book_fill(self, order: TrackedOrder, filled: Decimal, avg: Decimal,
                             fee: Decimal) -> list[OrderIntent]: ...
        async def _apply_follow_ups(self, follow: list[OrderIntent]) -> None: ...
        async def _guarded(self, step: Awaitable[None]) -> bool: ...
        async def _protect(self) -> None: ...
        async def _exits_the_exchange_made(self, refused: list[tuple[TrackedOrder, ExchangeAPIError]]
                                           ) -> list[tuple[TrackedOrder, ExchangeAPIError]]: ...
        async def _set_state(self, target: BotState, reason: str = "", by: str = "desk") -> None: ...
        async def _persist(self, *, new_orders: list[dict[str, Any]] | None = None,
                           order_updates: list[tuple[str, dict[str, Any]]] | None = None,
                           force: bool = False, announce: Payload | None = None, flush: bool = False) -> bool: ...

    # ------------------------------------------------------------------ order path
    def new_client_order_id(self) -> str:
        return (self.prefix + uuid.uuid4().hex)[:36]

    async def _place(self, intent: OrderIntent) -> TrackedOrder | None:
        """Write-ahead PENDING row -> send with its orderLinkId -> record the exchange's answer."""
        return (await self._place_many([intent]))[0]

    async def _place_many(self, intents: list[OrderIntent]) -> list[TrackedOrder | None]:
        """The crash-safe order path for every order one tick decides: all PENDING rows (with the
        decision that made them) in ONE transaction, then the sends handed to the account's queue
        (gate.py), exits and entries apart (exits go first), each group's answers booked in ONE
        transaction when they come (``_send_queued``). Nothing is sent before its row is durable, and
        the tick never waits for the rate limiter. Returns, per intent, the order in flight (None: not
        sent: the gate refused it, or an entry while storage is lost)."""
        if not intents:
            return []
        if not self.gate.admits(self.name):  # stopping, or fenced: nothing is written or sent
            self.gate.refused += len(intents)
            return [None] * len(intents)
        live = [self._new_order(intent) for intent in intents]
        orders: list[TrackedOrder | None] = list(live)  # None: an entry not sent (storage lost)
        for order in live:
            order.in_flight = True  # until its answer is booked: neither sent again nor taken for resting
            self._orders[order.client_order_id] = order
        try:
            durable = await self._persist(new_orders=[
                {"client_order_id": o.client_order_id, "symbol": self.symbol, "side": o.side,
                 "order_type": o.order_type, "qty": o.qty, "price": o.price, "status": "PENDING",
                 "reduce_only": o.reduce_only, "tag": o.tag, "created_at": o.written_at} for o in live])
        except BaseException:
            for order in live:
                self._orders.pop(order.client_order_id, None)
            raise
        if not durable:
            orders = self._exits_only(live)
            live = [o for o in orders if o is not None]
        crash_point("after_write_ahead")
        net = self._net_position()
        entries = [o for o in live if is_entry(intent_of(o), net)]
        for group in ([o for o in live if o not in entries], entries):
            if group:
                self.gate.queue(self._send_queued(group))
        return orders

    async def _send_queued(self, orders: list[TrackedOrder]) -> None:
        """Send in the account's queue (``_through_gate``), then book the answers under the bot's lock."""
        results = await self._send_all(orders)
        async with self._lock:
            answered = time.monotonic()  # an uncertain one gets its grace from its answer, not its queueing
            for order in orders:
                order.in_flight, order.sent_at = False, answered
            if not await self._guarded(self._settle(orders, results)):
                return
            if self.state is BotState.STOPPED:  # queued before the bot stopped, answered after: not wanted
                await self._guarded(self._cancel_entry_orders())
            elif self.state in TICKING_STATES:
                await self._guarded(self._protect())  # a market entry filled: its stop is held at once

    async def _settle(self, orders: list[TrackedOrder], results: list[Any]) -> None:
        """Book each send's answer: accepted -> OPEN with the exchange's id (a market order confirmed at
        once); refused -> REJECTED (FAILED for a rate limit, retried after a pause), the refusal told;
        never sent (NeverSent) -> FAILED; SendsStopped or uncertain -> PENDING, settled by the order sync
        or the next start's reconcile."""
        acked: list[TrackedOrder] = []
        refused: list[tuple[TrackedOrder, ExchangeAPIError]] = []
        unexpected: BaseException | None = None
        for order, result in zip(orders, results, strict=True):
            if order.client_order_id not in self._orders:
                continue  # already final: the fill stream booked it before its answer was applied
            if isinstance(result, dict):
                acked.append(order)
                order.exchange_order_id = order.exchange_order_id or result.get("id") or None
            elif isinstance(result, NeverSent):  # no request of it was written: it cannot reach the exchange
                await self._finish(order, "FAILED", error=f"not sent: {result}")
            elif isinstance(result, SendsStopped):
                pass  # stopped after a try was written: PENDING, found or FAILED by the sync (or the next start) once it can no longer arrive
            elif isinstance(result, NetworkError | DuplicateOrderError):
                # uncertain: it may exist. Keep it PENDING; the order sync resolves it by orderLinkId.
                log.warning("%s: send of %s uncertain (%s); will reconcile", self.name, order.client_order_id, result)
            elif isinstance(result, RateLimitError):  # transient, and not placed: again after a pause
                await self._finish(order, "FAILED", error=str(result))
                self._rejected_until[order.tag] = time.monotonic() + REJECT_COOLDOWN_S
            elif isinstance(result, ExchangeAPIError):  # permanent: sending it again cannot help
                await self._finish(order, "REJECTED", error=str(result))
                refused.append((order, result))
            else:  # a bug or a cancellation: leave the order PENDING (reconciled later), fail the step
                unexpected = unexpected or result
        if acked:
            await self._acked(acked)
        if unexpected is not None:
            raise unexpected
        if refused:
            refused = await self._exits_the_exchange_made(refused)
        if refused:
            self._on_refused(refused)

    async def _acked(self, acked: list[TrackedOrder]) -> None:
        crash_point("after_send")
        for order in acked:
            if order.status == "PENDING":  # the fill stream may have told more already
                order.status = "OPEN"
        await self._persist(order_updates=[(o.client_order_id, {"exchange_order_id": o.exchange_order_id,
                                                                 "status": o.status}) for o in acked])
        for order in acked:
            self._emit(OrderPlaced(self._order_ref(order)))
        self.market.invalidate("orders", self.symbol)
        for order in acked:
            if order.order_type == "market" and order.client_order_id in self._orders:
                await self._confirm(order)  # fills at once: book it now

    def _exits_only(self, orders: list[TrackedOrder]) -> list[TrackedOrder | None]:
        """Storage is lost (their rows could not be written): the orders that protect a position
        are sent all the same, their rows kept in memory; an entry is forgotten unsent (None)."""
        net = self._net_position()
        kept: list[TrackedOrder | None] = []
        for order in orders:
            if is_entry(intent_of(order), net):
                self._orders.pop(order.client_order_id, None)
                self._unsaved.drop([order.client_order_id])
                kept.append(None)
            else:
                kept.append(order)
        return kept

    def _on_refused(self, refused: list[tuple[TrackedOrder, ExchangeAPIError]]) -> None:
        """Permanent rejections, told once. A refused exit (or refused keys) leaves positions the bot
        cannot manage: OrderRefused stops the tick and the bot goes to ERROR. A refused entry is not
        sent again (the same intent, until the operator's start); the bot trades on."""
        net = self._net_position()
        what = "; ".join(f"{o.side} {o.qty} {self.symbol}{f' @ {o.price}' if o.price else ''} ({o.tag}): "
                         f"{getattr(exc, 'ret_msg', None) or exc} (retCode {getattr(exc, 'ret_code', '?')})"
                         for o, exc in refused)
        fatal = any(isinstance(exc, AuthenticationError) or not is_entry(intent_of(o), net) for o, exc in refused)
        if fatal:
            raise OrderRefused(f"the exchange refused {what}. The bot cannot manage its position (its book holds "
                               f"{net} {self.symbol}): compare it with the exchange's, then /start {self.name} "
                               f"(or /stop {self.name})")
        for o, _ in refused:
            self._refused[o.tag] = (o.side, o.qty, o.price)
        self._emit(ErrorRaised(f"the exchange refused {what}. Not sent again: free some balance or change the "
                               f"bot's parameters, then /start {self.name} to retry", self.state))

    def _was_refused(self, intent: OrderIntent) -> bool:
        return self._refused.get(intent.tag) == (intent.side, intent.qty, intent.price)

    def _new_order(self, intent: OrderIntent) -> TrackedOrder:
        order_type = "market" if intent.order_type == "market" else "limit"
        return TrackedOrder(self.new_client_order_id(), intent.tag, intent.side, order_type, intent.qty,
                            intent.price if order_type == "limit" else None, intent.reduce_only,
                            written_at=self.clock())

    async def _send_all(self, orders: list[TrackedOrder]) -> list[Any]:
        """Per order its answer or exception: a ladder's resting orders in batch requests (one per
        ``batch_size`` orders, each item with its own outcome), the others one by one, all concurrently."""
        limits = [o for o in orders if o.order_type == "limit"] if len(orders) > 1 else []
        singles = [o for o in orders if o not in limits]
        batch, *single = await asyncio.gather(self._send_batch(limits), *(self._send(o) for o in singles),
                                              return_exceptions=True)
        answers = dict(zip((o.client_order_id for o in singles), single, strict=True))
        per_item = batch if isinstance(batch, list) else [batch] * len(limits)  # a batch refused whole
        answers.update(zip((o.client_order_id for o in limits), per_item, strict=True))
        return [answers[o.client_order_id] for o in orders]

    async def _send_batch(self, orders: list[TrackedOrder]) -> list[dict[str, Any] | Exception]:
        if not orders:
            return []
        items = [LimitOrder(o.side, o.qty, o.price, o.client_order_id, o.reduce_only)  # type: ignore[arg-type]
                 for o in orders]
        return await self._through_gate(lambda: self.client.place_orders_batch(self.symbol, items), orders)

    def _through_gate(self, call: Callable[[], Awaitable[T]], orders: list[TrackedOrder]) -> Awaitable[T]:
        """The send in its turn at the account's order budget: exits first, entries in fair turns."""
        net = self._net_position()
        urgent = any(not is_entry(intent_of(o), net) for o in orders)
        return self.gate.send(call, lane=self.market_type, bot=self.name, cost=len(orders), urgent=urgent,
                              late=lambda: any(self._age(o) >= SEND_WINDOW_S for o in orders))

    async def _send(self, order: TrackedOrder) -> dict[str, Any]:
        if order.order_type == "limit":
            assert order.price is not None, "a limit order is built with its price"
            price = order.price
            return await self._through_gate(lambda: self.client.create_limit_order(
                self.symbol, order.side, order.qty, price, client_order_id=order.client_order_id,
                reduce_only=order.reduce_only), [order])

        async def market() -> dict[str, Any]:
            ticker = await self.market.ticker(self.symbol)  # the desk's (streamed): no ticker request per order
            return await self.client.create_market_order(
                self.symbol, order.side, order.qty, client_order_id=order.client_order_id,
                reduce_only=order.reduce_only, reference_price=market_side_price(ticker, order.side == "buy"))

        return await self._through_gate(market, [order])

    async def _confirm(self, order: TrackedOrder) -> None:
        found = await self.client.fetch_order(self.symbol, client_order_id=order.client_order_id)
        if found is not None:
            await self._apply(order, found)

    async def _cancel(self, order: TrackedOrder, why: str) -> None:
        result: dict[str, Any] | ExchangeAPIError
        try:
            result = await self.client.cancel_order(order.exchange_order_id, self.symbol,
                                                    client_order_id=order.client_order_id)
        except ExchangeAPIError as exc:
            if isinstance(exc, NetworkError):
                raise
            result = exc
        await self._cancelled(order, result, why)

    async def _cancel_many(self, orders: list[TrackedOrder], why: str) -> None:
        """Cancel resting orders, several in batch requests; each books its own outcome. An uncertain
        answer (NetworkError) is raised after the others are booked: the next tick's sync settles it."""
        if len(orders) < 2:
            for order in orders:
                await self._cancel(order, why)
            return
        keys = [OrderKey(o.exchange_order_id, o.client_order_id) for o in orders]
        results = await self.client.cancel_orders_batch(self.symbol, keys)
        lost: Exception | None = None
        for order, result in zip(orders, results, strict=True):
            if isinstance(result, dict | ExchangeAPIError) and not isinstance(result, NetworkError):
                await self._cancelled(order, result, why)
            else:
                lost = lost or result
        if lost is not None:
            raise lost

    async def _cancelled(self, order: TrackedOrder, result: dict[str, Any] | ExchangeAPIError, why: str) -> None:
        """Book a cancel's answer: the order's final state as the exchange tells it."""
        if isinstance(result, ExchangeAPIError):  # gone already (filled or cancelled): learn what happened
            found = await self.client.fetch_order(self.symbol, client_order_id=order.client_order_id)
            if found is None and order.status == "PENDING" and not self._past_grace(order):
                return  # its create may still arrive: tracked, the sync looks for it again
            if found is None:
                await self._finish(order, "FAILED", error=f"cancel: {result}")
            else:
                await self._apply(order, found)
            return
        if result.get("status") != "cancelled" or not result.get("amount"):
            result = await self.client.fetch_order(self.symbol, client_order_id=order.client_order_id) or result
            if result.get("status") in ("open", "partially_filled"):
                result = dict(result, status="cancelled")
        await self._apply(order, result)
        log.debug("%s: cancelled %s (%s)", self.name, order.client_order_id, why)

    async def _cancel_entry_orders(self) -> None:
        net = self._net_position()
        await self._cancel_many([o for o in self._orders.values() if o.order_type == "limit" and not o.in_flight
                                 and is_entry(intent_of(o), net)], "bot stopped")

    async def _amend(self, order: TrackedOrder, intent: OrderIntent) -> bool:
        """Reprice or resize an unfilled resting limit in place (same ids, one request); False: not
        amendable (partly filled, gone, refused, or its new price would fill at once, which must wait for
        this tick's fills to be booked): the caller cancels it instead."""
        last = self.last_price
        if (order.filled or intent.price is None or order.exchange_order_id is None or last is None
                or (order.side, order.reduce_only) != (intent.side, intent.reduce_only)
                or (intent.price >= last if intent.side == "buy" else intent.price <= last)):
            return False
        key = OrderKey(order.exchange_order_id, order.client_order_id)
        amount = intent.qty if intent.qty != order.qty else None
        price = intent.price if intent.price != order.price else None
        try:
            await self.client.amend_order(self.symbol, key, amount=amount, price=price)
        except ExchangeAPIError as exc:
            log.info("%s: amend of %s refused (%s); cancelling instead", self.name, order.client_order_id, exc)
            return False
        order.qty, order.price = intent.qty, intent.price
        await self._record(order, qty=intent.qty, price=intent.price)
        return True

    async def _sync_orders(self) -> None:
        """Adopt the exchange's view of every resting order; book fills of those that ended."""
        if not self._orders:
            return
        listed, listed_at = await self.market.open_orders(self.symbol)
        by_id = {o["client_order_id"]: o for o in listed}
        for order in [o for o in self._orders.values() if not o.in_flight]:
            seen = by_id.get(order.client_order_id)
            if seen is not None:
                if seen["filled"] != order.filled or _STATUS.get(seen["status"]) != order.status:
                    await self._apply(order, seen)
                continue
            if order.sent_at > listed_at:
                continue  # sent after the list was taken
            found = await self.client.fetch_order(self.symbol, client_order_id=order.client_order_id)
            if found is not None:
                await self._apply(order, found)
            elif self._past_grace(order):
                await self._finish(order, "FAILED", error="not found on the exchange")

    def _past_grace(self, order: TrackedOrder) -> bool:
        """Not found on the exchange, and written too long ago for its create to arrive any more."""
        return self._age(order) >= PENDING_GRACE_S

    def _age(self, order: TrackedOrder) -> float:
        """Seconds since its write-ahead row (infinite: not known)."""
        if order.written_at is None:
            return float("inf")
        return (self.clock() - order.written_at).total_seconds()

    async def _apply(self, order: TrackedOrder, ex: dict[str, Any]) -> None:
        """Record the exchange's state of ``order``; a final one with a fill is booked first."""
        status = _STATUS.get(ex.get("status", ""), "OPEN")
        filled = to_decimal(ex.get("filled") or 0)
        avg = ex.get("avg_price")
        fee = to_decimal(ex.get("fee") or 0)
        order.exchange_order_id = ex.get("id") or order.exchange_order_id
        if status not in FINAL:
            if status != order.status or filled != order.filled:
                part: list[OrderIntent] = []
                if self.strategy.is_ladder and filled > order.filled and avg is not None:
                    # a ladder books a partial fill now (its coins are real), durable with the order's row
                    part = self._book_ladder_fill(order, filled, to_decimal(avg), fee)
                    order.avg_price, order.fee = to_decimal(avg), fee
                order.status, order.filled = status, filled
                await self._record(order, status=status, filled_qty=filled, avg_price=avg, fee=fee)
                if part and self.state in TICKING_STATES and self.last_price is not None:
                    await self._apply_follow_ups(part)
            return
        follow: list[OrderIntent] = []
        if filled > 0 and avg is not None:
            follow = await self._book_fill(order, filled, to_decimal(avg), fee)
        # the final status, its booking and the trade rows it opens or closes: one transaction
        await self._finish(order, status, filled=filled, avg_price=avg, fee=fee)
        if filled > 0:
            crash_point("after_fill_booked")
            if follow and self.state in TICKING_STATES and self.last_price is not None:
                await self._apply_follow_ups(follow)

    async def _record(self, order: TrackedOrder, *, announce: Payload | None = None, **fields: Any) -> None:
        """Write the exchange's view of ``order``, with whatever state changed with it."""
        await self._persist(order_updates=[(order.client_order_id,
                                            {**fields, "exchange_order_id": order.exchange_order_id})],
                            announce=announce)

    async def _finish(self, order: TrackedOrder, status: str, *, filled: Decimal = ZERO,
                      avg_price: Any = None, fee: Decimal = ZERO, error: str = "") -> None:
        self._orders.pop(order.client_order_id, None)
        if status in ("REJECTED", "FAILED"):
            self._pending_entries.pop(order.tag, None)
            self._pending_exits.pop(order.tag, None)
            self._dirty = True
        order.status = status
        ref = self._order_ref(order)
        event: Payload
        if status == "FILLED":
            spot_buy = self.market_type == "spot" and order.side == "buy"  # pays its fee in the coin it buys
            fee_coin = self.symbol.removesuffix(self.quote_coin) if spot_buy else self.quote_coin
            price = to_decimal(avg_price) if avg_price is not None else order.price
            event = OrderFilled(ref, filled, price, fee, fee_coin)
        elif status == "CANCELLED":
            event = OrderCancelled(ref, filled)
        else:
            event = OrderFailed(ref, status, error)
        await self._record(order, announce=event, status=status, filled_qty=filled, avg_price=avg_price, fee=fee)
        self.market.invalidate("orders", self.symbol)

    def _order_ref(self, order: TrackedOrder) -> OrderRef:
        return OrderRef(order.client_order_id, order.tag, self.symbol, order.side, order.order_type, order.qty,
                        order.price, self.quote_coin)

    # ------------------------------------------------------------------ start-up reconcile
    async def _reconcile_orders(self, rows: Sequence[OrderRow] | None = None) -> dict[str, int]:
        """Every non-final order of the bot (``rows``: read already) by orderLinkId: found, adopted; not found,
        FAILED -- unless its create, signed by a process just killed, may still reach the exchange
        (``PENDING_GRACE_S``): that one stays tracked ("unseen") and the ticks look for it again, adopting it
        if it arrives."""
        counts = {"adopted": 0, "filled_while_down": 0, "failed": 0, "open": 0, "unseen": 0}
        for row in rows if rows is not None else await self.db.list_non_final_orders(self.name):
            order = TrackedOrder.from_row(row)
            self._orders[order.client_order_id] = order
            found = await self.client.fetch_order(self.symbol, client_order_id=order.client_order_id)
            if found is None and row.status == "PENDING" and not self._past_grace(order):
                counts["unseen"] += 1
                continue
            if found is None:
                await self._finish(order, "FAILED", error="not found on the exchange at start-up")
                counts["failed"] += 1
                continue
            counts["adopted"] += 1
            if found.get("status") == "filled":
                counts["filled_while_down"] += 1
            await self._apply(order, found)
            if order.client_order_id in self._orders:
                order.status = _STATUS.get(found["status"], "OPEN")
                if row.status == "PENDING":  # sent before the crash, never recorded
                    await self._record(order, status=order.status)
                counts["open"] += 1
        return counts

    async def _find_strangers(self) -> list[str]:
        """orderLinkIds with this bot's prefix that the exchange holds (resting, or recently filled)
        and the database does not know: the database is empty or not this desk's."""
        resting, _ = await self.market.open_orders(self.symbol)
        fills = await self.market.recent_fills(self.symbol)
        links = {o.get("client_order_id") or "" for o in (*resting, *fills)}
        ours = sorted(cid for cid in links if cid.startswith(self.prefix) and cid not in self._orders)
        return [cid for cid in ours if await self.db.get_order(cid) is None]

    async def refuse(self, text: str) -> None:
        """Start-up found on this bot's symbol what the database does not know (``unknown_on_symbol``):
        ERROR until the operator's start; the desk reported it, for every symbol, in one message."""
        self.last_error = text
        async with self._lock:
            await self._set_state(BotState.ERROR, "unknown orders or position on the exchange")

    async def _adopt_strangers(self) -> None:
        """Cancel the resting strangers and record every stranger with what it became; one that
        fills between the look and the cancel is recorded filled (its position is the operator's)."""
        rows, filled = [], []
        for cid in self._strangers:
            found = await self.client.fetch_order(self.symbol, client_order_id=cid)
            if found is not None and found["status"] in ("open", "partially_filled"):
                try:
                    found = await self.client.cancel_order(found.get("id"), self.symbol, client_order_id=cid)
                except (OrderNotFoundError, InvalidOrderError):  # ended meanwhile: adopt what it became
                    found = await self.client.fetch_order(self.symbol, client_order_id=cid)
            if found is None:
                continue
            status = _STATUS.get(found["status"], "CANCELLED")
            rows.append({"client_order_id": cid, "symbol": self.symbol, "side": found["side"],
                         "order_type": found.get("type") or "limit", "qty": found["amount"], "price": found.get("price"),
                         "status": status, "exchange_order_id": found.get("id") or None,
                         "filled_qty": found.get("filled") or ZERO, "avg_price": found.get("avg_price"),
                         "fee": found.get("fee") or ZERO, "reduce_only": bool(found.get("reduce_only")),
                         "tag": "adopted"})
            if found.get("filled"):
                filled.append(f"{found['side']} {found['filled']} @ {found.get('avg_price')}")
        await self._persist(new_orders=rows)
        self._strangers = []
        if filled:
            self._emit(ErrorRaised(f"adopted {len(filled)} filled order(s) the database did not know ("
                                   f"{'; '.join(filled[:5])}); their position on {self.symbol} is not in the "
                                   "bot's book", self.state))



def unknown_on_symbol(bots: list[OrderLifecycle], held: Decimal | None) -> tuple[str, bool] | None:
    """What the exchange holds on the symbol these bots trade (one account) that the database does
    not account for, and whether it is theirs: orders under their id prefixes it does not know (found
    by ``recover``), and a position (``held``: the account's net position there; None: not known, or
    spot, which has no positions) their books do not hold. A position has no order id: it counts as
    theirs when such orders are there too (an empty or foreign database); alone, it is reported but
    may be the operator's own. None when there is nothing."""
    names = ", ".join(b.name for b in bots)
    found = []
    strangers = [cid for bot in bots for cid in bot._strangers]
    if strangers:
        shown = ", ".join(strangers[:5]) + (" ..." if len(strangers) > 5 else "")
        found.append(f"{len(strangers)} order(s) under the id prefix of {names} that the database does not know "
                     f"({shown})")
    books = sum((bot._net_position() for bot in bots), ZERO)
    if held is not None and held != books:
        side = "long" if held > 0 else "short" if held < 0 else "no"
        found.append(f"{side} position{f' of {abs(held)}' if held else ''} where the books of {names} hold {books}")
    if not found:
        return None
    return f"{bots[0].symbol}: " + " and ".join(found), bool(strangers)


def intent_of(order: TrackedOrder) -> OrderIntent:
    return OrderIntent(order.tag, order.side, order.order_type, order.qty, order.price, order.reduce_only)


def is_entry(intent: OrderIntent | TrackedOrder, net_position: Decimal) -> bool:
    """An order that adds exposure (exits: reduce-only, or against the bot's net position)."""
    if intent.reduce_only:
        return False
    if intent.side == "sell" and net_position > 0:
        return False
    if intent.side == "buy" and net_position < 0:
        return False
    return True
