"""Exits from the range: live exit checks see the high and low traded since the previous check, as the
backtest sees a candle's range, so a wick through the stop between two ticks exits live and in the backtest
identically (the real orchestrator on the simulator, the real engine on the same candles)."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

from traderagent.api.markets import klines_to_frame
from traderagent.backtest.engine import BacktestConfig, run_backtest
from traderagent.orchestrator.market_data import RangeMark, traded_since
from traderagent.strategies import create_strategy
from traderagent.strategies.types import ExitReason
from traderagent.timeframes import MINUTE_MS

from .helpers import DCA, TREND, build_desk

D = Decimal


def row(minute: int, high: str, low: str) -> list:
    return [minute * MINUTE_MS, D(low), D(high), D(low), D(high), D(1)]


def test_the_range_counts_later_minutes_whole_and_the_marks_minute_by_its_new_extremes():
    mark = RangeMark(10 * MINUTE_MS, D("105"), D("95"))
    # same minute, no new extreme: prices inside it may predate the check (a new position's stop must not see them)
    assert traded_since([row(10, "105", "95")], mark)[:2] == (None, None)
    # same minute, a new low after the check
    high, low, nxt = traded_since([row(10, "105", "90")], mark)
    assert (high, low, nxt) == (None, D(90), RangeMark(10 * MINUTE_MS, D(105), D(90)))
    # later minutes count whole
    high, low, nxt = traded_since([row(10, "105", "95"), row(11, "101", "99"), row(12, "104", "97")], mark)
    assert (high, low) == (D(104), D(97)) and nxt.minute_ms == 12 * MINUTE_MS
    # no mark (the first check): nothing before now is known
    assert traded_since([row(12, "104", "97")], None) == (None, None, RangeMark(12 * MINUTE_MS, D(104), D(97)))


async def test_a_wick_through_the_stop_between_two_ticks_exits_live_and_in_the_backtest_identically(sim, tmp_path):
    h = await build_desk(sim.base_url, tmp_path / "wick.db", [TREND])
    try:
        bot = h.desk.bots[TREND.name].bot
        strategy = bot.strategy
        for _ in range(400):  # the real live path, candle by candle, until it holds a position
            await h.desk.tick_all()
            if strategy.get_active_positions():
                break
            sim.step_all(1)
        (pos,) = strategy.get_active_positions()
        price = sim.price(TREND.symbol)
        tick = D("0.10")
        wick = pos.stop_loss - 5 * tick if pos.is_long else pos.stop_loss + 5 * tick
        assert (price > pos.stop_loss) if pos.is_long else (price < pos.stop_loss)
        sim.step_all(1)  # a new minute: the wick happens between two ticks, inside it
        await h.desk.tick_all()
        assert strategy.get_active_positions() == [pos]  # the stop was not reached by the last price
        wick_minute = await h.client.fetch_klines(TREND.symbol, "1m", limit=1)
        sim.set_price(TREND.symbol, wick)
        sim.set_price(TREND.symbol, price)  # back: the next tick's last price is on the safe side of the stop
        assert strategy.check_exits(price) == []  # a last-price check would have missed the wick
        await h.desk.tick_all()
        await h.desk.tick_all()  # the exit's market order is confirmed and booked
        (live,) = [p for p in strategy.closed_positions if p.position_id == pos.position_id]
        assert live.exit_reason is not None

        sim.step_all(1)  # the wick's minute closes: the backtest reads it as a candle
        rows = await h.client.fetch_klines(TREND.symbol, "1m", limit=strategy.history_candles + 500)
        history = klines_to_frame(rows[:-1])
        twin = create_strategy(TREND.strategy, dict(strategy.params), qty_step=strategy.qty_step,
                               tick_size=strategy.tick_size, allocated_capital=strategy.allocated_capital)
        result = run_backtest(twin, history, MINUTE_MS, BacktestConfig(balance=strategy.allocated_capital))
        (same,) = [t for t in result.trades if t.stop_loss == D(pos.metadata["initial_stop"])]
        assert same.closed and same.exit_time_ms == int(wick_minute[-1][0])
        assert same.exit_reason == live.exit_reason.value
    finally:
        await h.close()


async def test_a_wick_through_a_driver_held_ladder_stop_between_two_ticks_triggers_it(sim, tmp_path):
    """The DCA stop loss is held by the bot, not the exchange: it must see the wick as the backtest's candle
    low does (tests/backtest/test_engine.py: test_driver_held_stop_triggers_on_low_and_slips)."""
    spec = replace(DCA, params={**DCA.params, "stop_loss": "0.02", "stop_loss_from": "base"})
    h = await build_desk(sim.base_url, tmp_path / "dca-wick.db", [spec])
    try:
        strategy = h.desk.bots[spec.name].bot.strategy
        for _ in range(20):  # until the base order filled: the deal's stop is armed
            await h.desk.tick_all()
            if strategy.stop_price() is not None:
                break
        stop = strategy.stop_price()
        assert stop is not None
        price = sim.price(spec.symbol)
        await h.desk.tick_all()  # a check with the stop armed: the next one looks back to it
        sim.set_price(spec.symbol, stop - D("0.05"))  # the safety orders fill on the way down, then the stop
        sim.set_price(spec.symbol, price)
        for _ in range(3):  # book the safety fills, trigger the stop, book its market sell
            await h.desk.tick_all()
        reasons = [p.exit_reason for p in strategy.closed_positions]
        assert ExitReason.STOP_LOSS in reasons
    finally:
        await h.close()
