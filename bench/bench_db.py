"""Database benchmark: bulk inserts and the desk's hot queries on SQLite and PostgreSQL.

    .venv/bin/python bench/bench_db.py [--orders 100000] [--trades 20000] [--pg-url URL]

Inserts orders and trades through the desk's write path, DatabaseManager.save_bot_progress (one
group-committed transaction per batch), then times daily PnL, realised PnL and the order listings (median of 5 runs),
and what a durable write-ahead costs: one order's write-ahead transaction (SQLite synchronous=FULL)
against a runtime snapshot write of the same step (NORMAL), one at a time; and what lease fencing
costs a write (the lease row checked, and on PostgreSQL locked, in the write's transaction). SQLite uses a temp file; PostgreSQL uses a
throw-away schema (dropped afterwards) at --pg-url / TEST_POSTGRES_URL / postgres@127.0.0.1:5432/test.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import random
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg

from traderagent.database.manager import DatabaseManager

DEFAULT_PG = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
BOTS = [("grid-btc", "BTCUSDT", Decimal("50000"), Decimal("0.001")),
        ("grid-eth", "ETHUSDT", Decimal("3000"), Decimal("0.01")),
        ("dca-sol", "SOLUSDT", Decimal("150"), Decimal("0.1")),
        ("trend-xrp", "XRPUSDT", Decimal("0.6"), Decimal("10")),
        ("smc-btc", "BTCUSDT", Decimal("50000"), Decimal("0.002"))]
STATUSES = ["FILLED"] * 70 + ["CANCELLED"] * 25 + ["OPEN"] * 3 + ["PARTIALLY_FILLED", "PENDING"]
BATCH = 5000


def _orders(n: int, rng: random.Random) -> dict[str, list[dict[str, Any]]]:
    now = dt.datetime.now(dt.UTC)
    out: dict[str, list[dict[str, Any]]] = {name: [] for name, *_ in BOTS}
    for i in range(n):
        name, symbol, mid, qty = BOTS[i % len(BOTS)]
        status = rng.choice(STATUSES)
        price = (mid * Decimal(1 + rng.uniform(-0.05, 0.05))).quantize(Decimal("0.01"))
        filled = qty if status == "FILLED" else (qty / 2 if status == "PARTIALLY_FILLED" else Decimal("0"))
        out[name].append({
            "client_order_id": f"ta-{name}-{i:07d}", "exchange_order_id": f"{uuid.UUID(int=rng.getrandbits(128))}",
            "symbol": symbol, "side": rng.choice(("buy", "sell")), "order_type": "limit", "qty": qty,
            "price": price, "status": status, "filled_qty": filled,
            "avg_price": price if filled else None, "fee": (filled * price * Decimal("0.00055")).quantize(Decimal("1E-8")),
            "tag": f"grid:{i % 20}:buy", "created_at": now - dt.timedelta(seconds=rng.randint(0, 30 * 86400)),
        })
    return out


def _trades(n: int, rng: random.Random) -> dict[str, list[dict[str, Any]]]:
    now = dt.datetime.now(dt.UTC)
    out: dict[str, list[dict[str, Any]]] = {name: [] for name, *_ in BOTS}
    for i in range(n):
        name, symbol, mid, qty = BOTS[i % len(BOTS)]
        entry = (mid * Decimal(1 + rng.uniform(-0.05, 0.05))).quantize(Decimal("0.01"))
        opened = now - dt.timedelta(seconds=rng.randint(3600, 30 * 86400))
        row: dict[str, Any] = {"symbol": symbol, "side": rng.choice(("long", "short")), "qty": qty,
                               "entry_price": entry, "fees": (qty * entry * Decimal("0.0011")).quantize(Decimal("1E-8")),
                               "opened_at": opened, "tag": f"grid:{i % 20}"}
        if rng.random() > 0.02:  # 2% still open
            exit_price = (entry * Decimal(1 + rng.uniform(-0.01, 0.012))).quantize(Decimal("0.01"))
            row.update(exit_price=exit_price, pnl=((exit_price - entry) * qty).quantize(Decimal("1E-8")),
                       closed_at=min(now, opened + dt.timedelta(seconds=rng.randint(60, 86400))))
        out[name].append(row)
    return out


async def _timed(fn: Callable[[], Awaitable[Any]], runs: int = 5) -> tuple[float, Any]:
    times, result = [], None
    for _ in range(runs):
        start = time.perf_counter()
        result = await fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times), result


async def _bulk(insert: Callable[[str, list[dict[str, Any]]], Awaitable[int]],
                rows: dict[str, list[dict[str, Any]]]) -> tuple[int, float]:
    start, total = time.perf_counter(), 0
    for name, items in rows.items():
        for lo in range(0, len(items), BATCH):
            total += await insert(name, items[lo:lo + BATCH])
    return total, time.perf_counter() - start


async def bench(label: str, db: DatabaseManager, n_orders: int, n_trades: int) -> None:
    await db.initialize()
    for name, symbol, *_ in BOTS:
        await db.create_bot(name, name.split("-")[0], symbol, "linear", {}, Decimal("1000"))
    rng = random.Random(7)
    orders, trades = _orders(n_orders, rng), _trades(n_trades, rng)
    async def insert_orders(name: str, rows: list[dict[str, Any]]) -> int:
        await db.save_bot_progress(name, new_orders=rows)
        return len(rows)

    async def insert_trades(name: str, rows: list[dict[str, Any]]) -> int:
        return len(await db.save_bot_progress(name, new_trades=rows))

    n, secs = await _bulk(insert_orders, orders)
    print(f"[{label}] insert {n:,} orders: {secs:.2f} s = {n / secs:,.0f} rows/s")
    n, secs = await _bulk(insert_trades, trades)
    print(f"[{label}] insert {n:,} trades: {secs:.2f} s = {n / secs:,.0f} rows/s")

    queries: list[tuple[str, Callable[[], Awaitable[Any]]]] = [
        ("daily_pnl(30 days, all bots)", lambda: db.daily_pnl(30)),
        ("daily_pnl(7 days, one bot)", lambda: db.daily_pnl(7, "grid-btc")),
        ("realized_pnl(all)", lambda: db.realized_pnl()),
        ("list_non_final_orders(all)", lambda: db.list_non_final_orders()),
        ("list_non_final_orders(one bot)", lambda: db.list_non_final_orders("grid-eth")),
        ("list_orders(one bot, 100)", lambda: db.list_orders("dca-sol")),
    ]
    for title, fn in queries:
        ms, result = await _timed(fn)
        size = f"{len(result)} rows" if isinstance(result, list) else f"= {result}"
        print(f"[{label}] {title:32s} {ms:8.2f} ms  ({size})")
    await _write_ahead_cost(label, db)
    await _fence_cost(label, db)
    await db.close()


async def _write_ahead_cost(label: str, db: DatabaseManager, n: int = 300) -> None:
    """Median ms of one order's write-ahead transaction, durable as the desk writes it (SQLite
    synchronous=FULL) and, for comparison, as it was written before (NORMAL: lost on power loss).
    PostgreSQL commits durably either way."""
    name, symbol, price, qty = BOTS[0]
    group = db._group  # the comparison switches its durable kinds off for the second run

    async def write_ahead(i: int) -> None:
        await db.save_bot_progress(name, new_orders=[{
            "client_order_id": f"wal-{uuid.uuid4().hex}", "symbol": symbol, "side": "buy", "order_type": "limit",
            "qty": qty, "price": price, "status": "PENDING", "tag": f"grid:{i}:buy"}])

    runs = [("durable (FULL)", group._durable), ("not durable (NORMAL)", frozenset())]
    if db.backend != "sqlite":
        runs = [("durable (commit)", group._durable)]
    medians = {}
    for title, durable in runs:
        kept, group._durable = group._durable, durable
        times = []
        for i in range(n):
            start = time.perf_counter()
            await write_ahead(i)
            times.append((time.perf_counter() - start) * 1000)
        group._durable = kept
        medians[title] = statistics.median(times)
        print(f"[{label}] write-ahead order, {title:22s} {medians[title]:6.2f} ms  (median of {n}, one at a time)")
    if len(medians) < 2:
        return
    cost = medians["durable (FULL)"] - medians["not durable (NORMAL)"]
    print(f"[{label}] a durable write-ahead costs {cost:+.2f} ms per order batch")

async def _fence_cost(label: str, db: DatabaseManager, bots: int = 200, rounds: int = 7, n: int = 50) -> None:
    """What lease fencing (orchestrator/lease.py) adds to the write path: a runtime snapshot of one bot at
    a time, and every bot's snapshot at once (one group-committed batch: one fence check for all),
    unfenced and fenced in alternating rounds; medians."""
    names = [f"fence-{i:03d}" for i in range(bots)]
    for name in names:
        await db.create_bot(name, "grid", "BTCUSDT", "linear", {}, Decimal("100"))
    now = dt.datetime.now(dt.UTC)
    tokens = {r.bot_name: r.token for r in await db.acquire_leases(names, "bench", now, now + dt.timedelta(hours=1))}
    times: dict[tuple[str, bool], list[float]] = {}
    for r in range(rounds):
        for fenced in (False, True):
            db._token_of = tokens.get if fenced else None  # what fence_writes sets
            for i in range(n):
                start = time.perf_counter()
                await db.save_bot_progress(names[0], runtime={"round": r, "i": i})
                times.setdefault(("one", fenced), []).append((time.perf_counter() - start) * 1000)
            start = time.perf_counter()
            await asyncio.gather(*(db.save_bot_progress(name, runtime={"round": r}) for name in names))
            times.setdefault(("batch", fenced), []).append((time.perf_counter() - start) * 1000)
    db._token_of = None
    for kind, title in (("one", "one bot's snapshot, one at a time"), ("batch", f"{bots} bots' snapshots at once")):
        plain, fenced = (statistics.median(times[(kind, f)]) for f in (False, True))
        print(f"[{label}] {title:36s} unfenced {plain:7.2f} ms, fenced {fenced:7.2f} ms "
              f"({fenced - plain:+.2f} ms, x{fenced / plain:.2f}; medians, {rounds} alternating rounds)")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=100_000)
    parser.add_argument("--trades", type=int, default=20_000)
    parser.add_argument("--pg-url", default=os.environ.get("TEST_POSTGRES_URL", DEFAULT_PG))
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        await bench("sqlite", DatabaseManager(f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}"), args.orders, args.trades)

    dsn = args.pg_url.replace("postgresql+asyncpg://", "postgresql://", 1)
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    try:
        await (await asyncpg.connect(dsn, timeout=3)).close()
    except Exception as exc:
        print(f"[postgresql] skipped: not reachable ({type(exc).__name__})")
        return
    try:
        await bench("postgresql", DatabaseManager(args.pg_url, schema=schema), args.orders, args.trades)
    finally:
        conn = await asyncpg.connect(dsn, timeout=5)
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await conn.close()


if __name__ == "__main__":
    asyncio.run(main())
