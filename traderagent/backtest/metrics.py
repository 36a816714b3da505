"""Backtest results: fills, trades and the performance metrics computed from them.

Money (balances, PnL, fees, prices, sizes) is Decimal. The per-candle equity curve is a float64 array: it is
a derived series for drawdown/Sharpe/plotting (like an indicator), rebuilt from the Decimal fills; the final
balance and net PnL reported come from the Decimal ledger, not from that array.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from decimal import Decimal

import numpy as np

YEAR_MS = 365 * 24 * 3_600_000  # crypto trades around the clock


@dataclass(frozen=True, slots=True)
class Fill:
    index: int  # candle in which it executed
    time_ms: int
    side: str  # "buy" | "sell"
    qty: Decimal
    price: Decimal
    fee: Decimal
    liquidity: str  # "maker" | "taker"
    tag: str
    reason: str = ""  # why: "entry", "stop_loss", "take_profit", "grid:3:buy" ...


@dataclass(slots=True)
class Trade:
    """A round trip. Net PnL includes the fees of both sides."""

    side: str  # "long" | "short"
    qty: Decimal
    entry_index: int
    entry_time_ms: int
    entry_price: Decimal
    exit_index: int = -1
    exit_time_ms: int = 0
    exit_price: Decimal = Decimal(0)
    pnl: Decimal = Decimal(0)
    fees: Decimal = Decimal(0)
    exit_reason: str = ""
    tag: str = ""

    @property
    def closed(self) -> bool:
        return self.exit_index >= 0

    def to_dict(self) -> dict:
        return {k: (str(v) if isinstance(v, Decimal) else v) for k, v in asdict(self).items()}


@dataclass(slots=True)
class Metrics:
    trades: int
    wins: int
    losses: int
    win_rate: float | None  # fraction 0..1; None without closed trades
    net_pnl: Decimal
    return_pct: float
    gross_profit: Decimal
    gross_loss: Decimal
    profit_factor: float | None  # None when there is no losing trade (undefined, not infinite)
    max_drawdown_pct: float  # fraction 0..1 of the running peak, marked to market at every close
    max_drawdown: Decimal
    sharpe: float | None  # annualised from per-candle returns; None when returns are constant
    total_fees: Decimal
    exposure_pct: float  # fraction of candles that closed with a position open
    avg_trade_pnl: Decimal | None
    final_balance: Decimal
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        out = {}
        for k, v in asdict(self).items():
            out[k] = str(v) if isinstance(v, Decimal) else v
        return out


def max_drawdown(equity: np.ndarray) -> tuple[float, float]:
    """(largest fall from a running peak as a fraction of that peak, the same fall in money)."""
    if len(equity) == 0:
        return 0.0, 0.0
    peak = np.maximum.accumulate(equity)
    fall = peak - equity
    with np.errstate(divide="ignore", invalid="ignore"):
        frac = np.where(peak > 0, fall / peak, 0.0)
    return float(frac.max()), float(fall.max())


def sharpe_ratio(equity: np.ndarray, tf_ms: int) -> float | None:
    """Mean over standard deviation of per-candle simple returns, times sqrt(candles per year); risk-free 0."""
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
    return float(rets.mean()) / sd * math.sqrt(YEAR_MS / tf_ms)


def _to_decimal(x: float, places: str = "0.00000001") -> Decimal:
    return Decimal(repr(x)).quantize(Decimal(places))


def compute_metrics(
    *,
    trades: list[Trade],
    equity: np.ndarray,
    position: np.ndarray,
    tf_ms: int,
    initial_balance: Decimal,
    final_balance: Decimal,
    total_fees: Decimal,
) -> Metrics:
    closed = [t for t in trades if t.closed]
    wins = [t for t in closed if t.pnl > 0]
    losses = [t for t in closed if t.pnl <= 0]
    gross_profit = sum((t.pnl for t in wins), Decimal(0))
    gross_loss = -sum((t.pnl for t in losses), Decimal(0))
    dd_frac, dd_abs = max_drawdown(equity)
    net = final_balance - initial_balance
    return Metrics(
        trades=len(closed),
        wins=len(wins),
        losses=len(losses),
        win_rate=(len(wins) / len(closed)) if closed else None,
        net_pnl=net,
        return_pct=float(net / initial_balance) if initial_balance else 0.0,
        gross_profit=gross_profit,
        gross_loss=gross_loss,
        profit_factor=float(gross_profit / gross_loss) if gross_loss > 0 else None,
        max_drawdown_pct=dd_frac,
        max_drawdown=_to_decimal(dd_abs),
        sharpe=sharpe_ratio(equity, tf_ms),
        total_fees=total_fees,
        exposure_pct=float(np.count_nonzero(position)) / len(position) if len(position) else 0.0,
        avg_trade_pnl=(sum((t.pnl for t in closed), Decimal(0)) / len(closed)) if closed else None,
        final_balance=final_balance,
    )
