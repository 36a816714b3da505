"""The default paper desk resumes: a second `traderagent run` (after Ctrl-C, or after a kill in the
middle of the order path) finds the same exchange, adopts every resting order and carries on."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from tests import forkserver
from traderagent.app import PAPER_KEY, PAPER_SECRET
from traderagent.database.manager import DatabaseManager
from traderagent.sim import ExchangeSimulator, SimConfig, persist

from .desk_procs import age_pending_rows, consistency_report, desk_env

pytestmark = pytest.mark.slow(20)

PY = sys.executable
RESTING = ("OPEN", "PARTIALLY_FILLED")


def _run(tmp: Path, ticks: int, **extra: str) -> subprocess.CompletedProcess:
    env = desk_env("", tmp / "desk.db", tmp / "none.toml", **{"LOG_LEVEL": "info", "TRADERAGENT_PAPER_SPEED": "5", **extra})
    for key in ("BYBIT_BASE_URL", "BYBIT_API_KEY", "BYBIT_API_SECRET"):
        env.pop(key)
    return forkserver.run([PY, "-m", "traderagent", "run", "--ticks", str(ticks)], env=env, cwd=tmp,
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


def _never_sent(tmp: Path, before: dict[str, str]) -> set[str]:
    """Write-ahead rows the stopped desk never got to the exchange (abandoned in its send queue, or in
    flight when it was killed): the only orders a resumed desk may fail as not found. The exchange
    saves every order before it answers, so an acknowledged send is never among them."""
    state = persist.load(tmp / "desk.sim.json")
    assert state is not None
    on_exchange = {o["link_id"] for o in state["accounts"][PAPER_KEY]["orders"]}
    return {c for c, status in before.items() if status == "PENDING"} - on_exchange


def _resume_and_compare(tmp: Path, before: dict[str, str]) -> dict[str, str]:
    """Run again on a frozen market; returns the orders after it."""
    resting_before = {c for c, status in before.items() if status in RESTING}
    never_sent = _never_sent(tmp, before)
    # the second run comes after the window of the creates the first may have signed (else a never-sent
    # row stays PENDING, looked for, until then: tests/orchestrator/test_recovery.py)
    asyncio.run(age_pending_rows(tmp / "desk.db"))
    second = _run(tmp, 2, TRADERAGENT_PAPER_SPEED="0")  # a frozen market: nothing may change but the desk's view
    assert second.returncode == 0, second.stderr[-3000:]
    assert "state restored from" in second.stdout
    assert ("not found on the exchange" in second.stdout) == bool(never_sent), second.stdout[-3000:]
    report = _recovered(second.stderr)
    assert report and not [r for r in report.values() if "error" in r], second.stderr[-5000:]
    assert report and sum(r["failed"] for r in report.values()) == len(never_sent), report
    assert sum(r["adopted"] for r in report.values()) >= len(resting_before)
    after = asyncio.run(_orders(tmp / "desk.db"))
    assert {c for c, status in after.items() if status == "FAILED"} == never_sent
    # adopted: still resting, or ended on the exchange (a fill after the desk's last look) and booked so
    assert all(after[c] in (*RESTING, "FILLED", "CANCELLED") for c in resting_before)
    asyncio.run(_check_against_saved_exchange(tmp))
    return after


def test_a_second_run_resumes_the_paper_exchange(tmp_path):
    first = _run(tmp_path, 4)
    assert first.returncode == 0, first.stderr[-3000:]
    before = asyncio.run(_orders(tmp_path / "desk.db"))
    assert {c for c, status in before.items() if status in RESTING}, "the demo desk left no resting order to resume"
    _resume_and_compare(tmp_path, before)


def test_a_run_killed_after_the_send_resumes(tmp_path):
    """Killed between the exchange's acknowledgement and the desk's record of it: the order is PENDING
    in the database and on the exchange; the next run adopts it."""
    first = _run(tmp_path, 4, TRADERAGENT_CRASH_AT="after_send")
    assert first.returncode == 137 and "CRASHPOINT after_send" in first.stderr, first.stderr[-3000:]
    before = asyncio.run(_orders(tmp_path / "desk.db"))
    sent = {c for c, status in before.items() if status == "PENDING"} - _never_sent(tmp_path, before)
    assert sent  # at least the one the desk died after
    after = _resume_and_compare(tmp_path, before)
    assert all(after[c] in (*RESTING, "FILLED") for c in sent), {c: after[c] for c in sent}
