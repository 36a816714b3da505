"""The all-bot use-cases: start_all and pause_all act on the bots that need it and list each refusal once."""

from __future__ import annotations

from traderagent.orchestrator.state import BotState
from traderagent.results import PauseAllOutcome, StartAllOutcome

from .helpers import DCA, GRID, build_desk


async def test_pause_all_then_start_all_and_a_halt_refuses_once(sim, tmp_path):
    h = await build_desk(sim.base_url, tmp_path / "all.db", [GRID, DCA])
    try:
        desk = h.desk
        await desk.pause_bot("sol-dca", "alice")
        assert await desk.pause_all("alice") == PauseAllOutcome(paused=("xrp-grid",), errors=())
        assert await desk.pause_all("alice") == PauseAllOutcome(paused=(), errors=())
        await desk.halt("news", "alice")
        refused = await desk.start_all("bob")
        assert refused.started == () and len(refused.errors) == 1 and "halted" in refused.errors[0]
        await desk.resume_trading("alice")  # the halt paused nothing: both stay paused by the operator
        assert await desk.start_all("bob") == StartAllOutcome(started=("xrp-grid", "sol-dca"), errors=())
        assert all(b.bot.state is BotState.RUNNING for b in desk.bots.values())
        assert (await h.db.get_bot("sol-dca")).state == "RUNNING"
    finally:
        await h.close()
