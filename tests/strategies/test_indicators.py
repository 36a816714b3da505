from __future__ import annotations

import numpy as np
import pandas as pd
import talib

from traderagent.strategies import indicators as ind


def _walk(n=3000, seed=7):
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    high = close * (1 + rng.uniform(0, 0.01, n))
    low = close * (1 - rng.uniform(0, 0.01, n))
    return high, low, close


def test_true_range_matches_talib():
    h, lo, c = _walk()
    ours, ref = ind.true_range(h, lo, c), talib.TRANGE(h, lo, c)
    assert np.isnan(ours[0]) and np.isnan(ref[0])
    np.testing.assert_allclose(ours[1:], ref[1:], rtol=0, atol=1e-9)


def test_true_range_on_real_candles(xrp_5m):
    h, lo, c = (xrp_5m[k].to_numpy() for k in ("high", "low", "close"))
    np.testing.assert_allclose(ind.true_range(h, lo, c)[1:], talib.TRANGE(h, lo, c)[1:], atol=1e-9)


def test_wrappers_are_talib_and_causal():
    h, lo, c = _walk()
    a, pdi, mdi = ind.adx(h, lo, c, 14)
    np.testing.assert_array_equal(a, talib.ADX(h, lo, c, 14))
    for cut in (40, 500, 1999):
        np.testing.assert_array_equal(ind.ema(c[:cut], 20), ind.ema(c, 20)[:cut])
        np.testing.assert_array_equal(ind.atr(h[:cut], lo[:cut], c[:cut]), ind.atr(h, lo, c)[:cut])
        np.testing.assert_array_equal(ind.adx(h[:cut], lo[:cut], c[:cut])[0], a[:cut])
        np.testing.assert_array_equal(ind.rsi(c[:cut]), ind.rsi(c)[:cut])


def test_cross_and_edge_helpers():
    a = np.array([1.0, 2.0, 3.0, 2.0, 1.0, 3.0])
    b = np.full(6, 2.0)
    assert list(ind.crossed_above(a, b)) == [False, False, True, False, False, True]
    assert list(ind.crossed_below(a, b)) == [False, False, False, False, True, False]
    assert list(ind.rising_edge(np.array([True, True, False, True]))) == [True, False, False, True]


def test_regularize_fills_gaps_flat_with_zero_volume(unittest_btc_1m):
    df = unittest_btc_1m
    reg = ind.regularize(df, "1min")
    steps = np.diff(df.index.as_unit("s").asi8)
    missing = int((steps // 60 - 1).sum())
    assert missing > 0 and len(reg) == len(df) + missing
    added = reg.index.difference(df.index)
    filled = reg.loc[added]
    assert (filled["volume"] == 0).all()
    assert (filled["open"] == filled["close"]).all() and (filled["high"] == filled["low"]).all()
    prev_close = reg["close"].shift(1).loc[added]
    assert (filled["close"] == prev_close).all()
    pd.testing.assert_frame_equal(reg.loc[df.index], df, check_freq=False)
