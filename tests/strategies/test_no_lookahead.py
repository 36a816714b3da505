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


@pytest.mark.parametrize(("st", "params"), [("grid", {"num_levels": 8, "range_pct": "0.03"}),
                                             ("dca", {"start_condition": "rsi", "rsi_below": 45})])
def test_ladder_orders_at_i_identical_on_prefix(st, params, xrp_5m):
    """A ladder decides with desired_orders: a twin fed only candles up to i wants the same orders at every
    candle as one fed the whole history; both get the same fills (market at the close, limits the next
    candle reaches)."""
    df = xrp_5m.iloc[:400]
    make = lambda: create_strategy(st, params, qty_step="1", tick_size="0.0001", allocated_capital="1000")  # noqa: E731
    past, seer = make(), make()
    full = seer.prepare(df)
    balance, filled, seen = Decimal("1000"), 0, set()
    for i in range(len(df)):
        part = past.prepare(df.iloc[: i + 1])
        past.on_candle_close(part, i)
        seer.on_candle_close(full, i)
        price = past.price_of(df["close"].iloc[i])
        wanted = past.desired_orders(price, balance)
        assert wanted == seer.desired_orders(price, balance), (st, i)
        seen |= {o.tag for o in wanted}
        nxt = df.iloc[min(i + 1, len(df) - 1)]
        for o in wanted:
            hit = o.order_type == "market" or (o.order_type == "limit" and (
                nxt["low"] <= o.price if o.side == "buy" else nxt["high"] >= o.price))
            if hit and i + 1 < len(df):
                fill = price if o.order_type == "market" else o.price
                past.on_order_filled(o.tag, fill, o.qty, Decimal(0))
                seer.on_order_filled(o.tag, fill, o.qty, Decimal(0))
                filled += 1
    assert filled >= 5 and len(seen) >= 3, (filled, seen)  # the comparison covered a working ladder
