"""Telegram frontend benchmark: /status latency with 100 bots, and a 1,000-event burst at Telegram's pace.

    .venv/bin/python bench/bench_telegram.py [--bots 100] [--commands 200] [--events 1000]

Setup (all in one process, offline): the exchange simulator (speed 0) on 127.0.0.1, a real Desk with
``--bots`` real orchestrators (a rotation of grid / DCA / trend follower over XRP/SOL/BTC/ETH) on a
SQLite database, one tick so the bots hold orders and positions, then the real PTB Application from
``handlers.app.build_application`` polling the fake Bot API server (tests/fakes/telegram_server.py).

1. /status: ``--commands`` updates are injected one after another (the next 50 ms after the previous
   reply); latency is the time from when the reply was due (the update's injection, or when the chat's
   outbox may send again, one second after its previous message, whichever is later) to the fake server
   receiving the bot's sendMessage. Target p99 <= 50 ms.
2. Burst: ``--events`` ORDER_FILLED events published within one second to the event bus; the outbox
   runs at its production pace (1 s between messages per chat, Telegram allows ~1/s). Reports the
   messages sent, the time until the last one arrived, the smallest gap between two messages, and
   events lost (every event carries a unique qty that must appear exactly once). Target: 0 lost, no
   gap under 1 s.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import re
import statistics
import sys
import tempfile
import time
from collections import Counter
from decimal import Decimal
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

CHAT = 555
SYMBOLS = ["XRPUSDT", "SOLUSDT", "BTCUSDT", "ETHUSDT"]


def bot_specs(n: int) -> list:
    from tests.orchestrator.helpers import DCA, GRID, TREND

    kinds = [GRID, DCA, TREND]
    return [dataclasses.replace(kinds[i % 3], name=f"bot-{i:03d}", symbol=SYMBOLS[i % 4], share=None)
            for i in range(n)]


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def wait_call(fake, since: int, pred, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while True:
        for call in fake.calls[since:]:
            if call.method == "sendMessage" and call.status == 200 and pred(call):
                return call
        if time.monotonic() > deadline:
            raise TimeoutError("the bot did not answer")
        await asyncio.sleep(0.001)


async def bench_status(fake, n: int) -> list[float]:
    from handlers.outbox import Limits

    latencies = []
    previous = max((c.at for c in fake.calls if c.method == "sendMessage"), default=0.0)  # e.g. the warm-up's
    for _ in range(n):
        since = len(fake.calls)
        started = time.monotonic()
        fake.push_command(CHAT, "/status")
        call = await wait_call(fake, since, lambda c: "Desk" in c.params.get("text", ""))
        due = max(started, previous + Limits().chat_interval)  # the chat's pace comes first
        latencies.append((call.at - due) * 1000)
        previous = call.at
        await asyncio.sleep(0.05)
    return latencies


async def bench_burst(fake, desk, frontend, n: int) -> dict:
    from traderagent.orchestrator.events import OrderFilled, OrderRef, TradingEvent

    since = len(fake.calls)
    started = time.monotonic()
    per_slice = max(1, n // 100)
    for i in range(n):  # n events spread over ~1 s, 100 slices of 10 ms
        order = OrderRef(f"o-{i}", "grid:1:buy", SYMBOLS[i % 4], "buy", "limit", Decimal(i + 1), Decimal("1.2345"), "USDT")
        desk.event_bus.publish(TradingEvent.of(f"bot-{i % 100:03d}", OrderFilled(
            order, Decimal(i + 1), Decimal("1.2345"), Decimal("0.001"), "USDT")))
        if (i + 1) % per_slice == 0:
            await asyncio.sleep(0.01)
    published = time.monotonic() - started
    await desk.event_bus.drain(10)
    await asyncio.wait_for(frontend.outbox.flush(), 600)
    sent = [c for c in fake.calls[since:] if c.method == "sendMessage" and c.status == 200]
    seen = Counter(int(q) for c in sent for q in re.findall(r"buy limit (\d+) ", c.params["text"]))
    gaps = [b.at - a.at for a, b in zip(sent, sent[1:], strict=False)]
    return {
        "published_in_s": published,
        "messages": len(sent),
        "delivered_in_s": (sent[-1].at - started) if sent else float("nan"),
        "lost": sum(1 for i in range(1, n + 1) if seen[i] == 0),
        "duplicated": sum(1 for v in seen.values() if v > 1),
        "min_gap_s": min(gaps) if gaps else float("nan"),
        "max_len": max(len(c.params["text"]) for c in sent) if sent else 0,
        "dropped": frontend.outbox.stats.dropped,
    }


async def main(args: argparse.Namespace) -> int:
    os.environ.setdefault("NO_PROXY", "127.0.0.1,localhost")  # httpx: loopback never via a proxy
    from handlers.app import build_application
    from tests.fakes.telegram_server import TOKEN, FakeTelegram
    from tests.orchestrator.helpers import build_desk
    from traderagent.config import Secret, Settings
    from traderagent.sim import ExchangeSimulator, SimConfig

    cfg = SimConfig(seed=1, speed=0.0)
    for path in ("/v5/order/create", "/v5/order/cancel", "/v5/order/amend", "/v5/order/cancel-all"):
        cfg.rate_limits[path] = 10_000  # one account for every bot: the per-account limit is not under test
    sim = ExchangeSimulator(cfg)
    sim.add_account("test-key", "test-secret", balances={"USDT": Decimal("1000000")})
    await sim.start(host="127.0.0.1", port=0)
    fake = FakeTelegram()
    await fake.start()
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.monotonic()
        h = await build_desk(sim.base_url, Path(tmp) / "bench.db", bot_specs(args.bots),
                             total_capital=Decimal("1000000"))
        await h.desk.tick_all()
        await h.desk.event_bus.drain(30)
        orders = sum(len(x.bot.open_orders) for x in h.desk.bots.values())
        print(f"desk: {len(h.desk.bots)} bots ready in {time.monotonic() - t0:.1f} s, {orders} open orders")
        settings = Settings(telegram_bot_token=Secret(TOKEN), telegram_chat_ids=(CHAT,),
                            telegram_api_base_url=fake.url)
        frontend = build_application(settings, h.desk, h.desk.event_bus, poll_timeout=1)  # production pace
        await frontend.start()
        try:
            await bench_status(fake, 5)  # warm-up (connections, first imports)
            lat = await bench_status(fake, args.commands)
            status_text = [c for c in fake.calls if c.method == "sendMessage"][-1].params["text"]
            print(f"/status with {args.bots} bots, {args.commands} commands: p50 {pct(lat, 0.5):.1f} ms, "
                  f"p99 {pct(lat, 0.99):.1f} ms, max {max(lat):.1f} ms, mean {statistics.mean(lat):.1f} ms "
                  f"(page 1 of the summary: {len(status_text)} chars)  target p99 <= 50 ms: "
                  f"{'OK' if pct(lat, 0.99) <= 50 else 'MISSED'}")
            burst = await bench_burst(fake, h.desk, frontend, args.events)
            ok = burst["lost"] == 0 and burst["duplicated"] == 0 and burst["min_gap_s"] >= 1.0
            print(f"burst: {args.events} events published in {burst['published_in_s']:.2f} s -> "
                  f"{burst['messages']} messages (longest {burst['max_len']} chars), all delivered "
                  f"{burst['delivered_in_s']:.1f} s after the first event, smallest gap between messages "
                  f"{burst['min_gap_s']:.2f} s, lost {burst['lost']}, duplicated {burst['duplicated']}, "
                  f"dropped {burst['dropped']}  target 0 lost at <= 1 msg/s: {'OK' if ok else 'MISSED'}")
        finally:
            await frontend.stop()
            await h.close()
    await fake.stop()
    await sim.stop()
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bots", type=int, default=100)
    parser.add_argument("--commands", type=int, default=200)
    parser.add_argument("--events", type=int, default=1000)
    sys.exit(asyncio.run(main(parser.parse_args())))
