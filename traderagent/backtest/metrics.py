"""Backtest results: fills, trades and the performance metrics computed from them.

Money (balances, PnL, fees, prices, sizes) is Decimal. The per-candle equity curve is a float64 array: it is
a derived series for drawdown/Sharpe/plotting (like an indicator), rebuilt from the Decimal fills; the final
balance and net PnL reported come from the Decimal ledger, not from that array. The definitions of win rate,
profit factor, drawdown and Sharpe are those of `traderagent.metrics`, shared with ``/status``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from decimal import Decimal

import numpy as np

from traderagent.metrics import YEAR_MS, max_drawdown, sharpe_ratio, trade_stats
from traderagent.numbers import to_decimal


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
    max_drawdown: float  # fraction 0..1 of the running peak, marked to market at every close
    max_drawdown_amount: Decimal
    sharpe_ratio: float | None  # annualised from per-candle returns; None when returns are constant
    total_fees: Decimal
    exposure_pct: float  # fraction of candles that closed with a position open
    avg_trade_pnl: Decimal | None
    final_balance: Decimal

    def to_dict(self) -> dict:
        out = {}
        for k, v in asdict(self).items():
            out[k] = str(v) if isinstance(v, Decimal) else v
        return out


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
    stats = trade_stats(t.pnl for t in closed)
    dd_frac, dd_abs = max_drawdown(equity)
    net = final_balance - initial_balance
    return Metrics(
        trades=stats.trades,
        wins=stats.wins,
        losses=stats.losses,
        win_rate=stats.win_rate,
        net_pnl=net,
        return_pct=float(net / initial_balance) if initial_balance else 0.0,
        gross_profit=stats.gross_profit,
        gross_loss=stats.gross_loss,
        profit_factor=stats.profit_factor,
        max_drawdown=dd_frac,
        max_drawdown_amount=to_decimal(dd_abs).quantize(Decimal("0.00000001")),
        sharpe_ratio=sharpe_ratio(equity, YEAR_MS / tf_ms),
        total_fees=total_fees,
        exposure_pct=float(np.count_nonzero(position)) / len(position) if len(position) else 0.0,
        avg_trade_pnl=stats.total_pnl / stats.trades if stats.trades else None,
        final_balance=final_balance,
    )
