from __future__ import annotations

import json
from decimal import Decimal

import numpy as np
import pandas as pd
import pytest

from traderagent.strategies import STRATEGY_TYPES, create_strategy, strategy_defaults
from traderagent.strategies.book import CLOSED_KEEP
from traderagent.strategies.frames import align_higher_timeframe, closed_only
from traderagent.strategies.numeric import round_down
from traderagent.strategies.types import BaseSignal, ExitReason, OrderIntent, PositionInfo, SignalDirection
from traderagent.timeframes import timeframe_ms

D = Decimal


def trend(**kw):
    base = {"qty_step": "0.001", "tick_size": "0.1", "allocated_capital": "1000"}
    base.update(kw)
    params = base.pop("params", {})
    return create_strategy("trend_follower", params, **base)


def signal(direction=SignalDirection.LONG, entry="100", stop="90", tp="130", size="1"):
    return BaseSignal(direction, D(entry), D(stop), D(tp) if tp else None, D(size), 0.5, None, "trend_follower")


def test_position_size_risk_over_stop_distance_rounded_down():
    s = trend(params={"risk_per_trade": "0.02"}, allocated_capital="100000")
    # 10000 * 0.02 / 7 = 28.5714... -> 28.571 at qty_step 0.001
    assert s.position_size(D("100"), D("93"), D("10000")) == D("28.571")
    assert s.position_size(D("100"), D("107"), D("10000")) == D("28.571")  # shorts: |entry - stop|


def test_position_size_capped_by_allocated_capital():
    s = trend(params={"risk_per_trade": "0.05"}, allocated_capital="500")
    # risk size 10000*0.05/1 = 500 units = 50000 notional, cap 500/100 = 5
    assert s.position_size(D("100"), D("99"), D("10000")) == D("5.000")
    assert s.position_size(D("100"), D("100"), D("10000")) == 0


@pytest.mark.parametrize(
    ("value", "step", "expected"),
    [("1.23456", "0.001", "1.234"), ("0.0099999", "0.001", "0.009"), ("17.9", "1", "17"), ("5", "0.5", "5.0")],
)
def test_round_down(value, step, expected):
    out = round_down(D(value), D(step))
    assert out == D(expected) and out.as_tuple().exponent == D(step).as_tuple().exponent


def test_unknown_parameter_is_named():
    for st in ("trend_follower", "grid", "dca"):
        with pytest.raises(ValueError, match="emma_fast: unknown parameter"):
            create_strategy(st, {"emma_fast": 3}, qty_step="1", tick_size="0.01", allocated_capital="1e6")


def test_unknown_strategy_type():
    with pytest.raises(ValueError, match="unknown strategy type 'nope'"):
        create_strategy("nope", {}, qty_step="1", tick_size="1", allocated_capital="1")


def test_registry_defaults_and_types():
    assert {"trend_follower", "grid", "dca", "smc"} <= set(STRATEGY_TYPES)
    assert strategy_defaults("trend_follower")["adx_threshold"] == 25.0
    assert strategy_defaults("dca")["max_safety_orders"] == 5
    s = trend()
    assert s.strategy_type == "trend_follower" and s.timeframes == ("1h",) and s.min_candles > 50


def test_open_close_books_pnl_net_of_fees_and_performance():
    s = trend()
    p1 = s.open_position(signal(), D("2"), D("101"), fee=D("0.2"))
    closed = s.close_position(p1.position_id, D("111"), ExitReason.TAKE_PROFIT, fee=D("0.3"))
    assert closed.realized_pnl == D("19.5") and closed.status == "closed"
    p2 = s.open_position(signal(SignalDirection.SHORT, "100", "110", "70"), D("1"), D("100"))
    closed2 = s.close_position(p2.position_id, D("105"), "stop_loss", fee=D("0.5"))
    assert closed2.realized_pnl == D("-5.5")
    perf = s.get_performance()
    assert (perf.total_trades, perf.winning_trades, perf.losing_trades) == (2, 1, 1)
    assert perf.total_pnl == D("14.0") and perf.avg_trade_pnl == D("7.0")
    assert perf.profit_factor == pytest.approx(19.5 / 5.5)
    # equity 1000 -> 1019.5 -> 1014: drawdown 5.5 / 1019.5, returns per trade on the equity before it
    assert perf.max_drawdown == pytest.approx(5.5 / 1019.5)
    r = np.array([19.5 / 1000, -5.5 / 1019.5])
    assert perf.sharpe_ratio == pytest.approx(r.mean() / r.std(ddof=1))
    json.dumps(perf.to_dict())
    assert s.get_active_positions() == []


def test_profit_factor_without_losses_is_json_safe():
    s = trend()
    p = s.open_position(signal(), D("1"), D("100"))
    s.close_position(p.position_id, D("110"), ExitReason.TAKE_PROFIT)
    perf = s.get_performance()
    assert perf.profit_factor is None and perf.sharpe_ratio is None  # undefined, as in the backtest
    assert json.loads(json.dumps(perf.to_dict()))["profit_factor"] is None


def test_check_exits_stop_wins_and_gaps_fill_at_open():
    s = trend()
    p = s.open_position(signal(), D("1"), D("100"))
    assert s.check_exits(D("100"), high=D("129"), low=D("91")) == []
    hit = s.check_exits(D("100"), high=D("131"), low=D("89"))
    assert hit[0].exit_reason is ExitReason.STOP_LOSS and hit[0].exit_price == D("90")
    hit = s.check_exits(D("85"), high=D("86"), low=D("84"), open_=D("85"))
    assert hit[0].exit_price == D("85")  # gapped through the stop
    hit = s.check_exits(D("131"), high=D("135"), low=D("129"), open_=D("129.5"))
    assert hit[0].exit_reason is ExitReason.TAKE_PROFIT and hit[0].exit_price == D("130")
    assert p.position_id == hit[0].position_id


def test_state_roundtrip_and_json_safe():
    s = trend()
    p = s.open_position(signal(), D("1.5"), D("100"), fee=D("0.1"))
    s.close_position(s.open_position(signal(), D("1"), D("100")).position_id, D("95"), "manual")
    state = json.loads(json.dumps(s.get_state()))
    t = trend()
    t.load_state(state)
    assert [x.to_dict() for x in t.get_active_positions()] == [p.to_dict()]
    assert t.get_performance() == s.get_performance()
    q = t.open_position(signal(), D("1"), D("100"))
    assert q.position_id not in {p.position_id, "trend_follower-2"}
    with pytest.raises(ValueError, match="belongs to strategy"):
        create_strategy("grid", {}, qty_step="1", tick_size="0.01", allocated_capital="100").load_state(state)


def test_value_types_to_dict():
    pos = PositionInfo("x", SignalDirection.LONG, D("1.5"), D("1.6"), D("2"), D("1.4"), None, D("0.2"), None, "t")
    d = json.loads(json.dumps(pos.to_dict()))
    assert d["direction"] == "long" and d["entry_price"] == "1.5" and PositionInfo.from_dict(d) == pos
    sig = signal()
    assert sig.risk_amount == D("10") and sig.reward_amount == D("30")
    json.dumps(sig.to_dict())
    with pytest.raises(ValueError):
        OrderIntent("t", "hold", "limit", D("1"), D("1"))
    with pytest.raises(ValueError, match="needs a price"):
        OrderIntent("t", "buy", "limit", D("1"), None)


def test_timeframes_and_alignment_uses_closed_candles_only():
    assert timeframe_ms("15m") == 900_000 and timeframe_ms("4h") == 14_400_000 and timeframe_ms("60") == 3_600_000
    h1 = np.array([0, 3_600_000, 7_200_000], dtype=np.int64)
    m15 = np.arange(0, 3 * 3_600_000, 900_000, dtype=np.int64)
    idx = align_higher_timeframe(h1, "1h", m15, "15m")
    # the first 1h candle is closed only after the 4th 15m candle (index 3) closes
    assert list(idx) == [-1, -1, -1, 0, 0, 0, 0, 1, 1, 1, 1, 2]


def test_closed_only_drops_forming_candle():
    idx = pd.date_range("2024-01-01", periods=3, freq="1h", tz="UTC")
    df = pd.DataFrame({"close": [1.0, 2.0, 3.0]}, index=idx)
    last_open = int(idx[-1].value // 1_000_000)
    assert len(closed_only(df, last_open + 1000, "1h")) == 2
    assert len(closed_only(df, last_open + 3_600_000, "1h")) == 3


def test_open_positions_is_a_live_read_only_view_and_closed_since_counts():
    s = trend()
    view = s.open_positions
    assert len(view) == 0 and s.closed_count == 0 and s.closed_since(0) == []
    pos = s.open_position(signal(), D("1"), D("100"))
    assert list(view) == [pos.position_id] and view[pos.position_id] is pos
    with pytest.raises(TypeError):
        view["x"] = pos  # type: ignore[index]
    s.close_position(pos.position_id, D("110"), ExitReason.MANUAL)
    assert len(view) == 0 and s.closed_count == 1 and s.closed_since(0)[0].position_id == pos.position_id
    assert s.closed_since(1) == []
    other = trend()
    other.open_position(signal(), D("1"), D("100"))
    s.load_state(other.get_state())
    assert len(view) == 1  # load_state refills the same mapping: a view taken before stays live


def test_forgotten_closed_records_keep_their_numbers_and_performance():
    s = trend()
    for exit_price in ("110", "95", "120", "90") * 5:
        s.close_position(s.open_position(signal(), D("1"), D("100")).position_id, D(exit_price), "manual")
    performance, last = s.get_performance(), s.closed_positions[-1]
    legacy = {k: v for k, v in s.get_state().items() if k not in ("tally", "closed_base")}
    s.forget_closed(15)
    assert s.closed_count == 20 and len(s.closed_positions) == 5  # those not stored yet stay
    assert s.closed_since(15) == s.closed_positions and s.closed_since(18) == s.closed_positions[-2:]
    s.forget_closed(20)
    assert len(s.closed_positions) == CLOSED_KEEP and s.closed_since(0) == s.closed_positions  # the latest, for a look
    assert s.get_performance() == performance
    t = trend()
    t.load_state(json.loads(json.dumps(s.get_state())))
    assert t.closed_count == 20 and t.get_performance() == performance
    assert t.closed_positions[-1].to_dict() == last.to_dict()
    u = trend()  # a state saved before the running totals: every record, the totals counted from them
    u.load_state(json.loads(json.dumps(legacy)))
    assert u.closed_count == 20 and u.get_performance() == performance


def test_signal_candidates_default_is_every_candle():
    dca = create_strategy("dca", {}, qty_step="0.001", tick_size="0.1", allocated_capital="1000")
    idx = pd.date_range("2024-01-01", periods=30, freq="5min", tz="UTC")
    df = pd.DataFrame({"open": 1.0, "high": 1.0, "low": 1.0, "close": 1.0, "volume": 1.0}, index=idx)
    assert dca.signal_candidates(dca.prepare(df)) is None
