"""Fill prices and fees of the backtester (the engine decides WHEN an order fills; see engine.py).

- Market orders decided on candle i execute at the OPEN of candle i+1 (the first price that exists after
  the decision; the signal candle's close is already gone when the decision is made), moved against us
  by the slippage rate; taker fee.
- Resting limit orders fill at their price with the maker fee (a buy when low <= price, a sell when
  high >= price; `BacktestConfig.limit_fill="through"` demands a strict cross); if the candle OPENED beyond
  the price (a gap through the order) the fill is at the open, charged as taker.
- Stops and targets of signal positions (held by the exchange live: a market order on trigger) and driver-held
  ladder stops fill at their level, or at the open when the candle gapped past it, moved against us by the
  slippage; taker fee. This is how the simulator executes a trading-stop (sim/protection.py). When one candle
  reaches both stop and target, the stop is assumed to come first.
"""

from __future__ import annotations

from decimal import Decimal

import numpy as np

from traderagent.numbers import to_decimal

ONE = Decimal(1)


def dec(x: float) -> Decimal:
    """A float candle price as the Decimal of its shortest repr (the CSV's own digits)."""
    return to_decimal(float(x))  # float(): numpy scalars repr as "np.float64(...)"


def decs(values: np.ndarray) -> list[Decimal]:
    """``dec`` of many finite candle prices at once (the same shortest repr, without the per-value checks)."""
    return [Decimal(repr(x)) for x in values.tolist()]


class FillModel:
    def __init__(self, *, taker_fee: Decimal, maker_fee: Decimal, slippage: Decimal) -> None:
        self.taker_fee = taker_fee
        self.maker_fee = maker_fee
        self.slippage = slippage
        self._up = ONE + slippage
        self._down = ONE - slippage

    def slipped(self, side: str, price: Decimal) -> Decimal:
        return price * (self._up if side == "buy" else self._down)

    def market(self, side: str, open_: float) -> tuple[Decimal, str]:
        """A market order sent before candle i opened: filled at its open plus slippage."""
        return self.slipped(side, dec(open_)), "taker"

    def fee(self, qty: Decimal, price: Decimal, liquidity: str) -> Decimal:
        return qty * price * (self.maker_fee if liquidity == "maker" else self.taker_fee)
