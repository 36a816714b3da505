"""Desk benchmark: N bots in one process, 1-second ticks, against the simulator in its own process.

    .venv/bin/python bench/bench_desk.py --bots 3000 --variants realtime                 # target 1
    .venv/bin/python bench/bench_desk.py --bots 1000 --variants stress                   # target 2
    .venv/bin/python bench/bench_desk.py --bots 1000 --variants stress --db postgresql   # the same on PostgreSQL
    .venv/bin/python bench/bench_desk.py --bots 1000 --variants stress --profile /tmp/desk.prof  # cProfile
    .venv/bin/python bench/bench_desk.py --bots 300 --variants stress --lockstep 30   # CPU per tick, loaded machine

Market speeds (``--variants``), reported separately and labelled. In every one the simulator
moves each symbol's price every half second along the candle's path (open -> low -> high -> close,
or open -> high -> low -> close), so every tick sees a new price and resting orders fill between
candle closes, as on a live exchange:

* ``realtime``: one 1m candle per 60 s, the speed of a real market.
* ``fast``: one 1m candle per 6 s, 10x a real market.
* ``stress``: one 1m candle per second, 60x faster than any real market: sixty times the candle
  closes (every 1m bot analyses at once) and sixty times the order flow.

Latency is measured by the desk's scheduler from each tick's DUE time to its end (time waiting for
the loop, for a slow previous tick or for a busy event loop counts). A tick that ends more than 1 s
after it was due is missed, and so is one never run because its bot was a whole interval behind.
Measuring starts after the warm-up (the ladders' first placements settled). Prints, per run:
p50/p99/max latency, ticks run / due, missed (skipped + late), bot ERRORs, orders placed and orders filled in
the measured window (the order flow the figures were taken under), the REST requests the desk sent in it
(per tick: a figure a loaded machine does not change, unlike the latencies), analyses the CPU budget deferred
and the analysis cache's hit rate, CPU (% of one core, desk process only), peak RSS and the RSS
growth per bot (KB, over the process before any bot was built); then whether each target is met.

Order flow in the window: the market is the variant's, the strategies are the real ones; what sets the
flow is the grids' width (``grid_range_for``: steps near what the market moves in a minute). At real
time the grids are +-0.5% with 9 levels (steps of 0.125%, fee_rate ByBit's linear taker fee; a replayed
1m candle spans about 0.2%), so each symbol crosses about a level a minute and every grid bot of that
symbol fills and places its next order; wider grids (``--grid-range 0.01``) placed their ladders in the warm-up and then saw no
fill in a minute of a real-time market. The DCA bots' 0.3% safety and take-profit steps and the trend
and SMC bots' entries add what the market gives them.

Setup: the bots are a rotation of grid / DCA / trend follower / SMC (SMC on 1h/15m/5m, the
others on 1m) over XRP/SOL/BTC/ETH, four bots per simulator account, one per symbol (ByBit's
per-account order limit would otherwise be the bottleneck, and bots sharing a symbol in one
account share its one-way position); the simulator's and the client's order limits are raised to
100/s per account. Public market data is shared by every bot; the database is SQLite (WAL) in a
temp folder, or PostgreSQL (``--db postgresql``: a fresh schema, dropped afterwards). The desk runs
its WebSockets as ``traderagent run`` does by default (``TRADERAGENT_STREAMS``): tickers and candles
pushed on the public stream, each account's fills, orders, positions and wallet on its private one,
so a tick sends no request (REST backstops: every 60 s and after a reconnect). ``--rest`` measures
the desk without streams, where every account lists its open orders and balance over REST each tick. Targets on
a 2-core machine: 3,000 bots at real-time speed and 1,000 bots at 60x (stress), each with p99
<= 1 s and no missed tick, at <= 100 KB per bot. The simulator shares the machine's cores.

``--lockstep ROUNDS`` measures the desk's CPU per tick where other work loads the machine: no scheduler and no
clock. Each round the simulator moves every symbol by one 1m candle (the stress variant's flow per tick) and
every bot ticks once (``Desk.tick_all``: every tick runs, none is skipped, the sends it queued are answered).
A starved desk skips ticks, and where the market runs on the clock a slow desk sees more of it per tick: either
way its CPU per tick follows the load. In lock step the work is the same however long a round takes, so two
versions compare in alternating runs.

``--bursts`` prints, per second of the measured window, the ticks that ended and how many were late, the analyses
(candle closes) and soft saves, the group commits (writes, longest), the collections (by generation, with their
CPU), the REST requests and the process's CPU, the ticks in flight and waiting for a turn, and the event loop's
CPU and its longest single step with what it ran (CPU time of the loop's thread: another process's load does not
lengthen it). The wrappers cost CPU, so take latencies from a run without it; what it shows is what piles into
one second. What it showed is in the README's bench row.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

TARGETS = {"realtime": 3000, "stress": 1000}  # bots per variant that must meet p99 <= 1 s, 0 missed
ORDER_LIMIT = 100  # per account per second, simulator and client alike
GRID_LEVELS = 9  # 8 resting orders per grid bot; the step is 2 x range_pct / 8 (grid_range_for)
GRID_FEE = "0.00055"  # ByBit's (and the simulator's) linear taker fee, the worst a fill pays: a step must cover two
PG_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
# (label, simulator speed in 1m candles per second, what it stands for)
VARIANTS = {
    "realtime": (1 / 60, "real-time market: one 1m candle per 60 s, what 1-s ticks against a live exchange see"),
    "fast": (1 / 6, "10x a real market: one 1m candle per 6 s"),
    "stress": (1.0, "accelerated stress: one 1m candle per second, 60x faster than any real market"),
}


async def _drop_schema(schema: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(PG_URL.replace("postgresql+asyncpg://", "postgresql://", 1), timeout=5)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()


# ---------------------------------------------------------------------- the simulator process
def serve_sim(accounts: int, speed: float, bybit_limits: bool = False) -> None:
    from traderagent.sim import ExchangeSimulator, SimConfig

    async def run() -> None:
        cfg = SimConfig(seed=7, speed=speed)
        for path in ("/v5/order/create", "/v5/order/cancel", "/v5/order/amend", "/v5/order/cancel-all"):
            if not bybit_limits:  # --bybit-limits: ByBit's defaults (10/s linear single + 10/s batch)
                cfg.rate_limits[path] = ORDER_LIMIT
        sim = ExchangeSimulator(cfg)
        for i in range(accounts):
            sim.add_account(f"bench-{i}", f"bench-secret-{i}", {"USDT": Decimal("100000")})
        url = await sim.start(host="127.0.0.1", port=0)
        print(f"simulator listening on {url}", flush=True)
        if speed > 0:
            await asyncio.Event().wait()
        loop = asyncio.get_running_loop()
        while await loop.run_in_executor(None, sys.stdin.readline):  # speed 0: a line, a candle (--lockstep)
            sim.advance_all(0.5)  # half its path, then its close: resting orders fill on the way
            sim.step_all(1)
            print("stepped", flush=True)

    try:
        asyncio.run(run())
    except KeyboardInterrupt:
        pass


def start_sim(accounts: int, speed: float, bybit_limits: bool = False) -> tuple[subprocess.Popen, str]:
    extra = ["--bybit-limits"] if bybit_limits else []
    proc = subprocess.Popen([sys.executable, __file__, "--serve-sim", str(accounts), "--speed", str(speed), *extra],
                            stdout=subprocess.PIPE, stdin=subprocess.PIPE if speed == 0 else None, text=True, cwd=REPO)
    line = proc.stdout.readline()
    if "listening on" not in line:
        proc.kill()
        raise RuntimeError(f"simulator did not start: {line!r}")
    return proc, line.split()[-1]


# ---------------------------------------------------------------------- the desk
def bot_specs(n: int, tick: float, mix: str = "all", grid_range: str = "0.02") -> list:
    from traderagent.bots import BotSpec

    kinds = [
        ("grid", ("1m",), {"num_levels": GRID_LEVELS, "range_pct": grid_range, "fee_rate": GRID_FEE}),
        ("dca", ("1m",), {"base_order": "100", "safety_order": "100", "max_safety_orders": 2,
                          "price_deviation": "0.003", "take_profit": "0.003"}),
        ("trend_follower", ("1m",), {"ema_fast": 5, "ema_slow": 13, "adx_threshold": 15.0}),
        ("smc", ("1h", "15m", "5m"), {}),
    ]
    if mix == "signal":
        kinds = kinds[2:]
    elif mix == "ladders":  # the order-heavy ones
        kinds = kinds[:2]
    symbols = ["XRPUSDT", "SOLUSDT", "BTCUSDT", "ETHUSDT"]
    specs = []
    for i in range(n):
        strategy, tfs, params = kinds[(i // 4) % len(kinds)]
        symbol = symbols[i % 4]  # with 4 bots per account each account trades 4 distinct symbols
        specs.append(BotSpec(f"b{i:04d}-{strategy[:4]}", strategy, symbol, timeframes=tfs, params=dict(params),
                             share=Decimal(1) / n, tick_seconds=tick))
    return specs


@dataclass
class BenchDesk:
    """A started desk of benchmark bots, ticking on its scheduler (see ``build``)."""

    desk: Any
    db: Any
    clients: list
    scheduler: Any
    schema: str | None
    startup_s: float
    accounts: int
    streams: Any = None  # the public streams and the aiohttp session of every stream (``--rest``: None)
    heap_settling: Any = None  # freeze_heap_once_settled, as traderagent run starts it

    async def warm_up(self, warmup_max: float) -> float:
        """Wait until every bot ticked twice, the ladders' first placements settled (thousands of
        orders, each written to the database twice) and the heap was frozen again; returns the seconds it took."""
        warm0 = time.perf_counter()
        seen, calm = -1, 0
        while (calm < 3 or not self.heap_settling.done()) and time.perf_counter() - warm0 < warmup_max:
            await asyncio.sleep(2.0)
            ticked = all(self.desk.tick_counts.get(name, 0) >= 2 for name in self.desk.bots)
            placed = sum(len(h.bot.open_orders) for h in self.desk.bots.values())
            calm = calm + 1 if ticked and placed == seen else 0
            seen = placed
        return time.perf_counter() - warm0

    async def close(self) -> None:
        self.heap_settling.cancel()
        await self.desk.stop()
        if self.streams is not None:
            public, session = self.streams
            await public.close()
            await session.close()
        for c in self.clients:
            await c.close()
        await self.db.close()
        if self.schema is not None:
            await _drop_schema(self.schema)


async def build(n: int, url: str, tick: float, per_account: int, workdir: Path, *, mix: str = "all",
                db_backend: str = "sqlite", grid_range: str = "0.02", bybit_limits: bool = False,
                schema: str | None = None, claim: Any = None, streams: bool = False) -> BenchDesk:
    """``n`` bots (``bot_specs``), ``per_account`` per simulator account, recovered and ticking.
    ``schema``: a PostgreSQL schema shared with other desks (kept); ``claim(db, names)``: the desk's
    leases (bench_fleet.py's workers), which say which of the bots it runs. ``streams``: the desk's
    WebSockets, as ``traderagent run`` opens them by default (app.py): the public one feeds tickers and
    candles, each account's private one its fills, orders, positions and wallet (no per-tick poll)."""
    from traderagent.api.bybit_direct_client import ByBitDirectClient
    from traderagent.app import freeze_heap, freeze_heap_once_settled
    from traderagent.control import Desk
    from traderagent.database.manager import DatabaseManager
    from traderagent.orchestrator.capital_wiring import load_capital_manager
    from traderagent.orchestrator.events import EventBus
    from traderagent.orchestrator.market_data import MarketData
    from traderagent.orchestrator.risk import RiskRails
    from traderagent.orchestrator.scheduler import DeskScheduler

    limits = {} if bybit_limits else {p: ORDER_LIMIT for p in ("/v5/order/create", "/v5/order/cancel",
                                                                  "/v5/order/amend")}
    accounts = math.ceil(n / per_account)
    clients = []
    for i in range(accounts):
        c = ByBitDirectClient(f"bench-{i}", f"bench-secret-{i}", base_url=url, rate_limits=limits, connection_limit=20)
        await c.initialize()
        clients.append(c)
    own = None
    if db_backend == "postgresql":
        own = None if schema else f"bench_{uuid.uuid4().hex[:12]}"  # a fresh schema, dropped afterwards
        db = DatabaseManager(PG_URL, schema=schema or own)
    else:
        db = DatabaseManager(f"sqlite+aiosqlite:///{workdir / f'bench-{n}.db'}")
    await db.initialize()
    # capital so that each bot deploys about 500 USDT in phase 1 (5%)
    capital, persister = await load_capital_manager(db, Decimal(10_000 * n))
    stream_parts, open_fill_stream = _streams(url) if streams else (None, None)
    public = MarketData(clients[0], streams=stream_parts[0] if stream_parts else None)
    scheduler = DeskScheduler()
    specs = bot_specs(n, tick, mix, grid_range)
    leases = await claim(db, [s.name for s in specs]) if claim else None
    desk = Desk(db, {"linear": clients[0]}, event_bus=EventBus(), capital_manager=capital, capital_persister=persister,
                rails=RiskRails(Decimal("0.01"), Decimal("10"), Decimal("0.5")), scheduler=scheduler,
                market_data={"linear": public}, leases=leases, open_fill_stream=open_fill_stream)
    account_data = [MarketData(c, public=public) for c in clients]
    for i, spec in enumerate(specs):
        if leases is None or leases.owns(spec.name):
            await desk.add_bot(spec, client=clients[i // per_account], market_data=account_data[i // per_account])
    assert not desk.refused, desk.refused[:3]
    t0 = time.perf_counter()
    await desk.start(schedule=False)
    startup = time.perf_counter() - t0
    desk._schedule()
    scheduler.start()
    freeze_heap()  # as traderagent run does once the desk runs, and again once every bot has settled
    settling = asyncio.create_task(freeze_heap_once_settled(desk))
    return BenchDesk(desk, db, clients, scheduler, own, startup, accounts, stream_parts, settling)


def _streams(url: str) -> tuple[tuple[Any, Any], Any]:
    """((public streams, session), the private streams' factory), wired as app.py wires them."""
    import aiohttp

    from traderagent.api.bybit_streams import PrivateStream, PublicStreams

    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))

    def open_stream(client: Any, fills: Any) -> PrivateStream:
        return PrivateStream(session, client, on_fill=fills.on_fill, on_order=fills.on_order,
                             on_position=fills.on_positions, on_wallet=fills.on_wallet,
                             on_connected=fills.reconcile, on_auth_failed=fills.on_auth_failed)

    return (PublicStreams(session, url), session), open_stream


async def _filled(db: Any) -> int:
    """Orders filled so far (their rows' final status): the fills booked, by stream or by REST."""
    from sqlalchemy import func, select

    from traderagent.database.models import Order

    async with db._read() as session:  # a benchmark's count: no query of the desk's needs it
        return int((await session.execute(select(func.count()).select_from(Order).where(Order.status == "FILLED"))).scalar_one())


def _requests(clients: list) -> int:
    """REST requests the desk's clients have sent so far (every account's, public data included)."""
    return sum(c.get_statistics()["requests"] for c in clients)


def _thread_cpu(proc: Any) -> float:
    """CPU seconds of the event loop's thread (the others: the database driver's, the resolver's)."""
    import threading

    me = threading.get_native_id()
    return next((t.user_time + t.system_time for t in proc.threads() if t.id == me), float("nan"))


def _load_code() -> None:
    """Import what a desk runs, so that the base RSS holds the code and the RSS growth the bots."""
    import importlib

    for module in ("traderagent.control", "traderagent.database.manager", "traderagent.api.bybit_direct_client",
                   "traderagent.strategies.grid_adapter", "traderagent.strategies.dca_adapter",
                   "traderagent.strategies.trend_follower_adapter", "traderagent.strategies.smc_adapter",
                   "asyncpg", "aiosqlite"):
        importlib.import_module(module)


class Bursts:
    """``--bursts``: what each second of the measured window held (ticks run and late, the work done in it,
    the event loop's busy time and its longest single step, both in CPU time of the loop's thread, so a loaded
    machine does not lengthen them), to see what the late ticks coincide with.
    It wraps the event loop's callbacks, the group commit, the bots' persist and analysis and the garbage
    collector for the window only; the wrappers cost some CPU, so no latency figure is taken with it."""

    def __init__(self) -> None:
        self.t0 = time.monotonic()
        self.rows: dict[int, Counter] = {}
        self.longest: dict[int, tuple[float, str]] = {}  # second -> (seconds, what that step ran)
        self._undo: list[tuple[Any, str, Any]] = []
        self._gc_at = 0.0

    def _row(self, at: float | None = None) -> Counter:
        second = int((time.monotonic() if at is None else at) - self.t0)
        return self.rows.setdefault(second, Counter())

    def _patch(self, owner: Any, name: str, wrapper: Any) -> None:
        self._undo.append((owner, name, getattr(owner, name)))
        setattr(owner, name, wrapper)

    def start(self) -> None:
        from asyncio import events

        from traderagent.database.group_commit import GroupCommit
        from traderagent.orchestrator.bot_orchestrator import BotOrchestrator

        run, commit = events.Handle._run, GroupCommit._commit
        persist, analyse = BotOrchestrator._persist, BotOrchestrator._analyse

        def timed_run(handle: Any) -> None:  # CPU time: a step the machine's load preempted is not longer
            t = time.thread_time()
            run(handle)
            took = time.thread_time() - t
            row = self._row()
            row["busy_us"] += int(took * 1e6)
            second = int(time.monotonic() - self.t0)
            if took > self.longest.get(second, (0.0, ""))[0]:
                self.longest[second] = (took, _step_name(handle._callback))

        async def counted_commit(group: Any, batch: list) -> None:
            t = time.perf_counter()
            await commit(group, batch)
            row = self._row()
            row["commits"] += 1
            row["written"] += len(batch)
            row["commit_max_ms"] = max(row["commit_max_ms"], int((time.perf_counter() - t) * 1000))

        async def counted_persist(bot: Any, **kw: Any) -> bool:
            soft = not bot._dirty and bot._soft_dirty and not kw.get("force")
            done = await persist(bot, **kw)
            if soft and not bot._soft_dirty:
                self._row()["soft_saves"] += 1
            return done

        async def counted_analyse(bot: Any, frames: Any, min_candles: int) -> Any:
            got = await analyse(bot, frames, min_candles)
            if got is not None:
                self._row()["analyses"] += 1
            return got

        self._patch(events.Handle, "_run", timed_run)
        self._patch(GroupCommit, "_commit", counted_commit)
        self._patch(BotOrchestrator, "_persist", counted_persist)
        self._patch(BotOrchestrator, "_analyse", counted_analyse)
        gc.callbacks.append(self._on_gc)

    def _on_gc(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._gc_at = time.thread_time()
            return
        row = self._row()
        row[f"gc{info['generation']}"] += 1
        row["gc_us"] += int((time.thread_time() - self._gc_at) * 1e6)

    def sample(self, requests: int, cpu: float, scheduler: Any) -> None:
        """Once a second from the bench's loop: the REST requests and CPU seconds so far (cumulative), the ticks
        in flight and those waiting for a turn (``TICKS_IN_FLIGHT``) at that moment."""
        row = self._row()
        row["requests_at"], row["cpu_ms_at"] = requests, int(cpu * 1000)
        row["in_flight"], row["waiting"] = scheduler.in_flight, len(scheduler._turns)

    def stop(self) -> None:
        for owner, name, original in reversed(self._undo):
            setattr(owner, name, original)
        gc.callbacks.remove(self._on_gc)

    def report(self, timeline: list[tuple[float, float]], started: float) -> None:
        for at, latency in timeline:  # (seconds since started, latency), recorded at each tick's end
            row = self._row(started + at)
            row["ticks"] += 1
            row["late"] += latency > 1.0
            row["lat_max_ms"] = max(row["lat_max_ms"], int(latency * 1000))
        print("  per second: s ticks late max-latency-ms | loop CPU ms, longest step CPU ms (what) | analyses soft-saves"
              " | commits writes commit-max-ms | gc (gen:count) gc-ms | REST requests, CPU ms | in flight, waiting", flush=True)
        requests = cpu = None
        for second in sorted(self.rows):
            row = self.rows[second]
            took, what = self.longest.get(second, (0.0, ""))
            gcs = " ".join(f"{g}:{row[f'gc{g}']}" for g in range(3) if row[f"gc{g}"])
            d_req = row["requests_at"] - requests if requests is not None and row["requests_at"] else ""
            d_cpu = row["cpu_ms_at"] - cpu if cpu is not None and row["cpu_ms_at"] else ""
            if row["requests_at"]:
                requests, cpu = row["requests_at"], row["cpu_ms_at"]
            print(f"  {second:3d} {row['ticks']:5d} {row['late']:4d} {row['lat_max_ms']:5d} | {row['busy_us'] // 1000:4d}"
                  f" {took * 1000:6.1f} ({what}) | {row['analyses']:4d} {row['soft_saves']:4d} | "
                  f"{row['commits']:3d} {row['written']:5d} {row['commit_max_ms']:4d} | {gcs or '-'} "
                  f"{row['gc_us'] // 1000} | {d_req} {d_cpu} | {row['in_flight']} {row['waiting']}", flush=True)


def _step_name(callback: Any) -> str:
    """What an event-loop step ran: a task's coroutine and the innermost one it waits on after the step
    (where the step ended), else the callback's name."""
    task = getattr(callback, "__self__", None)
    if not isinstance(task, asyncio.Task):
        return getattr(callback, "__qualname__", repr(callback))[:60]
    coro: Any = task.get_coro()
    outer = getattr(coro, "__qualname__", "?")
    while getattr(coro, "cr_await", None) is not None and hasattr(coro.cr_await, "cr_await"):
        coro = coro.cr_await
    return f"{outer} > {getattr(coro, '__qualname__', '?')}"


async def run_desk(n: int, url: str, duration: float, tick: float, per_account: int, workdir: Path,
                   warmup_max: float = 60.0, mix: str = "all", db_backend: str = "sqlite",
                   profile: str | None = None, sim_pid: int | None = None, grid_range: str = "0.02",
                   bybit_limits: bool = False, schema: str | None = None, claim: Any = None,
                   streams: bool = False, bursts: bool = False, in_flight: int | None = None) -> dict:
    import psutil

    from traderagent.orchestrator.state import BotState

    _load_code()
    proc = psutil.Process()
    base_rss = proc.memory_info().rss  # the code loaded, before any client, database or bot
    bench = await build(n, url, tick, per_account, workdir, mix=mix, db_backend=db_backend, grid_range=grid_range,
                        bybit_limits=bybit_limits, schema=schema, claim=claim, streams=streams)
    desk, db, scheduler = bench.desk, bench.db, bench.scheduler
    if in_flight is not None:
        scheduler.concurrency = in_flight
    warmup = await bench.warm_up(warmup_max)
    from traderagent.orchestrator.scheduler import TickStats

    orders0, fills0 = (await db.counts())["orders"], await _filled(db)
    requests0 = _requests(bench.clients)
    scheduler.stats = TickStats(started=time.monotonic(), keep=2 * n * int(duration / tick + 1))
    ticks0 = dict(desk.tick_counts)
    deferred0 = desk.analysis_budget.deferred
    cache = desk.analysis_cache
    hits0, misses0 = cache.hits, cache.misses
    profiler = None
    if profile:
        import cProfile

        profiler = cProfile.Profile(time.process_time)  # CPU time: other processes' load does not count
        profiler.enable()
    burst = Bursts() if bursts else None
    if burst is not None:
        burst.start()
    proc.cpu_percent(None)
    cpu0 = proc.cpu_times()
    main0 = _thread_cpu(proc)
    sim_proc = psutil.Process(sim_pid) if sim_pid else None
    sim0 = sim_proc.cpu_times() if sim_proc else None
    wall0 = time.perf_counter()
    peak_rss = proc.memory_info().rss
    end = time.monotonic() + duration
    while time.monotonic() < end:
        await asyncio.sleep(1.0)
        peak_rss = max(peak_rss, proc.memory_info().rss)
        if burst is not None:
            burst.sample(_requests(bench.clients), time.process_time(), scheduler)
    scheduler.scheduler.pause()  # desk.stop() below lets the ticks in flight finish
    if burst is not None:
        burst.stop()
    wall = time.perf_counter() - wall0
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(profile)
    cpu1 = proc.cpu_times()
    main_pct = 100.0 * (_thread_cpu(proc) - main0) / wall
    cpu_pct = 100.0 * ((cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)) / wall
    sim_pct = float("nan")
    if sim_proc is not None and sim0 is not None:
        sim1 = sim_proc.cpu_times()
        sim_pct = 100.0 * ((sim1.user - sim0.user) + (sim1.system - sim0.system)) / wall
    load = os.getloadavg()[0]

    stats = scheduler.stats
    lat = sorted(stats.latencies)
    slow = [(round(t, 1), round(x, 3)) for t, x in stats.timeline if x > 0.5]
    if slow:
        print(f"  slow ticks (s since scheduler start, latency): {slow[:8]}{' ...' if len(slow) > 8 else ''}"
              f" {len(slow)} in all", flush=True)
    if burst is not None:
        burst.report(stats.timeline, stats.started)
    orders, fills = (await db.counts())["orders"], await _filled(db)
    requests = _requests(bench.clients) - requests0
    failed = [h.bot.last_error or "?" for h in desk.bots.values() if h.bot.state is BotState.ERROR]
    errors = len(failed)
    for why, count in Counter(text[:160] for text in failed).most_common(3):
        print(f"  {count} bot(s) in ERROR: {why}", flush=True)
    ran = len(desk.bots)
    ticks = sum(desk.tick_counts.values()) - sum(ticks0.values())
    await bench.close()
    startup, accounts = bench.startup_s, bench.accounts

    def pct(q: float) -> float:
        return lat[min(len(lat) - 1, int(q * len(lat)))] if lat else float("nan")

    return {
        "bots": n, "ran": ran, "accounts": accounts, "duration_s": round(wall, 1), "startup_s": round(startup, 1),
        "ticks": ticks, "expected_ticks": int(n * duration / tick),
        "p50_s": round(pct(0.50), 4), "p99_s": round(pct(0.99), 4), "max_s": round(lat[-1], 4) if lat else None,
        "mean_s": round(statistics.fmean(lat), 4) if lat else None,
        "missed": stats.missed, "skipped": stats.skipped, "late": stats.late, "bot_errors": errors, "orders": orders, "orders_measured": orders - orders0,
        "fills_measured": fills - fills0, "requests_measured": requests,
        "analysis_deferred": desk.analysis_budget.deferred - deferred0, "warmup_s": round(warmup, 1),
        "cache_hits": cache.hits - hits0, "cache_misses": cache.misses - misses0,
        "cpu_pct_one_core": round(cpu_pct, 1), "cpu_ms_per_tick": round(cpu_pct * wall * 10 / max(ticks, 1), 3), "sim_cpu_pct": round(sim_pct, 1),
        "main_cpu_pct": round(main_pct, 1), "load1": round(load, 1), "peak_rss_mb": round(peak_rss / 2**20, 1),
        "base_rss_mb": round(base_rss / 2**20, 1), "kb_per_bot": round((peak_rss - base_rss) / 1024 / n, 1),
    }


LOCKSTEP_WARMUP = 5  # rounds before measuring: the ladders' first placements
SYMBOLS = ("XRPUSDT", "SOLUSDT", "BTCUSDT", "ETHUSDT")


async def run_lockstep(n: int, sim: subprocess.Popen, url: str, rounds: int, per_account: int, workdir: Path, *,
                       mix: str, db_backend: str, grid_range: str, bybit_limits: bool, streams: bool,
                       profile: str | None = None) -> dict:
    """``rounds`` rounds of one 1m candle and every bot ticking once (``--lockstep`` in the module docstring);
    ``sim`` serves at speed 0 and steps a candle per line on its stdin."""
    from traderagent.app import freeze_heap

    bench = await build(n, url, 1.0, per_account, workdir, mix=mix, db_backend=db_backend, grid_range=grid_range,
                        bybit_limits=bybit_limits, streams=streams)
    bench.scheduler.scheduler.pause()  # the rounds tick the bots
    desk, db, public = bench.desk, bench.db, bench.desk.market["linear"]
    loop = asyncio.get_running_loop()

    async def one_round() -> None:
        before = [public.forming_open_ms(s, "1m") for s in SYMBOLS]
        assert sim.stdin is not None and sim.stdout is not None
        sim.stdin.write("step\n")
        sim.stdin.flush()
        await loop.run_in_executor(None, sim.stdout.readline)
        for _ in range(500):  # the candle's close reaches the desk (pushed, or read on the tick's REST path)
            if streams is False or [public.forming_open_ms(s, "1m") for s in SYMBOLS] != before:
                break
            await asyncio.sleep(0.01)
        await desk.tick_all()

    for _ in range(LOCKSTEP_WARMUP):
        await one_round()
    bench.heap_settling.cancel()  # its ticks are scheduled ones: the rounds settled the bots, freeze as it would
    freeze_heap()
    requests0, orders0, fills0 = _requests(bench.clients), (await db.counts())["orders"], await _filled(db)
    profiler = None
    if profile:
        import cProfile

        profiler = cProfile.Profile(time.thread_time)  # the event loop's own CPU, not the threads' it waits on
        profiler.enable()
    collections0 = sum(s["collections"] for s in gc.get_stats())
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for _ in range(rounds):
        await one_round()
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    collections = [s["collections"] for s in gc.get_stats()]
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(profile)
    requests, orders, fills = (_requests(bench.clients) - requests0, (await db.counts())["orders"] - orders0,
                               await _filled(db) - fills0)
    await bench.close()
    ticks = n * rounds
    return {"bots": n, "rounds": rounds, "wall_s": round(wall, 1), "cpu_ms_per_tick": round(cpu * 1000 / ticks, 3),
            "requests_per_tick": round(requests / ticks, 3), "orders": orders, "fills": fills,
            "gc": sum(collections) - collections0,
            "load1": round(os.getloadavg()[0], 1)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bots", default="1000,3000", help="comma-separated bot counts (default 1000,3000)")
    p.add_argument("--duration", type=float, default=60.0, help="seconds of ticking per run (default 60)")
    p.add_argument("--tick", type=float, default=1.0, help="tick interval of every bot (default 1 s)")
    p.add_argument("--variants", default="realtime,fast,stress",
                   help="comma-separated market speeds to run: realtime (1 candle per 60 s, the primary "
                        "measurement), fast (1 per 6 s) and/or stress (1 per second); default all three")
    p.add_argument("--speed", type=float, default=None,
                   help="a custom simulator speed (1m candles per second) instead of --variants")
    p.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite",
                   help=f"sqlite (WAL file in a temp folder, default) or postgresql ({PG_URL}, a fresh schema)")
    p.add_argument("--per-account", type=int, default=4,
                   help="bots per simulator account (default 4: one per symbol, as bots sharing a symbol in one "
                        "account would share its one-way position)")
    p.add_argument("--bybit-limits", action="store_true",
                   help="keep ByBit's default per-UID order limits (10/s linear) in the simulator and the client")
    p.add_argument("--rest", action="store_true",
                   help="no WebSockets: every account polls its open orders and balance over REST each tick, "
                        "public data over REST (default: the streams, as `traderagent run` opens them)")
    p.add_argument("--mix", choices=["all", "signal", "ladders"], default="all",
                   help="all: grid/DCA/trend/SMC rotation; signal: trend/SMC only (few orders)")
    p.add_argument("--warmup-max", type=float, default=60.0, help="longest warm-up before measuring (s)")
    p.add_argument("--grid-range", default=None,
                   help="grid half-width (range_pct) of the grid bots (9 levels); default 0.005 at real time, "
                        "0.01 at 10x, 0.02 at 60x (grid_range_for)")
    p.add_argument("--profile", default=None, help="write a cProfile of the measured window to this file (CPU "
                   "time of the process; with --lockstep, of the event loop's thread only)")
    p.add_argument("--lockstep", type=int, default=None, metavar="ROUNDS",
                   help="no scheduler: ROUNDS rounds of every bot ticking once; prints the CPU per tick")
    p.add_argument("--bursts", action="store_true",
                   help="print what each second of the window held: ticks run and late, analyses, soft saves, "
                        "commits, GC, requests, CPU, the event loop's busy time and longest step (costs CPU)")
    p.add_argument("--in-flight", type=int, default=None,
                   help="ticks in flight at most (the scheduler's concurrency; default TICKS_IN_FLIGHT)")
    p.add_argument("--serve-sim", type=int, default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.serve_sim is not None:
        serve_sim(args.serve_sim, args.speed or 0.0, args.bybit_limits)
        return
    import logging

    logging.basicConfig(level=logging.ERROR, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.speed is not None:
        variants = [(f"speed {args.speed:g}", args.speed, "custom simulator speed")]
    else:
        variants = [(v, *VARIANTS[v.strip()]) for v in args.variants.split(",") if v.strip()]
    verdicts = []
    for label, speed, meaning in variants:
        print(f"== {label}: {meaning} (simulator speed {speed:.4g} candles/s), db {args.db}, mix {args.mix}, "
              f"market data and fills {'over REST only' if args.rest else 'from the streams'}", flush=True)
        for n in (int(x) for x in args.bots.split(",")):
            if args.lockstep is not None:
                res = run_one(n, speed, args)
                print(f"[{label}/{args.db}/{args.mix} lock step] {n:>5} bots x {res['rounds']} rounds in "
                      f"{res['wall_s']}s: CPU {res['cpu_ms_per_tick']} ms per tick (desk process, all threads), "
                      f"REST requests {res['requests_per_tick']} per tick, {res['orders']} orders placed and "
                      f"{res['fills']} filled, {res['gc']} collections (machine load {res['load1']})", flush=True)
                continue
            res = run_one(n, speed, args)
            print(
                f"[{label}/{args.db}/{args.mix}] {res['bots']:>5} bots ({res['accounts']} accounts) "
                f"{res['duration_s']}s @ {args.tick}s ticks: "
                f"latency from due p50 {res['p50_s']:.3f}s p99 {res['p99_s']:.3f}s max {res['max_s']:.3f}s | "
                f"ticks {res['ticks']}/{res['expected_ticks']} missed {res['missed']} "
                f"(skipped {res['skipped']}, late >1s {res['late']}) errors {res['bot_errors']} | "
                f"orders {res['orders']} ({res['orders_measured']} placed and {res['fills_measured']} filled in the "
                f"measured window), REST requests {res['requests_measured']} "
                f"({res['requests_measured'] / max(res['ticks'], 1):.3f} per tick), "
                f"analyses deferred {res['analysis_deferred']}, shared {res['cache_hits']}/"
                f"{res['cache_hits'] + res['cache_misses']} | CPU {res['cpu_pct_one_core']}% of a core = "
                f"{res['cpu_ms_per_tick']} ms per tick, event loop thread {res['main_cpu_pct']}% "
                f"(simulator {res['sim_cpu_pct']}%, machine load {res['load1']}), "
                f"peak RSS {res['peak_rss_mb']} MB = {res['base_rss_mb']} MB base + {res['kb_per_bot']} KB/bot "
                f"(start-up {res['startup_s']}s, warm-up {res['warmup_s']}s not measured)",
                flush=True,
            )
            per_account = res["orders_measured"] / res["duration_s"] / res["accounts"]
            limit = "10/s single + 10/s batch" if args.bybit_limits else f"raised to {ORDER_LIMIT}/s"
            print(f"  orders sent per account: {per_account:.2f}/s (ByBit's per-UID linear limit: {limit}); "
                  f"orders during warm-up {res['orders'] - res['orders_measured']} in {res['warmup_s']}s", flush=True)
            target = TARGETS.get(label)
            if target is not None and res["bots"] >= target:
                ok = (res["p99_s"] <= 1.0 and res["missed"] == 0 and res["bot_errors"] == 0
                      and res["kb_per_bot"] <= 100)
                verdicts.append((label, res, ok))
    feed = "REST" if args.rest else "streams"
    for label, res, ok in verdicts:
        print(f"target ({TARGETS[label]:,} bots {label}, p99 <= 1 s, no missed tick, <= 100 KB/bot) "
              f"[{args.db}, {feed}, {res['bots']} bots]: {'MET' if ok else 'NOT MET'} (p99 {res['p99_s']:.3f}s, "
              f"missed {res['missed']}, {res['cpu_ms_per_tick']} ms CPU per tick, {res['kb_per_bot']} KB/bot, "
              f"machine load {res['load1']})", flush=True)


def grid_range_for(speed: float) -> str:
    """The grids' half-width: steps (of 9 levels) near what the market moves in a minute of the run, so
    the ladders fill in the measured window. Real time: +-0.5%, steps of 0.125% (a 1m candle of the
    replayed data spans about 0.2%: a symbol crosses about a level a minute, each crossing fills every
    grid bot of the symbol and places its next order; two taker fees, 0.11%, still fit in a step); 10x:
    +-1%, steps of 0.25%; 60x: +-2%, steps of 0.5%."""
    if speed <= VARIANTS["realtime"][0]:
        return "0.005"
    return "0.01" if speed < 1 else "0.02"


def run_one(n: int, speed: float, args: argparse.Namespace) -> dict:
    stepped = args.lockstep is not None  # the simulator moves a candle per round, not with the clock
    sim, url = start_sim(math.ceil(n / args.per_account), 0.0 if stepped else speed, args.bybit_limits)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            if args.lockstep is not None:
                return asyncio.run(run_lockstep(n, sim, url, args.lockstep, args.per_account, Path(tmp), mix=args.mix,
                                                db_backend=args.db, grid_range=args.grid_range or grid_range_for(speed),
                                                bybit_limits=args.bybit_limits, streams=not args.rest,
                                                profile=args.profile))
            return asyncio.run(run_desk(n, url, args.duration, args.tick, args.per_account, Path(tmp),
                                        args.warmup_max, args.mix, args.db, args.profile, sim.pid,
                                        args.grid_range or grid_range_for(speed), args.bybit_limits,
                                        streams=not args.rest, bursts=args.bursts, in_flight=args.in_flight))
    finally:
        sim.terminate()
        sim.wait(10)


if __name__ == "__main__":
    main()
