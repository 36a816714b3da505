"""How fast a fill reaches the strategy over the private WebSocket stream, on loopback.

Run: .venv/bin/python bench/bench_streams.py [--fills 300] [--bots 1]

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
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

KEY, SECRET = "bench-key", "bench-secret"


def serve_sim(conn) -> None:
    """The simulator's process: answers ("fill", link) with the monotonic ns of the fill."""
    logging.disable(logging.WARNING)

    async def main() -> None:
        from traderagent.sim import ExchangeSimulator, SimConfig

        sim = ExchangeSimulator(SimConfig(seed=1, speed=0.0))
        sim.add_account(KEY, SECRET, balances={"USDT": Decimal("1000000")})
        conn.send(await sim.start(host="127.0.0.1", port=0))
        loop = asyncio.get_running_loop()
        while True:
            cmd, arg = await loop.run_in_executor(None, conn.recv)
            if cmd == "stop":
                break
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fills", type=int, default=300)
    ap.add_argument("--bots", type=int, default=1)
    args = ap.parse_args()
    logging.basicConfig(level=logging.ERROR)
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
