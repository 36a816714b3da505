"""The backtest chart (matplotlib, Agg backend: no display needed), titled with symbol and timeframe.

Price panel: the close; every trade as a segment from its entry to its exit at its entry price (a DCA cycle's
average entry), green when it won, red when it lost, grey while open; its stop and target as dashed segments
over the same span; the strategy's levels (a grid's) as thin horizontal lines. Segments are line collections
drawn under the price, so hundreds of trades stay one cheap, readable layer; entry/exit markers are drawn
only while they stay few. Equity panel below.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from traderagent.backtest.engine import BacktestResult
    from traderagent.backtest.metrics import Trade

_MAX_POINTS = 20_000  # a year of minutes would be a 500k-point line; decimate for drawing only
_MARKERS_UP_TO = 150  # trades; beyond that markers would hide the price


def plot_formats() -> list[str]:
    """File extensions matplotlib can write ("png", "svg", "pdf", ...)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    return sorted(FigureCanvasAgg.get_supported_filetypes())


def chart_title(result: BacktestResult, symbol: str) -> str:
    m = result.metrics
    return (f"{symbol} {result.timeframe} - {result.strategy_name}: {m.trades} closed, net {m.net_pnl:.2f} "
            f"(realised {m.realized_pnl:.2f}, unrealised {m.unrealized_pnl:.2f}), max DD {m.max_drawdown:.1%}")


def plot_result(result: BacktestResult, out: str | Path, *, symbol: str = "", title: str | None = None) -> Path:
    import matplotlib.pyplot as plt

    out = Path(out)
    fig = draw_result(result, symbol=symbol, title=title)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def draw_result(result: BacktestResult, *, symbol: str = "", title: str | None = None) -> Figure:
    """The chart as a matplotlib Figure (the caller saves and closes it)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    times = result.times.astype("datetime64[ms]")
    step = max(1, len(times) // _MAX_POINTS)
    fig, (ax_price, ax_eq) = plt.subplots(
        2, 1, figsize=(14, 8), sharex=True, gridspec_kw={"height_ratios": [2.2, 1]}
    )
    ax_price.plot(times[::step], result.close[::step], lw=0.7, color="0.15", label="close", zorder=4)
    _draw_levels(ax_price, result.levels)
    _draw_trades(ax_price, result, times)
    ax_price.set_ylabel("price")
    ax_price.legend(loc="upper left", fontsize=7, ncol=4)
    ax_price.grid(alpha=0.25)
    ax_eq.plot(times[::step], result.equity[::step], lw=0.9, color="tab:blue")
    ax_eq.axhline(float(result.initial_balance), color="0.6", lw=0.6, ls="--")
    ax_eq.set_ylabel("equity (marked to market)")
    ax_eq.grid(alpha=0.25)
    ax_price.set_title(title or chart_title(result, symbol or "?"), fontsize=10)
    fig.autofmt_xdate()
    fig.tight_layout()
    return fig


def _draw_levels(ax: Axes, levels: dict) -> None:
    for k, (label, prices) in enumerate(levels.items()):
        for j, price in enumerate(prices):
            ax.axhline(float(price), color=f"C{4 + k}", lw=0.5, alpha=0.5, zorder=1, gid=label,
                       label=label if j == 0 else None)


def _draw_trades(ax: Axes, result: BacktestResult, times: np.ndarray) -> None:
    from matplotlib.collections import LineCollection
    from matplotlib.dates import date2num

    trades = result.trades
    if not trades:
        return
    x = date2num(times)
    last = len(times) - 1
    ends = np.array([t.exit_index if t.closed else last for t in trades])
    starts = np.array([t.entry_index for t in trades])
    entry_label = "average entry (open: grey)" if result.ladder else "entry (open: grey)"

    def segments(level_of) -> tuple[list, list[int]]:
        rows, kept = [], []
        for k, t in enumerate(trades):
            level = level_of(t)
            if level is not None:
                rows.append([(x[starts[k]], float(level)), (x[ends[k]], float(level))])
                kept.append(k)
        return rows, kept

    rows, _ = segments(lambda t: t.entry_price)
    colors = ["0.55" if not t.closed else ("tab:green" if t.pnl > 0 else "tab:red") for t in trades]
    ax.add_collection(LineCollection(rows, colors=colors, linewidths=1.6, alpha=0.8, zorder=2, label=entry_label))
    for attr, color, label in (("stop_loss", "tab:red", "stop"), ("take_profit", "tab:green", "target")):
        rows, _ = segments(lambda t, a=attr: getattr(t, a))
        if rows:
            ax.add_collection(LineCollection(rows, colors=color, linewidths=0.7, linestyles="--", alpha=0.6,
                                             zorder=2, label=label))
    if len(trades) <= _MARKERS_UP_TO:
        _draw_markers(ax, trades, x, starts)


def _draw_markers(ax: Axes, trades: list[Trade], x: np.ndarray, starts: np.ndarray) -> None:
    is_long = np.array([t.side == "long" for t in trades])
    entry = np.array([float(t.entry_price) for t in trades])
    for side, marker, color in ((is_long, "^", "tab:green"), (~is_long, "v", "tab:red")):
        if side.any():
            ax.scatter(x[starts[side]], entry[side], marker=marker, s=16, color=color, zorder=5,
                       label=f"{'long' if marker == '^' else 'short'} entry")
    closed = [t for t in trades if t.closed]
    if closed:
        ax.scatter([x[t.exit_index] for t in closed], [float(t.exit_price) for t in closed], marker="x", s=14,
                   color="0.2", zorder=5, label="exit")
