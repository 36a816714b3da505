"""Decision parity: the live path decides on the last ``history_candles`` candles; the backtest on the whole
history. With recursive indicators (EMA, ADX, RSI) both must take the same decisions at every candle."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

import numpy as np
import pandas as pd
import pytest

from traderagent.backtest.engine import build_frames
from traderagent.strategies import create_strategy
from traderagent.strategies.indicators import load_candles_csv
from traderagent.timeframes import timeframe_ms

BALANCE = Decimal("10000")


def decision(signal):
    """A signal without its position in the frame it was computed on (the window's index is not the history's)."""
    if signal is None:
        return None
    return replace(signal, metadata={k: v for k, v in signal.metadata.items() if k != "candle_index"})


def decisions(s, df, i0, window):
    """Per candle from i0: (full-history decision, decision on the last ``window`` candles only)."""
    full = s.prepare(df)
    out = []
    for i in range(i0, len(df)):
        part = s.prepare(df.iloc[i + 1 - window: i + 1])
        if s.is_ladder:
            col = "entry_ok"
            out.append((bool(full.columns[col][i]), bool(part.columns[col][-1])))
        else:
            out.append((decision(s.signal_at(full, i, BALANCE)), decision(s.signal_at(part, len(part) - 1, BALANCE))))
    return out


@pytest.mark.parametrize("file", ["ETH_BTC-5m.csv", "LTC_BTC-5m.csv", "XRPUSDT-perp-5m.csv"])
@pytest.mark.parametrize(("st", "params"), [
    ("trend_follower", {"ema_fast": 20, "ema_slow": 50, "adx_threshold": 20}),
    ("dca", {"start_condition": "rsi", "rsi_below": 35}),
])
def test_live_window_decides_like_the_whole_history(st, params, file, candles_dir):
    df = load_candles_csv(str(candles_dir / file))
    s = create_strategy(st, params, qty_step="0.0001", tick_size="0.00000001", allocated_capital="100000")
    window = s.history_candles
    pairs = decisions(s, df, window - 1, window)
    mismatches = sum(a != b for a, b in pairs)
    taken = sum(bool(a) for a, _ in pairs)
    print(f"\n{st} {file}: {taken} decisions over {len(pairs)} candles, {mismatches} mismatches (window {window})")
    assert taken >= 5  # the comparison covers real entries
    assert mismatches == 0


def close_times(frames, timeframes):
    """Per frame, its candles' close times (ns; ascending, as the open times are)."""
    return [(frame.index + pd.Timedelta(milliseconds=timeframe_ms(tf))).asi8
            for frame, tf in zip(frames, timeframes, strict=True)]


def live_frames(frames, closes, i, window):
    """What live fetches at the close of entry candle i: the last ``window`` closed candles of each timeframe
    (``closes``: close_times of ``frames``)."""
    end = closes[-1][i]
    out = []
    for frame, close in zip(frames, closes, strict=True):
        n = int(np.searchsorted(close, end, side="right"))  # the candles closed by ``end``
        out.append(frame.iloc[max(n - window, 0):n])
    return out


@pytest.mark.slow(6)
@pytest.mark.parametrize("file", ["ETH_BTC-5m.csv", "LTC_BTC-5m.csv"])
def test_smc_live_window_decides_like_the_whole_history(file, candles_dir):
    """SMC keeps zones and pools for ``max_age`` candles and smooths its ATR: ``history_candles`` of each
    timeframe give the backtest's decision. Checked wherever the backtest could enter (its candidates, a
    superset of its entries) and at every 20th candle besides (where both must say no)."""
    df = load_candles_csv(str(candles_dir / file))
    params = {"timeframes": "1h,15m,5m", "max_age": 100}
    full_s, live_s = (create_strategy("smc", params, qty_step="0.0001", tick_size="0.00000001",
                                      allocated_capital="100000") for _ in range(2))
    window = full_s.history_candles
    frames = build_frames(full_s, df, timeframe_ms("5m"))
    closes = close_times(frames, full_s.timeframes)
    full = full_s.prepare(*frames)
    at = np.flatnonzero(full_s.signal_candidates(full))
    at = sorted({*at[at >= window].tolist(), *range(window, len(df), 20)})
    mismatches = taken = 0
    for i in at:
        want = decision(full_s.signal_at(full, i, BALANCE))
        part = live_s.prepare(*live_frames(frames, closes, i, window))
        taken += want is not None
        mismatches += want != decision(live_s.signal_at(part, len(part) - 1, BALANCE))
    print(f"\nsmc {file}: {taken} decisions at {len(at)} candles checked, {mismatches} mismatches (window {window})")
    assert taken >= 20
    assert mismatches == 0
