"""Throughput of ByBitDirectClient vs pybit against the same exchange simulator.

Run: .venv/bin/python bench/bench_client.py [--rounds 1000] [--sim process|inprocess]

One "round" = fetch_ticker + create limit order (far below the market, so it rests) + cancel it,
i.e. three operations. Each client runs the same fixed number of rounds at concurrency 1 and 10
(ours: asyncio tasks sharing one aiohttp session; pybit: threads, each with its own HTTP session).
By default the simulator runs in its own process so that pybit's threads and our event loop do not
share a GIL with it; its CPU use is printed so a simulator bottleneck is visible.
Both clients run with rate limiting off and the simulator's per-endpoint limits removed: this
measures client overhead and concurrency, not ByBit's 10 orders/s budget.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import multiprocessing as mp
import sys
import threading
import time
import uuid
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psutil  # noqa: E402

KEY, SECRET = "bench-key", "bench-secret"
# "ours": default cancel_order (cancel + read-back = 4 requests per round);
# "ours-ack": cancel_order(confirm=False), the same 3 requests per round as pybit
CLIENTS = ("ours", "ours-ack", "pybit")
SYMBOL = "BTCUSDT"


# ------------------------------------------------------------------ simulator
async def _start_sim():
    from traderagent.sim import ExchangeSimulator, SimConfig
    from traderagent.sim.config import DEFAULT_RATE_LIMITS

    unlimited = dict.fromkeys(DEFAULT_RATE_LIMITS, 10**9)  # measure the clients, not ByBit's budget
    sim = ExchangeSimulator(SimConfig(seed=1, speed=0.0, rate_limits=unlimited, spot_rate_limits=dict(unlimited)))
    sim.add_account(KEY, SECRET, balances={"USDT": Decimal("100000000")})
    url = await sim.start(host="127.0.0.1", port=0)
    sim.set_price(SYMBOL, Decimal("50000"))
    return sim, url


def _sim_process(conn) -> None:
    logging.disable(logging.WARNING)

    async def main() -> None:
        sim, url = await _start_sim()
        conn.send(url)
        await asyncio.get_running_loop().run_in_executor(None, conn.recv)  # until told to stop
        await sim.stop()

    asyncio.run(main())


class SimHandle:
    """The simulator in a child process (default) or in a thread of this process."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.url = ""
        self.pid = 0

    def __enter__(self) -> SimHandle:
        if self.mode == "process":
            ctx = mp.get_context("spawn")
            self._conn, child = ctx.Pipe()
            self._proc = ctx.Process(target=_sim_process, args=(child,), daemon=True)
            self._proc.start()
            self.url = self._conn.recv()
            self.pid = self._proc.pid
        else:
            self._loop = asyncio.new_event_loop()
            ready = threading.Event()

            def run() -> None:
                asyncio.set_event_loop(self._loop)
                self._sim, self.url = self._loop.run_until_complete(_start_sim())
                ready.set()
                self._loop.run_forever()

            self._thread = threading.Thread(target=run, daemon=True)
            self._thread.start()
            ready.wait()
            self.pid = psutil.Process().pid
        return self

    def __exit__(self, *exc: object) -> None:
        if self.mode == "process":
            self._conn.send("stop")
            self._proc.join(10)
        else:
            asyncio.run_coroutine_threadsafe(self._sim.stop(), self._loop).result(10)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)

    def cpu_seconds(self) -> float:
        t = psutil.Process(self.pid).cpu_times()
        return t.user + t.system


# ------------------------------------------------------------------ clients
async def run_ours(url: str, rounds: int, concurrency: int, *, confirm: bool = True) -> tuple[float, int, float]:
    from traderagent.api.bybit_direct_client import ByBitDirectClient

    client = ByBitDirectClient(KEY, SECRET, base_url=url, enable_rate_limit=False, max_retries=0)
    await client.initialize()
    await client.fetch_ticker(SYMBOL)  # warm the connection pool
    before = client.get_statistics()["requests"]
    left = rounds

    async def worker() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            await client.fetch_ticker(SYMBOL)
            order = await client.create_limit_order(SYMBOL, "buy", Decimal("0.001"), Decimal("40000"))
            await client.cancel_order(order["id"], SYMBOL, confirm=confirm)

    cpu0, started = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu0
    requests = client.get_statistics()["requests"] - before
    await client.close()
    return elapsed, requests, cpu


def run_pybit(url: str, rounds: int, concurrency: int) -> tuple[float, int, float]:
    from pybit.unified_trading import HTTP

    lock = threading.Lock()
    left = [rounds]

    def take() -> bool:
        with lock:
            left[0] -= 1
            return left[0] >= 0

    def worker(session) -> None:
        while take():
            session.get_tickers(category="linear", symbol=SYMBOL)
            r = session.place_order(category="linear", symbol=SYMBOL, side="Buy", orderType="Limit",
                                    qty="0.001", price="40000", orderLinkId="pb-" + uuid.uuid4().hex)
            session.cancel_order(category="linear", symbol=SYMBOL, orderId=r["result"]["orderId"])

    sessions = []
    for _ in range(concurrency):
        s = HTTP(api_key=KEY, api_secret=SECRET, max_retries=1, retry_delay=0, recv_window=10000)
        s.endpoint = url
        s.get_tickers(category="linear", symbol=SYMBOL)  # warm its connection
        sessions.append(s)
    threads = [threading.Thread(target=worker, args=(s,)) for s in sessions]
    cpu0, started = time.process_time(), time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - started, rounds * 3, time.process_time() - cpu0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=1000, help="ticker+create+cancel rounds per run")
    parser.add_argument("--sim", choices=("process", "inprocess"), default="process")
    parser.add_argument("--repeat", type=int, default=3, help="runs per configuration (best is kept)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    logging.getLogger("pybit").setLevel(logging.ERROR)
    logging.getLogger("traderagent").setLevel(logging.ERROR)

    best: dict[tuple[str, int], tuple[float, float, float, float, float]] = {}
    with SimHandle(args.sim) as sim:
        print(f"simulator: {args.sim} at {sim.url}; {args.rounds} rounds x 3 ops per run, best of {args.repeat}; "
              f"{psutil.cpu_count()} CPUs, load average {psutil.getloadavg()[0]:.1f} before start")
        for concurrency in (1, 10):
            for _ in range(args.repeat):
                for name in CLIENTS:  # alternate so background load hits all alike
                    row = _measure(sim, name, args.rounds, concurrency)
                    if (name, concurrency) not in best or row[0] > best[(name, concurrency)][0]:
                        best[(name, concurrency)] = row
    print(f"{'client':<10}{'conc':>5}{'ops/s':>10}{'HTTP req/s':>12}{'elapsed s':>11}"
          f"{'client CPU ms/op':>18}{'sim CPU %':>11}")
    for (name, concurrency), (ops, reqs, elapsed, cpu_per_op, sim_cpu) in sorted(best.items(), key=lambda kv: kv[0][1]):
        print(f"{name:<10}{concurrency:>5}{ops:>10.0f}{reqs:>12.0f}{elapsed:>11.2f}{cpu_per_op:>18.3f}{sim_cpu:>11.0f}")
    for concurrency in (1, 10):
        theirs = best[("pybit", concurrency)]
        for name in CLIENTS[:2]:
            ours = best[(name, concurrency)]
            print(f"ratio {name}/pybit at concurrency {concurrency}: {ours[0] / theirs[0]:.2f}x ops/s, "
                  f"{ours[1] / theirs[1]:.2f}x HTTP req/s, {theirs[3] / ours[3]:.2f}x less client CPU per op")
    print("notes: 'ours' cancel_order reads the cancelled order back (fills/fee): 4 HTTP requests per round;"
          " 'ours-ack' and pybit send 3; sim CPU near 100% would mean the simulator is the bottleneck; on a busy"
          " 2-CPU box the machine itself is (client + sim CPU ~ 200%).")
    return 0


def _measure(sim: SimHandle, name: str, rounds: int, concurrency: int) -> tuple[float, float, float, float, float]:
    """(ops/s, HTTP req/s, elapsed, client CPU ms per op, sim CPU % over the run)."""
    sim0 = sim.cpu_seconds()
    if name.startswith("ours"):
        elapsed, requests, own = asyncio.run(run_ours(sim.url, rounds, concurrency, confirm=name == "ours"))
    else:
        elapsed, requests, own = run_pybit(sim.url, rounds, concurrency)
    sim_cpu = 100 * (sim.cpu_seconds() - sim0) / elapsed  # setup excluded on the client side only
    if sim.mode != "process":
        own = max(own - (sim.cpu_seconds() - sim0), 0.0)  # same process: take the simulator's share out
    return rounds * 3 / elapsed, requests / elapsed, elapsed, 1000 * own / (rounds * 3), sim_cpu


if __name__ == "__main__":
    sys.exit(main())
