"""Lease benchmark: what one owner per bot costs a desk of many bots, on SQLite and PostgreSQL.

    .venv/bin/python bench/bench_leases.py [--bots 3000] [--rounds 20] [--pg-url URL]

Times, per backend, the lease operations of a desk of --bots bots (orchestrator/lease.py) while
another live desk holds half of them: the start-up claim (one conditional upsert per bot, one
transaction), that desk's heartbeat (renew its half, retry the other half) and the other desk's
heartbeat (renew only: one UPDATE and one SELECT). Rounds alternate the two backends; medians are
printed. SQLite uses a temp file; PostgreSQL a throw-away schema at --pg-url / TEST_POSTGRES_URL.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import asyncpg

from traderagent.database.manager import DatabaseManager
from traderagent.orchestrator.lease import Leases

DEFAULT_PG = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"


async def _ms(step: Callable[[], Awaitable[object]]) -> float:
    started = time.perf_counter()
    await step()
    return (time.perf_counter() - started) * 1000


async def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--bots", type=int, default=3000)
    p.add_argument("--rounds", type=int, default=20)
    p.add_argument("--pg-url", default=os.environ.get("TEST_POSTGRES_URL", DEFAULT_PG))
    args = p.parse_args()
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    dbs = {"sqlite": DatabaseManager(f"sqlite+aiosqlite:///{Path(tempfile.mkdtemp()) / 'leases.db'}")}
    try:
        (await asyncpg.connect(args.pg_url.replace("+asyncpg", ""), timeout=3)).terminate()
        dbs["postgresql"] = DatabaseManager(args.pg_url, schema=schema)
    except Exception as exc:  # noqa: BLE001 - the figure is then SQLite only, said so
        print(f"[postgresql] skipped: not reachable ({type(exc).__name__})")
    every = [f"bot-{i:05d}" for i in range(args.bots)]
    half, other = every[:args.bots // 2], every[args.bots // 2:]
    times: dict[tuple[str, str], list[float]] = {}
    try:
        for db in dbs.values():
            await db.initialize()
        for _ in range(args.rounds):
            for label, db in dbs.items():  # alternating backends, fresh owners every round
                desk, rival = Leases(db), Leases(db)
                await rival.acquire(other)  # a live desk holds half the bots
                steps = {f"claim {args.bots} bots, {len(other)} held elsewhere": lambda d=desk: d.acquire(every),
                         f"heartbeat: renew {len(half)}, retry {len(other)}": lambda d=desk: d.beat(),
                         f"heartbeat: renew {len(other)}": lambda r=rival: r.beat()}
                for title, step in steps.items():
                    times.setdefault((label, title), []).append(await _ms(step))
                await desk.release()
                await rival.release()
        for (label, title), values in times.items():
            print(f"[{label}] {title:40s} median {statistics.median(values):7.1f} ms  (of {len(values)} rounds)")
    finally:
        for db in dbs.values():
            await db.close()
        if "postgresql" in dbs:
            conn = await asyncpg.connect(args.pg_url.replace("+asyncpg", ""), timeout=3)
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            await conn.close()


if __name__ == "__main__":
    asyncio.run(main())
