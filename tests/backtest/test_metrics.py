"""Metrics on hand-computed equity curves and the Decimal ledger's trade accounting."""

from __future__ import annotations

import math
import statistics
from decimal import Decimal as D

import numpy as np
import pytest

from traderagent.backtest.ledger import Ledger
from traderagent.backtest.metrics import Fill, Trade, compute_metrics
from traderagent.metrics import YEAR_MS, TradeTally, max_drawdown, realised_equity, sharpe_ratio, trade_stats

DAY = 86_400_000


def _fill(i, side, qty, price, fee="0", tag="t", reason=""):
    return Fill(i, i * 60_000, side, D(qty), D(price), D(fee), "taker", tag, reason)


def test_max_drawdown_is_the_deepest_fall_from_a_running_peak():
    frac, amount = max_drawdown(np.array([100.0, 120.0, 90.0, 130.0, 117.0]))
    assert frac == pytest.approx(0.25)  # 120 -> 90
    assert amount == pytest.approx(30.0)
    assert max_drawdown(np.array([1.0, 2.0, 3.0])) == (0.0, 0.0)


def test_sharpe_is_annualised_by_timeframe():
    eq = [100.0, 120.0, 90.0, 130.0, 117.0]
    rets = [eq[i + 1] / eq[i] - 1 for i in range(4)]
    expected = statistics.mean(rets) / statistics.stdev(rets) * math.sqrt(365)
    assert sharpe_ratio(np.array(eq), YEAR_MS / DAY) == pytest.approx(expected)
    # the same curve on hourly candles annualises with sqrt(24*365); per step (live trades) it is not annualised
    assert sharpe_ratio(np.array(eq), YEAR_MS / (DAY // 24)) == pytest.approx(expected * math.sqrt(24))
    assert sharpe_ratio(np.array(eq)) == pytest.approx(expected / math.sqrt(365))
    assert sharpe_ratio(np.array([5.0, 5.0, 5.0, 5.0]), 365) is None  # no variance: undefined
    assert sharpe_ratio(np.array([5.0, 6.0])) is None  # one return: undefined


def test_compute_metrics_counts_wins_profit_factor_fees_exposure():
    trades = [
        Trade("long", D(1), 0, 0, D(100), exit_index=1, pnl=D("30")),
        Trade("long", D(1), 2, 0, D(100), exit_index=3, pnl=D("-10")),
        Trade("short", D(1), 3, 0, D(100), exit_index=4, pnl=D("-5")),
        Trade("long", D(1), 4, 0, D(100)),  # still open: not counted
    ]
    m = compute_metrics(
        trades=trades, equity=np.array([100.0, 120.0, 90.0, 130.0, 117.0]),
        position=np.array([1, 0, 1, 0, -1]), tf_ms=DAY,
        initial_balance=D(100), final_balance=D(115), total_fees=D("1.5"),
    )
    assert (m.trades, m.wins, m.losses) == (3, 1, 2)
    assert m.win_rate == pytest.approx(1 / 3)
    assert m.profit_factor == pytest.approx(30 / 15)
    assert m.net_pnl == D(15) and m.return_pct == pytest.approx(0.15)
    assert m.max_drawdown == pytest.approx(0.25) and m.max_drawdown_amount == D(30)
    assert m.exposure_pct == pytest.approx(0.6)
    assert m.total_fees == D("1.5")
    assert m.avg_trade_pnl == D(5)
    assert m.to_dict()["net_pnl"] == "15"


def test_profit_factor_undefined_without_losses():
    m = compute_metrics(trades=[Trade("long", D(1), 0, 0, D(1), exit_index=1, pnl=D(2))],
                        equity=np.array([1.0, 3.0]), position=np.array([0, 0]), tf_ms=DAY,
                        initial_balance=D(1), final_balance=D(3), total_fees=D(0))
    assert m.profit_factor is None and m.win_rate == 1.0


def test_keyed_trade_pnl_includes_both_fees_and_partial_exit():
    led = Ledger(D(1000))
    led.open_keyed("p1", _fill(0, "buy", "2", "100", fee="0.2"), "long")
    led.close_keyed("p1", _fill(3, "sell", "1", "110", fee="0.11"), "partial_close")
    assert led.trades[0].closed is False
    t = led.close_keyed("p1", _fill(5, "sell", "1", "120", fee="0.12"), "take_profit")
    assert t.closed and t.exit_index == 5 and t.exit_reason == "take_profit"
    assert t.exit_price == D(115)
    assert t.pnl == D(10) + D(20) - D("0.43")
    assert led.cash == D(1000) - D(200) - D("0.2") + D(110) - D("0.11") + D(120) - D("0.12")
    assert led.position == 0 and led.fees == D("0.43")
    assert led.cash - led.initial == t.pnl


def test_short_keyed_trade():
    led = Ledger(D(1000))
    led.open_keyed("s", _fill(0, "sell", "1", "100", fee="0.1"), "short")
    t = led.close_keyed("s", _fill(2, "buy", "1", "90", fee="0.09"), "take_profit")
    assert t.pnl == D(10) - D("0.19")
    assert led.equity(D(50)) == led.cash  # flat


def test_ladder_fills_move_cash_and_position_and_only_realize_books_pnl():
    led = Ledger(D(1000))
    led.fill(_fill(0, "buy", "1", "100", fee="0.1", tag="grid:1:buy"))
    led.fill(_fill(1, "sell", "1", "102", fee="0.102", tag="grid:2:sell"))
    assert led.position == 0 and led.fees == D("0.202") and led.trades == []
    assert led.cash == D(1000) + D(2) - D("0.202") and led.realized == 0
    led.realize(D(2) - D("0.202"))
    assert led.realized == led.cash - led.initial


def test_backtest_json_carries_one_metric_set_with_the_status_definitions():
    """/status (a strategy's get_performance) and the backtest JSON used two Sharpe and two drawdown formulas."""
    from traderagent.metrics import realised_equity

    m = compute_metrics(trades=[Trade("long", D(1), 0, 0, D(1), exit_index=1, pnl=D(2))],
                        equity=np.array([100.0, 120.0, 90.0]), position=np.array([0, 0, 0]), tf_ms=DAY,
                        initial_balance=D(100), final_balance=D(90), total_fees=D(0))
    keys = set(m.to_dict())
    assert {"sharpe_ratio", "max_drawdown", "max_drawdown_amount", "win_rate", "profit_factor"} <= keys
    assert not keys & {"sharpe", "max_drawdown_pct", "extra"}
    curve = realised_equity(D(1000), [D("19.5"), D("-5.5")])
    assert list(curve) == [1000.0, 1019.5, 1014.0]
    assert max_drawdown(curve)[0] == pytest.approx(5.5 / 1019.5)


def test_a_break_even_trade_is_no_win():
    trades = [Trade("long", D(1), 0, 0, D(100), exit_index=1, pnl=D(0)),
              Trade("long", D(1), 1, 0, D(100), exit_index=2, pnl=D(4))]
    m = compute_metrics(trades=trades, equity=np.array([100.0, 100.0, 104.0]), position=np.array([1, 1, 0]),
                        tf_ms=DAY, initial_balance=D(100), final_balance=D(104), total_fees=D(0))
    assert (m.trades, m.wins) == (2, 1) and m.win_rate == 0.5


def test_realised_and_unrealised_are_reported_apart():
    trades = [Trade("long", D(1), 0, 0, D(100), exit_index=1, pnl=D("7")),
              Trade("long", D(2), 1, 0, D(100), pnl=D("-12"))]  # open: marked at the last close
    m = compute_metrics(trades=trades, equity=np.array([100.0, 107.0, 95.0]), position=np.array([1, 2, 2]),
                        tf_ms=DAY, initial_balance=D(100), final_balance=D(95), total_fees=D(0), open_qty=D(2))
    assert (m.realized_pnl, m.unrealized_pnl, m.net_pnl) == (D(7), D(-12), D(-5))
    assert (m.trades, m.wins, m.win_rate, m.open_trades, m.open_qty) == (1, 1, 1.0, 1, D(2))


@pytest.mark.parametrize("name,params,file,steps", [
    ("trend_follower", {"timeframe": "5m"}, "XRPUSDT-perp-5m.csv", ("1", "0.0001")),
    ("grid", {"timeframe": "5m"}, "XRPUSDT-perp-5m.csv", ("1", "0.0001")),
    ("dca", {"timeframe": "5m"}, "XRPUSDT-perp-5m.csv", ("1", "0.0001")),
    ("smc", {"timeframes": "1h,15m,5m"}, "ETH_BTC-5m.csv", ("0.001", "0.000001")),
])
def test_unrealised_pnl_is_the_open_positions_marked_at_the_last_close(candles_dir, name, params, file, steps):
    """Every strategy through the engine: what is not realised by a closed round trip is exactly the open
    positions' mark-to-market net of their fees (the strategy's own positions, a DCA cycle on its cost basis)."""
    from traderagent.backtest.data import prepare
    from traderagent.backtest.engine import run_backtest
    from traderagent.numbers import to_decimal
    from traderagent.strategies import create_strategy

    frame, tf, _ = prepare(candles_dir / file)
    s = create_strategy(name, params, qty_step=steps[0], tick_size=steps[1], allocated_capital="10000")
    res = run_backtest(s, frame, tf)
    m, last = res.metrics, to_decimal(float(res.close[-1]))
    marks = sum((p.gross_pnl_at(last) - p.fees for p in s.get_active_positions()), D(0))
    assert m.unrealized_pnl == marks == sum((t.pnl for t in res.trades if not t.closed), D(0))
    assert m.realized_pnl == s.get_performance().total_pnl
    assert m.realized_pnl + m.unrealized_pnl == m.net_pnl == m.final_balance - res.initial_balance
    assert m.open_trades == len(s.get_active_positions())


@pytest.mark.parametrize("pnls", [
    ["19.5", "-5.5"],
    ["10", "-3", "7.25", "-12", "0", "4", "-1.5", "30"],
    ["-1000", "5", "-2", "8"],  # the curve touches zero: that step's return is undefined and left out
    ["2", "2"],
])
def test_trade_tally_gives_the_figures_of_the_whole_curve(pnls):
    values = [D(p) for p in pnls]
    tally = TradeTally()
    for p in values:
        tally.add(p, D("0.1"), D("1000"))
    equity = realised_equity(D("1000"), values)
    assert tally.stats == trade_stats(values)
    assert tally.drawdown == max_drawdown(equity)[0]
    whole = sharpe_ratio(equity)
    assert tally.sharpe == (None if whole is None else pytest.approx(whole))
    assert tally.total_fees == D("0.1") * len(values)
    assert TradeTally.from_dict(tally.to_dict()) == tally
