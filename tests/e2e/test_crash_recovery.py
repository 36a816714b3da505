"""Crash recovery: the desk dies inside the order path (between the write-ahead and the send,
between the send and the record, right after a fill is booked) and is SIGKILLed at random moments
while the simulator, its own process, keeps trading; after every restart and a final
reconciliation the database and the exchange agree: no duplicate order, no unknown order,
positions and grid levels consistent.

Every crash is reached deterministically: a cycle arms the N-th pass of a crash point
(traderagent/orchestrator/crashpoints.py) and waits for the desk to die there, and a SIGKILL cycle
kills only after the desk has marked that it is trading -- however loaded the machine."""

from __future__ import annotations

import asyncio
import random

import pytest

from .desk_procs import BOTS_TOML, SimProcess, age_pending_rows, consistency_report, desk_env, run_desk

pytestmark = [pytest.mark.timeout(600), pytest.mark.slow(52)]  # timeout: a safety net only, each desk run has its own hang limit

CRASH_POINTS = ("after_write_ahead", "after_send", "after_fill_booked")
ROUNDS = 2


def test_crashes_in_the_order_path_and_sigkills_leave_db_and_exchange_consistent(tmp_path):
    rng = random.Random(20260302)
    bots = tmp_path / "bots.toml"
    bots.write_text(BOTS_TOML.format(tick=0.2))
    db_path = tmp_path / "desk.db"
    log = tmp_path / "desk.log"
    sim = SimProcess("--speed", "20", "--seed", "3")
    try:
        fills = 0
        for _ in range(ROUNDS):
            for point in CRASH_POINTS:
                nth = rng.randint(2, 4)
                fills += nth if point == "after_fill_booked" else 0
                env = desk_env(sim.url, db_path, bots, TRADERAGENT_CRASH_AT=f"{point}@{nth}")
                code = run_desk(env, tmp_path, 1_000_000, log)
                assert code == 137, (point, code, log.read_text(errors="replace")[-3000:])
            env = desk_env(sim.url, db_path, bots, TRADERAGENT_CRASH_AT=f"after_send@{rng.randint(1, 4)}",
                           TRADERAGENT_CRASH_ACTION="mark")
            code = run_desk(env, tmp_path, 1_000_000, log, kill_after_mark=rng.uniform(0, 2))
            assert code == -9, (code, log.read_text(errors="replace")[-3000:])
        text = log.read_text(errors="replace")
        assert all(text.count(f"CRASHPOINT {p}") == ROUNDS for p in CRASH_POINTS), text[-3000:]

        sim.freeze()  # the market stops; a last clean run reconciles and exits normally
        # while a killed desk's creates may still arrive, their rows stay PENDING (tests/orchestrator/
        # test_recovery.py); the last run comes after that window: every unsent one is FAILED at once
        asyncio.run(age_pending_rows(db_path))
        assert run_desk(desk_env(sim.url, db_path, bots), tmp_path, 4, log) == 0, log.read_text()[-3000:]
        report = asyncio.run(consistency_report(sim.url, db_path))
        # every booked fill is on the exchange; every write-ahead row that died unsent was resolved as failed
        assert report["executed_orders"] >= fills and report["failed"] >= ROUNDS, report
        assert report["bots"] == ["btc-trend", "sol-dca", "xrp-grid"], report  # none refused by the validator
        assert "Traceback" not in log.read_text(errors="replace")
    finally:
        sim.stop()
