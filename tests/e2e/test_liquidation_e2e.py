"""End to end, the simulator its own process: a leveraged trend position, the desk SIGKILLed, the exchange
liquidates the position, the desk restarts and is killed again midway through booking the liquidation
(after closing it in memory, before the database has it); restarted twice more, it has booked the
liquidation's close exactly once (exit at the bankruptcy price, reason liquidation) and told it once."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest

from traderagent.api.bybit_direct_client import ByBitDirectClient

from .desk_procs import KEY, SECRET, SimProcess, age_pending_rows, consistency_report, desk_env, run_desk
from .test_exchange_stop import TREND_ONLY, _booked_sync, open_protected_then_kill

pytestmark = [pytest.mark.timeout(300), pytest.mark.slow(24)]

LEVERED = TREND_ONLY.replace('name = "btc-trend"', 'name = "btc-trend"\nleverage = "10"')


async def _liq_and_bust(url: str) -> tuple[dict | None, list[dict]]:
    async with ByBitDirectClient(KEY, SECRET, base_url=url) as client:
        rows = await client.fetch_positions("BTCUSDT")
        return (rows[0] if rows else None), await client.fetch_liquidations("BTCUSDT")


def test_a_liquidation_while_the_desk_is_dead_is_booked_once_across_a_kill_midway(tmp_path):
    bots = tmp_path / "bots.toml"
    bots.write_text(LEVERED.format(tick=0.2))
    db_path, log = tmp_path / "desk.db", tmp_path / "desk.log"
    sim = SimProcess("--speed", "20", "--seed", "3")
    try:
        env = desk_env(sim.url, db_path, bots)
        assert open_protected_then_kill(sim, env, tmp_path, log) is not None, log.read_text(errors="replace")[-3000:]
        pos, _ = asyncio.run(_liq_and_bust(sim.url))
        assert pos is not None and pos["leverage"] == Decimal("10"), log.read_text(errors="replace")[-3000:]
        trades_before, _ = _booked_sync(db_path)
        (open_trade,) = [t for t in trades_before if t.closed_at is None]

        liq = pos["liq_price"]
        beyond = liq - 100 if pos["side"] == "long" else liq + 100
        assert sim.command(f"price BTCUSDT {beyond}") == "moved 1"  # the exchange takes the position over
        after, (bust,) = asyncio.run(_liq_and_bust(sim.url))
        assert after is None and bust["exec_type"] == "BustTrade"
        liquidated_at = log.stat().st_size  # what the desks log from here on concerns the liquidated position

        crash = desk_env(sim.url, db_path, bots, TRADERAGENT_CRASH_AT="before_liquidation_booked")
        assert run_desk(crash, tmp_path, 4, log) == 137  # killed midway through booking it
        assert "CRASHPOINT before_liquidation_booked" in log.read_text(errors="replace")
        trades, closes = _booked_sync(db_path)
        assert [t for t in trades if t.id == open_trade.id][0].closed_at is None  # nothing of it was saved

        asyncio.run(age_pending_rows(db_path))  # the restarts come after the window of the killed desks' creates
        for _ in range(2):  # restarted twice: booked once
            assert run_desk(env, tmp_path, 4, log) == 0, log.read_text(errors="replace")[-3000:]
        trades, closes = _booked_sync(db_path)
        (trade,) = [t for t in trades if t.id == open_trade.id]
        assert trade.closed_at is not None and trade.exit_price == bust["avg_price"]
        assert trade.pnl < 0
        told = [r for r in closes if r.context and r.context.get("trade_id") == trade.id]
        assert len(told) == 1 and told[0].context["reason"] == "liquidation", closes
        report = asyncio.run(consistency_report(sim.url, db_path))
        assert report["bots"] == ["btc-trend"] and not report["positions"].get("BTCUSDT"), report
        text = log.read_text(errors="replace")
        assert "Traceback" not in text, text[-3000:]
        # no exit was sent for the position the exchange took over (one refused with nothing to reduce, 110017);
        # while the desk traded freely before, its exits may race the exchange's stops and be refused so
        after = log.read_bytes()[liquidated_at:].decode(errors="replace")
        assert "reduce" not in after.lower(), after[-3000:]
    finally:
        sim.stop()
