"""The one set of performance definitions (layer 0): used by ``/status``, the backtest and the benchmarks.

- **Trades:** a closed trade with net pnl > 0 is a win, anything else a loss. ``win_rate`` is wins / trades;
  ``profit_factor`` is gross profit / gross loss, ``None`` when there is no loss (undefined, not infinite).
- **Drawdown:** the largest fall of an equity curve from its running peak, as a fraction of that peak
  (0.25 = 25 %) and as an amount of money.
- **Sharpe ratio:** mean over sample standard deviation of the curve's step-to-step simple returns,
  risk-free rate 0, times ``sqrt(periods_per_year)``. The backtest's curve has one point per candle and is
  annualised; a strategy's live curve has one point per closed trade and is not (``periods_per_year=1``).
  ``None`` when undefined (fewer than two returns, or no variance).

Money stays Decimal; an equity curve is a float array because it only feeds these ratios and charts.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

import numpy as np

from traderagent.numbers import ZERO

YEAR_MS = 365 * 24 * 3_600_000  # crypto trades around the clock


@dataclass(frozen=True, slots=True)
class TradeStats:
    trades: int
    wins: int
    losses: int
    gross_profit: Decimal
    gross_loss: Decimal  # positive: the sum of the losing trades' pnl, negated
    total_pnl: Decimal

    @property
    def win_rate(self) -> float | None:
        return self.wins / self.trades if self.trades else None

    @property
    def profit_factor(self) -> float | None:
        return float(self.gross_profit / self.gross_loss) if self.gross_loss > 0 else None


def trade_stats(pnls: Iterable[Decimal]) -> TradeStats:
    """Counts and sums over the net pnl of closed trades."""
    values = list(pnls)
    wins = [p for p in values if p > 0]
    gross_profit = sum(wins, ZERO)
    total = sum(values, ZERO)
    return TradeStats(trades=len(values), wins=len(wins), losses=len(values) - len(wins),
                      gross_profit=gross_profit, gross_loss=gross_profit - total, total_pnl=total)


def max_drawdown(equity: np.ndarray) -> tuple[float, float]:
    """(largest fall from a running peak as a fraction of that peak, the same fall in money)."""
    equity = np.asarray(equity, dtype=np.float64)
    if len(equity) == 0:
        return 0.0, 0.0
    peak = np.maximum.accumulate(equity)
    fall = peak - equity
    with np.errstate(divide="ignore", invalid="ignore"):
        frac = np.where(peak > 0, fall / peak, 0.0)
    return float(frac.max()), float(fall.max())


def sharpe_ratio(equity: np.ndarray, periods_per_year: float = 1.0) -> float | None:
    """Mean / sample stdev of per-step simple returns, times sqrt(periods_per_year); None when undefined."""
    equity = np.asarray(equity, dtype=np.float64)
    if len(equity) < 3:
        return None
    with np.errstate(divide="ignore", invalid="ignore"):
        rets = np.diff(equity) / equity[:-1]
    rets = rets[np.isfinite(rets)]
    if len(rets) < 2:
        return None
    sd = float(rets.std(ddof=1))
    if sd == 0.0 or not math.isfinite(sd):
        return None
    return float(rets.mean()) / sd * math.sqrt(periods_per_year)


def realised_equity(start: Decimal, pnls: Iterable[Decimal]) -> np.ndarray:
    """The equity curve seen only at trade closes: ``start``, then after each trade's net pnl."""
    return float(start) + np.concatenate(([0.0], np.cumsum([float(p) for p in pnls])))
