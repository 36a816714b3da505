"""Benchmark helpers: a seeded random-walk year of 1m candles and the backtrader EMA-crossover reference."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd

MINUTES_PER_YEAR = 525_600


def random_walk(n: int = MINUTES_PER_YEAR, *, seed: int = 42, start_price: float = 30_000.0) -> pd.DataFrame:
    """Geometric random walk of 1m candles (sigma 0.08% a minute), open = previous close, wicks beyond."""
    rng = np.random.default_rng(seed)
    close = start_price * np.exp(np.cumsum(rng.normal(0.0, 0.0008, n)))
    open_ = np.r_[start_price, close[:-1]]
    high = np.maximum(open_, close) * np.exp(np.abs(rng.normal(0.0, 0.0003, n)))
    low = np.minimum(open_, close) * np.exp(-np.abs(rng.normal(0.0, 0.0003, n)))
    # round to a 0.1 tick like BTCUSDT, keeping high >= max(open, close) and low <= min(open, close)
    open_, close = np.round(open_, 1), np.round(close, 1)
    high = np.maximum(np.ceil(high * 10) / 10, np.maximum(open_, close))
    low = np.minimum(np.floor(low * 10) / 10, np.minimum(open_, close))
    idx = pd.date_range("2023-01-01", periods=n, freq="1min", tz="UTC", name="timestamp")
    return pd.DataFrame(
        {"open": open_, "high": high, "low": low, "close": close, "volume": rng.uniform(1, 50, n).round(3)},
        index=idx,
    )


def run_backtrader(frame: pd.DataFrame, *, fast: int = 20, slow: int = 50, fee: float = 0.001
                   ) -> tuple[float, list[int], list[int]]:
    """EMA fast/slow crossover, long only, market orders (filled at the next bar's open), 0.1% commission.

    Returns (seconds, entry bar indices, exit bar indices) where an index is the bar the order EXECUTED on.
    backtrader's fastest mode: preloaded data, runonce indicators, no observers.
    """
    import backtrader as bt

    class EmaCross(bt.Strategy):
        def __init__(self) -> None:
            self.cross = bt.ind.CrossOver(bt.ind.EMA(period=fast), bt.ind.EMA(period=slow))
            self.entries: list[int] = []
            self.exits: list[int] = []

        def next(self) -> None:
            if not self.position:
                if self.cross[0] > 0:
                    self.buy(size=1)
            elif self.cross[0] < 0:
                self.close()

        def notify_order(self, order) -> None:
            if order.status == order.Completed:
                (self.entries if order.isbuy() else self.exits).append(len(self) - 1)

    cerebro = bt.Cerebro(stdstats=False, preload=True, runonce=True)
    cerebro.adddata(bt.feeds.PandasData(dataname=frame.tz_localize(None)))
    cerebro.addstrategy(EmaCross)
    cerebro.broker.setcash(1e12)  # never margin-rejected: only the crossover decides
    cerebro.broker.setcommission(commission=fee)
    t0 = time.perf_counter()
    strat = cerebro.run()[0]
    return time.perf_counter() - t0, strat.entries, strat.exits


def run_vectorbt(frame: pd.DataFrame, *, fast: int = 20, slow: int = 50, fee: float = 0.001
                 ) -> tuple[float, list[int], list[int]]:
    """The same crossover in vectorbt: TA-Lib's EMA (SMA-seeded, like ours and backtrader's), signals shifted
    one candle and filled at that candle's open, size 1, 0.1% fee. Returns (seconds, entry bars, exit bars).

    The index is made tz-naive: with a tz-aware one vectorbt spends ~20 s converting timestamps to objects,
    so this is its best case."""
    import vectorbt as vbt

    close, open_ = frame["close"].tz_localize(None), frame["open"].tz_localize(None)
    ema = vbt.IndicatorFactory.from_talib("EMA")
    t0 = time.perf_counter()
    f, s = ema.run(close, timeperiod=fast).real, ema.run(close, timeperiod=slow).real
    entries, exits = f.vbt.crossed_above(s), f.vbt.crossed_below(s)
    pf = vbt.Portfolio.from_signals(close, entries.vbt.fshift(1, fill_value=False), exits.vbt.fshift(1, fill_value=False),
                                    price=open_, size=1, fees=fee, freq="1min")
    rec = pf.trades.records
    seconds = time.perf_counter() - t0
    return seconds, rec["entry_idx"].tolist(), rec["exit_idx"][rec["status"] == 1].tolist()


def vectorbt_grid(frame: pd.DataFrame, combos: list[tuple[int, int]], *, fee: float = 0.001) -> tuple[float, list[float]]:
    """vectorbt's own parameter grid: every (fast, slow) as a column of one portfolio. (seconds, total returns)."""
    import vectorbt as vbt

    close, open_ = frame["close"].tz_localize(None), frame["open"].tz_localize(None)
    ema = vbt.IndicatorFactory.from_talib("EMA")
    t0 = time.perf_counter()
    f = ema.run(close, timeperiod=[a for a, _ in combos]).real.to_numpy()
    s = ema.run(close, timeperiod=[b for _, b in combos]).real.to_numpy()
    cols = pd.MultiIndex.from_tuples(combos, names=["fast", "slow"])
    f, s = pd.DataFrame(f, index=close.index, columns=cols), pd.DataFrame(s, index=close.index, columns=cols)
    entries = f.vbt.crossed_above(s).vbt.fshift(1, fill_value=False)
    exits = f.vbt.crossed_below(s).vbt.fshift(1, fill_value=False)
    pf = vbt.Portfolio.from_signals(close, entries, exits, price=open_, size=1, fees=fee, freq="1min")
    returns = pf.total_return().tolist()
    return time.perf_counter() - t0, returns
