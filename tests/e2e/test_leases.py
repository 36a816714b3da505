"""One owner per bot, with real desk processes on one database (an SQLite file, and PostgreSQL)
and the simulator as its own process:

1. desk 1 runs three bots;
2. desk 2 with the same bots file refuses in one line naming the bots and desk 1, exit code 2;
3. desk 3, whose bots file adds a fourth bot, runs that one and says in one line which bots desk 1 runs;
4. desk 1 is frozen (SIGSTOP) longer than the lease timeout: desk 3 takes its bots over, recovering
   their orders by orderLinkId; thawed (SIGCONT), desk 1's heartbeat finds them taken, stops them
   and alerts;
5. desk 3 is SIGKILLed; desk 4, started at once on the same machine, sees that process gone and
   takes every bot without waiting for the timeout;
6. desk 4 stops cleanly and releases every lease; a last run reconciles: no duplicate order,
   nothing unknown on the exchange.

Every wait polls the database or a desk's output against a deadline; none is a sleep standing in
for an event."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from tests import forkserver
from tests.database.conftest import _plain_dsn

from .desk_procs import (
    BOTS_TOML,
    GITIGNORE,
    PY,
    SimProcess,
    age_pending_rows,
    consistency_report,
    desk_env,
    fresh_postgres,
    polled_db,
    run_desk,
    start_desk,
    wait_for,
)
from .test_startup_errors import _one_line

pytestmark = pytest.mark.timeout(600)

THREE = ("btc-trend", "sol-dca", "xrp-grid")
ETH_DCA = """
[[bots]]
name = "eth-dca"
strategy = "dca"
symbol = "ETHUSDT"
timeframe = "1m"
share = "0.2"
tick_seconds = {tick}
[bots.params]
base_order = "60"
safety_order = "60"
max_safety_orders = 1
price_deviation = "0.002"
step_scale = "1.2"
volume_scale = "1.2"
take_profit = "0.005"
"""
# shares that leave room for the fourth bot; the three common bots get the same ones on every desk
SHARED = BOTS_TOML.replace('share = "0.3"', 'share = "0.25"').replace('share = "0.4"', 'share = "0.3"')
LEASE = {"TRADERAGENT_LEASE_HEARTBEAT": "1", "TRADERAGENT_LEASE_TIMEOUT": "16"}  # sends stop 11 s before expiry
# desks 3 and 4 hold their leases for long: desk 4 can only get desk 3's bots by seeing its process gone
LONG_LEASE = {"TRADERAGENT_LEASE_HEARTBEAT": "1", "TRADERAGENT_LEASE_TIMEOUT": "600"}


@pytest.fixture(params=[pytest.param("sqlite", marks=pytest.mark.slow(33)),
                        pytest.param("postgresql", marks=pytest.mark.slow(48))])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Path | str]:
    """An SQLite file, or a fresh PostgreSQL database (dropped afterwards)."""
    if request.param == "sqlite":
        yield tmp_path / "desk.db"
        return
    yield from fresh_postgres("leases")


def holders(database: Path | str) -> dict[str, str]:
    """bot -> owner of its lease, as the database says."""
    async def read() -> dict[str, str]:
        async with polled_db(database) as db:
            return {r.bot_name: r.owner for r in await db.lease_holders([*THREE, "eth-dca"])}

    return asyncio.run(read())


def order_count(database: Path | str) -> int:
    async def read() -> int:
        async with polled_db(database) as db:
            return len(await db.list_orders(limit=100_000))

    return asyncio.run(read())


def freeze_outside_transactions(proc: subprocess.Popen, database: Path | str) -> None:
    """SIGSTOP ``proc`` at a moment it has no write transaction open (frozen inside one, an SQLite
    desk would lock every other desk out until it thaws; a PostgreSQL one would hold its rows for
    the server's idle-in-transaction timeout). On SQLite the write lock is the file's: the test takes
    it itself, waiting while the desk runs on and ends its transaction, stops the desk while it holds
    the lock, and lets go (stopping and probing in turns gave a desk in a slow transaction no time to
    end it on a busy machine). On PostgreSQL: stopped, and while the server shows one open, thawed until
    it ends and stopped again."""
    if not isinstance(database, str):
        con = sqlite3.connect(database, timeout=120)  # SQLite's busy handler waits out the desks' transactions
        try:
            con.execute("BEGIN IMMEDIATE")
            proc.send_signal(signal.SIGSTOP)  # no desk holds the write lock now: this connection does
            _until_stopped(proc.pid)  # a thread still running for a moment could take the lock we let go
            con.rollback()
        finally:
            con.close()
        return
    for _ in range(200):
        proc.send_signal(signal.SIGSTOP)
        _until_stopped(proc.pid)
        if not asyncio.run(_pg_transaction_open(database, proc.pid)):
            return
        proc.send_signal(signal.SIGCONT)
        for _ in range(100):  # the desk runs on until the server sees its transaction end, then again
            if not asyncio.run(_pg_transaction_open(database, proc.pid)):
                break
    raise AssertionError("the desk was always inside a transaction")


def _until_stopped(pid: int) -> None:
    """Until every thread of ``pid`` is stopped (a signal is delivered to each thread in its own time)."""
    def running() -> list[Path]:
        found = []
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError):  # a thread that ended meanwhile
                if Path(task, "stat").read_text().rsplit(")", 1)[1].split()[0] not in "Tt":
                    found.append(task)
        return found

    for _ in range(10_000):
        if not running():
            return
        time.sleep(0.001)  # polling the kernel's view, not timing anything
    raise AssertionError(f"process {pid} did not stop: {running()}")


async def _pg_transaction_open(url: str, pid: int) -> bool:
    """Has desk process ``pid`` a transaction open (its connections are named ``traderagent:<pid>``)?"""
    conn = await asyncpg.connect(_plain_dsn(url), timeout=5)
    try:
        return bool(await conn.fetchval("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                                        "AND application_name = $1 AND xact_start IS NOT NULL", f"traderagent:{pid}"))
    finally:
        await conn.close()


def test_one_owner_per_bot_refusal_fencing_takeover_and_release(tmp_path, database):
    (tmp_path / ".gitignore").write_text(GITIGNORE)
    three, four = tmp_path / "three.toml", tmp_path / "four.toml"
    three.write_text(SHARED.format(tick=0.2))
    four.write_text((SHARED + ETH_DCA).format(tick=0.2))
    log1, log3, log4 = tmp_path / "desk1.log", tmp_path / "desk3.log", tmp_path / "desk4.log"
    sim = SimProcess("--speed", "20", "--seed", "3")
    desk1 = desk3 = desk4 = None
    try:
        desk1 = start_desk(desk_env(sim.url, database, three, **LEASE), tmp_path, log1)
        owners = wait_for("desk 1's leases", lambda: (h := holders(database)) and len(h) == 3 and h, desk1, log1)
        (owner1,) = set(owners.values())
        wait_for("desk 1's orders", lambda: order_count(database) > 0, desk1, log1)

        refused = forkserver.run([PY, "-m", "traderagent", "run", "--ticks", "1"], cwd=tmp_path, text=True,
                                 capture_output=True, timeout=120,
                                 env=desk_env(sim.url, database, three, LOG_LEVEL="info", **LEASE))
        line = _one_line(refused)
        assert line.startswith("traderagent: btc-trend, sol-dca, xrp-grid run by another desk") and owner1 in line, line
        assert holders(database) == dict.fromkeys(THREE, owner1)  # the refused desk took nothing

        desk3 = start_desk(desk_env(sim.url, database, four, **LONG_LEASE), tmp_path, log3)
        notes = wait_for("desk 3's note", lambda: [ln for ln in log3.read_text().splitlines()
                                                   if "run by another desk" in ln], desk3, log3)
        assert holders(database)["eth-dca"] != owner1
        assert len(notes) == 1 and "btc-trend, sol-dca, xrp-grid" in notes[0] and owner1 in notes[0], notes

        freeze_outside_transactions(desk1, database)  # alive, but renewing nothing
        owner3 = holders(database)["eth-dca"]
        every = [*THREE, "eth-dca"]
        wait_for("the takeover", lambda: holders(database) == dict.fromkeys(every, owner3), desk3, log3, limit=60)
        wait_for("the recovered bots' log lines", lambda: log3.read_text().count(f"from {owner1}") == 3, desk3, log3)
        desk1.send_signal(signal.SIGCONT)
        alerts = wait_for("desk 1's alerts", lambda: [ln for ln in log1.read_text().splitlines()
                                                      if "ERROR lease lost" in ln], desk1, log1)
        wait_for("every alert", lambda: len([ln for ln in log1.read_text().splitlines()
                                             if "ERROR lease lost" in ln]) == 3, desk1, log1)
        assert all(owner3 in ln for ln in alerts), alerts
        orders = order_count(database)
        wait_for("desk 3 trading on", lambda: order_count(database) > orders, desk3, log3)
        desk1.send_signal(signal.SIGTERM)  # it runs no bot: its stop releases nothing of desk 3's
        assert desk1.wait(60) == 0, log1.read_text()[-3000:]
        assert holders(database) == dict.fromkeys(every, owner3)

        desk3.kill()  # SIGKILL: no release, no cleanup
        desk3.wait()
        desk4 = start_desk(desk_env(sim.url, database, four, **LONG_LEASE), tmp_path, log4)
        wait_for("desk 4's leases", lambda: (h := holders(database)) and set(h.values()) - {owner3} and len(h) == 4,
                 desk4, log4)
        text = log4.read_text()  # it did not wait for the timeout: it saw desk 3's process gone
        assert f"taking over at once the bots of {owner3}: that process no longer runs" in text, text[-3000:]
        assert "run by another desk" not in text
        orders = order_count(database)
        wait_for("desk 4 trading", lambda: order_count(database) > orders, desk4, log4)
        desk4.send_signal(signal.SIGTERM)
        assert desk4.wait(60) == 0, log4.read_text()[-3000:]
        assert holders(database) == {}  # a clean stop frees every bot at once

        sim.freeze()
        asyncio.run(age_pending_rows(database))  # the last run comes after the window of desk 3's last creates
        final = tmp_path / "final.log"
        assert run_desk(desk_env(sim.url, database, four), tmp_path, 4, final) == 0, final.read_text()[-3000:]
        report = asyncio.run(consistency_report(sim.url, database))
        assert report["orders"] > 0 and report["bots"] == sorted([*THREE, "eth-dca"]), report
        for log in (log1, log3, log4, final):
            assert "Traceback" not in log.read_text(errors="replace"), log.read_text()[-3000:]
    finally:
        for proc in (desk1, desk3, desk4):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGCONT)
                proc.kill()
                proc.wait()
        sim.stop()
