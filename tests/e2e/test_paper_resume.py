"""The default paper desk resumes: a second `traderagent run` (after Ctrl-C, or after a kill in the
middle of the order path) finds the same exchange, adopts every resting order and carries on."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

from traderagent.app import PAPER_KEY, PAPER_SECRET
from traderagent.database.manager import DatabaseManager
from traderagent.sim import ExchangeSimulator, SimConfig

from .desk_procs import consistency_report, desk_env

PY = sys.executable
RESTING = ("OPEN", "PARTIALLY_FILLED")


def _run(tmp: Path, ticks: int, **extra: str) -> subprocess.CompletedProcess:
    env = desk_env("", tmp / "desk.db", tmp / "none.toml", **{"LOG_LEVEL": "info", "TRADERAGENT_PAPER_SPEED": "5", **extra})
    for key in ("BYBIT_BASE_URL", "BYBIT_API_KEY", "BYBIT_API_SECRET"):
        env.pop(key)
    return subprocess.run([PY, "-m", "traderagent", "run", "--ticks", str(ticks)], env=env, cwd=tmp,
                          capture_output=True, text=True, timeout=180)


async def _orders(db_path: Path) -> dict[str, str]:
    db = DatabaseManager(f"sqlite+aiosqlite:///{db_path}")
    await db.initialize()
    try:
        return {r.client_order_id: r.status for r in await db.list_orders(limit=100_000)}
    finally:
        await db.close()


async def _check_against_saved_exchange(tmp: Path) -> dict:
    """What a third run would find: the saved exchange, compared with the desk's database."""
    sim = ExchangeSimulator(SimConfig(seed=0, speed=0.0))
    sim.add_account(PAPER_KEY, PAPER_SECRET, {"USDT": Decimal("10000")})
    sim.keep_state(tmp / "desk.sim.json")
    sim.state_path = None  # look, do not touch
    url = await sim.start()
    try:
        return await consistency_report(url, tmp / "desk.db", PAPER_KEY, PAPER_SECRET)
    finally:
        await sim.stop()


def _recovered(stderr: str) -> dict[str, dict[str, int]]:
    return {m[1]: eval(m[2]) for m in re.finditer(r"recovered (\S+): (\{.*\})", stderr)}  # noqa: S307 - our own log


def _resume_and_compare(tmp: Path, resting_before: set[str]) -> None:
    second = _run(tmp, 2, TRADERAGENT_PAPER_SPEED="0")  # a frozen market: nothing may change but the desk's view
    assert second.returncode == 0, second.stderr[-3000:]
    assert "state restored from" in second.stdout
    assert "not found on the exchange" not in second.stdout
    report = _recovered(second.stderr)
    assert report and all(r["failed"] == 0 for r in report.values()), report
    assert sum(r["adopted"] for r in report.values()) >= len(resting_before)
    after = asyncio.run(_orders(tmp / "desk.db"))
    assert not [c for c, status in after.items() if status == "FAILED"]
    # adopted: still resting, or ended on the exchange (a fill after the desk's last look) and booked so
    assert all(after[c] in (*RESTING, "FILLED", "CANCELLED") for c in resting_before)
    asyncio.run(_check_against_saved_exchange(tmp))


def test_a_second_run_resumes_the_paper_exchange(tmp_path):
    first = _run(tmp_path, 4)
    assert first.returncode == 0, first.stderr[-3000:]
    before = asyncio.run(_orders(tmp_path / "desk.db"))
    resting = {c for c, status in before.items() if status in RESTING}
    assert resting, "the demo desk left no resting order to resume"
    _resume_and_compare(tmp_path, resting)


def test_a_run_killed_after_the_send_resumes(tmp_path):
    """Killed between the exchange's acknowledgement and the desk's record of it: the order is PENDING
    in the database and on the exchange; the next run adopts it."""
    first = _run(tmp_path, 4, TRADERAGENT_CRASH_AT="after_send")
    assert first.returncode == 137 and "CRASHPOINT after_send" in first.stderr, first.stderr[-3000:]
    before = asyncio.run(_orders(tmp_path / "desk.db"))
    pending = {c for c, status in before.items() if status == "PENDING"}
    assert pending
    _resume_and_compare(tmp_path, set())
    after = asyncio.run(_orders(tmp_path / "desk.db"))
    assert all(after[c] in (*RESTING, "FILLED") for c in pending), {c: after[c] for c in pending}
