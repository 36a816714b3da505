"""CapitalManager wiring (allocation per phase, halt, persistence) and the risk rails."""

from __future__ import annotations

from decimal import Decimal

import pytest

from traderagent.control import ControlError
from traderagent.orchestrator.events import EventType
from traderagent.orchestrator.risk import RiskRails
from traderagent.orchestrator.state import BotState
from traderagent.utils.capital_manager import DeploymentPhase

from .helpers import DCA, GRID, SIM_KEY, Clock, build_desk, run_ticks


async def test_allocation_follows_phase_and_approval_is_recorded(sim, tmp_path):
    clock = Clock()
    h = await build_desk(sim.base_url, tmp_path / "c.db", [GRID, DCA], clock=clock)
    try:
        cm = h.desk.capital
        assert cm.phase is DeploymentPhase.PHASE_1  # a fresh desk starts deploying 5%
        grid = h.desk.bots["xrp-grid"].bot
        assert grid.allocated_capital == Decimal("20000") * Decimal("0.05") * Decimal("0.3")
        with pytest.raises(ControlError, match="Scaling blocked"):
            await h.desk.approve_scaling("op")
        for _ in range(5):
            cm.record_trade(True, Decimal("2"))
        clock.advance(days=3)
        decision = await h.desk.evaluate_scaling()
        assert decision.can_scale, decision
        result = await h.desk.approve_scaling("alice")
        assert result.phase == DeploymentPhase.PHASE_2.value
        assert grid.allocated_capital == Decimal("20000") * Decimal("0.25") * Decimal("0.3")
        assert (await h.db.get_bot("xrp-grid")).allocated_capital == grid.allocated_capital
        approvals = await h.db.list_approvals()
        assert [(a.action, a.phase_from, a.phase_to, a.approved_by) for a in approvals] == [
            ("approve", "phase_1_5pct", "phase_2_25pct", "alice")]
        await h.desk.event_bus.drain(5)
        assert h.of(EventType.PHASE_CHANGED)[-1].data.phase is DeploymentPhase.PHASE_2
        rejected = await h.desk.reject_scaling("bob")
        assert rejected.rejected_by == "bob"
        assert (await h.db.list_approvals())[0].action in ("reject", "approve")
    finally:
        await h.close()


async def test_halt_blocks_entries_at_once_and_resume_restores(sim, tmp_path):
    h = await build_desk(sim.base_url, tmp_path / "h.db", [GRID, DCA])
    try:
        out = await h.desk.halt("news", "alice")
        assert set(out.paused) == {"xrp-grid", "sol-dca"}
        await run_ticks(h, sim, 3)
        assert sim.orders(SIM_KEY) == []  # nothing was opened
        assert all(b.bot.state is BotState.PAUSED for b in h.desk.bots.values())
        with pytest.raises(ControlError, match="halted"):
            await h.desk.start_bot("xrp-grid")
        resumed = await h.desk.resume_trading("alice")
        assert set(resumed.resumed) == {"xrp-grid", "sol-dca"}
        await run_ticks(h, sim, 1)
        assert sim.orders(SIM_KEY)
        # a halt set on the manager alone (any path) also stops entries of RUNNING bots
        before = len(await h.db.list_orders(limit=1000))
        h.desk.capital.halt("direct")
        grid = h.desk.bots["xrp-grid"].bot
        assert grid.state is BotState.RUNNING and not grid.entries_allowed
        sim.set_price("XRPUSDT", sim.price("XRPUSDT") * Decimal("0.9"))  # far below: re-buys would be entries
        await run_ticks(h, sim, 2)
        new = [o for o in await h.db.list_orders(limit=1000)][: len(await h.db.list_orders(limit=1000)) - before]
        assert all(o.side == "sell" for o in new)  # only exits went out
        with pytest.raises(ControlError, match="not halted"):
            h.desk.capital.resume()
            await h.desk.resume_trading("x")
    finally:
        await h.close()


async def test_capital_state_survives_restart(sim, tmp_path):
    db = tmp_path / "r.db"
    h = await build_desk(sim.base_url, db, [GRID])
    h.desk.capital.record_trade(False, Decimal("-3"))
    await h.desk.halt("maintenance", "ops")
    await h.desk.event_bus.drain(5)
    assert [line.message for line in await h.desk.logs(100) if "halt" in line.message.lower()] == ["HALTED"]  # once
    await h.close()

    h2 = await build_desk(sim.base_url, db, [GRID])
    try:
        cm = h2.desk.capital
        assert cm.halted and "maintenance" in cm.halt_reason
        assert cm.phase is DeploymentPhase.PHASE_1
        assert cm.metrics.total_trades == 1 and cm.metrics.realized_pnl == Decimal("-3")
        grid = h2.desk.bots["xrp-grid"].bot
        assert grid.state is BotState.PAUSED and grid.paused_by == "halt"
        await h2.desk.resume_trading("ops")
        assert grid.state is BotState.RUNNING
        await h2.desk.event_bus.drain(5)
        assert [line.message for line in await h2.desk.logs(100) if "resum" in line.message.lower()] == ["RESUMED"]
    finally:
        await h2.close()


async def test_max_daily_loss_pauses_bot_and_utc_day_resets(sim, tmp_path):
    clock = Clock()
    rails = RiskRails(Decimal("0.01"), Decimal("5"), Decimal("0.05"))
    h = await build_desk(sim.base_url, tmp_path / "d.db", [GRID, DCA], clock=clock, rails=rails)
    try:
        await run_ticks(h, sim, 1)
        dca = h.desk.bots["sol-dca"].bot
        h.desk.risk.add_realized("sol-dca", -dca.allocated_capital * Decimal("0.06"))
        await run_ticks(h, sim, 1)
        assert dca.state is BotState.PAUSED and dca.paused_by == "risk"
        assert h.desk.bots["xrp-grid"].bot.state is BotState.RUNNING
        limit = h.of(EventType.RISK_LIMIT, "sol-dca")
        assert limit and limit[0].data.rail == "max_daily_loss"
        clock.advance(days=1)
        await run_ticks(h, sim, 1)
        assert dca.state is BotState.RUNNING  # new UTC day: the counter reset and the bot trades again
        assert h.desk.risk.bot_day_pnl("sol-dca") == h.desk.risk.unrealized.get("sol-dca", 0)
    finally:
        await h.close()


async def test_a_loss_booked_between_ticks_pauses_the_bot_before_it_decides(sim, tmp_path):
    """A loss booked outside a tick (a liquidation or stop heard on the stream, a close booked at start-up)
    reaching the daily-loss rail pauses the bot at its next tick before that tick decides anything: no entry
    goes out first."""
    rails = RiskRails(Decimal("0.01"), Decimal("5"), Decimal("0.05"))
    h = await build_desk(sim.base_url, tmp_path / "between.db", [DCA], rails=rails)
    try:
        dca = h.desk.bots["sol-dca"].bot
        h.desk.risk.add_realized("sol-dca", -dca.allocated_capital * Decimal("0.06"))
        await run_ticks(h, sim, 2)
        assert dca.state is BotState.PAUSED and dca.paused_by == "risk"
        assert sim.orders(SIM_KEY, open_only=False) == [] and await h.db.list_orders(limit=10) == []
        assert len(h.of(EventType.RISK_LIMIT, "sol-dca")) == 1
    finally:
        await h.close()


async def test_desk_wide_daily_loss_pauses_every_bot(sim, tmp_path):
    h = await build_desk(sim.base_url, tmp_path / "w.db", [GRID, DCA])
    try:
        await run_ticks(h, sim, 1)
        h.desk.risk.add_realized("ghost", -h.desk.capital.allocated_capital)
        await h.desk.check_desk_risk()
        assert all(b.bot.state is BotState.PAUSED for b in h.desk.bots.values())
        await h.desk.event_bus.drain(5)
        assert h.of(EventType.RISK_LIMIT, "desk")
    finally:
        await h.close()


async def test_max_exposure_blocks_entries(sim, tmp_path):
    rails = RiskRails(Decimal("0.01"), Decimal("0.001"), Decimal("0.5"))  # 0.1% of deployed capital
    h = await build_desk(sim.base_url, tmp_path / "x.db", [GRID, DCA], rails=rails)
    try:
        await run_ticks(h, sim, 3)
        assert sim.orders(SIM_KEY) == []
        assert await h.db.list_orders(limit=10) == []
        blocked = h.of(EventType.RISK_LIMIT)
        assert {e.data.rail for e in blocked} == {"max_exposure"}
        assert len(h.of(EventType.RISK_LIMIT, "xrp-grid")) == 1  # reported once, not every tick
    finally:
        await h.close()
