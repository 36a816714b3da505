"""Decimal ledger: cash, net position, fees, realised pnl, and the trade list of signal strategies.

Cash accounting works for spot-like longs and for margin shorts alike: a buy pays qty*price, a sell receives
it, both pay the fee; equity = cash + position * price.

Trades are grouped by key for signal strategies: the driver names the strategy's position id on every fill of
that position. Ladder strategies (grid, DCA) pair their own fills (a grid buy with ITS counter sell, a whole
DCA deal); the engine builds their trades from the strategy's records and books each round trip's pnl here
with `realize`, while `fill` only moves cash and position.
"""

from __future__ import annotations

from decimal import Decimal

from traderagent.backtest.metrics import Fill, Trade

ZERO = Decimal(0)


class SpotShortError(ValueError):
    """A sell on a spot market for more than the coins held (a strategy bug: spot never shorts)."""


class Ledger:
    def __init__(self, balance: Decimal, *, shorts: bool = True) -> None:
        """``shorts=False`` (spot): a sell of coins not held is refused with ``SpotShortError``."""
        self.initial = balance
        self.shorts = shorts
        self.cash = balance
        self.position = ZERO  # signed base quantity
        self.fees = ZERO
        self.realized = ZERO  # net pnl of closed trades (what strategies are told they may use)
        self.fills: list[Fill] = []
        self.trades: list[Trade] = []
        self._keyed: dict[str, Trade] = {}
        self._keyed_qty: dict[str, Decimal] = {}

    # -- cash and position ---------------------------------------------------------------------------
    def _book(self, fill: Fill) -> None:
        value = fill.qty * fill.price
        if fill.side == "buy":
            self.cash -= value + fill.fee
            self.position += fill.qty
        else:
            if not self.shorts and fill.qty > self.position:
                raise SpotShortError(f"spot cannot short: sell {fill.qty} ({fill.tag}) with {self.position} held")
            self.cash += value - fill.fee
            self.position -= fill.qty
        self.fees += fill.fee
        self.fills.append(fill)

    def equity(self, price: Decimal) -> Decimal:
        return self.cash + self.position * price

    # -- keyed trades (signal strategies) ------------------------------------------------------------
    def open_keyed(self, key: str, fill: Fill, direction: str) -> Trade:
        self._book(fill)
        trade = Trade(
            side=direction, qty=fill.qty, entry_index=fill.index, entry_time_ms=fill.time_ms,
            entry_price=fill.price, fees=fill.fee, tag=key,
        )
        trade.pnl = -fill.fee
        self._keyed[key] = trade
        self._keyed_qty[key] = fill.qty
        self.trades.append(trade)
        return trade

    def close_keyed(self, key: str, fill: Fill, reason: str) -> Trade:
        """Reduce (or fully close) a keyed position; the trade records the qty-weighted exit price."""
        self._book(fill)
        trade = self._keyed[key]
        sign = 1 if trade.side == "long" else -1
        trade.pnl += sign * (fill.price - trade.entry_price) * fill.qty - fill.fee
        trade.fees += fill.fee
        done = trade.qty - self._keyed_qty[key]  # qty already exited
        trade.exit_price = (trade.exit_price * done + fill.price * fill.qty) / (done + fill.qty)
        trade.exit_index, trade.exit_time_ms = fill.index, fill.time_ms
        trade.exit_reason = reason
        left = self._keyed_qty[key] - fill.qty
        if left <= 0:
            del self._keyed[key], self._keyed_qty[key]
            self.realized += trade.pnl
        else:
            self._keyed_qty[key] = left
            trade.exit_index = -1  # still open: a partial close
        return trade

    # -- order-ladder strategies ---------------------------------------------------------------------
    def fill(self, fill: Fill) -> None:
        """Book a ladder fill (cash, position, fee); the round trip's pnl comes later via `realize`."""
        self._book(fill)

    def realize(self, pnl: Decimal) -> None:
        """Add the net pnl of a round trip the strategy closed (ladders pair their own fills)."""
        self.realized += pnl
