"""The one set of performance definitions (layer 0): used by ``/status``, the backtest and the benchmarks.

- **Trades:** a closed trade with net pnl > 0 is a win, anything else a loss. ``win_rate`` is wins / trades;
  ``profit_factor`` is gross profit / gross loss, ``None`` when there is no loss (undefined, not infinite).
  For ladders (grid, DCA) a closed trade is a closed grid pair or DCA cycle: losing inventory that is still
  held is no trade, so its mark-to-market is reported beside them (``Metrics.unrealized_pnl``).
- **Realised / unrealised PnL:** realised is the net pnl of the closed trades; unrealised is the rest of the
  run's net pnl: the open positions marked at the last close, net of the fees they already paid.
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
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, fields
from decimal import Decimal
from typing import Any

import numpy as np

from traderagent.numbers import ZERO, to_decimal

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


@dataclass(slots=True)
class TradeTally:
    """The figures of ``trade_stats``, ``max_drawdown`` and ``sharpe_ratio`` over ``realised_equity(start,
    pnls)`` kept as running sums, so a live strategy's memory does not grow with its trades. ``start`` is
    the capital when the first trade closed; the returns' variance is Welford's (equal to numpy's two-pass
    one within rounding)."""

    start: float | None = None
    trades: int = 0
    wins: int = 0
    gross_profit: Decimal = ZERO
    total_pnl: Decimal = ZERO
    total_fees: Decimal = ZERO
    cum: float = 0.0  # the float sum of the pnls, as ``realised_equity`` adds them
    peak: float = 0.0
    drawdown: float = 0.0  # the largest fall from the running peak, a fraction of it
    returns: int = 0  # the finite per-trade returns, their mean and sum of squared deviations
    mean: float = 0.0
    m2: float = 0.0

    def add(self, pnl: Decimal, fees: Decimal, capital: Decimal) -> None:
        """Count one closed trade (net ``pnl``, the ``fees`` it paid); ``capital``: the curve's start if first."""
        if self.start is None:
            self.start = self.peak = float(capital)
        before = self.start + self.cum
        self.cum += float(pnl)
        equity = self.start + self.cum
        self.trades += 1
        self.wins += pnl > 0
        self.gross_profit += pnl if pnl > 0 else ZERO
        self.total_pnl += pnl
        self.total_fees += fees
        self.peak = max(self.peak, equity)
        if self.peak > 0:
            self.drawdown = max(self.drawdown, (self.peak - equity) / self.peak)
        with np.errstate(divide="ignore", invalid="ignore"):
            step = float(np.float64(equity - before) / np.float64(before))  # inf / nan as numpy gives them
        if math.isfinite(step):
            self.returns += 1
            delta = step - self.mean
            self.mean += delta / self.returns
            self.m2 += delta * (step - self.mean)

    @property
    def stats(self) -> TradeStats:
        return TradeStats(trades=self.trades, wins=self.wins, losses=self.trades - self.wins,
                          gross_profit=self.gross_profit, gross_loss=self.gross_profit - self.total_pnl,
                          total_pnl=self.total_pnl)

    @property
    def sharpe(self) -> float | None:
        """``sharpe_ratio`` of the realised curve (per trade, not annualised); None when undefined."""
        if self.returns < 2:
            return None
        sd = math.sqrt(self.m2 / (self.returns - 1))
        return self.mean / sd if sd > 0.0 and math.isfinite(sd) else None

    def to_dict(self) -> dict[str, Any]:
        values = ((f.name, getattr(self, f.name)) for f in fields(self))  # flat: no deep copy as asdict makes
        return {k: str(v) if isinstance(v, Decimal) else v for k, v in values}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TradeTally:
        decimals = {"gross_profit", "total_pnl", "total_fees"}
        values: dict[str, Any] = {k: to_decimal(v) if k in decimals else v for k, v in data.items()}
        return cls(**values)


def realised_equity(start: Decimal, pnls: Iterable[Decimal]) -> np.ndarray:
    """The equity curve seen only at trade closes: ``start``, then after each trade's net pnl."""
    return float(start) + np.concatenate(([0.0], np.cumsum([float(p) for p in pnls])))


@dataclass(frozen=True, slots=True)
class Metrics:
    """The one metric set of a backtest (its table and JSON). Money is Decimal, ratios are floats."""

    trades: int  # closed round trips: signal trades, grid pairs, DCA cycles
    wins: int
    losses: int
    win_rate: float | None  # fraction 0..1 of the closed trades; None without any
    profit_factor: float | None  # None when there is no losing trade (undefined, not infinite)
    gross_profit: Decimal
    gross_loss: Decimal
    avg_trade_pnl: Decimal | None
    realized_pnl: Decimal  # closed trades, net of their fees
    unrealized_pnl: Decimal  # open positions marked at the last close, net of the fees they paid
    open_trades: int
    open_qty: Decimal  # net base quantity held at the end (negative: short)
    net_pnl: Decimal  # realized + unrealized = final balance - initial balance
    return_pct: float
    final_balance: Decimal
    max_drawdown: float  # fraction 0..1 of the running peak, marked to market at every close
    max_drawdown_amount: Decimal
    sharpe_ratio: float | None  # annualised from per-candle returns; None when undefined
    total_fees: Decimal
    exposure_pct: float  # fraction of candles that closed with a position open

    def to_dict(self) -> dict:
        return {k: (str(v) if isinstance(v, Decimal) else v) for k, v in asdict(self).items()}


def run_metrics(
    *,
    closed_pnls: Iterable[Decimal],
    open_trades: int,
    open_qty: Decimal,
    equity: np.ndarray,
    position: np.ndarray,
    periods_per_year: float,
    initial_balance: Decimal,
    final_balance: Decimal,
    total_fees: Decimal,
) -> Metrics:
    """The metric set of a run from its closed trades' net pnl and its curves (see the module docstring)."""
    stats = trade_stats(closed_pnls)
    dd_frac, dd_abs = max_drawdown(equity)
    net = final_balance - initial_balance
    return Metrics(
        trades=stats.trades, wins=stats.wins, losses=stats.losses, win_rate=stats.win_rate,
        profit_factor=stats.profit_factor, gross_profit=stats.gross_profit, gross_loss=stats.gross_loss,
        avg_trade_pnl=stats.total_pnl / stats.trades if stats.trades else None,
        realized_pnl=stats.total_pnl, unrealized_pnl=net - stats.total_pnl,
        open_trades=open_trades, open_qty=open_qty,
        net_pnl=net, return_pct=float(net / initial_balance) if initial_balance else 0.0,
        final_balance=final_balance,
        max_drawdown=dd_frac, max_drawdown_amount=to_decimal(dd_abs).quantize(Decimal("0.00000001")),
        sharpe_ratio=sharpe_ratio(equity, periods_per_year),
        total_fees=total_fees,
        exposure_pct=float(np.count_nonzero(position)) / len(position) if len(position) else 0.0,
    )
