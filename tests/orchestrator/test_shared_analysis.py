"""Analysis done once: bots of one (strategy, parameters, symbol, timeframes) share each candle's
preparation; a candle the CPU budget defers is walked later, never skipped."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

from traderagent.orchestrator.budget import AnalysisBudget

from .helpers import DCA, TREND, build_desk, run_ticks


def _count_prepares(strategy, counter: list[int]) -> None:
    prepare = strategy.prepare

    def counting(*frames):
        counter.append(1)
        return prepare(*frames)

    strategy.prepare = counting


def _record_candles(strategy, seen: list[int]) -> None:
    on_candle_close = strategy.on_candle_close

    def recording(prepared, i):
        seen.append(int(prepared.open_ms[prepared.index(i)]))
        return on_candle_close(prepared, i)

    strategy.on_candle_close = recording


async def test_bots_of_one_combination_prepare_each_candle_once(sim, tmp_path):
    twin = replace(TREND, name="btc-trend-2", share=Decimal("0.2"))
    other = replace(TREND, name="btc-trend-slow", share=Decimal("0.2"), params={**TREND.params, "ema_slow": 9})
    h = await build_desk(sim.base_url, tmp_path / "desk.db", [TREND, twin, other])
    try:
        prepares: dict[str, list[int]] = {}
        candles: dict[str, list[int]] = {}
        for name, handle in h.desk.bots.items():
            _count_prepares(handle.bot.strategy, prepares.setdefault(name, []))
            _record_candles(handle.bot.strategy, candles.setdefault(name, []))
        await run_ticks(h, sim, 4)
        shared = len(prepares[TREND.name]) + len(prepares[twin.name])
        assert shared == 4  # one preparation per candle for the two identical bots
        assert len(prepares[other.name]) == 4  # other parameters: its own
        assert candles[TREND.name] == candles[twin.name] == candles[other.name]
        assert len(set(candles[TREND.name])) == 4
        assert h.desk.analysis_cache.hits >= 4
    finally:
        await h.close()


async def test_deferred_candles_are_walked_later_not_skipped(sim, tmp_path):
    h = await build_desk(sim.base_url, tmp_path / "desk.db", [DCA])
    try:
        bot = h.desk.bots[DCA.name].bot
        seen: list[int] = []
        _record_candles(bot.strategy, seen)
        await run_ticks(h, sim, 1)
        now = [100.0]
        bot.analysis_budget = budget = AnalysisBudget(window=1.0, share=0.5, clock=lambda: now[0])
        bot.analysis_cache = None  # every candle needs the budget
        budget.spend(1.0)  # the desk spent its whole share elsewhere
        await run_ticks(h, sim, 3)  # three candles close while the budget refuses
        assert budget.deferred == 3 and len(seen) == 1
        now[0] += 2.0
        await h.desk.tick_all()
        assert len(seen) == 5  # the first candle, then the four closed since: none skipped
        assert seen == sorted(set(seen)) and all(b - a == 60_000 for a, b in zip(seen, seen[1:], strict=False))
    finally:
        await h.close()
