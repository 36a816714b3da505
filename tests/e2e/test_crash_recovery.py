"""Crash recovery: the desk is SIGKILLed at random moments (and inside the order path, between the
write-ahead and the send, and between the send and the record) while the simulator, its own
process, keeps trading; after every restart and a final reconciliation the database and the
exchange agree: no duplicate order, no unknown order, positions and grid levels consistent."""

from __future__ import annotations

import asyncio
import random
import time

import pytest

from .desk_procs import (
    BOTS_TOML,
    SimProcess,
    consistency_report,
    desk_env,
    start_desk,
    time_left,
    wait_or_kill,
)

pytestmark = pytest.mark.timeout(180)

CRASH_PLANS = ["after_write_ahead", "after_send", "after_fill_booked", ""]  # "" = SIGKILL only


def test_sigkill_at_random_moments_leaves_db_and_exchange_consistent(tmp_path):
    rng = random.Random(20260302)
    bots = tmp_path / "bots.toml"
    bots.write_text(BOTS_TOML.format(tick=0.2))
    db_path = tmp_path / "desk.db"
    log = tmp_path / "desk.log"
    sim = SimProcess("--speed", "20", "--seed", "3")
    try:
        deadline = time.monotonic() + 32
        exits = {"crashpoint": 0, "sigkill": 0, "other": 0}
        cycle = 0
        while time_left(deadline) > 0 and cycle < 14:
            plan = CRASH_PLANS[cycle % len(CRASH_PLANS)]
            extra = {"TRADERAGENT_CRASH_AT": plan, "TRADERAGENT_CRASH_PROB": "0.2",
                     "TRADERAGENT_CRASH_SEED": str(rng.random())} if plan else {}
            proc = start_desk(desk_env(sim.url, db_path, bots, **extra), tmp_path, 1_000_000, log)
            code = wait_or_kill(proc, rng.uniform(1.5, 4.0))
            exits["crashpoint" if code == 137 else "sigkill" if code == -9 else "other"] += 1
            cycle += 1
        text = log.read_text(errors="replace")
        fired = {p for p in CRASH_PLANS if p and f"CRASHPOINT {p}" in text}
        assert exits["other"] == 0, text[-3000:]
        assert exits["sigkill"] >= 2
        assert {"after_write_ahead", "after_send"} <= fired, (fired, exits)

        sim.freeze()  # the market stops; a last clean run reconciles and exits normally
        final = start_desk(desk_env(sim.url, db_path, bots), tmp_path, 4, log)
        assert final.wait(60) == 0, log.read_text(errors="replace")[-3000:]
        report = asyncio.run(consistency_report(sim.url, db_path))
        assert report["orders"] > 20 and report["executed_orders"] > 5, report
        assert "Traceback" not in log.read_text(errors="replace")
    finally:
        sim.stop()
