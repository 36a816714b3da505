"""The analysis / signal for candle i must not depend on candles after i."""

from __future__ import annotations

from decimal import Decimal

import numpy as np
import pytest

from traderagent.strategies import create_strategy

CASES = [
    ("trend_follower", {"ema_fast": 8, "ema_slow": 21, "adx_threshold": 20}),
    ("grid", {"num_levels": 8}),
    ("dca", {"start_condition": "rsi", "rsi_below": 40}),
]


@pytest.mark.parametrize(("st", "params"), CASES)
@pytest.mark.parametrize("frame", ["xrp_5m", "eth_btc_5m", "unittest_btc_1m"])
def test_decision_at_i_identical_on_prefix(st, params, frame, request):
    df = request.getfixturevalue(frame).iloc[:1500]
    s = create_strategy(st, params, qty_step="0.001", tick_size="0.00000001", allocated_capital="100000")
    full = s.prepare(df)
    balance = Decimal("10000")
    rng = np.random.default_rng(hash((st, frame)) % 2**32)
    cuts = sorted(set(rng.integers(0, len(df), 25).tolist()) | {0, s.min_candles - 1, len(df) - 1})
    signal_indices = [i for i in range(len(df)) if s.signal_at(full, i, balance) is not None]
    cuts = sorted(set(cuts) | set(signal_indices[:10]) | {i - 1 for i in signal_indices[:10] if i > 0})
    for i in cuts:
        part = s.prepare(df.iloc[: i + 1])
        assert s.analyze_at(part, i) == s.analyze_at(full, i), (st, i)
        assert s.signal_at(part, i, balance) == s.signal_at(full, i, balance), (st, i)
        for name, col in full.columns.items():
            np.testing.assert_array_equal(part.columns[name][i], col[i], err_msg=f"{st} {name} at {i}")
    if st == "trend_follower" and frame == "xrp_5m":
        assert signal_indices, "the look-ahead check must cover real signals"


def test_live_wrappers_equal_per_index_path(xrp_5m):
    s = create_strategy("trend_follower", {"ema_fast": 8, "ema_slow": 21, "adx_threshold": 20},
                        qty_step="1", tick_size="0.0001", allocated_capital="100000")
    full = s.prepare(xrp_5m)
    found = 0
    for i in range(60, 500):
        live = s.generate_signal(xrp_5m.iloc[: i + 1], Decimal("1000"))
        assert live == s.signal_at(full, i, Decimal("1000")), i
        found += live is not None
    assert found > 0
    assert s.analyze_market(xrp_5m.iloc[:300]) == s.analyze_at(full, 299)
