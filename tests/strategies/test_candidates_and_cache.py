"""`signal_candidates` is a superset of the real entries; ladders return the same intents list while nothing changed."""

from __future__ import annotations

import json
from decimal import Decimal

import numpy as np
import pytest

from tests.strategies.driver import LocalDriver
from tests.strategies.test_smc_adapter import frames_until, load_5m
from traderagent.strategies import create_strategy
from traderagent.strategies.smc_adapter import SMCStrategyAdapter

D = Decimal
BALANCE = D("10000")


def _signal_indices(s, prepared, balance=BALANCE):
    return [i for i in range(len(prepared)) if s.signal_at(prepared, i, balance) is not None]


@pytest.mark.parametrize("market_type", ["linear", "spot"])
def test_trend_candidates_cover_every_signal_and_skip_most_candles(xrp_5m, market_type):
    s = create_strategy("trend_follower", {"ema_fast": 8, "ema_slow": 21, "adx_threshold": 22}, qty_step="1",
                        tick_size="0.0001", allocated_capital="10000", market_type=market_type)
    p = s.prepare(xrp_5m)
    mask = s.signal_candidates(p)
    hits = _signal_indices(s, p)
    assert hits and all(mask[i] for i in hits)
    assert mask.sum() < len(mask) // 10  # the point of the hook: few candles to ask
    if market_type == "spot":  # shorts are never taken on spot, so their edges are no candidates
        assert not (mask & p.columns["short_entry"] & ~p.columns["long_entry"]).any()


@pytest.mark.parametrize("params", [{}, {"confirmation": "none"}, {"confirmation": "sweep"}])
def test_smc_candidates_cover_every_signal(candles_dir, params):
    frames = frames_until(load_5m(candles_dir, "ETH_BTC-5m.csv"), ("4h", "1h", "15m"))
    s = SMCStrategyAdapter({**params}, qty_step="0.001", tick_size="0.000001", allocated_capital="1000")
    p = s.prepare(*frames)
    mask = s.signal_candidates(p)
    assert mask.dtype == bool and len(mask) == len(p)
    hits = _signal_indices(s, p, D("1000"))
    assert hits and all(mask[i] for i in hits)
    assert mask.sum() < len(mask)


def test_smc_without_higher_frames_has_no_candidates(candles_dir):
    ltf = frames_until(load_5m(candles_dir, "ETH_BTC-5m.csv"), ("15m",))[0]
    s = SMCStrategyAdapter({}, qty_step="0.001", tick_size="0.000001", allocated_capital="1000")
    assert not s.signal_candidates(s.prepare(ltf)).any()


# ---------------------------------------------------------------- ladder intents cache


def grid(**params):
    base = {"lower_price": "100", "upper_price": "110", "num_levels": 6, "qty_per_level": "1"}
    return create_strategy("grid", {**base, **params}, qty_step="0.001", tick_size="0.01", allocated_capital="100000")


def test_grid_returns_the_same_list_inside_a_level_band():
    g = grid()
    first = g.desired_orders(D("105"), D("100000"))
    assert g.desired_orders(D("105.5"), D("100000")) is first  # still between 104 and 106
    assert g.desired_orders(D("104.01"), D("100000")) is first
    # on a level the comparisons change (a slot at 104 is no longer below the price): rebuilt ...
    on_level = g.desired_orders(D("104"), D("100000"))
    assert on_level is not first and on_level == first  # ... to the same intents (nothing new activates)
    up = g.desired_orders(D("107"), D("100000"))  # slot 3 (buy at 106) activates
    assert {i.tag for i in up} == {i.tag for i in first} | {"grid:3:buy"}
    # the balance decides which slots may activate: a different balance is a different key
    assert g.desired_orders(D("107"), D("99999")) is not up


def test_grid_fill_and_state_changes_drop_the_cache():
    g = grid()
    first = g.desired_orders(D("105"), D("100000"))
    g.on_order_filled("grid:2:buy", D("104"), D("1"), D("0.1"))
    after = g.desired_orders(D("105"), D("100000"))
    assert after is not first and "grid:3:sell" in {i.tag for i in after} and "grid:2:buy" not in {i.tag for i in after}
    # unchanged slots keep their intent objects (a driver diffing by identity sees only the change)
    assert {id(i) for i in after} & {id(i) for i in first}
    g.load_state(json.loads(json.dumps(g.get_state())))
    assert g.desired_orders(D("105"), D("100000")) is not after
    g.status = "paused"  # status is part of the key: even a direct change is seen
    assert g.desired_orders(D("111"), D("100000")) is not after


def test_dca_active_deal_returns_the_same_list_until_a_fill():
    s = create_strategy("dca", {"base_order": "10", "safety_order": "20", "max_safety_orders": 3,
                                "stop_loss": "0.2"}, qty_step="0.001", tick_size="0.01", allocated_capital="1000")
    (base,) = s.desired_orders(D("100"), D("1000"))
    s.on_order_filled(base.tag, D("100"), base.qty, D("0.01"))
    deal = s.desired_orders(D("100"), D("1000"))
    assert s.desired_orders(D("97"), D("900")) is deal  # an open deal's ladder ignores price and balance
    s.on_order_filled("dca:so1", D("99"), deal[0].qty, D("0.02"))
    moved = s.desired_orders(D("97"), D("900"))
    assert moved is not deal and {i.tag for i in moved} == {"dca:so2", "dca:so3", "dca:tp", "dca:sl"}


class CheckingDriver(LocalDriver):
    """LocalDriver that checks every desired_orders answer against a fresh copy of the strategy (no cache)."""

    def __init__(self, strategy, make):
        super().__init__(strategy)
        self.make, self.calls, self.same = make, 0, 0
        self._last = self._last_price = None

    def _check(self, price, i):
        state = json.loads(json.dumps(self.s.get_state()))
        got = self.s.desired_orders(price, self.balance())
        fresh = self.make()
        fresh.load_state(state)
        assert fresh.desired_orders(price, self.balance()) == got, f"candle {i}, price {price}"
        self.calls += 1
        self.same += got is self._last
        self._last, self._last_price = got, price

    def _sync(self, price, i):
        self._check(price, i)
        super()._sync(price, i)

    def _fill(self, i, intent, price):
        super()._fill(i, intent, price)
        self._check(self._last_price, i)  # the price of the last answer: only the fill changed


@pytest.mark.parametrize("name,params", [
    ("grid", {"lower_price": "1.05", "upper_price": "1.22", "num_levels": 18, "total_investment": "5000"}),
    ("grid", {"lower_price": "1.08", "upper_price": "1.22", "num_levels": 10, "mode": "neutral",
              "out_of_range_action": "stop_loss"}),
    ("dca", {"base_order": "20", "safety_order": "20", "max_safety_orders": 4, "price_deviation": "0.004",
             "take_profit": "0.004", "stop_loss": "0.05", "cooldown_candles": 3}),
])
def test_cached_intents_equal_a_fresh_computation_on_real_candles(xrp_5m, name, params):
    def make():
        return create_strategy(name, params, qty_step="1", tick_size="0.0001", allocated_capital="10000")

    driver = CheckingDriver(make(), make)
    result = driver.run(xrp_5m.iloc[:800])
    assert result.fills  # the strategy really traded, so fills and state changes were exercised
    assert driver.same > driver.calls // 2  # and the cache really answered most calls
    assert np.isfinite(float(driver.s.get_performance().total_pnl))
