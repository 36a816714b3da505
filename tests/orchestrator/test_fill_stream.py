"""A desk hearing fills on the simulator's private stream: booked once across a dropped socket, no per-tick
poll while the stream is healthy, and a refused key stops the account's bots naming the cause."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from decimal import Decimal
from typing import Any

import aiohttp

from traderagent.api.bybit_direct_client import ByBitDirectClient
from traderagent.api.bybit_streams import PrivateStream
from traderagent.orchestrator.events import EventType
from traderagent.orchestrator.fill_stream import AccountFills
from traderagent.orchestrator.risk import RiskRails
from traderagent.orchestrator.state import BotState

from .helpers import (
    DCA,
    GRID,
    SIM_KEY,
    SIM_SECRET,
    Clock,
    Harness,
    assert_db_matches_sim,
    build_desk,
    run_ticks,
)


class Streamed:
    """The desk's stream factory, with queues a test awaits: reconnects reconciled, fills booked, refusals."""

    def __init__(self, session: aiohttp.ClientSession, secret: str = SIM_SECRET) -> None:
        self.session, self.secret = session, secret
        self.reconciled: asyncio.Queue[int] = asyncio.Queue()
        self.booked: asyncio.Queue[str] = asyncio.Queue()
        self.refused: asyncio.Queue[str] = asyncio.Queue()
        self.positions: asyncio.Queue[list[dict[str, Any]]] = asyncio.Queue()
        self.wallets: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.fills: AccountFills | None = None
        self.stream: PrivateStream | None = None

    def __call__(self, client: Any, fills: AccountFills) -> PrivateStream:
        self.fills = fills
        fills.on_booked = lambda f: self.booked.put_nowait(f.client_order_id)
        if self.secret != SIM_SECRET:
            client = ByBitDirectClient(SIM_KEY, self.secret, base_url=client.base_url)

        async def connected() -> None:
            await fills.reconcile()
            self.reconciled.put_nowait(1)

        async def refused(cause: str) -> None:
            await fills.on_auth_failed(cause)
            self.refused.put_nowait(cause)

        def positions(rows: list[dict[str, Any]]) -> None:
            fills.on_positions(rows)
            self.positions.put_nowait(rows)

        def wallet(balance: dict[str, Any]) -> None:
            fills.on_wallet(balance)
            self.wallets.put_nowait(balance)

        self.stream = PrivateStream(self.session, client, on_fill=fills.on_fill, on_order=fills.on_order,
                                    on_position=positions, on_wallet=wallet,
                                    on_connected=connected, on_auth_failed=refused)
        return self.stream


async def streamed_desk(sim, tmp_path, streamed: Streamed, specs: list | None = None, **kwargs: Any) -> Harness:
    h = await build_desk(sim.base_url, tmp_path / "desk.db", specs or [GRID], start=False, **kwargs)
    h.desk.open_fill_stream = streamed
    await h.desk.start(schedule=False)
    return h


async def wait(q: asyncio.Queue, n: int = 1) -> list:
    return [await asyncio.wait_for(q.get(), 10) for _ in range(n)]


def filled_per_order(h: Harness) -> Counter[str]:
    return Counter(e.data.order.client_order_id for e in h.of(EventType.ORDER_FILLED))


async def _filled_on_sim_only(h: Harness, sim: Any) -> set[str]:
    """The bots' orders the simulator filled whose fill the database does not hold yet."""
    rows = {r.client_order_id: r.status for r in await h.db.list_orders(limit=1000)}
    return {o["orderLinkId"] for o in sim.orders(SIM_KEY, open_only=False)
            if o["orderStatus"] == "Filled" and o["orderLinkId"] and rows.get(o["orderLinkId"]) != "FILLED"}


async def test_fills_in_a_dropped_socket_gap_are_booked_exactly_once(sim, tmp_path):
    async with aiohttp.ClientSession() as session:
        streamed = Streamed(session)
        h = await streamed_desk(sim, tmp_path, streamed)
        try:
            await wait(streamed.reconciled)
            grid = h.desk.bots["xrp-grid"].bot
            await h.desk.tick_all()
            resting = [o.client_order_id for o in grid.open_orders]
            assert len(resting) >= 3
            sim.fill(SIM_KEY, resting[0])  # heard on the stream
            assert await wait(streamed.booked) == [resting[0]]

            sim.streams.hold()  # the socket drops and cannot come back yet: fills now go unheard
            assert await sim.streams.drop_all() == 1
            sim.fill(SIM_KEY, resting[1])
            assert streamed.booked.empty()
            row = next(e for e in sim.executions(SIM_KEY) if e["orderLinkId"] == resting[1])
            sim.streams.release()
            await wait(streamed.reconciled)  # reconnected; the REST reconcile booked the gap's fill
            assert resting[1] not in {o.client_order_id for o in grid.open_orders}

            sim.streams.inject(json.dumps({"topic": "execution", "id": "x", "creationTime": 1, "data": [row]}))
            sim.fill(SIM_KEY, resting[2])  # heard on the new socket, after the replayed row
            booked = [resting[0]]
            while resting[2] not in booked:  # grid counter orders that fill at once are heard too
                booked += await wait(streamed.booked)
            await h.desk.tick_all()
            while True:  # sends queue beside the bookings: a counter order that fills at once is heard after
                for fills, _ in h.desk.fill_streams:
                    await fills.drain()  # the bookings under way, and the orders they queue
                await h.desk.gate.settled()
                if not await _filled_on_sim_only(h, sim):
                    break
                booked += await wait(streamed.booked)
            assert len(booked) == len(set(booked)) and resting[1] not in booked, booked
            await h.desk.event_bus.drain(5)
            counts = filled_per_order(h)
            assert all(counts[link] == 1 for link in resting[:3]), counts
            assert max(counts.values()) == 1
            await assert_db_matches_sim(h, sim)
        finally:
            await h.close()


async def test_healthy_stream_replaces_the_per_tick_poll(sim, tmp_path):
    async with aiohttp.ClientSession() as session:
        streamed = Streamed(session)
        h = await streamed_desk(sim, tmp_path, streamed)
        try:
            await wait(streamed.reconciled)
            await h.desk.tick_all()
            before = sim.request_counts["/v5/order/realtime"]
            for _ in range(3):
                await h.desk.tick_all()
            assert sim.request_counts["/v5/order/realtime"] == before
            sim.streams.hold()
            await sim.streams.drop_all()
            await h.desk.tick_all()  # the stream is down: the tick polls again
            assert sim.request_counts["/v5/order/realtime"] > before
            sim.streams.release()
        finally:
            await h.close()


async def test_orders_waiting_in_the_send_queue_are_not_polled_for(sim, tmp_path, monkeypatch):
    """A PENDING order still in the send queue is booked by its answer: the tick lists no orders for it."""
    async with aiohttp.ClientSession() as session:
        streamed = Streamed(session)
        h = await streamed_desk(sim, tmp_path, streamed)
        release = asyncio.Event()
        real = h.client.place_orders_batch

        async def held(*args: Any, **kwargs: Any) -> Any:
            await release.wait()
            return await real(*args, **kwargs)

        monkeypatch.setattr(h.client, "place_orders_batch", held)
        try:
            await wait(streamed.reconciled)
            bot = h.desk.bots[GRID.name].bot
            for _ in range(10):  # the ladder is placed once the grid has its candles
                await bot.tick()
                if bot.open_orders:
                    break
            assert bot.open_orders and all(o.in_flight and o.status == "PENDING" for o in bot.open_orders)
            before = sim.request_counts["/v5/order/realtime"]
            await bot.tick()
            assert sim.request_counts["/v5/order/realtime"] == before
            release.set()
            await h.desk.gate.settled()
            assert all(o.status == "OPEN" for o in bot.open_orders)
        finally:
            release.set()
            await h.close()


async def test_a_bot_taken_over_hears_its_fills_on_a_stream_opened_for_it(sim, tmp_path):
    """Desk B starts with nothing to run (desk A holds the grid): no stream. When A stops renewing,
    B takes the grid over and opens the account's stream for it (a worker's usual path)."""
    clock = Clock()
    a = await build_desk(sim.base_url, tmp_path / "desk.db", [GRID], clock=clock, lease_owner="desk-A")
    async with aiohttp.ClientSession() as session:
        streamed = Streamed(session)
        b = await build_desk(sim.base_url, tmp_path / "desk.db", [GRID], clock=clock, lease_owner="desk-B",
                             start=False)
        b.desk.open_fill_stream = streamed
        try:
            await b.desk.start(schedule=False)
            assert not b.desk.bots and not b.desk.fill_streams
            await run_ticks(a, sim, 2)
            clock.advance(seconds=21)  # A froze: its lease expires
            await b.desk.check_leases()
            grid = b.desk.bots["xrp-grid"].bot
            assert b.desk.fill_streams == [(streamed.fills, streamed.stream)] and streamed.fills.bots == [grid]
            await wait(streamed.reconciled)
            resting = [o.client_order_id for o in grid.open_orders]  # placed by A, recovered by orderLinkId
            sim.fill(SIM_KEY, resting[0])
            assert await wait(streamed.booked) == [resting[0]]
        finally:
            await b.close()
            await a.close()


async def test_refused_stream_key_stops_the_accounts_bots_naming_the_cause(sim, tmp_path):
    async with aiohttp.ClientSession() as session:
        streamed = Streamed(session, secret="not-the-secret")
        h = await streamed_desk(sim, tmp_path, streamed)
        try:
            assert await wait(streamed.refused) == ["Params Error"]
            grid = h.desk.bots["xrp-grid"].bot
            assert grid.state is BotState.ERROR and grid.fill_stream is None
            await h.desk.event_bus.drain(5)
            errors = [e.data.error for e in h.of(EventType.ERROR, "xrp-grid")]
            assert any("private stream" in text and "Params Error" in text for text in errors), errors
        finally:
            await h.close()


async def test_position_and_wallet_pushes_reach_positions_balance_and_the_liquidation_check(sim, tmp_path):
    """The liquidation check (and /status after it), the free balance read what the private stream pushed: one
    REST read of each when the stream comes up, none after."""
    async with aiohttp.ClientSession() as session:
        streamed = Streamed(session)
        rails = RiskRails(Decimal("0.01"), Decimal("5"), Decimal("0.5"), liquidation_alert=Decimal("0.99"))
        h = await streamed_desk(sim, tmp_path, streamed, rails=rails)
        try:
            await wait(streamed.reconciled)
            market = h.desk.bots["xrp-grid"].bot.market
            await h.desk.check_perp()  # the positions read over REST once
            assert (await h.desk.desk_status()).exchange_positions == ()
            before = await market.free_balance("USDT")  # the same
            assert before == sim.available(SIM_KEY)
            rest = Counter({p: sim.request_counts[p] for p in ("/v5/position/list", "/v5/account/wallet-balance")})

            wallet = sim.balance(SIM_KEY)["USDT"]
            await h.client.create_market_order("BTCUSDT", "buy", Decimal("0.01"))
            rows: list[dict[str, Any]] = []
            while not any(r["size"] for r in rows):
                rows = (await wait(streamed.positions))[0]
            while (await wait(streamed.wallets))[0]["total"]["USDT"] == wallet:  # until the fill's fee is in
                pass
            await h.desk.check_perp()
            (held,) = (await h.desk.desk_status()).exchange_positions  # as that check read them
            wire = sim.positions(SIM_KEY)[0]
            assert (held.symbol, held.side, held.size) == ("BTCUSDT", "long", Decimal("0.01"))
            assert (held.entry_price, held.liq_price, held.margin) == (
                Decimal(wire["avgPrice"]), Decimal(wire["liqPrice"]), Decimal(wire["positionIM"]))
            free = await market.free_balance("USDT")
            await h.desk.event_bus.drain(5)
            (alert,) = h.of(EventType.LIQUIDATION_RISK)
            assert alert.data.symbol == "BTCUSDT"
            assert {p: sim.request_counts[p] for p in rest} == rest  # not one more REST read of either
            assert free == (await h.client.fetch_balance())["free"]["USDT"] < before  # the margin and fee it took
        finally:
            await h.close()
            await session.close()


async def test_a_reconcile_lists_the_accounts_orders_once_for_all_its_bots(sim, tmp_path, monkeypatch):
    """The backstop runs every minute for every account: its bots share one listing taken after it began."""
    sim.set_price("XRPUSDT", Decimal("0.5"))
    async with aiohttp.ClientSession() as session:
        streamed = Streamed(session)
        h = await build_desk(sim.base_url, tmp_path / "desk.db", [GRID, DCA], start=False)
        h.desk.open_fill_stream = streamed
        await h.desk.start(schedule=False)
        try:
            await wait(streamed.reconciled)
            for _ in range(3):
                await h.desk.tick_all()
            bots = [h.desk.bots[spec.name].bot for spec in (GRID, DCA)]
            assert all(bot.open_orders for bot in bots) and bots[0].market is bots[1].market
            bots[0].market.ttl = 3600.0  # a listing is shared for as long as it is fresh
            await bots[0].market.open_orders(GRID.symbol)  # a fresh listing from before the reconcile...
            listed: list[Any] = []
            real = bots[0].client.fetch_open_orders

            async def counted(*args: Any, **kwargs: Any) -> Any:
                listed.append(args)
                return await real(*args, **kwargs)

            monkeypatch.setattr(bots[0].client, "fetch_open_orders", counted)
            assert streamed.fills is not None
            await streamed.fills.reconcile()
            assert len(listed) == 1  # ...is not trusted, and the new one serves both bots
        finally:
            await h.close()
