"""How fast a fill reaches the strategy over the private WebSocket stream, on loopback; and how many REST
requests the streams save a 1,000-bot tick round.

Run: .venv/bin/python bench/bench_streams.py [--fills 300] [--bots 1]
     .venv/bin/python bench/bench_streams.py --rounds 20 [--bots 1000]     # REST requests per tick round

``--rounds``: ``--bots`` bots (4 per account, the bench_desk mix of symbols and timeframes: 1m, and 1h/15m/5m
for every fourth) read each second what a tick reads of the market (ticker, closed candles of each timeframe,
the forming 1m candle and the last minutes, the free balance, and the open orders unless the account's private
stream is up), the simulator in its own process replaying one 1m candle a second (60x a real market, so candles
close in every round). Once over REST only, once with the public and private streams; prints the REST requests
the desk sent per round (medians over the rounds, the first two rounds of each left out as warm-up) and the
market-data reads per second.

A paper desk (SQLite) with ``--bots`` grid bots on one account trades against the simulator running in its
own process. Each sample: the simulator fills one resting order of a bot and notes the instant
(CLOCK_MONOTONIC, one clock for every process on the host), the desk hears the execution on its private
stream and books it; the latency is from that fill instant to the strategy's ``on_order_filled`` callback.
Fills are spread over the bots in turn; each sample fills the bot's resting order nearest the market (after a
quarter-step nudge of the price, so no counter order is born marketable) and the bot ticks before the next one.
Target: p99 <= 50 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import multiprocessing as mp
import statistics
import sys
import tempfile
import time
from collections import Counter
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

KEY, SECRET = "bench-key", "bench-secret"


def serve_sim(conn, accounts: int = 0, speed: float = 0.0) -> None:
    """The simulator's process: answers ("fill", link) with the monotonic ns of the fill, ("requests", None)
    with its count of REST requests. ``accounts`` more accounts bench-<i>."""
    logging.disable(logging.WARNING)

    async def main() -> None:
        from traderagent.sim import ExchangeSimulator, SimConfig

        sim = ExchangeSimulator(SimConfig(seed=1, speed=speed))
        sim.add_account(KEY, SECRET, balances={"USDT": Decimal("1000000")})
        for i in range(accounts):
            sim.add_account(f"{KEY}-{i}", f"{SECRET}-{i}", balances={"USDT": Decimal("100000")})
        conn.send(await sim.start(host="127.0.0.1", port=0))
        loop = asyncio.get_running_loop()
        while True:
            cmd, arg = await loop.run_in_executor(None, conn.recv)
            if cmd == "stop":
                break
            if cmd == "requests":
                conn.send(dict(sim.request_counts))
                continue
            if cmd == "nudge":  # a quarter of a grid step: no counter order is then born marketable
                sim.set_price(arg, sim.price(arg) * Decimal("1.00125"))
                conn.send(None)
                continue
            if not any(o["orderLinkId"] == arg for o in sim.orders(KEY)):
                conn.send(None)  # filled meanwhile (a counter order the desk has not heard of yet)
                continue
            t0 = time.monotonic_ns()
            sim.fill(KEY, arg)
            conn.send(t0)
        await sim.stop()

    asyncio.run(main())


async def run(url: str, conn, fills: int, n_bots: int, workdir: Path) -> list[float]:
    import aiohttp

    from traderagent.api.bybit_direct_client import ByBitDirectClient
    from traderagent.api.bybit_streams import PrivateStream
    from traderagent.bots import BotSpec
    from traderagent.control import Desk
    from traderagent.database.manager import DatabaseManager
    from traderagent.orchestrator.capital_wiring import load_capital_manager
    from traderagent.orchestrator.market_data import MarketData
    from traderagent.orchestrator.risk import RiskRails

    client = ByBitDirectClient(KEY, SECRET, base_url=url)
    await client.initialize()
    db = DatabaseManager(f"sqlite+aiosqlite:///{workdir / 'bench.db'}")
    await db.initialize()
    capital, persister = await load_capital_manager(db, Decimal(20_000 * n_bots))
    session = aiohttp.ClientSession()
    connected = asyncio.Event()

    def open_stream(c, account):
        async def on_connected() -> None:
            await account.reconcile()
            connected.set()
        return PrivateStream(session, c, on_fill=account.on_fill, on_order=account.on_order,
                             on_connected=on_connected, on_auth_failed=account.on_auth_failed)

    desk = Desk(db, {"linear": client}, capital_manager=capital, capital_persister=persister,
                rails=RiskRails(Decimal("0.01"), Decimal("10"), Decimal("0.9")),
                market_data={"linear": MarketData(client, ttl=0)}, open_fill_stream=open_stream)
    for i in range(n_bots):
        await desk.add_bot(BotSpec(f"grid-{i}", "grid", "XRPUSDT", timeframes=("1m",), tick_seconds=1,
                                   share=Decimal(1) / n_bots, params={"num_levels": 9, "range_pct": "0.02"}))
    heard: dict[str, int] = {}
    arrived = asyncio.Event()
    bots = [h.bot for h in desk.bots.values()]
    for bot in bots:
        original = bot.strategy.on_order_filled

        def hooked(tag, price, qty, fee, _original=original, _bot=bot):
            heard[f"{_bot.name} {tag}"] = time.monotonic_ns()  # the strategy has the fill now
            arrived.set()
            return _original(tag, price, qty, fee)
        bot.strategy.on_order_filled = hooked  # type: ignore[method-assign]
    await desk.start(schedule=False)
    await asyncio.wait_for(connected.wait(), 10)
    await desk.tick_all()
    loop = asyncio.get_running_loop()
    conn.send(("nudge", "XRPUSDT"))
    await loop.run_in_executor(None, conn.recv)
    for _ in range(3):  # book what the nudge filled; the ladders settle
        await desk.tick_all()
    latencies: list[float] = []
    skipped = 0  # the chosen order had filled meanwhile, or the bot had none resting
    try:
        for i in range(fills):
            bot = bots[i % n_bots]
            await bot.tick()  # keep its ladder full
            last = bot.last_price
            resting = [o for o in bot.open_orders if o.status == "OPEN" and o.price is not None and last is not None
                       and (o.price < last if o.side == "buy" else o.price > last)]  # not marketable: resting
            if not resting or last is None:
                skipped += 1
                continue
            # the order nearest the market, as a small move fills it: its counter order then rests
            nearest = min(resting, key=lambda o, p=last: abs(o.price - p))
            key = f"{bot.name} {nearest.tag}"
            heard.pop(key, None)
            arrived.clear()
            conn.send(("fill", nearest.client_order_id))
            t0 = await loop.run_in_executor(None, conn.recv)
            if t0 is None:
                skipped += 1
                continue
            while key not in heard:
                await asyncio.wait_for(arrived.wait(), 10)
                arrived.clear()
            latencies.append((heard[key] - t0) / 1e6)
    finally:
        print(f"  ({skipped} of {fills} samples skipped: no order resting, or it had filled meanwhile)")
        await desk.stop()
        await session.close()
        await client.close()
        await db.close()
    return latencies


async def tick_round(url: str, conn, n_bots: int, rounds: int,
                     streamed: bool) -> tuple[list[int], list[int], float, str]:
    """(REST requests the desk sent per round, the simulator's count per round, market reads per second,
    the paths most requested)."""

    from traderagent.api.bybit_direct_client import ByBitDirectClient
    from traderagent.api.bybit_streams import PrivateStream, PublicStreams, stream_session
    from traderagent.orchestrator.market_data import MarketData

    sys.path.insert(0, str(Path(__file__).parent))
    from bench_desk import bot_specs

    session = stream_session()  # a socket per account, held
    public_streams = PublicStreams(session, url) if streamed else None
    specs = bot_specs(n_bots, 1.0)
    accounts = (n_bots + 3) // 4
    clients = [ByBitDirectClient(f"{KEY}-{i}", f"{SECRET}-{i}", base_url=url, connection_limit=20)
               for i in range(accounts)]
    public = MarketData(clients[0], streams=public_streams)
    markets = [MarketData(c, public=public) for c in clients]
    private: list[PrivateStream] = []
    if streamed:
        async def nothing(_: object) -> None:
            return None
        for md, client in zip(markets, clients, strict=True):
            stream = PrivateStream(session, client, on_fill=nothing, on_order=nothing,
                                   on_position=md.on_positions, on_wallet=md.on_wallet)
            md.account_stream = stream
            private.append(stream)
            stream.start()
        await asyncio.wait_for(asyncio.gather(*(s.conn.wait_until(lambda s=s: s.healthy) for s in private)), 120)

    async def tick(i: int) -> None:
        md, spec = markets[i // 4], specs[i]
        await md.ticker(spec.symbol)
        await md.frames(spec.symbol, tuple(spec.timeframes), 200)
        await md.forming_minute(spec.symbol)
        await md.minutes(spec.symbol, 3)
        await md.free_balance("USDT")
        if md.account_stream is None or not md.account_stream.healthy:
            await md.open_orders(spec.symbol)

    loop = asyncio.get_running_loop()
    sent, seen, busy = [], [], 0.0
    paths: Counter[str] = Counter()
    try:
        for r in range(rounds + 2):
            started = loop.time()
            desk0 = public.requests + sum(m.requests for m in markets)
            conn.send(("requests", None))
            sim0 = await loop.run_in_executor(None, conn.recv)
            t0 = loop.time()
            await asyncio.gather(*(tick(i) for i in range(n_bots)))
            reads = loop.time() - t0
            desk1 = public.requests + sum(m.requests for m in markets)
            conn.send(("requests", None))
            sim1 = await loop.run_in_executor(None, conn.recv)
            if r >= 2:  # warm-up: the first reads, the streams connecting
                sent.append(desk1 - desk0)
                seen.append(sum(sim1.values()) - sum(sim0.values()))
                paths.update({p: n - sim0.get(p, 0) for p, n in sim1.items()})
                busy += reads
            await asyncio.sleep(max(0.0, 1.0 - (loop.time() - started)))
    finally:
        if public_streams is not None:
            await public_streams.close()
        await asyncio.gather(*(s.close() for s in private))
        await asyncio.gather(*(c.close() for c in clients))
        await session.close()
    busiest = ", ".join(f"{p} {n / rounds:.0f}" for p, n in paths.most_common(3) if n)
    return sent, seen, n_bots * rounds / busy, busiest or "none"


def rest_rounds(n_bots: int, rounds: int) -> None:
    print(f"REST requests per tick round, {n_bots} bots ({(n_bots + 3) // 4} accounts), {rounds} rounds, "
          f"sim in its own process at one 1m candle a second")
    figures = {}
    for streamed in (False, True):
        parent, child = mp.Pipe()
        proc = mp.get_context("spawn").Process(target=serve_sim, args=(child, (n_bots + 3) // 4, 1.0), daemon=True)
        proc.start()
        try:
            url = parent.recv()
            figures[streamed] = asyncio.run(tick_round(url, parent, n_bots, rounds, streamed))
        finally:
            parent.send(("stop", None))
            proc.join(10)
        sent, seen, rate, busiest = figures[streamed]
        label = "streams  " if streamed else "REST only"
        print(f"  {label}: desk sent median {statistics.median(sent):.0f}/round (max {max(sent)}), simulator "
              f"counted median {statistics.median(seen):.0f}/round ({busiest} per round); "
              f"{rate:,.0f} bot market reads/s")
    saved = statistics.median(figures[False][0]) - statistics.median(figures[True][0])
    print(f"  saved: {saved:.0f} REST requests per {n_bots}-bot tick round (median)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fills", type=int, default=300)
    ap.add_argument("--bots", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=0, help="measure REST requests per tick round instead")
    args = ap.parse_args()
    logging.basicConfig(level=logging.ERROR)
    if args.rounds:
        rest_rounds(args.bots if args.bots > 1 else 1000, args.rounds)
        return
    parent, child = mp.Pipe()
    proc = mp.get_context("spawn").Process(target=serve_sim, args=(child,), daemon=True)
    proc.start()
    try:
        url = parent.recv()
        with tempfile.TemporaryDirectory() as tmp:
            lat = asyncio.run(run(url, parent, args.fills, args.bots, Path(tmp)))
    finally:
        parent.send(("stop", None))
        proc.join(10)
    lat.sort()
    p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))]
    print(f"fill -> strategy over the private stream, {len(lat)} fills, {args.bots} bot(s), sim in its own process")
    print(f"  p50 {statistics.median(lat):.2f} ms   p90 {lat[int(len(lat) * 0.9)]:.2f} ms   p99 {p99:.2f} ms   "
          f"max {lat[-1]:.2f} ms   (target p99 <= 50 ms: {'met' if p99 <= 50 else 'MISSED'})")


if __name__ == "__main__":
    main()
