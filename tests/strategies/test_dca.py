from __future__ import annotations

import json
from decimal import ROUND_CEILING, Decimal

import pytest

from tests.strategies.driver import LocalDriver
from traderagent.strategies import create_strategy
from traderagent.strategies.types import ExitReason

D = Decimal
THREE_COMMAS = {"base_order": "10", "safety_order": "20", "price_deviation": "0.01", "step_scale": "1.5",
                "volume_scale": "2", "max_safety_orders": 5, "take_profit": "0.015"}


def dca(params=None, *, step="0.001", tick="0.01", capital="1000", market_type="linear"):
    return create_strategy("dca", {**THREE_COMMAS, **(params or {})}, qty_step=step, tick_size=tick,
                           allocated_capital=capital, market_type=market_type)


def test_three_commas_ladder_and_worst_case_capital():
    s = dca()
    assert s.deviations() == [D("0.01"), D("0.025"), D("0.0475"), D("0.08125"), D("0.131875")]
    assert s.safety_quotes() == [D(20), D(40), D(80), D(160), D(320)]
    assert s.worst_case_capital(include_fees=False) == D(630)
    assert s.worst_case_capital() == D("630.630")
    rows = s.ladder(D("100"))
    assert [r["price"] for r in rows] == [D("99.00"), D("97.50"), D("95.25"), D("91.87"), D("86.81")]
    assert [r["qty"] for r in rows] == [D("0.202"), D("0.410"), D("0.839"), D("1.741"), D("3.686")]
    real = s.worst_case_capital(D("100"), include_fees=False)
    assert real == D("10.000") + sum((r["price"] * r["qty"] for r in rows), D(0)) and real <= 630
    with pytest.raises(ValueError, match="630"):
        dca(capital="600")


def test_take_profit_price_and_deal_profit_by_hand():
    s = dca()
    (base,) = s.desired_orders(D("100"), D("1000"))
    assert (base.tag, base.order_type, base.qty) == ("dca:base", "market", D("0.100"))
    follow = s.on_order_filled("dca:base", D("100"), D("0.100"), D("0.01"))
    assert [i.tag for i in follow] == ["dca:so1", "dca:so2", "dca:so3", "dca:so4", "dca:so5", "dca:tp"]
    tp = follow[-1]
    # cost 10 + fee 0.01 = 10.01; 10.01 * 1.015 / (0.1 * 0.999) = 101.7047... -> up to tick: 101.71
    assert tp.price == D("101.71") and tp.qty == D("0.100") and tp.reduce_only
    after = s.on_order_filled("dca:so1", D("99.00"), D("0.202"), D("0.019998"))
    assert {i.tag for i in after} == {"dca:tp"}
    cost = D("10") + D("0.01") + D("19.998") + D("0.019998")
    expected_tp = (cost * D("1.015") / (D("0.302") * D("0.999"))).quantize(D("0.01"), ROUND_CEILING)
    tp2 = next(i for i in s.desired_orders(D("99"), D("1000")) if i.tag == "dca:tp")
    assert tp2.price == expected_tp == D("101.03") and tp2.qty == D("0.302")
    exit_fee = D("101.03") * D("0.302") * D("0.001")
    s.on_order_filled("dca:tp", D("101.03"), D("0.302"), exit_fee)
    (deal,) = s.closed_positions
    assert deal.realized_pnl == D("101.03") * D("0.302") - D("29.998") - D("0.029998") - exit_fee
    assert deal.realized_pnl >= cost * D("0.015") - D("0.001")  # the target is net of every fee
    assert deal.exit_reason is ExitReason.TAKE_PROFIT and deal.metadata["safety_orders_filled"] == 1
    assert s.status == "idle" and s.desired_orders(D("101"), D("1000"))[0].tag == "dca:base"


def test_stop_loss_from_base_and_validation():
    s = dca({"stop_loss": "0.2", "stop_loss_from": "base"})
    s.desired_orders(D("100"), D("1000"))
    follow = s.on_order_filled("dca:base", D("100"), D("0.1"), D("0"))
    sl = next(i for i in follow if i.tag == "dca:sl")
    assert (sl.order_type, sl.side, sl.price) == ("stop", "sell", D("80.00"))
    s.on_order_filled("dca:sl", D("80"), D("0.1"), D("0"))
    assert s.closed_positions[0].exit_reason is ExitReason.STOP_LOSS
    assert s.closed_positions[0].realized_pnl == D("-2.0")
    with pytest.raises(ValueError, match="stop_loss"):
        dca({"stop_loss": "0.1", "stop_loss_from": "base"})


def test_not_started_without_capital_for_the_whole_ladder():
    s = dca()
    assert s.desired_orders(D("100"), D("500")) == []
    assert len(s.desired_orders(D("100"), D("700"))) == 1


def test_safety_orders_on_real_candles_at_configured_deviations_and_sizes(xrp_5m):
    params = {"base_order": "50", "safety_order": "50", "price_deviation": "0.01", "step_scale": "1.3",
              "volume_scale": "1.4", "max_safety_orders": 4, "take_profit": "0.01", "cooldown_candles": 3}
    s = create_strategy("dca", params, qty_step="1", tick_size="0.0001", allocated_capital="2000")
    result = LocalDriver(s).run(xrp_5m)
    devs, quotes = s.deviations(), s.safety_quotes()
    base = None
    so_fills = 0
    for f in result.fills:
        if f.tag == "dca:base":
            base = f.price
        elif f.tag.startswith("dca:so"):
            k = int(f.tag[6:])
            price = (base * (1 - devs[k - 1])).quantize(D("0.0001"), "ROUND_FLOOR")
            assert f.order_price == price
            assert f.qty == (quotes[k - 1] / price).to_integral_value("ROUND_FLOOR")
            so_fills += 1
    assert so_fills >= 3 and len(s.closed_positions) >= 2
    # cooldown: the next base order comes exactly 3 candles after the candle of the take profit
    closes = [f.index for f in result.fills if f.tag == "dca:tp"]
    starts = [f.index for f in result.fills if f.tag == "dca:base"]
    for tp_index in closes:
        nxt = [b for b in starts if b >= tp_index]
        if nxt:
            assert nxt[0] - tp_index == 3
    for f, deal in result.closed_by:
        assert deal.realized_pnl > 0 and f.tag == "dca:tp"


def test_rsi_start_condition_gates_the_base_order(xrp_5m):
    s = create_strategy("dca", {**THREE_COMMAS, "start_condition": "rsi", "rsi_below": 30},
                        qty_step="1", tick_size="0.0001", allocated_capital="1000")
    result = LocalDriver(s).run(xrp_5m)
    rsi = s.prepare(xrp_5m).columns["rsi"]
    starts, prev = [], None
    for f in result.fills:
        if f.tag == "dca:base":
            # a restart right after a take profit inside bar i uses the last CLOSED candle, i - 1
            starts.append(f.index - 1 if prev is not None and prev.tag == "dca:tp" and prev.index == f.index
                          else f.index)
        prev = f
    assert len(starts) >= 3 and all(rsi[i] < 30 for i in starts)


def test_state_roundtrip_mid_deal():
    s = dca()
    s.desired_orders(D("100"), D("1000"))
    s.on_order_filled("dca:base", D("100"), D("0.1"), D("0.01"))
    s.on_order_filled("dca:so1", D("99"), D("0.202"), D("0.02"))
    state = json.loads(json.dumps(s.get_state()))
    t = dca()
    t.load_state(state)
    assert t.desired_orders(D("99"), D("1000")) == s.desired_orders(D("99"), D("1000"))
    assert t.deal["filled"] == 1


def test_every_buy_is_booked_into_the_open_deal():
    """A closed deal's safety order filling before its cancel landed, and the market base sent as that deal
    closed: both are coins on the exchange, so both are averaged into the deal that is open."""
    s = dca()
    s.desired_orders(D("100"), D("1000"))
    s.on_order_filled("dca:base", D("100"), D("0.1"), D("0.01"))
    follow = s.on_order_filled("dca:so3", D("95.25"), D("0.839"), D("0"))  # out of order: so1 is next
    follow += s.on_order_filled("dca:base", D("101"), D("0.1"), D("0.01"))  # a base while a deal is open
    (pos,) = s.get_active_positions()
    assert pos.size == D("1.039")
    assert pos.entry_price == (D("10") + D("95.25") * D("0.839") + D("10.1")) / D("1.039")
    assert s.deal["filled"] == 0  # the ladder keeps its place: so1 is still wanted
    assert "dca:so1" in {i.tag for i in s.desired_orders(D("100"), D("1000"))}
    assert {i.tag: i.qty for i in follow}["dca:tp"] == D("1.039")  # the exit follows the size


@pytest.mark.parametrize("cooldown", [0, 3])
def test_safety_order_filled_as_the_deal_closed_starts_the_next_deal(cooldown):
    """A safety order and the take profit filling in the same candle: the safety order's coins are real."""
    s = dca({"cooldown_candles": cooldown})
    s.on_order_filled("dca:base", D("100"), D("0.100"), D("0.01"))
    s.on_order_filled("dca:tp", D("101.71"), D("0.100"), D("0.0102"))
    assert s.status in ("idle", "cooldown") and not s.get_active_positions()
    follow = s.on_order_filled("dca:so1", D("99.00"), D("0.202"), D("0.019998"))
    (pos,) = s.get_active_positions()
    assert pos.size == D("0.202") and pos.entry_price == D("99.00")
    assert s.status == "active"
    tp = next(i for i in follow if i.tag == "dca:tp")
    assert tp.qty == D("0.202") and tp.reduce_only and tp.price > D("99.00")
    assert [i.tag for i in follow if i.tag.startswith("dca:so")][0] == "dca:so1"  # a fresh ladder below 99
