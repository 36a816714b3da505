"""The desk's heap is frozen again once every bot has settled (traderagent.app.freeze_heap_once_settled)."""

from __future__ import annotations

import asyncio
import gc

from traderagent.app import SETTLE_TICKS, freeze_heap_once_settled

from .helpers import GRID, TREND, build_desk


async def test_the_heap_is_frozen_again_once_every_bot_has_run_its_settling_ticks(sim, tmp_path) -> None:
    h = await build_desk(sim.base_url, tmp_path / "d.db", [GRID, TREND])
    grid, trend = (h.desk.bots[spec.name].bot for spec in (GRID, TREND))
    gc.unfreeze()
    settling = asyncio.create_task(freeze_heap_once_settled(h.desk))
    try:
        for _ in range(SETTLE_TICKS):
            await h.desk._ticker(grid)()  # scheduled ticks, as the desk's scheduler runs them
        for _ in range(SETTLE_TICKS - 1):
            await h.desk._ticker(trend)()
        await asyncio.sleep(0)  # the settling task sees every tick so far
        assert not settling.done() and gc.get_freeze_count() == 0  # one bot is a tick short
        await h.desk._ticker(trend)()
        await asyncio.wait_for(settling, 10)
        assert gc.get_freeze_count() > 0  # what the bots built is out of later collections
    finally:
        settling.cancel()
        gc.unfreeze()
        await h.close()
