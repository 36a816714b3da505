"""Fleet benchmark: the most bots at real-time speed with tick p99 <= 1 s, 1 worker versus 2 workers.

    .venv/bin/python bench/bench_fleet.py                          # default: a few minutes
    .venv/bin/python bench/bench_fleet.py --bots 500,1000,1500,2000 --duration 60

The bots, the simulator process, the market speed (``realtime``: one 1m candle per 60 s) and the
latency measure are bench_desk.py's (its ``run_desk``: from each tick's DUE time to its end, after
the ladders' warm-up), and so are its WebSockets (a worker opens them as `traderagent run` does; without
them every account polls its orders and balance over REST each tick, about twice the CPU per tick: the
"PostgreSQL costs twice SQLite's CPU" of earlier runs compared this REST-polling fleet with a streaming
SQLite desk). Here the bots run in 1 or 2 worker processes on one PostgreSQL schema,
spread by the workers' slot leases as `traderagent worker` spreads them (fleet/workers.py: the
workers first wait for each other, so each takes its share at once, with no hand-back).

For each worker count the bot counts of ``--bots`` are tried in order until one misses the target
(p99 <= 1 s, no bot in ERROR; missed ticks are printed); the fleet's p99 is the worst of its workers'. Prints
each trial, then the best count of each side by side with the ratio, and the machine's load (the
simulator shares the machine's 2 cores, and so does whatever else runs on it).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

import bench_desk  # noqa: E402  (the bench folder is not a package)

REALTIME = bench_desk.VARIANTS["realtime"][0]


async def _claim(db: Any, names: list[str], slot: int, workers: int) -> Any:
    """This worker's leases: its slot, then, once every worker holds its own, its share of the bots."""
    from traderagent.fleet.workers import WorkerLeases, slot_name

    # a long timeout: starting hundreds of bots on a loaded machine takes longer than 25 s, before any heartbeat
    leases = WorkerLeases(db, bots=names, slot=slot_name(slot), heartbeat=5.0, timeout=120.0)
    await leases.acquire([leases.slot])
    while len(await leases.live_slots()) < workers:  # noqa: ASYNC110 - other processes' leases: polled
        await asyncio.sleep(0.2)
    await leases.join()
    leases.runnable = leases.owns  # a worker done measuring leaves: the others keep to their own bots
    return leases


def serve_worker(args: argparse.Namespace) -> None:
    """One worker process: bench_desk.run_desk on the shared schema, its result as one JSON line."""
    import logging

    logging.basicConfig(level=logging.ERROR, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    async def claim(db: Any, names: list[str]) -> Any:
        return await _claim(db, names, args.serve_worker, args.workers)

    with tempfile.TemporaryDirectory() as tmp:
        res = asyncio.run(bench_desk.run_desk(args.n, args.url, args.duration, 1.0, args.per_account, Path(tmp),
                                              args.warmup_max, "all", "postgresql", None, None,
                                              bench_desk.grid_range_for(REALTIME), schema=args.schema, claim=claim,
                                              streams=True))
    print("RESULT " + json.dumps(res), flush=True)


async def _create_schema(schema: str) -> None:
    from traderagent.database.manager import DatabaseManager

    db = DatabaseManager(bench_desk.PG_URL, schema=schema)  # migrated once, before the workers start
    await db.initialize()
    await db.close()


def trial(n: int, workers: int, args: argparse.Namespace) -> dict:
    """``n`` bots on ``workers`` worker processes: the fleet's figures."""
    sim, url = bench_desk.start_sim(math.ceil(n / args.per_account), REALTIME)
    schema = f"fleet_{uuid.uuid4().hex[:12]}"
    try:
        asyncio.run(_create_schema(schema))
        procs = [subprocess.Popen([sys.executable, __file__, "--serve-worker", str(i), "--workers", str(workers),
                                   "--n", str(n), "--url", url, "--schema", schema, "--duration", str(args.duration),
                                   "--per-account", str(args.per_account), "--warmup-max", str(args.warmup_max)],
                                  stdout=subprocess.PIPE, text=True, cwd=REPO) for i in range(workers)]
        results = []
        for proc in procs:
            out, _ = proc.communicate()
            line = next((ln for ln in out.splitlines() if ln.startswith("RESULT ")), None)
            if line is None:
                raise RuntimeError(f"a worker failed (exit code {proc.returncode}): {out[-2000:]}")
            results.append(json.loads(line.removeprefix("RESULT ")))
    finally:
        sim.terminate()
        sim.wait(10)
        asyncio.run(bench_desk._drop_schema(schema))
    return {"bots": n, "workers": workers, "ran": [r["ran"] for r in results],
            "p50_s": max(r["p50_s"] for r in results), "p99_s": max(r["p99_s"] for r in results),
            "ticks": sum(r["ticks"] for r in results), "expected_ticks": results[0]["expected_ticks"],
            "missed": sum(r["missed"] for r in results), "errors": sum(r["bot_errors"] for r in results),
            "cpu_pct": [r["cpu_pct_one_core"] for r in results], "load1": round(os.getloadavg()[0], 1)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bots", default="200,400,800", help="bot counts to try in order (default 200,400,800)")
    p.add_argument("--duration", type=float, default=20.0, help="seconds measured per trial (default 20)")
    p.add_argument("--per-account", type=int, default=4, help="bots per simulator account (default 4)")
    p.add_argument("--warmup-max", type=float, default=30.0, help="longest warm-up before measuring (s)")
    p.add_argument("--serve-worker", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--workers", type=int, default=1, help=argparse.SUPPRESS)
    p.add_argument("--n", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--url", default="", help=argparse.SUPPRESS)
    p.add_argument("--schema", default="", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.serve_worker is not None:
        serve_worker(args)
        return
    print(f"realtime market, 1-s ticks, PostgreSQL; load before: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores",
          flush=True)
    best: dict[int, dict | None] = {}
    for workers in (1, 2):
        best[workers] = None
        for n in (int(x) for x in args.bots.split(",")):
            res = trial(n, workers, args)
            ok = res["p99_s"] <= 1.0 and res["errors"] == 0
            print(f"[{workers} worker(s)] {n:>5} bots (per worker {res['ran']}): p50 {res['p50_s']:.3f}s "
                  f"p99 {res['p99_s']:.3f}s | ticks {res['ticks']}/{res['expected_ticks']} missed {res['missed']} "
                  f"errors {res['errors']} | CPU % of a core per worker {res['cpu_pct']} | machine load "
                  f"{res['load1']} -> {'ok' if ok else 'over'}", flush=True)
            if not ok:
                break
            best[workers] = res
    one, two = (best[w]["bots"] if best[w] else 0 for w in (1, 2))
    ratio = f"{two / one:.2f}x" if one else "n/a"
    print(f"most bots at real-time speed with p99 <= 1 s: 1 worker {one} | 2 workers {two} | ratio {ratio} "
          f"(counts tried: {args.bots}; a count at the end of the list is a floor, not the limit; "
          f"machine load now {os.getloadavg()[0]:.1f})", flush=True)


if __name__ == "__main__":
    main()
