"""Equity-curve PNGs for /chart.

Drawn with matplotlib's Agg canvas on a bare `Figure` (no pyplot: pyplot keeps global state and
is not thread-safe), so `render_equity_png` can run in a worker thread via `asyncio.to_thread`
while the event loop keeps trading and polling. matplotlib is imported by the first chart, not with
the Telegram interface: it costs every desk that starts one ~0.4 s of CPU, and most never draw.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from datetime import datetime

from traderagent.results import EquityPoint


def curve_points(curve: Sequence[EquityPoint]) -> tuple[list[datetime], list[float]]:
    """Times and equities, starting with the equity before the first trade (floats: plotting only)."""
    if not curve:
        return [], []
    first = curve[0]
    times = [first.time] + [p.time for p in curve]
    values = [float(first.equity - first.pnl)] + [float(p.equity) for p in curve]
    return times, values


def render_equity_png(curve: Sequence[EquityPoint], title: str) -> bytes:
    """A PNG of the equity after each closed trade (``Desk.equity_curve`` points)."""
    import matplotlib

    matplotlib.use("Agg")  # headless: never try to open a display
    from matplotlib import dates
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    times, values = curve_points(curve)
    x = dates.date2num(times)
    fig = Figure(figsize=(8, 4), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.xaxis_date()
    ax.step(x, values, where="post", color="#1f77b4", linewidth=1.6)
    if values:
        ax.axhline(values[0], color="#888888", linewidth=0.8, linestyle="--")
        ax.fill_between(x, values, values[0], step="post", alpha=0.15,
                        color="#2ca02c" if values[-1] >= values[0] else "#d62728")
    ax.set_title(title)
    ax.set_ylabel("equity (USDT)")
    ax.grid(True, alpha=0.3)
    fig.autofmt_xdate()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()
