"""Sends queue without blocking ticks: a tick writes its orders' rows and hands their sends to the
account's queue; the next tick neither sends them again nor takes them for resting; their answer is booked
when it comes (a refusal told, the ladder's level free again); exits overtake the queued entries; a bot's
stop abandons its queued entries. The limiter is held by a turn at the account's order budget that the
test releases (no timing involved)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from decimal import Decimal
from typing import Any

from traderagent.orchestrator.bot_orchestrator import BotOrchestrator
from traderagent.orchestrator.events import EventType
from traderagent.orchestrator.gate import OrderBudget, SendGate
from traderagent.orchestrator.state import BotState

from .helpers import GRID, SIM_KEY, Harness, assert_db_matches_sim, build_desk, creates

WAIT = 30  # generous bounds: each wait returns as soon as its condition holds
CANCELS = ("/v5/order/cancel", "/v5/order/cancel-batch", "/v5/order/amend")


@asynccontextmanager
async def limiter_held(budget: OrderBudget) -> AsyncIterator[asyncio.Event]:
    """Hold the budget's only turn (what a long send at the rate limiter does) until the event is set."""
    release, granted = asyncio.Event(), asyncio.Event()

    async def holder() -> None:
        async with budget.turn("holder"):
            granted.set()
            await release.wait()

    task = asyncio.create_task(holder())
    await asyncio.wait_for(granted.wait(), WAIT)
    try:
        yield release
    finally:
        release.set()
        await task


class WatchedBudget(OrderBudget):
    """One turn at a time; tells when an urgent send (an exit) asks for its turn."""

    def __init__(self) -> None:
        super().__init__(in_flight=1)
        self.urgent_asked = asyncio.Event()

    @asynccontextmanager
    async def turn(self, bot: str, cost: int = 1, urgent: bool = False) -> AsyncIterator[None]:
        if urgent:
            self.urgent_asked.set()  # this task queues in the same step, before the test runs again
        async with super().turn(bot, cost, urgent):
            yield


async def one_grid(sim: Any, db_path: Any) -> tuple[Harness, SendGate, BotOrchestrator, OrderBudget]:
    """A desk with GRID whose account budget lets one send through at a time."""
    h = await build_desk(sim.base_url, db_path, [GRID])
    h.desk.gate.budgets["linear"] = budget = OrderBudget(in_flight=1)
    return h, h.desk.gate, h.desk.bots[GRID.name].bot, budget


async def test_a_tick_ends_while_its_entries_wait_and_the_next_does_not_send_them_again(sim, tmp_path):
    h, gate, bot, budget = await one_grid(sim, tmp_path / "q.db")
    try:
        async with limiter_held(budget) as release:
            assert await asyncio.wait_for(bot.tick(), WAIT)  # ends although its ladder cannot be sent yet
            queued = {o.client_order_id for o in bot.open_orders}
            assert len(queued) > 2 and all(o.in_flight and o.status == "PENDING" for o in bot.open_orders)
            assert creates(sim) == 0 and budget.queued == 1  # the whole ladder: one queued batch
            rows = {r.client_order_id: r.status for r in await h.db.list_orders(limit=100)}
            assert rows == dict.fromkeys(queued, "PENDING")  # written ahead, before any send
            levels = {lv.client_order_id: lv.status for lv in await h.db.get_grid_levels(GRID.name)
                      if lv.client_order_id}
            assert levels == dict.fromkeys(queued, "placing")  # its levels are taken, not empty

            assert await asyncio.wait_for(bot.tick(), WAIT)  # the next tick: nothing sent, cancelled or amended
            assert {o.client_order_id for o in bot.open_orders} == queued
            assert creates(sim) == 0 and budget.queued == 1
            assert not any(sim.request_counts[path] for path in CANCELS)
            release.set()
            await asyncio.wait_for(gate.settled(), WAIT)
        assert creates(sim) == 1 and {o["orderLinkId"] for o in sim.orders(SIM_KEY)} == queued
        assert all(o.status == "OPEN" and not o.in_flight and o.exchange_order_id for o in bot.open_orders)
        assert await assert_db_matches_sim(h, sim) == len(queued)
        placed = [e.data.order.client_order_id for e in h.of(EventType.ORDER_PLACED, GRID.name)]
        assert sorted(placed) == sorted(queued)
        await bot.save()
        assert {lv.status for lv in await h.db.get_grid_levels(GRID.name) if lv.client_order_id} == {"open"}
    finally:
        await h.close()


async def test_a_refusal_answered_after_the_tick_is_booked_and_told(sim, tmp_path):
    """XRPUSDT's minimum order value is raised (110094): the queued ladder is refused after its tick ended;
    each order is REJECTED with the reason, the operator told once, the levels free again, nothing resent."""
    h, gate, bot, budget = await one_grid(sim, tmp_path / "r.db")
    sim.specs["XRPUSDT"] = replace(sim.specs["XRPUSDT"], min_notional=Decimal("1000"))
    try:
        async with limiter_held(budget) as release:
            assert await asyncio.wait_for(bot.tick(), WAIT)
            tags = {o.tag for o in bot.open_orders}
            assert tags and not h.of(EventType.ORDER_FAILED, GRID.name)
            release.set()
            await asyncio.wait_for(gate.settled(), WAIT)
        assert bot.open_orders == [] and bot.state is BotState.RUNNING
        failed = h.of(EventType.ORDER_FAILED, GRID.name)
        assert {e.data.order.tag for e in failed} == tags and all("110094" in e.data.error for e in failed)
        assert {r.status for r in await h.db.list_orders(limit=100)} == {"REJECTED"}
        (alert,) = h.of(EventType.ERROR, GRID.name)
        assert "110094" in alert.data.error and "/start xrp-grid" in alert.data.error
        await bot.save()
        assert not any(lv.client_order_id for lv in await h.db.get_grid_levels(GRID.name))
        sent = creates(sim)
        await h.desk.tick_all()  # the refused intents are not sent again until the operator's start
        assert creates(sim) == sent and bot.open_orders == []
    finally:
        await h.close()


async def test_an_exit_overtakes_the_entries_queued_before_it(sim, tmp_path):
    other = replace(GRID, name="sol-grid", symbol="SOLUSDT")
    h = await build_desk(sim.base_url, tmp_path / "x.db", [GRID, other])
    gate = h.desk.gate
    xrp, sol = h.desk.bots[GRID.name].bot, h.desk.bots[other.name].bot
    sent: list[str] = []
    batch, single = h.client.place_orders_batch, h.client.create_limit_order

    async def record_batch(symbol: str, items: Any) -> Any:
        sent.append(f"batch {symbol}")
        return await batch(symbol, items)

    async def record_single(symbol: str, side: str, *args: Any, **kw: Any) -> Any:
        sent.append(f"{side} {symbol}")
        return await single(symbol, side, *args, **kw)

    try:
        assert await xrp.tick()
        await asyncio.wait_for(gate.settled(), WAIT)
        buy = max((o for o in xrp.open_orders if o.side == "buy"), key=lambda o: o.price or 0)
        h.client.place_orders_batch, h.client.create_limit_order = record_batch, record_single  # type: ignore[method-assign]
        gate.budgets["linear"] = budget = WatchedBudget()
        async with limiter_held(budget) as release:
            assert await asyncio.wait_for(sol.tick(), WAIT)  # sol's ladder queues first
            assert budget.queued == 1
            sim.fill(SIM_KEY, buy.client_order_id)  # xrp's buy fills: its counter sell is an exit
            assert await asyncio.wait_for(xrp.tick(), WAIT)  # books the fill, queues the exit, ends
            await asyncio.wait_for(budget.urgent_asked.wait(), WAIT)
            assert [o.in_flight for o in xrp.open_orders if o.side == "sell"] == [True]
            assert budget.queued == 2 and sent == []
            release.set()
            await asyncio.wait_for(gate.settled(), WAIT)
        assert sent[:2] == ["sell XRPUSDT", "batch SOLUSDT"]
        counter = [o for o in xrp.open_orders if o.side == "sell"]
        assert counter and all(o.status == "OPEN" for o in counter)
        assert all(o.status == "OPEN" for o in sol.open_orders) and sol.open_orders
    finally:
        await h.close()


async def test_a_bot_stopped_while_its_entries_wait_sends_none_of_them(sim, tmp_path):
    h, gate, bot, budget = await one_grid(sim, tmp_path / "s.db")
    try:
        async with limiter_held(budget) as release:
            assert await asyncio.wait_for(bot.tick(), WAIT)
            assert budget.queued == 1
            await asyncio.wait_for(bot.stop("operator"), WAIT)
            release.set()
            await asyncio.wait_for(gate.settled(), WAIT)
        assert creates(sim) == 0 and sim.orders(SIM_KEY) == [] and bot.state is BotState.STOPPED
        assert bot.open_orders == []  # never sent: failed at once by the stop's cancel, not left resting
        assert {r.status for r in await h.db.list_orders(limit=100)} == {"FAILED"}
    finally:
        await h.close()


async def test_a_bot_stopped_while_its_exit_waits_still_sends_the_exit(sim, tmp_path):
    h, gate, bot, budget = await one_grid(sim, tmp_path / "e.db")
    try:
        assert await bot.tick()
        await asyncio.wait_for(gate.settled(), WAIT)
        buy = max((o for o in bot.open_orders if o.side == "buy"), key=lambda o: o.price or 0)
        sim.fill(SIM_KEY, buy.client_order_id)
        async with limiter_held(budget) as release:
            assert await asyncio.wait_for(bot.tick(), WAIT)  # books the fill, queues its counter sell
            [exit_order] = [o for o in bot.open_orders if o.side == "sell"]
            assert exit_order.in_flight
            await asyncio.wait_for(bot.stop("operator"), WAIT)
            release.set()
            await asyncio.wait_for(gate.settled(), WAIT)
        sent = {o["orderLinkId"]: o["orderStatus"] for o in sim.orders(SIM_KEY, open_only=False)}
        assert sent[exit_order.client_order_id] in ("New", "Filled")  # the lot's exit reached the exchange
        assert [o for o in sim.orders(SIM_KEY) if o["side"] == "Buy"] == []  # no entry rests after the stop
        assert exit_order.status == "OPEN" and bot.state is BotState.STOPPED
    finally:
        await h.close()
