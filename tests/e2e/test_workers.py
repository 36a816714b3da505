"""Two desk workers on one PostgreSQL database, the simulator as its own process (fleet/workers.py):

1. `traderagent worker --slot 0/1 --workers 2` split four order-heavy bots (grids and DCA), two each,
   as the rendezvous hash says; both place orders;
2. worker 0 is SIGKILLed mid-run: worker 1 takes its bots within 30 s (on one machine it sees the
   process gone at its next heartbeat; elsewhere the lease timeout, 25 s, tells) and trades on
   with them, their orders reconciled by orderLinkId;
3. worker 0 comes back: worker 1 hands its bots back gracefully and the new worker 0 trades them;
4. both stop cleanly, freeing every lease; a last run reconciles, and the exchange and the
   database agree: no duplicate order (by orderLinkId, and no two resting orders of a bot at one
   price), none lost (every order under our prefix on the exchange is in the database, every
   open one in the database is open on the exchange), and each bot's events came from one
   worker at a time.

Every wait polls the database or a worker's output against a deadline; none stands in for an event."""

from __future__ import annotations

import asyncio
import re
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import forkserver
from traderagent.api.bybit_direct_client import ByBitDirectClient
from traderagent.fleet.workers import assign, slot_name

from .desk_procs import (
    GITIGNORE,
    KEY,
    PY,
    SECRET,
    SimProcess,
    age_pending_rows,
    consistency_report,
    desk_env,
    fresh_postgres,
    polled_db,
    run_desk,
    wait_for,
)

pytestmark = [pytest.mark.timeout(600), pytest.mark.slow(41)]

BOT = """
[[bots]]
name = "{name}"
strategy = "{strategy}"
symbol = "{symbol}"
timeframe = "1m"
share = "0.25"
tick_seconds = 0.5
[bots.params]
"""
GRID = 'num_levels = {levels}\nrange_pct = "0.015"\n'
DCA = ('base_order = "60"\nsafety_order = "60"\nmax_safety_orders = 3\nprice_deviation = "0.002"\nstep_scale = "1.2"\n'
       'volume_scale = "1.2"\ntake_profit = "0.005"\n')
BOTS = '[risk]\nmax_exposure = "0.5"\n' + "".join(
    BOT.format(name=name, strategy=strategy, symbol=symbol) + params for name, strategy, symbol, params in (
        ("xrp-grid", "grid", "XRPUSDT", GRID.format(levels=9)), ("btc-grid-2", "grid", "BTCUSDT", GRID.format(levels=7)),
        ("sol-dca", "dca", "SOLUSDT", DCA), ("eth-dca", "dca", "ETHUSDT", DCA)))
NAMES = sorted(["xrp-grid", "btc-grid-2", "sol-dca", "eth-dca"])
SPLIT = assign(NAMES, [slot_name(0), slot_name(1)])
ZERO, ONE = sorted(SPLIT[slot_name(0)]), sorted(SPLIT[slot_name(1)])
ENV = {"TRADERAGENT_TOTAL_CAPITAL": "100000", "LOG_LEVEL": "info"}  # default lease timings: 5 s beats, 25 s
# the replay's speed: the test fills orders itself (fill_one), so the market need not run; at 20, a run stretched
# by a busy machine replayed enough market for ETH and BTC to fall 10 %: their ladders were liquidated and paused,
# and the takeover's "trading on" waited for fills that could not come
SPEED = "2"
EVENT = re.compile(r"^(\d\d:\d\d:\d\d) \[([\w-]+)\] ORDER_(?:PLACED|FILLED|CANCELLED)")


@pytest.fixture
def database() -> Iterator[str]:
    yield from fresh_postgres("workers")


def read(database: str) -> tuple[dict[str, str], Counter]:
    """(lease -> owner, bot -> orders in the database)."""
    async def go() -> tuple[dict[str, str], Counter]:
        async with polled_db(database) as db:
            leases = {r.bot_name: r.owner for r in await db.lease_holders([*NAMES, slot_name(0), slot_name(1)])}
            return leases, Counter(r.bot_name for r in await db.list_orders(limit=100_000))

    return asyncio.run(go())


def start_worker(slot: int, env: dict[str, str], cwd: Path, log: Path) -> subprocess.Popen:
    with open(log, "ab") as out:
        return forkserver.popen([PY, "-m", "traderagent", "worker", "--slot", str(slot), "--workers", "2"],
                                env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT)


def fills(log: Path, bot: str) -> int:
    return sum(1 for line in log.read_text(errors="replace").splitlines() if f"[{bot}] ORDER_FILLED" in line)


def fill_one(sim: SimProcess, database: str, bot: str) -> None:
    """Move the market onto one of ``bot``'s resting orders (placed by whichever worker): it fills, and
    the worker running the bot now books it and places the next order."""
    async def resting() -> list:
        async with polled_db(database) as db:
            return await db.list_orders(bot, statuses=["OPEN"], limit=10)

    rows = [r for r in asyncio.run(resting()) if r.price is not None]
    if rows:  # none: the last step of the bot is in flight; the next poll tries again
        sim.command(f"price {rows[0].symbol} {rows[0].price}")


def trades_on(sim: SimProcess, database: str, bots: list[str], proc: subprocess.Popen, log: Path) -> None:
    """Each of ``bots`` books a fill on the worker writing ``log``."""
    for bot in bots:
        seen = fills(log, bot)
        wait_for(f"{bot} trading on", lambda: fill_one(sim, database, bot) or fills(log, bot) > seen, proc, log)  # noqa: B023


def bot_events(log: Path) -> dict[str, list[str]]:
    """bot -> the times of its order events this worker printed."""
    found: dict[str, list[str]] = {}
    for line in log.read_text(errors="replace").splitlines():
        if m := EVENT.match(line):
            found.setdefault(m.group(2), []).append(m.group(1))
    return found


async def resting_price_levels(sim_url: str) -> Counter:
    client = ByBitDirectClient(KEY, SECRET, base_url=sim_url)
    await client.initialize()
    try:
        return Counter((o["symbol"], o["side"], o["price"])  # one bot per symbol
                       for o in await client.fetch_open_orders() if o["client_order_id"])
    finally:
        await client.close()


def test_two_workers_split_the_bots_survive_a_kill_and_hand_back(tmp_path, database):
    assert len(ZERO) == len(ONE) == 2, SPLIT  # the names are chosen so that each worker gets two
    (tmp_path / ".gitignore").write_text(GITIGNORE)
    bots = tmp_path / "bots.toml"
    bots.write_text(BOTS)
    logs = [tmp_path / "worker0.log", tmp_path / "worker1.log", tmp_path / "worker0-back.log"]
    sim = SimProcess("--speed", SPEED, "--seed", "3", "--balance", "200000")
    env = desk_env(sim.url, database, bots, **ENV)
    procs: list[subprocess.Popen] = []
    try:
        procs.append(start_worker(0, env, tmp_path, logs[0]))
        wait_for("worker 0's slot", lambda: read(database)[0].get(slot_name(0)), procs[0], logs[0])
        procs.append(start_worker(1, env, tmp_path, logs[1]))
        w1 = wait_for("worker 1's slot", lambda: read(database)[0].get(slot_name(1)), procs[1], logs[1])
        w0 = read(database)[0][slot_name(0)]

        def split(zero: str, one: str) -> bool:
            leases, orders = read(database)
            return (leases == {**dict.fromkeys(ZERO, zero), **dict.fromkeys(ONE, one), slot_name(0): zero,
                               slot_name(1): one} and all(orders[b] for b in NAMES))

        wait_for("the bots split and trading", lambda: split(w0, w1), procs[1], logs[1])
        assert "leads the desk" in logs[0].read_text() and "leads the desk" not in logs[1].read_text()
        trades_on(sim, database, ONE, procs[1], logs[1])  # worker 1 runs its share (adopted ladders rest silent)

        procs[0].kill()  # SIGKILL, mid-run: no release, no clean-up
        procs[0].wait()
        killed = time.monotonic()
        wait_for("worker 1 taking worker 0's bots", lambda: all(read(database)[0].get(b) == w1 for b in NAMES),
                 procs[1], logs[1], limit=60)
        assert time.monotonic() - killed <= 30, "the takeover took longer than the lease timeout and a heartbeat"
        trades_on(sim, database, ZERO, procs[1], logs[1])
        assert "leads the desk" in logs[1].read_text()  # @desk went with worker 0

        procs.append(start_worker(0, env, tmp_path, logs[2]))  # slot 0 comes back
        dead = w0  # its slot's row stays until a worker takes slot 0 again
        w0 = wait_for("worker 0 back", lambda: (o := read(database)[0].get(slot_name(0))) != dead and o, procs[2], logs[2])
        wait_for("the hand-back", lambda: split(w0, w1), procs[2], logs[2])
        trades_on(sim, database, ZERO, procs[2], logs[2])
        handed = [ln for ln in logs[1].read_text().splitlines() if "handed " in ln and " back" in ln]
        assert sorted(ln.split("handed ")[1].split()[0] for ln in handed) == ZERO, handed

        for proc in procs[1:]:
            proc.send_signal(signal.SIGTERM)
        for proc, log in zip(procs[1:], logs[1:], strict=True):
            assert proc.wait(60) == 0, log.read_text()[-3000:]
        assert read(database)[0] == {}  # clean stops free every lease, slots and @desk too

        sim.freeze()
        # a clean stop leaves uncertain creates PENDING (answered after the bound, or a retry refused at the
        # stop); the last run comes after the window in which any of them could still reach the exchange
        asyncio.run(age_pending_rows(database))
        final = tmp_path / "final.log"
        assert run_desk(desk_env(sim.url, database, bots, **ENV), tmp_path, 4, final) == 0, final.read_text()[-3000:]
        report = asyncio.run(consistency_report(sim.url, database))
        assert report["orders"] > 0 and report["bots"] == NAMES, report
        levels = asyncio.run(resting_price_levels(sim.url))
        assert levels and max(levels.values()) == 1, [k for k, n in levels.items() if n > 1]

        # one worker at a time: each bot's events stop on one worker before they start on the next
        first, second, third = (bot_events(log) for log in logs)
        for bot in NAMES:  # worker 0 ran every bot until worker 1 came
            assert max(first[bot]) <= min(second[bot]), bot
        for bot in ZERO:
            assert max(second[bot]) <= min(third[bot]), bot
        assert not set(ONE) & set(third), third.keys()
        for log in [*logs, final]:
            assert "Traceback" not in log.read_text(errors="replace"), log.read_text()[-3000:]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        sim.stop()
