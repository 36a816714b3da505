"""Outbox benchmark: 1,000 events plus 200 commands in 10 s, against a Bot API that enforces Telegram's limits.

    .venv/bin/python bench/bench_outbox.py [--events 1000] [--commands 200] [--seconds 10] [--scale 1.0]

Setup (one process, offline): the exchange simulator, a real Desk with three bots on SQLite, the real
PTB Application from ``handlers.app.build_application`` polling the fake Bot API server
(tests/fakes/telegram_server.py), which answers 429 to any message beyond Telegram's limits (1 per
second per chat, 20 per minute per group, 30 per second per bot) and records it as a violation.
``--scale`` is the length of a Telegram second in real seconds for both sides (1.0: real time, about
four minutes, because 200 replies at one a second take 200 s; 0.1 runs it ten times faster).

Load: over ``--seconds`` (Telegram seconds), in 100 even slices, ``--events`` ORDER_FILLED events are
published to the desk's event bus (each with a unique quantity) and ``--commands`` commands are pushed:
``/status`` for every fourth, ``/halt bench`` as the 101st, else ``/status c<i>`` whose error reply
names the command, so its latency is measured from the moment it was pushed (when it was due).

Printed: commands answered, "Internal error" replies, reply latency (p50/p99/max, of the named
commands) and the /halt's; events delivered, lost, duplicated, the messages they took and their
latency from publication; Telegram's limits as the server measured them (violations, smallest gap
between two messages to the chat); the outbox's retries and drops. Target: 0 lost, 0 dropped,
0 violations, every command answered.
"""

from __future__ import annotations

import argparse
import asyncio
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
NAMED = re.compile(r"No bot named 'c(\d+)'")
FILLED = re.compile(r"buy limit (\d+) of 100000 ")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] if ordered else float("nan")


def command_text(i: int) -> str:
    if i == 100:
        return "/halt bench"
    return "/status" if i % 4 == 0 else f"/status c{i}"


async def load(fake, desk, args: argparse.Namespace) -> tuple[dict[int, float], dict[int, float], float]:
    """Publish the events and push the commands in 100 slices; when each command and event was due."""
    from traderagent.orchestrator.events import OrderFilled, OrderRef, TradingEvent

    pushed: dict[int, float] = {}
    published: dict[int, float] = {}
    slice_s = args.seconds * args.scale / 100
    started = time.monotonic()
    for k in range(100):
        due = started + k * slice_s
        await asyncio.sleep(max(0.0, due - time.monotonic()))
        for i in range(k * args.events // 100, (k + 1) * args.events // 100):
            order = OrderRef(f"o-{i}", "grid:1:buy", "XRPUSDT", "buy", "limit", Decimal(100000), Decimal("0.5"), "USDT")
            published[i + 1] = time.monotonic()
            desk.event_bus.publish(TradingEvent.of(f"bot-{i % 20:02d}", OrderFilled(
                order, Decimal(i + 1), Decimal("0.5"), Decimal("0.0001"), "USDT")))
        for i in range(k * args.commands // 100, (k + 1) * args.commands // 100):
            pushed[i] = time.monotonic()
            fake.push_command(CHAT, command_text(i))
    return pushed, published, started


async def main(args: argparse.Namespace) -> int:
    os.environ.setdefault("NO_PROXY", "127.0.0.1,localhost")
    from handlers.app import build_application
    from handlers.outbox import Limits
    from tests.fakes.telegram_server import TOKEN, FakeTelegram
    from tests.orchestrator.helpers import DCA, GRID, TREND, build_desk
    from traderagent.config import Secret, Settings
    from traderagent.sim import ExchangeSimulator, SimConfig

    sim = ExchangeSimulator(SimConfig(seed=1, speed=0.0))
    sim.add_account("test-key", "test-secret", balances={"USDT": Decimal("1000000")})
    await sim.start(host="127.0.0.1", port=0)
    fake = FakeTelegram()
    await fake.start()
    fake.enforce(args.scale)
    with tempfile.TemporaryDirectory() as tmp:
        h = await build_desk(sim.base_url, Path(tmp) / "bench.db", [GRID, DCA, TREND])
        settings = Settings(telegram_bot_token=Secret(TOKEN), telegram_chat_ids=(CHAT,),
                            telegram_api_base_url=fake.url)
        frontend = build_application(settings, h.desk, h.desk.event_bus, limits=Limits().scaled(args.scale),
                                     poll_timeout=1)
        await frontend.start()
        try:
            since = len(fake.calls)
            pushed, published, started = await load(fake, h.desk, args)
            deadline = time.monotonic() + 60 + 3 * args.commands * args.scale
            while time.monotonic() < deadline:  # until every reply is out and nothing is queued
                sent = [c for c in fake.calls[since:] if c.method == "sendMessage" and c.status == 200]
                replies = [c for c in sent if not FILLED.search(c.params["text"])]
                if len(replies) >= args.commands and not frontend.outbox.pending_alerts and not h.desk.event_bus.pending:
                    break
                await asyncio.sleep(0.05)
            await frontend.outbox.flush()
            report(args, fake, frontend, since, pushed, published, started)
        finally:
            await frontend.stop()
            await h.close()
    await fake.stop()
    await sim.stop()
    return 0


def report(args, fake, frontend, since, pushed, published, started) -> None:
    unit = args.scale  # real seconds per Telegram second: figures below are in Telegram seconds
    sent = [c for c in fake.calls[since:] if c.method == "sendMessage" and c.status == 200]
    alerts = [c for c in sent if FILLED.search(c.params["text"])]
    replies = [c for c in sent if c not in alerts]
    latency = [(c.at - pushed[int(m.group(1))]) / unit for c in replies if (m := NAMED.search(c.params["text"]))]
    halt = next((c for c in replies if "Halt all trading?" in c.params["text"]), None)
    delivered: dict[int, float] = {}
    seen: Counter[int] = Counter()
    for c in alerts:
        for q in FILLED.findall(c.params["text"]):
            seen[int(q)] += 1
            delivered.setdefault(int(q), c.at)
    alert_latency = [(delivered[q] - published[q]) / unit for q in delivered]
    times = [c.at for c in fake.calls[since:] if c.status == 200 and c.method in ("sendMessage", "editMessageText")]
    gaps = [(b - a) / unit for a, b in zip(times, times[1:], strict=False)]
    stats = frontend.outbox.stats
    lost = sum(1 for q in published if seen[q] == 0)
    print(f"load: {args.events} events + {args.commands} commands over {args.seconds} s "
          f"(a Telegram second = {args.scale} s real; figures in Telegram seconds)")
    print(f"commands: {len(replies)}/{args.commands} answered, internal errors "
          f"{sum('Internal error' in c.params['text'] for c in replies)}; reply latency from when due "
          f"p50 {pct(latency, 0.5):.1f} s, p99 {pct(latency, 0.99):.1f} s, max {max(latency, default=0):.1f} s "
          f"(n={len(latency)}); /halt confirmed "
          f"{(halt.at - pushed[100]) / unit if halt else float('nan'):.1f} s after it was sent")
    print(f"events: {len(published)} published, {len(delivered)} delivered in {len(alerts)} messages, lost {lost}, "
          f"duplicated {sum(1 for v in seen.values() if v > 1)}; latency from publication p50 "
          f"{pct(alert_latency, 0.5):.1f} s, max {max(alert_latency, default=0):.1f} s; all done "
          f"{(max(times) - started) / unit:.1f} s after the start")
    print(f"telegram limits: {len(fake.violations)} violations; smallest gap between two messages to the chat "
          f"{min(gaps, default=0):.3f} s (limit 1 s); outbox retries {stats.retries}, dropped {stats.dropped}")
    ok = lost == 0 and stats.dropped == 0 and not fake.violations and len(replies) == args.commands
    print(f"target 0 lost, 0 dropped, 0 violations, every command answered: {'OK' if ok else 'MISSED'}"
          f"  (mean message size {statistics.mean(len(c.params['text']) for c in sent):.0f} chars)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1000)
    parser.add_argument("--commands", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--scale", type=float, default=1.0)
    sys.exit(asyncio.run(main(parser.parse_args())))
