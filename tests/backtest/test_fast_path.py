"""The engine's fast paths decide exactly what visiting every candle decides: jumping over an open position to
the next exit candidate, entry candidate or level touch (`exit_candidates`), and booking a strategy's
`signal_arrays` without per-candle calls. The EMA crossover's trades equal an independent reference on real
candles.

Why an independent reference and not vectorbt: vectorbt (numba, plotly, ...) is in the `bench` extra only.
bench/bench_backtest.py compares our trades with vectorbt's and backtrader's on 525,600 candles; here a
plain-Python crossover (its own EMA, backtrader's crossing rule, next-open fills) pins the same behaviour
on real data without them.
"""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal as D

import numpy as np
import pytest

from traderagent.backtest.ema_cross import EmaCross
from traderagent.backtest.engine import BacktestConfig, run_backtest
from traderagent.strategies.indicators import load_candles_csv
from traderagent.timeframes import timeframe_ms

CFG = BacktestConfig(balance=D(1000), taker_fee=D("0.001"), maker_fee=D("0.0002"), slippage=D("0.0005"))
FILES = [("UNITTEST_BTC-1m.csv", "1m"), ("ETH_BTC-5m.csv", "5m")]


class Counting(EmaCross):
    """The per-candle path (no signal_arrays), counting the candles the engine closes while a position is open."""

    closes = 0

    def signal_arrays(self, prepared):
        return None

    def on_candle_close(self, prepared, i):
        self.closes += 1
        return super().on_candle_close(prepared, i)


class EveryCandle(Counting):
    """The same strategy without the hook: the engine visits every candle of a position."""

    def exit_candidates(self, prepared):
        return None


def with_levels(cls):
    """`cls` whose entries carry a stop 0.4% below and a target 0.8% above: exits also come from touches."""

    class Levels(cls):
        def signal_at(self, prepared, i, balance):
            sig = super().signal_at(prepared, i, balance)
            if sig is None:
                return None
            return replace(sig, stop_loss=self.round_price(sig.entry_price * D("0.996")),
                           take_profit=self.round_price(sig.entry_price * D("1.008")))

    return Levels


def run(cls, df, tf):
    s = cls({"fast": 12, "slow": 26, "qty": "0.5", "timeframe": tf}, qty_step="0.001", tick_size="0.00000001",
            allocated_capital="1000")
    return s, run_backtest(s, df, timeframe_ms(tf), CFG)


def same_results(a, b):
    assert a.fills == b.fills and a.trades == b.trades
    assert np.array_equal(a.equity, b.equity) and a.metrics == b.metrics


@pytest.mark.parametrize(("file", "tf"), FILES)
def test_signal_arrays_book_what_the_per_candle_path_decides(file, tf, candles_dir):
    df = load_candles_csv(str(candles_dir / file))
    arrays_s, arrays = run(EmaCross, df, tf)
    _, every = run(EveryCandle, df, tf)
    assert len(every.trades) >= 50
    same_results(arrays, every)
    assert arrays_s.closed_count == 0  # booked by the engine alone: the strategy was not called per candle
    # a position still open at the end is marked like the per-candle path marks it
    cut = df.iloc[: every.trades[10].exit_index]
    same_results(run(EmaCross, cut, tf)[1], run(EveryCandle, cut, tf)[1])
    assert not run(EmaCross, cut, tf)[1].trades[-1].closed


@pytest.mark.parametrize(("file", "tf"), FILES)
@pytest.mark.parametrize("levels", [False, True])
def test_jumping_over_positions_changes_nothing(file, tf, levels, candles_dir):
    df = load_candles_csv(str(candles_dir / file))
    fast_cls, slow_cls = (with_levels(Counting), with_levels(EveryCandle)) if levels else (Counting, EveryCandle)
    fast_s, fast = run(fast_cls, df, tf)
    slow_s, slow = run(slow_cls, df, tf)
    assert len(slow.trades) >= 50
    same_results(fast, slow)
    if levels:
        assert {t.exit_reason for t in fast.trades} >= {"stop_loss", "take_profit", "signal_reversed"}
    assert fast_s.closes * 2 < slow_s.closes  # the jump skipped most candles of the positions


def reference_trades(df, fast: int, slow: int, qty: D, cfg: BacktestConfig) -> list[tuple]:
    """EMA crossover written from its definition, sharing nothing with the engine or TA-Lib.

    EMA seeded with the SMA of the first `period` closes; cross up at i when fast > slow at i and the last
    non-zero fast - slow before i was negative (backtrader's CrossOver); decisions at a close fill at the
    next open plus slippage, taker fee. Returns (entry index, entry price, exit index, exit price, pnl).
    """
    close, open_ = df["close"].tolist(), df["open"].tolist()

    def ema(period):
        out = [None] * len(close)
        value = sum(close[:period]) / period
        out[period - 1] = value
        alpha = 2 / (period + 1)
        for i in range(period, len(close)):
            value = (close[i] - value) * alpha + value
            out[i] = value
        return out

    ef, es = ema(fast), ema(slow)
    trades, held, pending, last_diff = [], None, None, 0.0
    for i in range(len(close)):
        if pending == "buy":
            held = (i, D(repr(open_[i])) * (1 + cfg.slippage))
        elif pending == "sell":
            price = D(repr(open_[i])) * (1 - cfg.slippage)
            (entry_i, entry) = held
            pnl = (price - entry) * qty - (entry + price) * qty * cfg.taker_fee
            trades.append((entry_i, entry, i, price, pnl))
            held = None
        pending = None
        if es[i] is None:
            continue
        diff = ef[i] - es[i]
        if i >= slow and i + 1 < len(close):
            if held is not None and diff < 0 < last_diff:
                pending = "sell"
            elif held is None and diff > 0 > last_diff:
                pending = "buy"
        last_diff = diff if diff != 0 else last_diff
    return trades


@pytest.mark.parametrize(("file", "tf"), FILES)
def test_ema_cross_trades_equal_an_independent_reference(file, tf, candles_dir):
    df = load_candles_csv(str(candles_dir / file))
    _, res = run(EmaCross, df, tf)
    ours = [(t.entry_index, t.entry_price, t.exit_index, t.exit_price, t.pnl) for t in res.trades if t.closed]
    want = reference_trades(df, 12, 26, D("0.5"), CFG)
    assert len(want) >= 50
    assert ours == want
