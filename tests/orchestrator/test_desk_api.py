"""The Desk use-cases (what Telegram and the CLI call): typed results and operator-facing errors."""

from __future__ import annotations

from decimal import Decimal

import pytest

from traderagent.bots import BotSpec
from traderagent.control import ControlError

from .helpers import DCA, GRID, build_desk, run_ticks


async def test_use_cases_return_typed_results(sim, tmp_path):
    specs = [GRID, DCA, BotSpec("xrp-grid-2", "grid", "XRPUSDT", timeframes=("1m",), share=Decimal("0.1"),
                                params={"num_levels": 5, "range_pct": "0.05"}),
             BotSpec("broken", "grid", "XRPUSDT", params={"no_such_param": 1}),
             BotSpec("nosymbol", "grid", "DOGEUSDT")]
    h = await build_desk(sim.base_url, tmp_path / "api.db", specs)
    try:
        assert {n for n, _ in h.desk.refused} == {"broken", "nosymbol"}
        assert "no_such_param" in dict(h.desk.refused)["broken"]
        await run_ticks(h, sim, 8)
        await h.desk.tick_all()
        # resolve_bot: exact, unique prefix, ambiguous, unknown
        assert h.desk.resolve_bot("sol") == "sol-dca"
        assert h.desk.resolve_bot("xrp-grid") == "xrp-grid"  # exact name wins over longer names
        with pytest.raises(ControlError, match="several bots"):
            h.desk.resolve_bot("xrp")
        with pytest.raises(ControlError, match="No bot named"):
            h.desk.resolve_bot("eth")
        bots = await h.desk.list_bots()
        assert {b.name for b in bots} == {"xrp-grid", "sol-dca", "xrp-grid-2"}
        assert all(b.state == "RUNNING" for b in bots)
        one = await h.desk.bot_status("sol")
        assert one.name == "sol-dca" and one.ticks == 9 and isinstance(one.allocated_capital, Decimal)
        assert one.open_positions == len(one.positions) and all(p.bot == "sol-dca" for p in one.positions)
        desk = await h.desk.desk_status()
        assert desk.phase == "phase_1_5pct" and {r.name for r in desk.refused} == {"broken", "nosymbol"}
        assert sum(desk.states.values()) == len(desk.bots) == 3
        orders = await h.desk.open_orders("sol")
        assert orders and all(o.bot == "sol-dca" and o.status in ("OPEN", "PARTIALLY_FILLED") for o in orders)
        assert len(await h.desk.open_orders()) >= len(orders)
        (wallet,) = await h.desk.balances()  # one account for the one market type
        assert wallet.market_type == "linear" and wallet.total["USDT"] > 0
        positions = await h.desk.positions()
        assert positions and all(isinstance(p.unrealized_pnl, Decimal) for p in positions)
        trades = await h.desk.recent_trades(5)
        assert 0 < len(trades) <= 5 and trades == sorted(trades, key=lambda t: t.id, reverse=True)
        days = await h.desk.daily_pnl(3)
        assert len(days) == 3 and all(isinstance(d.pnl, Decimal) for d in days)
        logs = await h.desk.logs(50)
        assert any(entry.message == "ORDER_FILLED" for entry in logs)
        curve = await h.desk.equity_curve()
        assert all(point.equity > 0 for point in curve)
        assert [p.time for p in curve] == sorted(p.time for p in curve)
        report = await h.desk.capital_report()
        assert report.phase == "phase_1_5pct" and report.current is not None and report.gates is not None
        assert report.current.total_trades == len(await h.db.list_trades(limit=1000, closed_only=True))
        paused = await h.desk.pause_bot("sol")
        assert paused.state == "PAUSED" and paused.paused_by == "operator"
        stopped = await h.desk.stop_bot("sol")
        assert stopped.state == "STOPPED"
        with pytest.raises(ControlError, match="cannot be paused"):
            await h.desk.pause_bot("sol")
        started = await h.desk.start_bot("sol")
        assert started.state == "RUNNING"
    finally:
        await h.close()
