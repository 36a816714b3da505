"""Backtest results: fills, trades and the performance metrics computed from them.

Money (balances, PnL, fees, prices, sizes) is Decimal. The per-candle equity curve is a float64 array: it is
a derived series for drawdown/Sharpe/plotting (like an indicator), rebuilt from the Decimal fills; the final
balance and net PnL reported come from the Decimal ledger, not from that array. The metric set and its
definitions (win rate, profit factor, realised / unrealised PnL, drawdown, Sharpe) live in
`traderagent.metrics`, shared with ``/status``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from decimal import Decimal

import numpy as np

from traderagent.metrics import YEAR_MS, Metrics, run_metrics


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
    """A round trip. Net PnL includes the fees of both sides; while open, it is the position marked at the
    last close net of the fees it paid. ``stop_loss`` / ``take_profit``: the levels it was opened with."""

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
    stop_loss: Decimal | None = None
    take_profit: Decimal | None = None

    @property
    def closed(self) -> bool:
        return self.exit_index >= 0

    def to_dict(self) -> dict:
        return {k: (str(v) if isinstance(v, Decimal) else v) for k, v in asdict(self).items()}


def compute_metrics(
    *,
    trades: list[Trade],
    equity: np.ndarray,
    position: np.ndarray,
    tf_ms: int,
    initial_balance: Decimal,
    final_balance: Decimal,
    total_fees: Decimal,
    open_qty: Decimal = Decimal(0),
) -> Metrics:
    """The run's metric set (``traderagent.metrics.run_metrics``) over its closed and open trades."""
    return run_metrics(
        closed_pnls=[t.pnl for t in trades if t.closed], open_trades=sum(1 for t in trades if not t.closed),
        open_qty=open_qty, equity=equity, position=position, periods_per_year=YEAR_MS / tf_ms,
        initial_balance=initial_balance, final_balance=final_balance, total_fees=total_fees,
    )


__all__ = ["Fill", "Metrics", "Trade", "compute_metrics"]
