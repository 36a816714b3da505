"""Fill rules of the backtester (pure functions, each decided from one candle's open/high/low).

- Market orders decided on candle i execute at the OPEN of candle i+1 (the first price that exists after
  the decision; the signal candle's close is already gone when the decision is made), moved against us
  by the slippage rate; taker fee.
- Limit orders rest from the candle after they were placed. A buy fills only when a later candle trades
  THROUGH its price (low < price; a mere touch is not enough, since the queue ahead of us may absorb it),
  a sell when high > price. Fill at the limit price with the maker fee; if the candle OPENED beyond the
  price (a gap through the resting order) the fill is at the open, and it is charged as taker.
- Protective stops trigger on touch (long: low <= stop) and fill at the stop, or at the open when the candle
  gapped past it, moved against us by the slippage (a stop-market order); taker fee. Targets are resting
  limits (the rule above). When one candle reaches both stop and target, the stop is assumed to come first.
"""

from __future__ import annotations

from decimal import Decimal

ONE = Decimal(1)


def dec(x: float) -> Decimal:
    """A float candle price as the Decimal of its shortest repr (the CSV's own digits)."""
    return Decimal(repr(float(x)))  # float(): numpy scalars repr as "np.float64(...)"


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

    @staticmethod
    def limit(side: str, price: Decimal, price_f: float, open_: float, high: float, low: float
              ) -> tuple[Decimal, str] | None:
        """Fill of a resting limit order in this candle, or None."""
        if side == "buy":
            if open_ <= price_f:  # gapped through (or opened on it): the resting order meets the open
                return (dec(open_), "taker") if open_ < price_f else (price, "maker")
            return (price, "maker") if low < price_f else None
        if open_ >= price_f:
            return (dec(open_), "taker") if open_ > price_f else (price, "maker")
        return (price, "maker") if high > price_f else None

    def protective(self, direction: str, stop: Decimal | None, stop_f: float, target: Decimal | None,
                   target_f: float, open_: float, high: float, low: float) -> tuple[Decimal, str, str] | None:
        """Exit of a position through its stop or target in this candle: (price, liquidity, reason) or None.

        `stop_f`/`target_f` are the float twins (nan/inf when absent) so the common "nothing hit" case costs
        two float comparisons.
        """
        if direction == "long":
            if stop is not None and low <= stop_f:  # checked first: the pessimistic order
                base = dec(open_) if open_ < stop_f else stop
                return self.slipped("sell", base), "taker", "stop_loss"
            if target is not None:
                hit = self.limit("sell", target, target_f, open_, high, low)
                if hit:
                    return hit[0], hit[1], "take_profit"
            return None
        if stop is not None and high >= stop_f:
            base = dec(open_) if open_ > stop_f else stop
            return self.slipped("buy", base), "taker", "stop_loss"
        if target is not None:
            hit = self.limit("buy", target, target_f, open_, high, low)
            if hit:
                return hit[0], hit[1], "take_profit"
        return None
