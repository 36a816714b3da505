"""MarketData fed by the simulator's public stream: ticks read tickers and candles without REST, a dropped socket
falls back to REST and resumes without a duplicate or missing candle, bad pushes never overwrite a candle."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from decimal import Decimal
from types import SimpleNamespace

import aiohttp
import pytest

from tests.conftest import SIM_KEY, SIM_SECRET
from traderagent.api.bybit_direct_client import ByBitDirectClient
from traderagent.api.bybit_streams import PublicStreams
from traderagent.api.markets import klines_to_frame
from traderagent.orchestrator.market_data import MarketData

SYMBOL = "BTCUSDT"
TOPICS = ("tickers.BTCUSDT", "kline.1.BTCUSDT", "kline.5.BTCUSDT")
MARKET_PATHS = ("/v5/market/kline", "/v5/market/tickers")


class Fed:
    """A MarketData on the simulator's public stream, with a queue per topic that hears each push after the
    MarketData has applied it (watchers run in the order they watched)."""

    def __init__(self, session: aiohttp.ClientSession, sim) -> None:
        self.sim = sim
        self.streams = PublicStreams(session, sim.base_url)
        self.client = ByBitDirectClient(SIM_KEY, SIM_SECRET, base_url=sim.base_url)
        self.md = MarketData(self.client, ttl=0, streams=self.streams)
        self.heard: dict[str, asyncio.Queue[dict]] = {t: asyncio.Queue() for t in TOPICS}

    async def read(self) -> tuple[dict, dict, list, list]:
        return (await self.md.ticker(SYMBOL), await self.md.frames(SYMBOL, ("1m", "5m"), 30),
                await self.md.forming_minute(SYMBOL), await self.md.minutes(SYMBOL, 4))

    async def start(self) -> None:
        await self.read()  # the first read subscribes every topic it uses
        for topic, q in self.heard.items():
            await self.streams.watch("linear", topic, q.put_nowait)
        await self.until(lambda: self.healthy)
        await self.read()  # in step from here: read over REST once since the connection came up

    async def until(self, condition: Callable[[], bool]) -> None:
        """Return as soon as ``condition`` holds, checked as the connection comes up or drops (a 30 s bound)."""
        conn = self.streams.connection("linear")
        assert conn is not None
        await asyncio.wait_for(conn.wait_until(condition), 30)

    @property
    def healthy(self) -> bool:
        conn = self.streams.connection("linear")
        return conn is not None and conn.healthy

    async def hear(self, topic: str, match: Callable[[dict], bool] = lambda msg: True) -> dict:
        """The next push on ``topic`` that ``match``es (earlier ones are passed over)."""
        while True:
            msg = await asyncio.wait_for(self.heard[topic].get(), 30)
            if match(msg):
                return msg

    async def step(self) -> None:
        """One 1m candle closes on the simulator; returns once the stream carried all it pushed for it (the
        new 1m candle comes last)."""
        self.sim.step(SYMBOL)
        live = self.sim.series[SYMBOL].live.ts
        await self.hear("kline.1.BTCUSDT", lambda m: m["data"][0]["start"] == live and not m["data"][0]["confirm"])

    async def set_price(self, price: Decimal) -> None:
        self.sim.set_price(SYMBOL, price)
        await self.hear("tickers.BTCUSDT", lambda m: Decimal(m["data"]["lastPrice"]) == price)

    def market_requests(self) -> int:
        return sum(self.sim.request_counts[p] for p in MARKET_PATHS)

    async def close(self) -> None:
        await self.streams.close()
        await self.client.close()


@pytest.fixture
async def fed(sim):
    async with aiohttp.ClientSession() as session:
        f = Fed(session, sim)
        try:
            yield f
        finally:
            await f.close()


async def rest_frame(sim, interval: str, count: int):
    """The simulator's closed candles over a client of its own (not counted against the desk's)."""
    async with ByBitDirectClient(SIM_KEY, SIM_SECRET, base_url=sim.base_url) as client:
        rows = await client.fetch_klines(SYMBOL, interval, limit=count + 1)
    return klines_to_frame(rows[:-1]), rows[-1]


async def test_ticks_read_tickers_and_candles_from_the_stream_without_rest(fed, sim):
    await fed.start()
    before, md_before = fed.market_requests(), fed.md.requests
    for i in range(7):  # candles close, the price moves: all of it pushed
        await fed.set_price(Decimal(20000 + 10 * i))
        await fed.step()
        ticker, frames, forming, minutes = await fed.read()
        assert ticker["last"] == sim.price(SYMBOL)
        assert int(forming[0]) == sim.series[SYMBOL].live.ts and len(minutes) == 4 and minutes[-1] == forming
    assert (fed.market_requests(), fed.md.requests) == (before, md_before)  # not one market request
    one, forming_rest = await rest_frame(sim, "1", 30)
    five, _ = await rest_frame(sim, "5", 30)
    assert frames["1m"].equals(one) and frames["5m"].equals(five)  # the same candles REST lists
    assert forming == forming_rest


async def test_a_dropped_socket_falls_back_to_rest_and_resumes_without_duplicate_or_missing_candles(fed, sim):
    await fed.start()
    conn = fed.streams.connection("linear")
    assert conn is not None
    sim.streams.hold()
    await sim.streams.drop_all()
    await fed.until(lambda: not fed.healthy)
    polled = fed.market_requests()
    for _ in range(3):  # candles close unheard
        sim.step(SYMBOL)
    ticker, frames, _, _ = await fed.read()
    assert fed.market_requests() > polled  # read over REST while the stream is down...
    assert ticker["last"] == sim.price(SYMBOL) and frames["1m"].equals((await rest_frame(sim, "1", 30))[0])
    sim.streams.release()
    await fed.until(lambda: fed.healthy and conn.connects == 2)
    await fed.read()  # out of step since the reconnect: read over REST once, which fills the gap
    for topic in ("kline.1.BTCUSDT", "kline.5.BTCUSDT", "tickers.BTCUSDT"):
        await sim.streams.subscribed(topic)
    resumed = fed.market_requests()
    for _ in range(6):
        await fed.step()
    _, frames, _, _ = await fed.read()
    assert fed.market_requests() == resumed  # streamed again
    one = frames["1m"]
    assert one.index.is_unique and one.index.is_monotonic_increasing
    assert (one.index[1:] - one.index[:-1]).max() == one.index[1] - one.index[0]  # no candle missing
    assert one.equals((await rest_frame(sim, "1", 30))[0]) and frames["5m"].equals((await rest_frame(sim, "5", 30))[0])


async def test_repeated_and_older_candles_never_overwrite_a_gap_reads_again(fed, sim):
    await fed.start()
    frames = (await fed.read())[1]
    last = frames["1m"].index[-1]
    start = int(last.timestamp() * 1000)
    bad = {"start": start, "end": start + 59_999, "interval": "1", "open": "1", "high": "1", "low": "1",
           "close": "1", "volume": "1", "turnover": "1", "timestamp": 0}
    for bar in ({**bad, "confirm": True}, {**bad, "confirm": False}, {**bad, "start": start - 60_000, "confirm": True}):
        sim.streams.inject(json.dumps({"topic": "kline.1.BTCUSDT", "type": "snapshot", "ts": 0, "data": [bar]}),
                           "linear")
        await fed.hear("kline.1.BTCUSDT", lambda m, b=bar: m["data"][0] == b)
    before = fed.market_requests()
    again = (await fed.read())[1]["1m"]
    assert again.equals(frames["1m"]) and fed.market_requests() == before  # skipped, still in step
    ahead = {**bad, "start": start + 10 * 60_000, "confirm": False}  # candles missing before it
    sim.streams.inject(json.dumps({"topic": "kline.1.BTCUSDT", "type": "snapshot", "ts": 0, "data": [ahead]}),
                       "linear")
    await fed.hear("kline.1.BTCUSDT", lambda m: m["data"][0] == ahead)
    klines = sim.request_counts["/v5/market/kline"]
    await fed.read()
    assert sim.request_counts["/v5/market/kline"] == klines + 1  # out of step: that book alone read again
    assert fed.md.forming_open_ms(SYMBOL, "1m") == sim.series[SYMBOL].live.ts  # read again: the true candle


async def test_positions_take_the_mark_of_the_ticker_stream(fed, sim):
    """Position pushes follow orders, not the mark: the liquidation distance needs the ticker's mark price."""
    await fed.start()
    await fed.client.create_market_order(SYMBOL, "buy", Decimal("0.01"))
    fed.md.account_stream = SimpleNamespace(healthy=True, connects=1)  # a private stream that is up
    (row,) = await fed.md.positions()  # read over REST once
    lists = sim.request_counts["/v5/position/list"]
    await fed.set_price(row["entry_price"] - 1000)
    (moved,) = await fed.md.positions()
    assert moved["mark_price"] == sim.price(SYMBOL) == row["entry_price"] - 1000
    assert moved["unrealized_pnl"] == Decimal("-10") and moved["liq_price"] == row["liq_price"]
    assert sim.request_counts["/v5/position/list"] == lists
