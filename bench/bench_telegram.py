"""Telegram frontend benchmark: /status latency on a TICKING 1,000-bot desk, and a 1,000-event burst at Telegram's pace.

    .venv/bin/python bench/bench_telegram.py [--bots 1000] [--commands 200] [--events 1000] [--speed 0.0167]
        [--in-flight K] [--ab K2] [--no-gc-freeze]

Setup: the exchange simulator in its own process (as the exchange is on another machine), moving
at ``--speed`` 1m candles per second (default real time); the desk benchmark's desk
(``bench_desk.build``: a rotation of grid / DCA / trend follower / SMC, four bots per account,
SQLite) ticking every second on its scheduler through the whole measurement, warmed up first
(the ladders placed); then the real PTB Application from ``handlers.app.build_application``
polling the fake Bot API server (tests/fakes/telegram_server.py), in the desk's process.

1. /status: ``--commands`` updates are injected one after another, each once the chat's pace allows a
   message again (a second after the chat's previous message), so the time the bot takes to compose
   the reply is not hidden behind the pace; latency is the time from when the reply was due (the
   update's injection, or when the chat's outbox may send again after an alert of the ticking desk,
   whichever is later) to the fake server receiving the bot's sendMessage. Target p99 <= 100 ms.
   Also printed: the CPU time (the loop thread's) spent composing each reply (the desk's status and
   its rendering, handlers.commands.render_desk), the event loop's lag over the same window (how
   long any ready task waits for the loop: the floor under a reply's latency on a ticking desk), the
   machine's load, and the desk's own tick latency (from due time). The desk's scheduler keeps at most
   ``--in-flight`` ticks in flight (default: its own, scheduler.TICKS_IN_FLIGHT) and prepares the
   strategies' analyses in its analysis thread. ``--ab K2``: the commands alternate, ten at a time, between
   that bound and ``K2`` (0: none, every due tick started at once, as before the bound), each reported
   apart: an A/B in the same run, so the machine's load weighs on both alike. The garbage collector's
   pauses are printed too (a full collection stops the loop like any long step); after the warm-up the
   heap is frozen (gc.freeze) as ``traderagent run`` does once started, unless ``--no-gc-freeze``.
2. Burst: ``--events`` ORDER_FILLED events published within one second to the event bus; the outbox
   runs at its production pace (1 s between messages per chat, Telegram allows ~1/s). Reports the
   messages sent, the time until the last one arrived, the smallest gap between two messages, and
   events lost (every event carries a unique qty that must appear exactly once). Target: 0 lost, no
   gap under 1 s.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import math
import os
import re
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

CHAT = 555
SYMBOLS = ["XRPUSDT", "SOLUSDT", "BTCUSDT", "ETHUSDT"]


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def wait_call(fake, since: int, pred, timeout: float = 120.0):
    deadline = time.monotonic() + timeout
    while True:
        for call in fake.calls[since:]:
            if call.method == "sendMessage" and call.status == 200 and pred(call):
                return call
        if time.monotonic() > deadline:
            raise TimeoutError("the bot did not answer")
        await asyncio.sleep(0.001)


def last_message_at(fake) -> float:
    return max((c.at for c in fake.calls if c.method == "sendMessage" and c.status == 200), default=0.0)


def measure_cpu() -> list[float]:
    """Wrap the /status renderer: the CPU time of the event loop's thread each call takes (it reads
    memory only, so it runs without yielding and the figure is its own)."""
    import handlers.commands as commands

    spent: list[float] = []
    render = commands.render_desk

    async def timed(*args, **kwargs):
        before = time.thread_time()
        try:
            return await render(*args, **kwargs)
        finally:
            spent.append(time.thread_time() - before)

    commands.render_desk = timed
    return spent


async def loop_lag(lags: dict[str, list[float]], mode: list[str]) -> None:
    """How late a 10 ms timer fires: the time any ready callback (a /status among them) waits for the loop."""
    while True:
        before = time.monotonic()
        await asyncio.sleep(0.01)
        lags.setdefault(mode[0], []).append(time.monotonic() - before - 0.01)


def gc_pauses() -> tuple[list[tuple[int, float]], Callable[[str, dict], None]]:
    """Every collection's (generation, pause in seconds) from now on, and the callback to remove from gc.callbacks."""
    pauses: list[tuple[int, float]] = []
    started = [0.0]

    def timing(phase: str, info: dict) -> None:
        if phase == "start":
            started[0] = time.perf_counter()
        else:
            pauses.append((info["generation"], time.perf_counter() - started[0]))

    gc.callbacks.append(timing)
    return pauses, timing


def load() -> str:
    return "/".join(f"{x:.1f}" for x in os.getloadavg())


async def bench_status(fake, n: int, switch=lambda i: None) -> list[float]:
    """``switch(i)`` before the i-th command (the A/B's mode)."""
    from handlers.outbox import Limits

    pace = Limits().chat_interval
    latencies = []
    for i in range(n):
        switch(i)
        await asyncio.sleep(max(0.0, last_message_at(fake) + pace - time.monotonic()))  # the chat may take one again
        since = len(fake.calls)
        started = time.monotonic()
        fake.push_command(CHAT, "/status")
        call = await wait_call(fake, since, lambda c: "Desk" in c.params.get("text", ""))
        # the chat's pace comes first: its previous message (a reply, or an alert of the ticking desk)
        previous = max((c.at for c in fake.calls if c.method == "sendMessage" and c.at < call.at), default=0.0)
        due = max(started, previous + pace)
        latencies.append((call.at - due) * 1000)
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
    import bench_desk

    from handlers.app import build_application
    from tests.fakes.telegram_server import TOKEN, FakeTelegram
    from traderagent.config import Secret, Settings
    from traderagent.orchestrator.scheduler import TickStats

    per_account = 4
    sim, url = bench_desk.start_sim(math.ceil(args.bots / per_account), args.speed)
    fake = FakeTelegram()
    await fake.start()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            bench = await bench_desk.build(args.bots, url, 1.0, per_account, Path(tmp),
                                           grid_range=bench_desk.grid_range_for(args.speed))
            desk = bench.desk
            warm = await bench.warm_up(60.0)
            orders = sum(len(x.bot.open_orders) for x in desk.bots.values())
            print(f"desk: {len(desk.bots)} bots ticking every 1 s (ready in {bench.startup_s:.1f} s, warmed up in "
                  f"{warm:.1f} s), {orders} open orders")
            settings = Settings(telegram_bot_token=Secret(TOKEN), telegram_chat_ids=(CHAT,),
                                telegram_api_base_url=fake.url)
            frontend = build_application(settings, desk, desk.event_bus, poll_timeout=1)  # production pace
            await frontend.start()
            try:
                await bench_status(fake, 5)  # warm-up (connections, first imports)
                if not args.no_gc_freeze:  # as traderagent.app does once the desk runs
                    gc.collect()
                    gc.freeze()
                scheduler = bench.scheduler
                if args.in_flight:
                    scheduler.concurrency = args.in_flight
                bounded = scheduler.concurrency
                bounds = [bounded] if args.ab is None else [bounded, args.ab or 10**9]
                modes = [f"at most {k} ticks in flight" if k < 10**9 else "every due tick at once" for k in bounds]
                mode = [modes[0]]

                ran: dict[str, list[float]] = {m: [0, 0.0] for m in modes}  # ticks ended, seconds, per mode
                mark = [0, 0.0]

                def ticked() -> None:
                    ended, now = sum(desk.tick_counts.values()), time.monotonic()
                    ran[mode[0]][0] += ended - mark[0]
                    ran[mode[0]][1] += now - mark[1]
                    mark[:] = [ended, now]

                def switch(i: int) -> None:
                    ticked()
                    mode[0] = modes[i // 10 % len(modes)]
                    scheduler.concurrency = bounds[i // 10 % len(bounds)]

                cpu, lags = measure_cpu(), {}
                by_mode: dict[str, list[float]] = {}
                load0 = load()
                lag_task = asyncio.create_task(loop_lag(lags, mode))
                pauses, timing = gc_pauses()
                bench.scheduler.stats = stats = TickStats(started=time.monotonic())
                scheduler.peak_in_flight = 0
                ticks0 = sum(desk.tick_counts.values())
                mark[:] = [ticks0, time.monotonic()]
                lat = await bench_status(fake, args.commands, switch)
                ticked()
                lag_task.cancel()
                gc.callbacks.remove(timing)
                scheduler.concurrency = bounded
                for i, ms in enumerate(lat):
                    by_mode.setdefault(modes[i // 10 % len(modes)], []).append(ms)
                ticks = sum(desk.tick_counts.values()) - ticks0
                ticking = sorted(stats.latencies)
                tick_p99 = ticking[int(0.99 * (len(ticking) - 1))] if ticking else float("nan")
                status_text = [c for c in fake.calls if c.method == "sendMessage"][-1].params["text"]
                print(f"/status with {args.bots} bots ticking, {args.commands} commands: p50 {pct(lat, 0.5):.1f} ms, "
                      f"p99 {pct(lat, 0.99):.1f} ms, max {max(lat):.1f} ms, mean {statistics.mean(lat):.1f} ms "
                      f"(page 1 of the summary: {len(status_text)} chars)  target p99 <= 100 ms: "
                      f"{'OK' if pct(lat, 0.99) <= 100 else 'MISSED'}")
                every_lag = [x for values in lags.values() for x in values]
                print(f"  CPU time per /status (composing the reply): median {statistics.median(cpu) * 1000:.1f} ms, "
                      f"p99 {pct(cpu, 0.99) * 1000:.1f} ms; the event loop's lag (a 10 ms timer firing late, "
                      f"the wait of any ready task) meanwhile: p50 {pct(every_lag, 0.5) * 1000:.1f} ms, "
                      f"p99 {pct(every_lag, 0.99) * 1000:.1f} ms")
                print("  garbage collector" + (" (heap not frozen)" if args.no_gc_freeze else "") + ": " + ", ".join(
                    f"generation {g}: {len(ps)} collections, longest {max(ps) * 1000:.1f} ms, {sum(p > 0.05 for p in ps)} "
                    f"over 50 ms" for g in range(3) if (ps := [p for gen, p in pauses if gen == g])))
                for name in modes if len(modes) > 1 else ():
                    print(f"  {name}: /status p50 {pct(by_mode[name], 0.5):.1f} ms, p99 {pct(by_mode[name], 0.99):.1f} ms "
                          f"({len(by_mode[name])} commands); loop lag p50 {pct(lags[name], 0.5) * 1000:.1f} ms, "
                          f"p99 {pct(lags[name], 0.99) * 1000:.1f} ms; ticks ended {ran[name][0] / ran[name][1]:.0f}/s")
                print(f"  meanwhile the desk ran {ticks} ticks: latency from due p99 {tick_p99:.3f} s, "
                      f"missed {stats.missed}, at most {scheduler.peak_in_flight} in flight; analyses shared "
                      f"{desk.analysis_cache.hits}/{desk.analysis_cache.hits + desk.analysis_cache.misses}, "
                      f"deferred {desk.analysis_budget.deferred}; machine load (1/5/15 min) {load0} before, "
                      f"{load()} after")
                burst = await bench_burst(fake, desk, frontend, args.events)
                ok = burst["lost"] == 0 and burst["duplicated"] == 0 and burst["min_gap_s"] >= 1.0
                print(f"burst: {args.events} events published in {burst['published_in_s']:.2f} s -> "
                      f"{burst['messages']} messages (longest {burst['max_len']} chars), all delivered "
                      f"{burst['delivered_in_s']:.1f} s after the first event, smallest gap between messages "
                      f"{burst['min_gap_s']:.2f} s, lost {burst['lost']}, duplicated {burst['duplicated']}, "
                      f"dropped {burst['dropped']}  target 0 lost at <= 1 msg/s: {'OK' if ok else 'MISSED'}")
            finally:
                await frontend.stop()
                await bench.close()
    finally:
        await fake.stop()
        sim.terminate()
        sim.wait(10)
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bots", type=int, default=1000)
    parser.add_argument("--commands", type=int, default=200)
    parser.add_argument("--events", type=int, default=1000)
    parser.add_argument("--speed", type=float, default=1 / 60, help="simulator speed, 1m candles per second")
    parser.add_argument("--in-flight", type=int, default=0, help="ticks in flight at most (0: the scheduler's default)")
    parser.add_argument("--no-gc-freeze", action="store_true", help="leave the heap unfrozen after the warm-up")
    parser.add_argument("--ab", type=int, default=None, metavar="K2",
                        help="alternate the bound with K2 ticks in flight (0: no bound), ten commands each")
    sys.exit(asyncio.run(main(parser.parse_args())))
