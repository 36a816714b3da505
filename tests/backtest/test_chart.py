"""The backtest chart: titled with symbol and timeframe, grid levels, DCA averages and stops drawn, and still
readable with thousands of trades (real candles, the real engine, matplotlib's Agg figure inspected)."""

from __future__ import annotations

from decimal import Decimal

import matplotlib.pyplot as plt
import pytest
from matplotlib.collections import LineCollection, PathCollection

from traderagent.backtest.data import prepare
from traderagent.backtest.engine import run_backtest
from traderagent.backtest.plot import draw_result, plot_result
from traderagent.strategies import create_strategy


def result_of(candles_dir, name, params, *, file="XRPUSDT-perp-5m.csv", steps=("1", "0.0001")):
    frame, tf, _ = prepare(candles_dir / file)
    s = create_strategy(name, {"timeframe": "5m", **params}, qty_step=steps[0], tick_size=steps[1],
                        allocated_capital="10000")
    return run_backtest(s, frame, tf)


@pytest.fixture
def figures():
    made = []
    yield made
    for fig in made:
        plt.close(fig)


def collection(ax, label):
    return next(c for c in ax.collections if isinstance(c, LineCollection) and c.get_label() == label)


def levels_of(coll):
    return [round(float(seg[0][1]), 10) for seg in coll.get_segments()]


def test_title_names_symbol_and_timeframe_and_grid_levels_are_drawn(candles_dir, figures):
    res = result_of(candles_dir, "grid", {})
    fig = draw_result(res, symbol="XRPUSDT")
    figures.append(fig)
    ax = fig.axes[0]
    assert ax.get_title().startswith("XRPUSDT 5m - grid:")
    drawn = sorted(line.get_ydata()[0] for line in ax.get_lines() if line.get_gid() == "grid level")
    assert res.levels["grid level"] and drawn == [float(p) for p in res.levels["grid level"]]


def test_each_dca_cycle_is_drawn_at_its_average_entry(candles_dir, figures):
    res = result_of(candles_dir, "dca", {})
    fig = draw_result(res, symbol="XRPUSDT")
    figures.append(fig)
    averages = levels_of(collection(fig.axes[0], "average entry (open: grey)"))
    assert len(averages) == len(res.trades) > 1
    assert averages == [round(float(t.entry_price), 10) for t in res.trades]
    safety_filled = [t for t in res.trades if t.qty > res.trades[0].qty]
    assert safety_filled  # some cycles averaged down: their line is the average, not the first fill


def test_stops_and_targets_of_signal_trades_are_drawn(candles_dir, figures):
    res = result_of(candles_dir, "trend_follower", {})
    fig = draw_result(res, symbol="XRPUSDT")
    figures.append(fig)
    ax = fig.axes[0]
    assert levels_of(collection(ax, "stop")) == [round(float(t.stop_loss), 10) for t in res.trades]
    assert levels_of(collection(ax, "target")) == [round(float(t.take_profit), 10) for t in res.trades
                                                  if t.take_profit is not None]
    assert any(isinstance(c, PathCollection) for c in ax.collections)  # few trades: entry/exit markers


def test_thousands_of_trades_do_not_bury_the_price(candles_dir, tmp_path, figures):
    res = result_of(candles_dir, "grid", {"num_levels": 60, "range_pct": "0.1"}, file="LTC_BTC-5m.csv",
                    steps=("0.001", "0.000001"))
    assert len(res.trades) > 1000
    fig = draw_result(res, symbol="LTCBTC")
    figures.append(fig)
    ax = fig.axes[0]
    price = next(line for line in ax.get_lines() if line.get_label() == "close")
    assert not any(isinstance(c, PathCollection) for c in ax.collections)  # no marker cloud
    assert all(c.get_zorder() < price.get_zorder() for c in ax.collections)  # the price is drawn on top
    out = plot_result(res, tmp_path / "many.png", symbol="LTCBTC")
    assert out.read_bytes()[:4] == b"\x89PNG"
    assert Decimal(res.metrics.realized_pnl) + res.metrics.unrealized_pnl == res.metrics.net_pnl
