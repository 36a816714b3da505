"""Order-budget benchmark: 200 order-heavy ladder bots (grid / DCA) on ONE account, with ByBit's order limits.

    .venv/bin/python bench/bench_budget.py                         # this checkout
    .venv/bin/python bench/bench_budget.py --code /work/main       # the desk code of another checkout (before)

The simulator runs in its own process with ByBit's default per-UID limits (linear: 10/s single creates,
and the batch endpoints' own bucket of 10 orders/s), the client with the same. Every bot ticks every
``--tick`` seconds from the moment the desk starts: the ladders' first placement (about 1,400 orders for
200 bots) is the burst the limiter holds back, then the market moves (``--speed`` 1m candles per second)
and fills make counter orders. Per round it prints the ticks due, run and missed (never run because the
bot was a whole interval behind, or ended more than 1 s after its due time), the tick latency from the
due time (p50 / p99 / max), the orders the exchange accepted per second beside ByBit's limit, the
requests it refused for the limit (10006), and the entries still queued at the end; then the medians
over the rounds. Target (issue 14 item 4): no tick lost to the limiter.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_desk  # noqa: E402  (the simulator process and the desk builder)

LIMIT = {"linear": "10/s single + 10/s batch bucket", "spot": "20/s single + 20/s batch bucket"}


async def run_round(bots: int, url: str, duration: float, tick: float, workdir: Path) -> dict[str, float]:
    from traderagent.orchestrator.scheduler import TickStats

    bench = await bench_desk.build(bots, url, tick, bots, workdir, mix="ladders", grid_range="0.01",
                                   bybit_limits=True)
    desk, db, scheduler = bench.desk, bench.db, bench.scheduler
    accepted0 = {o.client_order_id for o in await db.list_orders(limit=10**6) if o.exchange_order_id}
    sent0 = desk.gate.sent
    scheduler.stats = stats = TickStats(started=time.monotonic(), keep=10**6)
    await asyncio.sleep(duration)
    scheduler.scheduler.pause()
    queued = getattr(desk.gate, "queued", -1)  # -1: a checkout without the entries' queue
    rows = await db.list_orders(limit=10**6)
    accepted = sum(1 for o in rows if o.exchange_order_id and o.client_order_id not in accepted0)
    refused = sum(1 for o in rows if o.status == "FAILED")  # refused for the limit (10006), or never sent
    requests = desk.gate.sent - sent0
    lat = sorted(stats.latencies)
    await bench.close()

    def pct(q: float) -> float:
        return lat[min(len(lat) - 1, int(q * len(lat)))] if lat else float("nan")

    due = int(bots * duration / tick)
    not_run = max(due - len(lat), stats.skipped)  # never run (a whole interval behind), counted by its absence
    return {"due": due, "run": len(lat), "missed": not_run + stats.late, "not_run": not_run, "late": stats.late,
            "p50": pct(0.5), "p99": pct(0.99), "max": lat[-1] if lat else float("nan"),
            "orders_per_s": accepted / duration, "requests": requests, "failed_rows": refused, "queued": queued}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bots", type=int, default=200)
    p.add_argument("--duration", type=float, default=60.0, help="seconds measured per round (default 60)")
    p.add_argument("--tick", type=float, default=1.0, help="tick interval of every bot (default 1 s)")
    p.add_argument("--speed", type=float, default=1 / 6, help="simulator 1m candles per second (default 10x real)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--code", default=None, help="run the desk code of this checkout (e.g. /work/main: before)")
    args = p.parse_args()
    if args.code:
        sys.path.insert(0, args.code)  # after bench_desk put this checkout first
    import logging

    import traderagent

    logging.basicConfig(level=logging.CRITICAL)
    print(f"desk code: {Path(traderagent.__file__).parent.parent}; {args.bots} ladder bots on one account, "
          f"{args.tick}s ticks, {args.duration:.0f}s per round, simulator speed {args.speed:.3g} candles/s; "
          f"machine load {os.getloadavg()[0]:.1f} (2 cores, shared)", flush=True)
    results = []
    for r in range(args.rounds):
        sim, url = bench_desk.start_sim(1, args.speed, bybit_limits=True)
        try:
            with tempfile.TemporaryDirectory() as tmp:
                res = asyncio.run(run_round(args.bots, url, args.duration, args.tick, Path(tmp)))
        finally:
            sim.terminate()
            sim.wait(10)
        results.append(res)
        print(f"round {r + 1}: ticks due {res['due']}, run {res['run']}, missed {res['missed']} "
              f"(never run {res['not_run']}, late >1s {res['late']}) | tick p50 {res['p50']:.3f}s p99 {res['p99']:.3f}s "
              f"max {res['max']:.3f}s | orders accepted {res['orders_per_s']:.1f}/s (ByBit linear limit: "
              f"{LIMIT['linear']}), create requests {res['requests']}, FAILED rows {res['failed_rows']}, "
              f"entry sends still queued {res['queued']}, "
              f"load {os.getloadavg()[0]:.1f}", flush=True)
    med = {k: statistics.median(r[k] for r in results) for k in ("due", "run", "missed", "p50", "p99", "orders_per_s")}
    print(f"median of {len(results)} rounds: ticks due {med['due']:.0f}, run {med['run']:.0f}, missed "
          f"{med['missed']:.0f} ({100 * med['missed'] / max(med['due'], 1):.1f}%), tick p50 {med['p50']:.3f}s "
          f"p99 {med['p99']:.3f}s, orders accepted {med['orders_per_s']:.1f}/s beside ByBit's {LIMIT['linear']}",
          flush=True)
    print(f"target (no tick lost to the limiter): {'MET' if med['missed'] == 0 else 'NOT MET'}", flush=True)


if __name__ == "__main__":
    main()
