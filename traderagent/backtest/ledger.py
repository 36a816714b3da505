"""Decimal ledger: cash, net position, fees, and the trade list built from fills.

Cash accounting works for spot-like longs and for margin shorts alike: a buy pays qty*price, a sell receives
it, both pay the fee; equity = cash + position * price.

Trades are grouped one of three ways:
- by key (signal strategies): the driver names the strategy's position id on every fill of that position;
- "episode" (DCA): flat -> flat is one trade (a whole averaging cycle);
- "lots" (grid): FIFO lots, each opening fill is a lot and the fills that reduce the position close lots
  oldest first, so a grid buy and its counter sell make one trade.
"""

from __future__ import annotations

from collections import deque
from decimal import Decimal

from traderagent.backtest.metrics import Fill, Trade

ZERO = Decimal(0)


class Ledger:
    def __init__(self, balance: Decimal, *, grouping: str = "episode") -> None:
        if grouping not in ("episode", "lots"):
            raise ValueError(f"unknown trade grouping {grouping!r}")
        self.initial = balance
        self.cash = balance
        self.position = ZERO  # signed base quantity
        self.fees = ZERO
        self.realized = ZERO  # net pnl of closed trades (what strategies are told they may use)
        self.fills: list[Fill] = []
        self.trades: list[Trade] = []
        self.grouping = grouping
        self._keyed: dict[str, Trade] = {}
        self._keyed_qty: dict[str, Decimal] = {}
        self._episode: Trade | None = None
        self._episode_flow = ZERO
        self._episode_exit_qty = ZERO
        self._episode_exit_value = ZERO
        self._lots: deque[list] = deque()  # [trade, remaining qty, entry fee left]

    # -- cash and position ---------------------------------------------------------------------------
    def _book(self, fill: Fill) -> None:
        value = fill.qty * fill.price
        if fill.side == "buy":
            self.cash -= value + fill.fee
            self.position += fill.qty
        else:
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

    def keyed_qty(self, key: str) -> Decimal:
        return self._keyed_qty.get(key, ZERO)

    # -- net-position trades (order-ladder strategies) -----------------------------------------------
    def fill(self, fill: Fill) -> None:
        before = self.position
        self._book(fill)
        if self.grouping == "lots":
            self._fill_lots(fill, before)
        else:
            self._fill_episode(fill, before)

    def _fill_episode(self, fill: Fill, before: Decimal) -> None:
        signed = fill.qty if fill.side == "buy" else -fill.qty
        flow = -signed * fill.price - fill.fee
        if before == 0 or (before > 0) == (signed > 0):
            self._add_to_episode(fill, flow)
            return
        closing = min(fill.qty, abs(before))
        share = closing / fill.qty
        self._exit_episode(fill, closing, flow * share if share != 1 else flow)
        if self.position == 0:
            self._finish_episode(fill)
        elif (self.position > 0) != (before > 0):  # reversed through zero: the rest opens a new episode
            self._finish_episode(fill)
            self._add_to_episode(fill, flow * (1 - share), qty=fill.qty - closing)

    def _add_to_episode(self, fill: Fill, flow: Decimal, qty: Decimal | None = None) -> None:
        qty = fill.qty if qty is None else qty
        ep = self._episode
        if ep is None:
            side = "long" if fill.side == "buy" else "short"
            ep = self._episode = Trade(side=side, qty=ZERO, entry_index=fill.index, entry_time_ms=fill.time_ms,
                                       entry_price=fill.price, tag=fill.tag)
            self._episode_flow = ZERO
            self._episode_exit_qty = ZERO
            self._episode_exit_value = ZERO
            self.trades.append(ep)
        ep.entry_price = (ep.entry_price * ep.qty + fill.price * qty) / (ep.qty + qty)
        ep.qty += qty
        ep.fees += fill.fee * qty / fill.qty
        self._episode_flow += flow

    def _exit_episode(self, fill: Fill, qty: Decimal, flow: Decimal) -> None:
        ep = self._episode
        assert ep is not None
        self._episode_flow += flow
        self._episode_exit_qty += qty
        self._episode_exit_value += qty * fill.price
        ep.fees += fill.fee * qty / fill.qty
        ep.exit_reason = fill.reason or fill.tag

    def _finish_episode(self, fill: Fill) -> None:
        ep = self._episode
        assert ep is not None
        ep.exit_index, ep.exit_time_ms = fill.index, fill.time_ms
        ep.exit_price = self._episode_exit_value / self._episode_exit_qty
        ep.pnl = self._episode_flow
        self.realized += ep.pnl
        self._episode = None

    def _fill_lots(self, fill: Fill, before: Decimal) -> None:
        signed = fill.qty if fill.side == "buy" else -fill.qty
        left = fill.qty
        if before != 0 and (before > 0) != (signed > 0):
            while left > 0 and self._lots:
                lot = self._lots[0]
                trade, rem, fee_left = lot
                take = min(rem, left)
                entry_fee = fee_left * take / rem
                exit_fee = fill.fee * take / fill.qty
                sign = 1 if trade.side == "long" else -1
                piece = trade if take == rem else Trade(
                    side=trade.side, qty=take, entry_index=trade.entry_index,
                    entry_time_ms=trade.entry_time_ms, entry_price=trade.entry_price, tag=trade.tag,
                )
                if piece is not trade:
                    self.trades.append(piece)  # the engine sorts trades by entry at the end
                    trade.qty -= take
                    lot[1], lot[2] = rem - take, fee_left - entry_fee
                else:
                    self._lots.popleft()
                piece.exit_index, piece.exit_time_ms, piece.exit_price = fill.index, fill.time_ms, fill.price
                piece.fees = entry_fee + exit_fee
                piece.pnl = sign * (fill.price - piece.entry_price) * take - piece.fees
                piece.exit_reason = fill.reason or fill.tag
                self.realized += piece.pnl
                left -= take
        if left > 0:
            side = "long" if fill.side == "buy" else "short"
            trade = Trade(side=side, qty=left, entry_index=fill.index, entry_time_ms=fill.time_ms,
                          entry_price=fill.price, tag=fill.tag)
            self.trades.append(trade)
            self._lots.append([trade, left, fill.fee * left / fill.qty])
