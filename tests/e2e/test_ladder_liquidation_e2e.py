"""End to end, the simulator its own process: a leveraged grid holds lots, the exchange liquidates the account's
position while the desk is down, the desk restarts and is killed midway through booking the liquidation (its lots
closed in memory, nothing written); restarted twice more, it has booked every lot closed at the bust price
exactly once, paused the bot, told the operator once, and left no order of the ladder on the exchange."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from pathlib import Path

import pytest

from traderagent.api.bybit_direct_client import ByBitDirectClient
from traderagent.database.manager import DatabaseManager

from .desk_procs import (
    KEY,
    SECRET,
    SimProcess,
    age_pending_rows,
    consistency_report,
    desk_env,
    one_bot,
    run_desk,
)

pytestmark = [pytest.mark.timeout(300), pytest.mark.slow(24)]

LEVERED_GRID = one_bot("grid").replace('name = "xrp-grid"', 'name = "xrp-grid"\nleverage = "10"')


async def _market(url: str) -> tuple[Decimal, dict | None, list[dict], list[dict]]:
    """The price, the account's XRPUSDT position, its resting orders, its liquidations."""
    async with ByBitDirectClient(KEY, SECRET, base_url=url) as client:
        price = Decimal(str((await client.fetch_ticker("XRPUSDT"))["last"]))
        rows = await client.fetch_positions("XRPUSDT")
        orders = [o for o in await client.fetch_open_orders("XRPUSDT") if o["client_order_id"]]
        return price, (rows[0] if rows else None), orders, await client.fetch_liquidations("XRPUSDT")


async def _booked(db_path: Path) -> tuple[list, list, str]:
    db = DatabaseManager(f"sqlite+aiosqlite:///{db_path}")
    await db.initialize()
    try:
        trades = await db.list_trades("xrp-grid", limit=1000)
        told = [r for r in await db.get_logs("xrp-grid", limit=100_000) if r.message == "LIQUIDATED"]
        bot = await db.get_bot("xrp-grid")
        assert bot is not None
        return list(trades), told, bot.state
    finally:
        await db.close()


def test_a_grid_liquidated_while_the_desk_was_dead_is_booked_once_across_a_kill_midway(tmp_path):
    bots = tmp_path / "bots.toml"
    bots.write_text(LEVERED_GRID.format(tick=0.2))
    db_path, log = tmp_path / "desk.db", tmp_path / "desk.log"
    sim = SimProcess("--speed", "0", "--seed", "3")  # the market moves only when the test moves it
    try:
        env = desk_env(sim.url, db_path, bots)
        assert run_desk(env, tmp_path, 3, log) == 0, log.read_text(errors="replace")[-3000:]  # the ladder rests
        price, _, ladder, _ = asyncio.run(_market(sim.url))
        assert ladder, log.read_text(errors="replace")[-3000:]
        assert sim.command(f"price XRPUSDT {price * Decimal('0.99')}").startswith("moved")  # buys fill
        assert run_desk(env, tmp_path, 3, log) == 0, log.read_text(errors="replace")[-3000:]  # lots booked
        lots = [t for t in asyncio.run(_booked(db_path))[0] if t.closed_at is None]
        _, pos, _, _ = asyncio.run(_market(sim.url))
        assert lots and pos is not None and pos["leverage"] == Decimal("10")

        crash = pos["liq_price"] * Decimal("0.98")
        assert sim.command(f"price XRPUSDT {crash}").startswith("moved")  # the exchange takes the position over
        _, after, left, (bust,) = asyncio.run(_market(sim.url))
        assert after is None and not left and bust["exec_type"] == "BustTrade"

        killing = desk_env(sim.url, db_path, bots, TRADERAGENT_CRASH_AT="before_liquidation_booked")
        assert run_desk(killing, tmp_path, 4, log) == 137  # killed midway through booking it
        assert "CRASHPOINT before_liquidation_booked" in log.read_text(errors="replace")
        trades, told, _ = asyncio.run(_booked(db_path))
        assert not [t for t in trades if t.exit_price == bust["avg_price"]] and not told  # nothing of it saved

        asyncio.run(age_pending_rows(db_path))  # the restarts come after the window of the killed desk's creates
        for _ in range(2):  # restarted twice: booked once
            assert run_desk(env, tmp_path, 4, log) == 0, log.read_text(errors="replace")[-3000:]
        trades, told, state = asyncio.run(_booked(db_path))
        assert all(t.closed_at is not None for t in trades)
        liquidated = [t for t in trades if t.exit_price == bust["avg_price"]]
        assert sum(t.qty for t in liquidated) == bust["qty"] and sum(t.pnl for t in liquidated) < 0
        assert {t.tag.split(".")[0] for t in liquidated} >= {t.tag for t in lots}  # every lot, once
        (alert,) = told
        assert alert.context["how"] == "liquidated" and Decimal(alert.context["qty"]) == bust["qty"]
        assert state == "PAUSED"
        _, _, resting, _ = asyncio.run(_market(sim.url))
        assert not resting  # the ladder was not placed again
        report = asyncio.run(consistency_report(sim.url, db_path))
        assert report["bots"] == ["xrp-grid"] and not report["positions"].get("XRPUSDT"), report
        text = log.read_text(errors="replace")
        assert "Traceback" not in text and "reduce" not in text.lower(), text[-3000:]
    finally:
        sim.stop()
