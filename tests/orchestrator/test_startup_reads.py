"""A desk's start-up reads its bots' rows for all of them at once, not bot by bot (a round trip each)."""

from __future__ import annotations

from .helpers import DCA, GRID, TREND, build_desk, run_ticks

PER_BOT_READS = ("get_bot", "load_bot_runtime", "list_open_trades", "list_non_final_orders", "realized_pnl")


async def test_start_up_reads_every_bot_in_bulk(sim, tmp_path, monkeypatch):
    h = await build_desk(sim.base_url, tmp_path / "s.db", [GRID, DCA, TREND])  # rows, orders and trades to recover
    try:
        await run_ticks(h, sim, 5)
        assert await h.db.list_non_final_orders()
    finally:
        await h.close()
    h = await build_desk(sim.base_url, tmp_path / "s.db", [GRID, DCA, TREND], start=False)
    calls: list[str] = []
    for name in PER_BOT_READS:
        read = getattr(h.db, name)

        async def counted(*args, _read=read, _name=name, **kwargs):
            calls.append(_name)
            return await _read(*args, **kwargs)

        monkeypatch.setattr(h.db, name, counted)
    try:
        report = await h.desk.start(schedule=False)
        assert all("error" not in r for r in report.values()), report
        assert sum(len(b.bot.open_orders) for b in h.desk.bots.values()) > 0  # the orders were recovered
        assert calls == []
    finally:
        await h.close()
