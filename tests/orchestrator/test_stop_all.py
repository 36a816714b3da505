"""Stop-all (the chat's /stop without a bot): no order leaves the desk once it begins, although
the bots' ladders are still queued behind the rate limiter; a later start trades again."""

from __future__ import annotations

import asyncio
from typing import Any

from traderagent.orchestrator.state import BotState
from traderagent.results import StopAllOutcome

from .helpers import DCA, GRID, build_desk, creates

CREATE, BATCH = "/v5/order/create", "/v5/order/create-batch"


async def test_stop_all_abandons_queued_sends_and_sends_nothing_after_it_began(sim, tmp_path):
    # one order a second (single or batch): the two ladders' first orders queue behind the client's rate limiter
    h = await build_desk(sim.base_url, tmp_path / "s.db", [GRID, DCA],
                         client_kwargs={"rate_limits": {CREATE: 1, BATCH: 1}})
    desk, gate = h.desk, h.desk.gate
    stopping: list[asyncio.Task[Any]] = []
    at_stop: list[int] = []

    def on_wire() -> None:  # the client's hook: the first create on the wire triggers the stop-all
        gate.on_wire()
        if not stopping:
            stopping.append(asyncio.ensure_future(desk.stop_all("op")))

    h.client.before_order = on_wire
    real_close = gate.close

    def close() -> None:
        at_stop.append(creates(sim))
        real_close()

    gate.close = close  # type: ignore[method-assign]
    try:
        ticking = asyncio.ensure_future(desk.tick_all())
        await asyncio.wait_for(asyncio.shield(ticking), 60)  # the ticks end: their queued sends were abandoned
        result = await stopping[0]
        assert result == StopAllOutcome(stopped=("xrp-grid", "sol-dca"), errors=())
        assert all(b.bot.state is BotState.STOPPED for b in desk.bots.values())
        assert gate.refused > 0 and not gate.closed
        # only the send already on the wire when the stop began reached the exchange
        assert creates(sim) == gate.sent <= at_stop[0] + 1
        pending = [o for o in await h.db.list_orders(limit=1000) if o.status == "PENDING"]
        assert pending  # the abandoned sends: left for the reconciliation at the next start
        await desk.tick_all()
        assert creates(sim) == gate.sent  # STOPPED bots send nothing

        sent = gate.sent
        await desk.start_bot("xrp-grid")  # the gate is open again for an operator's start
        await desk.tick_all()
        assert creates(sim) == gate.sent > sent
    finally:
        await h.close()
