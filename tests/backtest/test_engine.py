"""Engine fill rules (scripted strategies on hand-made candles) and no look-ahead on real candles."""

from __future__ import annotations

from decimal import Decimal as D
from typing import ClassVar

import numpy as np
import pandas as pd
import pytest

from traderagent.backtest.data import prepare
from traderagent.backtest.engine import BacktestConfig, Backtester, run_backtest
from traderagent.strategies.base import BaseStrategy
from traderagent.strategies.params import Param
from traderagent.strategies.types import (
    BaseMarketAnalysis,
    BaseSignal,
    OrderIntent,
    PreparedData,
    SignalDirection,
)

MIN = 60_000
CFG = BacktestConfig(balance=D(10000), taker_fee=D("0.001"), maker_fee=D("0.0002"), slippage=D("0.01"))


def candles(rows):
    """rows of (open, high, low, close) -> 1m frame."""
    arr = np.array(rows, dtype=float)
    idx = pd.to_datetime(1_700_000_000_000 - 1_700_000_000_000 % MIN + MIN * np.arange(len(rows)), unit="ms", utc=True)
    return pd.DataFrame({"open": arr[:, 0], "high": arr[:, 1], "low": arr[:, 2], "close": arr[:, 3],
                         "volume": np.ones(len(rows))}, index=idx)


class Scripted(BaseStrategy):
    """Signals at fixed candle indices: {i: (direction, stop, target)}; size 1."""

    PARAMS: ClassVar[tuple[Param, ...]] = (Param("script", object, {}, "bars -> actions"),)
    timeframes = ("1m",)
    min_candles = 1

    @property
    def strategy_type(self) -> str:
        return "scripted"

    def prepare(self, *frames):
        return PreparedData.from_frame(frames[-1])

    def analyze_at(self, prepared, i):
        return BaseMarketAnalysis("unknown", 0.0, 0.0, None, "scripted")

    def signal_at(self, prepared, i, balance):
        plan = self.params["script"].get(i)
        if plan is None or self._positions:
            return None
        direction, stop, target = plan
        return BaseSignal(SignalDirection(direction), self.price_of(prepared.close[i]), D(stop),
                          D(target) if target else None, D(1), 1.0, None, "scripted")


def scripted(script):
    return Scripted({"script": script}, qty_step="0.001", tick_size="0.01", allocated_capital="10000")


def test_market_entry_fills_at_next_open_with_slippage_and_taker_fee():
    df = candles([(100, 101, 99, 100), (102, 103, 101, 102), (102, 103, 101, 102)])
    res = run_backtest(scripted({0: ("long", "90", "120")}), df, MIN, CFG)
    (fill,) = res.fills
    assert fill.index == 1 and fill.price == D("102") * D("1.01")  # next open, not the signal close
    assert fill.liquidity == "taker" and fill.fee == fill.price * D("0.001")
    assert not res.trades[0].closed
    # equity marks the open long at every close: cash + 1 * close
    assert res.equity[2] == pytest.approx(10000 - float(fill.price) - float(fill.fee) + 102)


def test_stop_and_target_in_one_candle_assumes_the_stop():
    df = candles([(100, 100, 100, 100), (100, 101, 99, 100), (100, 125, 85, 100)])
    res = run_backtest(scripted({0: ("long", "90", "120")}), df, MIN, CFG)
    (t,) = res.trades
    assert t.exit_reason == "stop_loss" and t.exit_index == 2
    assert t.exit_price == D(90) * D("0.99")  # stop-market slips against us
    assert res.fills[-1].liquidity == "taker"


def test_gap_through_stop_fills_at_the_open():
    df = candles([(100, 100, 100, 100), (100, 101, 99, 100), (80, 82, 79, 81)])
    res = run_backtest(scripted({0: ("long", "90", None)}), df, MIN, CFG)
    assert res.trades[0].exit_price == D(80) * D("0.99")


def test_target_is_a_market_fill_at_its_trigger_and_short_stop_uses_high():
    # the exchange holds the target (trading-stop, Full mode): a market order once the price reaches it
    df = candles([(100, 100, 100, 100), (100, 101, 99, 100), (100, 112, 99, 111)])
    res = run_backtest(scripted({0: ("long", "90", "110")}), df, MIN, CFG)
    t = res.trades[0]
    assert t.exit_reason == "take_profit" and t.exit_price == D(110) * D("0.99")
    assert res.fills[-1].liquidity == "taker" and res.fills[-1].fee == D(110) * D("0.99") * D("0.001")
    assert t.pnl == t.exit_price - res.fills[0].price - res.fills[0].fee - res.fills[1].fee
    assert res.final_balance - res.initial_balance == t.pnl
    short = run_backtest(scripted({0: ("short", "105", "80")}), candles(
        [(100, 100, 100, 100), (100, 101, 99, 100), (100, 106, 99, 101)]), MIN, CFG)
    assert short.trades[0].exit_reason == "stop_loss" and short.trades[0].exit_price == D(105) * D("1.01")


def test_stop_not_touched_keeps_position_open():
    df = candles([(100, 100, 100, 100), (100, 101, 99, 100), (100, 101, 90.01, 100)])
    res = run_backtest(scripted({0: ("long", "90", "120")}), df, MIN, CFG)
    assert not res.trades[0].closed and res.metrics.trades == 0
    assert res.metrics.exposure_pct == pytest.approx(2 / 3)


class Asked(Scripted):
    """Scripted, recording where the engine asked signal_at; the hook marks `candidates` (None: no hook)."""

    PARAMS: ClassVar[tuple[Param, ...]] = (Param("script", object, {}, "bars -> actions"),
                                          Param("candidates", object, None, "candidate mask"))

    def prepare(self, *frames):
        self.asked = []
        p = PreparedData.from_frame(frames[-1])
        p.columns["long_entry"] = np.zeros(len(p), dtype=bool)  # a look-alike column must not matter
        return p

    def signal_candidates(self, prepared):
        marks = self.params["candidates"]
        if marks is None:
            return None
        mask = np.zeros(len(prepared), dtype=bool)
        mask[list(marks)] = True
        return mask

    def signal_at(self, prepared, i, balance):
        self.asked.append(i)
        return super().signal_at(prepared, i, balance)


def test_engine_asks_signal_at_only_at_candidates_while_flat():
    df = candles([(100, 101, 99, 100)] * 12)
    script = {2: ("long", "90", "100.5"), 7: ("long", "90", "120")}
    s = Asked({"script": script, "candidates": [2, 7, 9]}, qty_step="0.001", tick_size="0.01",
              allocated_capital="10000")
    res = run_backtest(s, df, MIN, CFG)
    # flat: only candidates; in a position (candles 3..) every candle is visited and the strategy decides
    assert s.asked[0] == 2 and 0 not in s.asked and 1 not in s.asked
    assert [t.entry_index for t in res.trades] == [3, 8]
    every = Asked({"script": script}, qty_step="0.001", tick_size="0.01", allocated_capital="10000")
    assert [t.entry_index for t in run_backtest(every, df, MIN, CFG).trades] == [3, 8]
    assert every.asked == list(range(12))  # no hook: every candle, whatever the columns are called


class Ladder(BaseStrategy):
    """Wants one resting order (the intent in params) until it fills; records fills."""

    PARAMS: ClassVar[tuple[Param, ...]] = (Param("intent", object, None, "the one order intent"),)
    timeframes = ("1m",)
    min_candles = 1
    is_ladder = True

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.filled = []

    @property
    def strategy_type(self) -> str:
        return "ladder"

    def prepare(self, *frames):
        return PreparedData.from_frame(frames[-1])

    def analyze_at(self, prepared, i):
        return BaseMarketAnalysis("unknown", 0.0, 0.0, None, "ladder")

    def desired_orders(self, price, balance):
        return [] if self.filled else [self.params["intent"]]

    def on_order_filled(self, tag, fill_price, qty, fee):
        self.filled.append((tag, fill_price, qty, fee))
        return []


def ladder(side, price, order_type="limit"):
    intent = OrderIntent("t:1", side, order_type, D(2), D(price))
    return Ladder({"intent": intent}, qty_step="0.001", tick_size="0.01", allocated_capital="10000")


def test_limit_fills_only_when_a_later_candle_reaches_it():
    # candle 0 crosses 95 but the order is placed at its close; candle 1 stays above; candle 2 reaches it
    df = candles([(100, 100, 94, 99), (99, 100, 96, 98), (98, 99, 95, 97)])
    s = ladder("buy", "95")
    res = run_backtest(s, df, MIN, CFG)
    (fill,) = res.fills
    assert fill.index == 2 and fill.price == D(95) and fill.liquidity == "maker"
    assert fill.fee == D(2) * D(95) * D("0.0002")
    assert s.filled == [("t:1", D(95), D(2), fill.fee)]
    # "through" mode demands a strict cross: a touch of 95 is not enough
    strict = run_backtest(ladder("buy", "95"), df, MIN, BacktestConfig(**{**CFG.__dict__, "limit_fill": "through"}))
    assert strict.fills == []


def test_limit_gapped_through_fills_at_the_open_as_taker():
    df = candles([(100, 100, 99, 100), (90, 92, 89, 91)])
    res = run_backtest(ladder("buy", "95"), df, MIN, CFG)
    (fill,) = res.fills
    assert fill.price == D(90) and fill.liquidity == "taker"
    sell = run_backtest(ladder("sell", "105"), candles([(100, 100, 99, 100), (101, 106, 100, 104)]), MIN, CFG)
    assert sell.fills[0].price == D(105) and sell.fills[0].side == "sell"


def test_driver_held_stop_triggers_on_low_and_slips():
    df = candles([(100, 100, 99, 100), (99, 99, 93, 94)])
    res = run_backtest(ladder("sell", "95", "stop"), df, MIN, CFG)
    (fill,) = res.fills
    assert fill.price == D(95) * D("0.99") and fill.liquidity == "taker"


def test_ladder_market_intent_executes_at_next_open():
    df = candles([(100, 100, 99, 100), (103, 104, 102, 103)])
    s = Ladder({"intent": OrderIntent("m", "buy", "market", D(1), None)}, qty_step="0.001", tick_size="0.01",
               allocated_capital="10000")
    res = run_backtest(s, df, MIN, CFG)
    assert res.fills[0].index == 1 and res.fills[0].price == D(103) * D("1.01")


class LadderThen(Ladder):
    """Wants its first intent until it fills, then its second (a follow-up placed inside the fill's candle)."""

    PARAMS: ClassVar[tuple[Param, ...]] = (*Ladder.PARAMS, Param("then", object, None, "the follow-up intent"))

    def desired_orders(self, price, balance):
        if len(self.filled) == 2:
            return []
        return [self.params["then"] if self.filled else self.params["intent"]]


def test_order_placed_inside_a_candle_rests_from_the_next_one():
    # the market buy fills at open[1]; the sell it leads to is placed inside candle 1, whose high (106)
    # passes it: it may only fill from candle 2 on
    df = candles([(100, 100, 99, 100), (101, 106, 100, 104), (104, 106, 103, 105)])
    s = LadderThen({"intent": OrderIntent("m", "buy", "market", D(1), None),
                    "then": OrderIntent("t:2", "sell", "limit", D(1), D(105))},
                   qty_step="0.001", tick_size="0.01", allocated_capital="10000")
    res = run_backtest(s, df, MIN, CFG)
    assert [(f.index, f.side) for f in res.fills] == [(1, "buy"), (2, "sell")]


def _closed_before(result, k):
    return [(t.entry_index, t.exit_index, t.entry_price, t.exit_price, t.pnl)
            for t in result.trades if t.closed and t.exit_index < k]


@pytest.mark.parametrize("name,params,file,tf", [
    ("trend_follower", {"timeframe": "5m"}, "ETH_BTC-5m.csv", None),
    ("grid", {"timeframe": "5m"}, "LTC_BTC-5m.csv", None),
    ("dca", {"timeframe": "5m"}, "ETH_BTC-5m.csv", None),
    ("smc", {}, "ETH_BTC-5m.csv", "15m"),
])
def test_appending_future_candles_does_not_change_past_trades(candles_dir, name, params, file, tf):
    from traderagent.backtest.data import resample
    from traderagent.strategies import create_strategy
    from traderagent.timeframes import timeframe_ms

    frame, base_tf, _ = prepare(candles_dir / file)
    if tf:
        frame = resample(frame, timeframe_ms(tf), base_tf)
        base_tf = timeframe_ms(tf)

    def run(df):
        s = create_strategy(name, params, qty_step="0.001", tick_size="0.00000001", allocated_capital="10000")
        return run_backtest(s, df, base_tf, CFG)

    full = run(frame)
    k = len(frame) * 2 // 3
    part = run(frame.iloc[:k])
    assert _closed_before(part, k - 1) == _closed_before(full, k - 1)
    assert [f for f in part.fills if f.index < k] == [f for f in full.fills if f.index < k]
    np.testing.assert_allclose(part.equity, full.equity[:k])
    if name != "smc":  # SMC may legitimately trade rarely on three weeks; the others must trade
        assert len(full.fills) > 0


def test_ledger_balances_match_fills(candles_dir):
    from traderagent.strategies import create_strategy

    frame, tf, _ = prepare(candles_dir / "XRPUSDT-perp-5m.csv")
    s = create_strategy("trend_follower", {"timeframe": "5m"}, qty_step="1", tick_size="0.0001",
                        allocated_capital="10000")
    res = Backtester(s, CFG).run([frame], tf)
    assert res.metrics.total_fees == sum((f.fee for f in res.fills), D(0))
    closed_pnl = sum((t.pnl for t in res.trades if t.closed), D(0))
    open_ = [t for t in res.trades if not t.closed]
    if not open_:
        assert res.final_balance - res.initial_balance == closed_pnl
    assert res.equity[-1] == pytest.approx(float(res.final_balance), rel=1e-9)
    # the engine's trades are the strategy's own records
    assert res.metrics.trades == s.get_performance().total_trades
    assert closed_pnl == s.get_performance().total_pnl
