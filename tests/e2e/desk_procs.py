"""Subprocess plumbing for the end-to-end desk tests: the simulator and `traderagent run`."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import asyncpg
from sqlalchemy import update

from tests import forkserver
from tests.conftest import skip_server_absent
from tests.database.conftest import _find_postgres, _plain_dsn
from traderagent.api.bybit_direct_client import ByBitDirectClient
from traderagent.database.manager import DatabaseManager
from traderagent.database.models import Order
from traderagent.orchestrator.orders import PENDING_GRACE_S

REPO = Path(__file__).resolve().parents[2]
PY = sys.executable
KEY, SECRET = "crash-key", "crash-secret"
STATUS = {"open": "OPEN", "partially_filled": "PARTIALLY_FILLED", "filled": "FILLED", "cancelled": "CANCELLED",
          "rejected": "REJECTED"}

BOTS_TOML = """
[risk]
max_exposure = "0.5"

[[bots]]
name = "xrp-grid"
strategy = "grid"
symbol = "XRPUSDT"
timeframe = "1m"
share = "0.3"
tick_seconds = {tick}
[bots.params]
num_levels = 9
range_pct = "0.015"

[[bots]]
name = "sol-dca"
strategy = "dca"
symbol = "SOLUSDT"
timeframe = "1m"
share = "0.3"
tick_seconds = {tick}
[bots.params]
base_order = "20"
safety_order = "20"
max_safety_orders = 3
price_deviation = "0.002"
step_scale = "1.2"
volume_scale = "1.2"
take_profit = "0.005"

[[bots]]
name = "btc-trend"
strategy = "trend_follower"
symbol = "BTCUSDT"
timeframe = "1m"
share = "0.4"
tick_seconds = {tick}
[bots.params]
ema_fast = 3
ema_slow = 8
adx_period = 5
adx_threshold = 10.0
atr_period = 5
stop_atr_mult = 1.5
trailing_atr_mult = 1.5
take_profit_r = 1.5
risk_per_trade = "0.05"
"""
SYMBOLS = ("XRPUSDT", "SOLUSDT", "BTCUSDT")
GITIGNORE = ".env\n.env.*\n__pycache__/\n*.pyc\n*.db\n*.log\n"  # so the security audit has nothing to say


def one_bot(strategy: str) -> str:
    """BOTS_TOML with only the bot of ``strategy`` (its risk section kept)."""
    head, *bots = BOTS_TOML.split("[[bots]]")
    return head + "[[bots]]" + next(b for b in bots if f'strategy = "{strategy}"' in b)


class SimProcess:
    def __init__(self, *args: str) -> None:
        self.proc = forkserver.popen(
            [PY, str(REPO / "tests" / "e2e" / "sim_process.py"), "--key", KEY, "--secret", SECRET, *args],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO,
        )
        line = self.proc.stdout.readline()
        if "listening on" not in line:
            self.proc.kill()
            raise RuntimeError(f"simulator did not start: {line!r}")
        self.url = line.split()[-1]

    def freeze(self) -> None:
        self.proc.send_signal(signal.SIGUSR1)
        assert "frozen" in self.proc.stdout.readline()

    def command(self, line: str) -> str:
        """A control line on the simulator's stdin (sim_process.py); returns its one-line answer."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        return self.proc.stdout.readline().strip()

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def db_url(db: Path | str) -> str:
    """A database URL: an SQLite file's path, or a URL as is (PostgreSQL)."""
    return db if isinstance(db, str) else f"sqlite+aiosqlite:///{db}"


_MIGRATED: set[str] = set()  # the databases polled_db brought up to date already


@contextlib.asynccontextmanager
async def polled_db(db: Path | str) -> AsyncIterator[DatabaseManager]:
    """A DatabaseManager on ``db`` for one poll of a test that waits for desks: the first poll of a
    database brings its schema up to date (as the desks do), the next ones only read; alembic's
    upgrade check costs each of the many polls a write transaction and ~20 ms of CPU."""
    url = db_url(db)
    manager = DatabaseManager(url)
    try:
        if url not in _MIGRATED:
            await manager.initialize()
            _MIGRATED.add(url)
        yield manager
    finally:
        await manager.close()


async def age_pending_rows(db_path: Path | str) -> int:
    """Date every PENDING write-ahead row back past PENDING_GRACE_S: the next run comes, as if it waited,
    after the window of every create the dead desks may have signed (whatever they sent has arrived, the
    simulator answered it). Returns how many rows."""
    db = DatabaseManager(db_url(db_path))
    await db.initialize()
    long_ago = datetime.now(UTC) - timedelta(seconds=PENDING_GRACE_S + 60)
    try:
        async with db._engine.begin() as conn:
            done = await conn.execute(update(Order).where(Order.status == "PENDING").values(created_at=long_ago))
        return done.rowcount
    finally:
        await db.close()


def desk_env(sim_url: str, db_path: Path | str, bots: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRADERAGENT_", "BYBIT_", "TELEGRAM_"))}
    env.update({
        "TRADERAGENT_MODE": "paper", "BYBIT_BASE_URL": sim_url, "BYBIT_API_KEY": KEY, "BYBIT_API_SECRET": SECRET,
        "DATABASE_URL": db_url(db_path), "TRADERAGENT_BOTS_FILE": str(bots),
        "TRADERAGENT_TOTAL_CAPITAL": "20000", "LOG_LEVEL": "warning", "PYTHONPATH": str(REPO),
    })
    env.update(extra)
    return env


def run_desk(env: dict[str, str], cwd: Path, ticks: int, log_path: Path, *, kill_after_mark: float | None = None,
             limit: float = 120) -> int:
    """Run `traderagent run --ticks N` until it exits, appending its output to `log_path`; returns its exit
    code. With `kill_after_mark`, SIGKILL it that many seconds after it prints a CRASHMARK line (-9).
    A desk still running after `limit` seconds is a hang: killed, and reported as -999."""
    proc = forkserver.popen([PY, "-m", "traderagent", "run", "--ticks", str(ticks)], env=env, cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    hung = threading.Event()
    watchdog = threading.Timer(limit, lambda: (hung.set(), proc.kill()))
    watchdog.start()
    try:
        with open(log_path, "ab") as log:
            assert proc.stdout is not None
            for line in proc.stdout:  # ends when the child is gone
                log.write(line)
                if kill_after_mark is not None and line.startswith(b"CRASHMARK"):
                    time.sleep(kill_after_mark)  # where the kill lands is meant to vary; nothing depends on it
                    proc.kill()
        code = proc.wait()
    finally:
        watchdog.cancel()
    return -999 if hung.is_set() else code


async def consistency_report(sim_url: str, db_path: Path | str, key: str = KEY, secret: str = SECRET) -> dict:
    """Compare the desk's database with the simulator after a final reconciliation; returns counts
    and raises AssertionError naming the first inconsistency."""
    client = ByBitDirectClient(key, secret, base_url=sim_url)
    await client.initialize()
    db = DatabaseManager(db_url(db_path))
    await db.initialize()
    try:
        rows = await db.list_orders(limit=1_000_000)
        links = [r.client_order_id for r in rows]
        assert len(links) == len(set(links)), "duplicate orderLinkIds in the database"
        by_link = {r.client_order_id: r for r in rows}
        assert not [r for r in rows if r.status == "PENDING"], "PENDING orders left after reconciliation"

        # the stops the exchange holds for positions have no orderLinkId: they are the bots' protection, not orders
        open_on_sim = [o for o in await client.fetch_open_orders() if o["client_order_id"]]
        for o in open_on_sim:
            row = by_link.get(o["client_order_id"])
            assert row is not None, f"order {o['client_order_id']} on the exchange is unknown to the database"
            assert row.status == STATUS[o["status"]], (row.tag, row.status, o["status"])
            assert row.filled_qty == o["filled"] and row.qty == o["amount"]
        open_tags: dict[str, Counter] = defaultdict(Counter)
        for r in rows:
            if r.status in ("OPEN", "PARTIALLY_FILLED"):
                assert r.client_order_id in {o["client_order_id"] for o in open_on_sim}, f"{r.tag} not open on sim"
                open_tags[r.bot_name][r.tag] += 1
        for bot, tags in open_tags.items():
            dup = [t for t, n in tags.items() if n > 1]
            assert not dup, f"{bot}: two resting orders for the same intent {dup}"

        executed: dict[str, Decimal] = defaultdict(Decimal)
        for sym in sorted(set(SYMBOLS) | {r.symbol for r in rows}):  # every symbol a bot traded
            for e in await client.fetch_my_trades(sym, limit=100_000):
                if e["client_order_id"]:  # a stop the exchange executed is booked as the trade's close
                    executed[e["client_order_id"]] += e["amount"]
        for link, qty in executed.items():
            row = by_link.get(link)
            assert row is not None, f"an execution of {link} is unknown to the database"
            assert row.filled_qty == qty, (row.tag, row.status, row.filled_qty, qty)
        for r in rows:
            if r.status == "FAILED":
                assert r.client_order_id not in executed
            elif r.status in ("FILLED", "CANCELLED") and r.client_order_id not in executed:
                assert r.filled_qty == 0
            if r.status == "CANCELLED" and r.filled_qty == 0:
                ex = await client.fetch_order(r.symbol, client_order_id=r.client_order_id)
                assert ex is not None and ex["status"] == "cancelled", (r.tag, ex)

        # positions: the exchange's net position per symbol == the bots' books (one bot per symbol)
        positions = {p["symbol"]: (p["size"] if p["side"] == "long" else -p["size"])
                     for p in await client.fetch_positions()}
        bots = await db.list_bots()
        for bot in bots:
            snap = await db.load_bot_runtime(bot.name) or {}
            book = (snap.get("strategy") or {}).get("positions", [])
            net = sum((Decimal(p["size"]) * (1 if p["direction"] == "long" else -1) for p in book), Decimal(0))
            assert positions.get(bot.symbol, Decimal(0)) == net, (bot.name, positions.get(bot.symbol), net)
            open_trades = await db.list_open_trades(bot.name)
            assert len(open_trades) == len(book), (bot.name, len(open_trades), len(book))
        # grid levels point at exactly the grid's resting orders
        levels = await db.get_grid_levels("xrp-grid")
        linked = {lv.client_order_id for lv in levels if lv.client_order_id}
        resting = {r.client_order_id for r in rows if r.bot_name == "xrp-grid" and r.status == "OPEN"}
        assert linked == resting, (linked ^ resting)
        return {"bots": sorted(b.name for b in bots), "orders": len(rows), "executed_orders": len(executed), "open": len(open_on_sim),
                "failed": sum(r.status == "FAILED" for r in rows), "positions": positions}
    finally:
        await client.close()
        await db.close()


def fresh_postgres(prefix: str) -> Iterator[str]:
    """A new PostgreSQL database's URL, dropped afterwards (a fixture's body: ``yield from``)."""
    url, reason = _find_postgres()
    if url is None:
        skip_server_absent(f"PostgreSQL not reachable ({reason}); set TEST_POSTGRES_URL")
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    asyncio.run(_admin(url, f'CREATE DATABASE "{name}"'))
    yield f"{url.rsplit('/', 1)[0]}/{name}"
    asyncio.run(_admin(url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def _admin(url: str, sql: str) -> None:
    conn = await asyncpg.connect(_plain_dsn(url), timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def wait_for(what: str, check: Callable[[], object], proc: subprocess.Popen, log: Path, limit: float = 120):
    """Poll ``check`` until it returns something true; a desk that exits meanwhile fails the test."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if result := check():
            return result
        assert proc.poll() is None, f"desk exited ({proc.returncode}) waiting for {what}: {log.read_text()[-3000:]}"
        time.sleep(0.2)  # a polling interval, not a synchronisation
    raise AssertionError(f"no {what} within {limit} s: {log.read_text()[-3000:]}")


def start_desk(env: dict[str, str], cwd: Path, log: Path) -> subprocess.Popen:
    with open(log, "ab") as out:
        return forkserver.popen([PY, "-m", "traderagent", "run"], env=env, cwd=cwd, stdout=out,
                                stderr=subprocess.STDOUT)
