"""Decision parity through the real live path: a trend bot ticking candle by candle on the simulator's real
candles decides, at every candle it analyses, what the backtest's full-history pass decides at that candle."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

from traderagent.api.bybit_direct_client import klines_to_frame
from traderagent.strategies import create_strategy

from .helpers import TREND, build_desk


def _decision(signal):
    if signal is None:
        return None
    return replace(signal, metadata={k: v for k, v in signal.metadata.items() if k != "candle_index"})


async def test_live_decisions_equal_the_backtest_on_the_same_candles(sim, tmp_path):
    h = await build_desk(sim.base_url, tmp_path / "parity.db", [TREND])
    try:
        strategy = h.desk.bots[TREND.name].bot.strategy
        seen: list[tuple[int, Decimal, object]] = []  # (candle open ms, balance, live decision) while flat
        live_signal_at = strategy.signal_at

        def recording(prepared, i, balance):
            signal = live_signal_at(prepared, i, balance)
            if not strategy.get_active_positions():
                seen.append((int(prepared.open_ms[prepared.index(i)]), balance, signal))
            return signal

        strategy.signal_at = recording
        for _ in range(150):
            await h.desk.tick_all()
            sim.step_all(1)
        rows = await h.client.fetch_klines(TREND.symbol, "1m", limit=strategy.history_candles + 200)
        history = klines_to_frame(rows[:-1])
        twin = create_strategy(TREND.strategy, dict(strategy.params), qty_step=strategy.qty_step,
                               tick_size=strategy.tick_size, allocated_capital=strategy.allocated_capital)
        full = twin.prepare(history)
        at = {int(ms): i for i, ms in enumerate(full.open_ms)}
        mismatches = [ms for ms, balance, live in seen
                      if _decision(live) != _decision(twin.signal_at(full, at[ms], balance))]
        assert len(seen) >= 40 and sum(live is not None for _, _, live in seen) >= 2
        assert mismatches == []
    finally:
        await h.close()
