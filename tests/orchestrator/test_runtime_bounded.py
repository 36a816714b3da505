"""A long-running bot's runtime stays bounded: the closed records whose trades are stored are forgotten, while
the trade history in the database stays complete and the performance figures count every trade."""

from __future__ import annotations

import json
from dataclasses import replace

from traderagent.strategies.book import CLOSED_KEEP

from .helpers import GRID, build_desk, run_ticks

# a narrow grid: the replay crosses its levels often, so it closes many pairs
BUSY_GRID = replace(GRID, params={"num_levels": 9, "range_pct": "0.005", "fee_rate": "0.00055"})


async def test_runtime_keeps_a_bounded_window_while_the_database_has_every_trade(sim, tmp_path):
    h = await build_desk(sim.base_url, tmp_path / "long.db", [BUSY_GRID])
    try:
        bot = h.desk.bots[BUSY_GRID.name].bot
        for _ in range(60):  # bounded: rounds of ticks until the grid closed several windows' worth of pairs
            await run_ticks(h, sim, 10)
            if bot.strategy.closed_count >= 3 * CLOSED_KEEP:
                break
        await h.desk.tick_all()  # book what the last step filled
        strategy = bot.strategy
        total = strategy.closed_count
        assert total >= 3 * CLOSED_KEEP
        assert len(strategy.closed_positions) <= CLOSED_KEEP
        snapshot = bot.runtime_snapshot()
        assert len(snapshot["strategy"]["closed"]) <= CLOSED_KEEP
        closed_rows = await h.db.list_trades(BUSY_GRID.name, limit=10_000, closed_only=True)
        assert len(closed_rows) == total  # every pair is a stored trade
        assert {r.tag for r in closed_rows} >= {p.position_id for p in strategy.closed_positions}
        performance = strategy.get_performance()
        assert performance.total_trades == total
        assert performance.total_pnl == sum(r.pnl for r in closed_rows)
        size = len(json.dumps(snapshot))
    finally:
        await h.close()

    h = await build_desk(sim.base_url, tmp_path / "long.db", [BUSY_GRID])  # a restart resumes the same totals
    try:
        again = h.desk.bots[BUSY_GRID.name].bot
        assert again.strategy.closed_count == total and again.strategy.get_performance() == performance
        assert len(json.dumps(again.runtime_snapshot())) <= size + 100  # its clock and counters may differ
    finally:
        await h.close()
