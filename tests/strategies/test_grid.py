from __future__ import annotations

import json
from decimal import Decimal

import pytest

from tests.strategies.driver import LocalDriver
from traderagent.strategies import create_strategy
from traderagent.strategies.types import ExitReason

D = Decimal


def grid(params=None, *, step="0.001", tick="0.01", capital="100000", market_type="linear"):
    base = {"lower_price": "100", "upper_price": "110", "num_levels": 6, "qty_per_level": "1"}
    return create_strategy("grid", {**base, **(params or {})}, qty_step=step, tick_size=tick,
                           allocated_capital=capital, market_type=market_type)


def tags(intents):
    return {(i.tag, i.side, i.price, i.qty) for i in intents}


def test_arithmetic_and_geometric_levels():
    assert grid().levels == [D(x) for x in ("100.00", "102.00", "104.00", "106.00", "108.00", "110.00")]
    g = grid({"spacing": "geometric", "upper_price": "121", "num_levels": 3})
    assert g.levels == [D("100.00"), D("110.00"), D("121.00")]
    g = grid({"spacing": "geometric", "lower_price": "1", "upper_price": "2", "num_levels": 5}, tick="0.0001")
    assert g.levels == [D("1.0000"), D("1.1892"), D("1.4142"), D("1.6818"), D("2.0000")]


def test_initial_orders_long_and_neutral():
    long_grid = grid()
    assert tags(long_grid.desired_orders(D("105"), D("100000"))) == {
        ("grid:0:buy", "buy", D("100.00"), D("1.000")),
        ("grid:1:buy", "buy", D("102.00"), D("1.000")),
        ("grid:2:buy", "buy", D("104.00"), D("1.000")),
    }
    neutral = grid({"mode": "neutral"})
    out = tags(neutral.desired_orders(D("105"), D("100000")))
    assert ("grid:4:sell", "sell", D("108.00"), D("1.000")) in out
    assert ("grid:5:sell", "sell", D("110.00"), D("1.000")) in out and len(out) == 5
    with pytest.raises(ValueError, match="'mode'"):
        grid({"mode": "neutral"}, market_type="spot")


def test_total_investment_split_and_qty_rounded_down():
    g = grid({"qty_per_level": None, "total_investment": "1000"}, step="0.01")
    # 1000 / 5 slots = 200 quote per slot; qty = 200 / level rounded down to 0.01
    assert [s["qty"] for s in g.slots] == [D("2.00"), D("1.96"), D("1.92"), D("1.88"), D("1.85")]
    assert g.worst_case_capital() == sum((s["qty"] * g.levels[s["k"]] for s in g.slots), D(0)) <= D("1000")
    with pytest.raises(ValueError, match="total_investment"):
        grid({"qty_per_level": None, "total_investment": "5000"}, capital="1000")


def test_amount_per_grid_is_quote_per_slot():
    g = grid({"qty_per_level": None, "amount_per_grid": "200"}, step="0.01")
    assert [s["qty"] for s in g.slots] == [D("2.00"), D("1.96"), D("1.92"), D("1.88"), D("1.85")]  # as 1000 total
    with pytest.raises(ValueError, match="'amount_per_grid' x 5 slots"):
        grid({"qty_per_level": None, "amount_per_grid": "300"}, capital="1000")
    with pytest.raises(ValueError, match="not both"):
        grid({"amount_per_grid": "100", "total_investment": "500"})


def test_counter_order_one_level_up_and_pair_profit_net_of_fees():
    g = grid()
    g.desired_orders(D("105"), D("100000"))
    follow = g.on_order_filled("grid:2:buy", D("104"), D("1.000"), D("0.104"))
    assert tags(follow) == {("grid:3:sell", "sell", D("106.00"), D("1.000"))}
    assert follow[0].reduce_only  # linear: the counter order only closes the lot
    back = g.on_order_filled("grid:3:sell", D("106"), D("1.000"), D("0.106"))
    assert tags(back) == {("grid:2:buy", "buy", D("104.00"), D("1.000"))}
    (pair,) = g.closed_positions
    assert pair.realized_pnl == D("2") - D("0.104") - D("0.106") == D("1.790")
    assert pair.exit_reason is ExitReason.GRID_PAIR
    assert g.expected_pair_profit(2) == D("1.79")  # with fee_rate 0.1% on both legs
    # the real fill price is used (a better fill books more profit)
    g.on_order_filled("grid:2:buy", D("103.5"), D("1.000"), D("0.1035"))
    g.on_order_filled("grid:3:sell", D("106"), D("1.000"), D("0.106"))
    assert g.closed_positions[-1].realized_pnl == D("2.5") - D("0.2095")
    assert g.get_performance().total_pnl == D("1.790") + D("2.2905")


def test_fill_the_slot_no_longer_expects_is_booked():
    """A buy that filled before its cancel landed (the grid had left its range and stopped) is real inventory;
    a later stray sell first takes it out again."""
    g = grid({"out_of_range_action": "stop"})
    g.desired_orders(D("105"), D("100000"))
    g.desired_orders(D("200"), D("100000"))  # out of range: stopped, every buy unwanted
    assert g.status == "stopped" and g.desired_orders(D("200"), D("100000")) == []
    g.on_order_filled("grid:2:buy", D("104"), D("1.5"), D("0.3"))
    (lot,) = g.get_active_positions()
    assert (lot.is_long, lot.size, lot.entry_price, lot.fees) == (True, D("1.5"), D("104"), D("0.3"))
    g.on_order_filled("grid:4:sell", D("106"), D("2"), D("0.4"))  # 1.5 closes the lot, 0.5 opens a short
    (short,) = g.get_active_positions()
    assert (short.is_long, short.size, short.fees) == (False, D("0.5"), D("0.1"))
    assert g.closed_positions[-1].realized_pnl == D("3") - D("0.3") - D("0.3")


def test_fill_with_a_foreign_tag_is_rejected():
    g = grid()
    g.desired_orders(D("105"), D("100000"))
    with pytest.raises(ValueError):
        g.on_order_filled("dca:tp", D("106"), D("1"), D("0"))


def test_step_must_cover_fees():
    with pytest.raises(ValueError, match="does not cover"):
        grid({"num_levels": 60, "fee_rate": "0.001"})


def test_out_of_range_pause_resumes():
    g = grid()
    first = tags(g.desired_orders(D("105"), D("100000")))
    assert tags(g.desired_orders(D("111"), D("100000"))) == first and g.status == "paused"
    assert g.status == "paused"
    g.desired_orders(D("109"), D("100000"))
    assert g.status == "running" and len(g.desired_orders(D("109"), D("100000"))) == 5


def test_out_of_range_stop_keeps_inventory():
    g = grid({"out_of_range_action": "stop"})
    g.desired_orders(D("105"), D("100000"))
    g.on_order_filled("grid:2:buy", D("104"), D("1"), D("0"))
    assert g.desired_orders(D("99"), D("100000")) == [] and g.status == "stopped"
    assert len(g.get_active_positions()) == 1
    assert g.desired_orders(D("105"), D("100000")) == []


def test_out_of_range_stop_loss_closes_inventory():
    g = grid({"out_of_range_action": "stop_loss"}, market_type="spot")
    g.desired_orders(D("105"), D("100000"))
    g.on_order_filled("grid:2:buy", D("104"), D("1"), D("0.104"))
    g.on_order_filled("grid:1:buy", D("102"), D("1"), D("0.102"))
    intents = g.desired_orders(D("99"), D("100000"))
    assert tags(intents) == {("grid:close:sell", "sell", None, D("2"))}
    assert intents[0].order_type == "market" and not intents[0].reduce_only  # spot
    assert g.on_order_filled("grid:close:sell", D("99"), D("2"), D("0.198")) == []
    assert g.status == "stopped" and g.get_active_positions() == []
    pnls = sorted(p.realized_pnl for p in g.closed_positions)
    assert pnls == [D("-5.203"), D("-3.201")]
    assert all(p.exit_reason is ExitReason.STOP_LOSS for p in g.closed_positions)


def test_level_table_and_state_roundtrip():
    g = grid()
    g.desired_orders(D("105"), D("100000"))
    g.on_order_filled("grid:2:buy", D("104"), D("1"), D("0.1"))
    table = g.level_table()
    assert [r["side"] for r in table] == ["buy", "buy", None, "sell", None, None]
    assert table[3]["price"] == "106.00" and table[3]["status"] == "open"
    state = json.loads(json.dumps(g.get_state()))
    h = grid()
    h.load_state(state)
    assert tags(h.desired_orders(D("105"), D("100000"))) == tags(g.desired_orders(D("105"), D("100000")))
    h.on_order_filled("grid:3:sell", D("106"), D("1"), D("0.1"))
    assert h.closed_positions[0].realized_pnl == D("1.8")


def test_real_candles_sells_exactly_one_level_above_their_buy(xrp_5m):
    g = create_strategy("grid", {"lower_price": "1.05", "upper_price": "1.22", "num_levels": 18,
                                 "total_investment": "5000"},
                        qty_step="1", tick_size="0.0001", allocated_capital="5000")
    result = LocalDriver(g).run(xrp_5m)
    pairs = [(f, p) for f, p in result.closed_by if p.exit_reason is ExitReason.GRID_PAIR]
    assert len(pairs) >= 10
    buys = {f.tag: f for f in result.fills if f.side == "buy"}
    for fill, lot in pairs:
        k = lot.metadata["slot"]
        assert D(lot.metadata["order_price"]) == g.levels[k]
        assert fill.tag == f"grid:{k + 1}:sell" and fill.order_price == g.levels[k + 1]
        assert fill.price >= fill.order_price and lot.entry_price <= g.levels[k]
        assert lot.realized_pnl == (fill.price - lot.entry_price) * lot.size - lot.fees
        assert lot.realized_pnl > 0
        assert lot.size == lot.size.to_integral() and buys
    perf = g.get_performance()
    assert perf.total_pnl == sum((p.realized_pnl for _, p in result.closed_by), D(0))


def test_eth_btc_small_prices_round_to_tick(eth_btc_5m):
    g = create_strategy("grid", {"num_levels": 12, "range_pct": "0.08", "spacing": "geometric"},
                        qty_step="0.001", tick_size="0.000001", allocated_capital="10")
    result = LocalDriver(g).run(eth_btc_5m)
    assert all(lv == lv.quantize(D("0.000001")) for lv in g.levels)
    assert result.fills and all(f.qty == f.qty.quantize(D("0.001")) for f in result.fills)
