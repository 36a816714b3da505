"""Decision parity through the real live path: a bot ticking candle by candle on the simulator's real candles
decides, at every candle it analyses, what the backtest's full-history pass decides at that candle: the
entries of the trend follower and of SMC (three timeframes), the order ladders of grid and DCA."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

import pytest

from traderagent.api.markets import klines_to_frame
from traderagent.bots import BotSpec
from traderagent.strategies import create_strategy

from .helpers import DCA, GRID, TREND, build_desk

# SMC on 15m/5m/1m so that a few hundred one-minute ticks hold real decisions; short swings, zones kept 50 candles
SMC = BotSpec("eth-smc", "smc", "ETHUSDT", timeframes=("15m", "5m", "1m"), share=Decimal("0.4"), tick_seconds=1,
              params={"timeframes": "15m,5m,1m", "swing_lengths": "3,3,2", "max_age": 50, "min_risk_reward": "1.5",
                      "confirmation": "none"})


# DCA starting its deals on the RSI: a decision that depends on the history
DCA_RSI = replace(DCA, params={**DCA.params, "start_condition": "rsi", "rsi_below": 50})


async def _full_history(h, spec, strategy, ticks):
    """The strategy's frames over the whole history the simulator holds now, far longer than the live window,
    and a factory of fresh twins of the bot's strategy."""
    limit = strategy.history_candles + ticks + 200
    frames = [klines_to_frame((await h.client.fetch_klines(spec.symbol, tf, limit=limit))[:-1])
              for tf in strategy.timeframes]

    def twin():
        return create_strategy(spec.strategy, dict(strategy.params), qty_step=strategy.qty_step,
                               tick_size=strategy.tick_size, allocated_capital=strategy.allocated_capital)

    return frames, twin


def _decision(signal):
    if signal is None:
        return None
    return replace(signal, metadata={k: v for k, v in signal.metadata.items() if k != "candle_index"})


@pytest.mark.slow(10)
@pytest.mark.parametrize(("spec", "ticks", "signals"), [(TREND, 150, 2), (SMC, 240, 2)], ids=["trend", "smc"])
async def test_live_decisions_equal_the_backtest_on_the_same_candles(sim, tmp_path, spec, ticks, signals):
    h = await build_desk(sim.base_url, tmp_path / "parity.db", [spec])
    try:
        strategy = h.desk.bots[spec.name].bot.strategy
        seen: list[tuple[int, Decimal, dict, object]] = []  # (candle open ms, balance, state, decision) while flat
        live_signal_at = strategy.signal_at

        def recording(prepared, i, balance):
            signal = live_signal_at(prepared, i, balance)
            if not strategy.get_active_positions():
                # the state too: SMC trades each zone once, so a zone used earlier is no decision's to repeat
                seen.append((int(prepared.open_ms[prepared.index(i)]), balance, strategy.get_state(), signal))
            return signal

        strategy.signal_at = recording
        for _ in range(ticks):
            await h.desk.tick_all()
            sim.step_all(1)
        frames, make_twin = await _full_history(h, spec, strategy, ticks)
        twin = make_twin()
        full = twin.prepare(*frames)
        at = {int(ms): i for i, ms in enumerate(full.open_ms)}
        mismatches = []
        for ms, balance, state, live in seen:
            twin.load_state(state)
            if _decision(live) != _decision(twin.signal_at(full, at[ms], balance)):
                mismatches.append(ms)
        taken = sum(live is not None for *_, live in seen)
        print(f"\n{spec.strategy}: {len(seen)} live decisions, {taken} entries, {len(mismatches)} mismatches "
              f"(live window {strategy.history_candles}, full history {len(full)})")
        assert len(seen) >= 40 and taken >= signals
        assert mismatches == []
    finally:
        await h.close()


@pytest.mark.slow(10)
@pytest.mark.parametrize(("spec", "ticks"), [(GRID, 120), (DCA_RSI, 150)], ids=["grid", "dca"])
async def test_live_ladders_equal_the_backtest_on_the_same_candles(sim, tmp_path, spec, ticks):
    """At each candle close live takes, the intents it wants equal those of a twin in the same state that saw
    the candle through the whole history's prepared data (what the backtest's pass computes)."""
    h = await build_desk(sim.base_url, tmp_path / "parity.db", [spec])
    try:
        strategy = h.desk.bots[spec.name].bot.strategy
        seen: list[tuple[int, dict, Decimal, Decimal, list]] = []  # (candle ms, state before, price, balance, intents)
        closed: dict = {}
        live_close, live_desired = strategy.on_candle_close, strategy.desired_orders

        def recording_close(prepared, i):
            closed.update(ms=int(prepared.open_ms[prepared.index(i)]), state=strategy.get_state())
            return live_close(prepared, i)

        def recording_desired(price, balance):
            intents = live_desired(price, balance)
            if closed:  # the first intents after a candle close
                seen.append((closed.pop("ms"), closed.pop("state"), price, balance, list(intents)))
            return intents

        strategy.on_candle_close, strategy.desired_orders = recording_close, recording_desired
        for _ in range(ticks):
            await h.desk.tick_all()
            sim.step_all(1)
        frames, make_twin = await _full_history(h, spec, strategy, ticks)
        full = make_twin().prepare(*frames)
        at = {int(ms): i for i, ms in enumerate(full.open_ms)}
        mismatches = []
        for ms, state, price, balance, live in seen:
            twin = make_twin()
            twin.load_state(state)
            twin.on_candle_close(full, at[ms])
            if twin.desired_orders(price, balance) != live:
                mismatches.append(ms)
        busy = sum(bool(intents) for *_, intents in seen)
        # closes taken while no deal or grid position was open: where the history-driven start decides
        flat = [bool(intents) for _, state, _, _, intents in seen if not state["positions"]]
        print(f"\n{spec.strategy}: {len(seen)} candle closes, {busy} with orders wanted, {len(flat)} flat "
              f"({sum(flat)} starting), {len(mismatches)} mismatches")
        assert len(seen) >= 40 and busy >= 5
        if spec is DCA_RSI:  # the RSI both started a deal and held one back
            assert 0 < sum(flat) < len(flat)
        assert mismatches == []
    finally:
        await h.close()
