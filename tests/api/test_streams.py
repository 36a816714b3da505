"""bybit_streams against the simulator's WebSocket: fills, reconnect with resubscribe, bad messages, auth failure."""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal
from typing import Any

import aiohttp
import pytest

from tests.conftest import SIM_KEY, SIM_SECRET
from traderagent.api.bybit_direct_client import ByBitDirectClient
from traderagent.api.bybit_streams import PrivateStream, PublicStreams, StreamFill, ws_base


class Heard:
    """The stream's callbacks, as queues a test awaits (never sleeps on)."""

    def __init__(self) -> None:
        self.fills: asyncio.Queue[StreamFill] = asyncio.Queue()
        self.orders: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.connected: asyncio.Queue[int] = asyncio.Queue()
        self.auth_failed: asyncio.Queue[str] = asyncio.Queue()

    async def fill(self, f: StreamFill) -> None:
        self.fills.put_nowait(f)

    async def order(self, o: dict[str, Any]) -> None:
        self.orders.put_nowait(o)


@pytest.fixture
async def session():
    async with aiohttp.ClientSession() as s:
        yield s


async def open_private(session, sim, secret: str = SIM_SECRET) -> tuple[PrivateStream, Heard, ByBitDirectClient]:
    client = ByBitDirectClient(SIM_KEY, secret, base_url=sim.base_url)
    heard = Heard()
    stream = PrivateStream(session, client, on_fill=heard.fill, on_order=heard.order,
                           on_connected=lambda: heard.connected.put_nowait(1),
                           on_auth_failed=heard.auth_failed.put_nowait)
    stream.start()
    return stream, heard, client


async def place(client: ByBitDirectClient, link: str, price: str = "1000") -> None:
    await client.create_limit_order("BTCUSDT", "buy", Decimal("0.01"), Decimal(price), client_order_id=link)


def test_ws_base_maps_rest_hosts():
    assert ws_base("https://api.bybit.com") == "wss://stream.bybit.com"
    assert ws_base("https://api-demo.bybit.com") == "wss://stream-demo.bybit.com"
    assert ws_base("http://127.0.0.1:8000") == "ws://127.0.0.1:8000"


async def test_fill_heard_then_socket_dropped_reconnects_and_resubscribes(session, sim):
    stream, heard, client = await open_private(session, sim)
    try:
        await asyncio.wait_for(heard.connected.get(), 5)
        await client.initialize()
        await place(client, "s-1")
        sim.fill(SIM_KEY, "s-1")
        fill = await asyncio.wait_for(heard.fills.get(), 5)
        assert (fill.client_order_id, fill.qty, fill.cum_filled, fill.price) == ("s-1", Decimal("0.01"),
                                                                               Decimal("0.01"), Decimal("1000"))
        assert await sim.streams.drop_all() == 1
        await asyncio.wait_for(heard.connected.get(), 5)  # re-authed and resubscribed
        await place(client, "s-2")
        sim.fill(SIM_KEY, "s-2")
        assert (await asyncio.wait_for(heard.fills.get(), 5)).client_order_id == "s-2"
        assert stream.conn.connects == 2
    finally:
        await stream.close()
        await client.close()


async def test_malformed_unknown_and_out_of_order_messages_are_skipped(session, sim):
    stream, heard, client = await open_private(session, sim)
    try:
        await asyncio.wait_for(heard.connected.get(), 5)
        await client.initialize()
        await place(client, "m-1")
        sim.fill(SIM_KEY, "m-1")
        good = await asyncio.wait_for(heard.fills.get(), 5)
        row = sim.executions(SIM_KEY)[0]
        sim.streams.inject("{not json")
        sim.streams.inject(json.dumps({"topic": "greeks", "data": []}))
        sim.streams.inject(json.dumps({"topic": "execution", "data": "oops"}))
        sim.streams.inject(json.dumps({"topic": "execution", "data": [{"execId": "x"}]}))  # fields missing
        sim.streams.inject(json.dumps({"topic": "execution", "data": [row]}))  # the same execId again
        older = {**row, "execId": "older", "seq": row["seq"] - 1}
        sim.streams.inject(json.dumps({"topic": "execution", "data": [older]}))
        await place(client, "m-2")
        sim.fill(SIM_KEY, "m-2")
        after = await asyncio.wait_for(heard.fills.get(), 5)
        assert (good.client_order_id, after.client_order_id) == ("m-1", "m-2")  # nothing between them
        assert heard.fills.empty() and stream.healthy
        assert stream.conn.skipped == 5  # the unknown topic is logged, not counted as bad
    finally:
        await stream.close()
        await client.close()


async def test_auth_failure_stops_the_stream_naming_the_cause(session, sim):
    stream, heard, client = await open_private(session, sim, secret="wrong-secret")
    try:
        assert await asyncio.wait_for(heard.auth_failed.get(), 5) == "Params Error"
        assert stream.conn._task is not None
        await asyncio.wait_for(stream.conn._task, 5)  # ended: retrying a refused key cannot help
        assert not stream.healthy and heard.connected.empty()
    finally:
        await stream.close()
        await client.close()


async def test_public_topic_shared_by_every_watcher(session, sim):
    public = PublicStreams(session, sim.base_url)
    got: list[asyncio.Queue[dict]] = [asyncio.Queue(), asyncio.Queue()]
    try:
        for q in got:
            await public.watch("linear", "tickers.BTCUSDT", q.put_nowait)
        await asyncio.wait_for(sim.streams.subscribed("tickers.BTCUSDT"), 5)
        for q in got:
            await asyncio.wait_for(q.get(), 5)  # the snapshot after subscribing
        sim.set_price("BTCUSDT", Decimal("21000"))
        for q in got:
            assert Decimal((await asyncio.wait_for(q.get(), 5))["data"]["lastPrice"]) == Decimal("21000")
        conn = public.connection("linear")
        assert conn is not None and conn.topics == ["tickers.BTCUSDT"]
        assert len([s for s in sim.streams.sockets if s.category == "linear"]) == 1
    finally:
        await public.close()
