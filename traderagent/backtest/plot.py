"""Equity curve with trade markers, written to a PNG (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from traderagent.backtest.engine import BacktestResult

_MAX_POINTS = 20_000  # a year of minutes would be a 500k-point line; decimate for drawing only


def plot_formats() -> list[str]:
    """File extensions matplotlib can write ("png", "svg", "pdf", ...)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    return sorted(FigureCanvasAgg.get_supported_filetypes())


def plot_result(result: BacktestResult, out: str | Path, title: str | None = None) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out)
    times = result.times.astype("datetime64[ms]")
    step = max(1, len(times) // _MAX_POINTS)
    fig, (ax_price, ax_eq) = plt.subplots(
        2, 1, figsize=(12, 7), sharex=True, gridspec_kw={"height_ratios": [2, 1.3]}
    )
    ax_price.plot(times[::step], result.close[::step], lw=0.7, color="0.35", label="close")
    entries = [t for t in result.trades]
    if entries:
        ei = np.array([t.entry_index for t in entries])
        is_long = np.array([t.side == "long" for t in entries])
        ax_price.scatter(times[ei[is_long]], result.close[ei[is_long]], marker="^", s=18, color="tab:green", label="long entry", zorder=3)
        ax_price.scatter(times[ei[~is_long]], result.close[ei[~is_long]], marker="v", s=18, color="tab:red", label="short entry", zorder=3)
        closed = [t for t in entries if t.closed]
        if closed:
            xi = np.array([t.exit_index for t in closed])
            won = np.array([t.pnl > 0 for t in closed])
            ax_price.scatter(times[xi[won]], result.close[xi[won]], marker="x", s=16, color="tab:blue", label="exit (win)", zorder=3)
            ax_price.scatter(times[xi[~won]], result.close[xi[~won]], marker="x", s=16, color="tab:orange", label="exit (loss)", zorder=3)
    ax_price.set_ylabel("price")
    ax_price.legend(loc="upper left", fontsize=8)
    ax_price.grid(alpha=0.3)
    ax_eq.plot(times[::step], result.equity[::step], lw=0.9, color="tab:blue")
    ax_eq.axhline(float(result.initial_balance), color="0.6", lw=0.6, ls="--")
    ax_eq.set_ylabel("equity")
    ax_eq.grid(alpha=0.3)
    m = result.metrics
    ax_price.set_title(
        title
        or f"{result.strategy_name}: {m.trades} trades, net {m.net_pnl:.2f}, max DD {m.max_drawdown:.1%}"
    )
    fig.autofmt_xdate()
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
