"""A tiny test-local driver that follows base.py's protocol (the real one is traderagent.backtest)."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

import pandas as pd

from traderagent.strategies.base import BaseStrategy
from traderagent.strategies.types import OrderIntent, PositionInfo

ZERO = Decimal(0)


@dataclass
class Fill:
    index: int
    tag: str
    side: str
    order_price: Decimal | None
    price: Decimal
    qty: Decimal
    fee: Decimal


@dataclass
class RunResult:
    fills: list[Fill] = field(default_factory=list)
    signals: list[tuple[int, object]] = field(default_factory=list)
    opened: list[tuple[int, PositionInfo]] = field(default_factory=list)
    closed: list[tuple[int, PositionInfo]] = field(default_factory=list)
    closed_by: list[tuple[Fill, PositionInfo]] = field(default_factory=list)  # ladder: fill that closed it


class LocalDriver:
    def __init__(self, strategy: BaseStrategy, *, fee_rate: str = "0.001") -> None:
        self.s = strategy
        self.fee_rate = Decimal(fee_rate)
        self.result = RunResult()
        self.book: dict[str, OrderIntent] = {}

    def balance(self) -> Decimal:
        return self.s.allocated_capital + sum((p.realized_pnl for _, p in self.result.closed), ZERO)

    def fee(self, price: Decimal, qty: Decimal) -> Decimal:
        return price * qty * self.fee_rate

    def run(self, df: pd.DataFrame) -> RunResult:
        prepared = self.s.prepare(df)
        if self.s.is_ladder:
            for i in range(len(prepared)):
                self._ladder_bar(prepared, i)
        else:
            pending_entry, pending_exits = None, []
            for i in range(len(prepared)):
                pending_entry, pending_exits = self._signal_bar(prepared, i, pending_entry, pending_exits)
        return self.result

    # ------------------------------------------------------------ signal strategies
    def _signal_bar(self, p, i, pending_entry, pending_exits):
        s, px = self.s, self.s.price_of
        o, h, lo, c = px(p.open[i]), px(p.high[i]), px(p.low[i]), px(p.close[i])
        ts = p.timestamp(i)
        for pos in pending_exits:
            closed = s.close_position(pos.position_id, o, pos.exit_reason, fee=self.fee(o, pos.size), timestamp=ts)
            self.result.closed.append((i, closed))
        if pending_entry is not None:
            pos = s.open_position(pending_entry, pending_entry.size, o, fee=self.fee(o, pending_entry.size),
                                  timestamp=ts)
            self.result.opened.append((i, pos))
        for pos in s.check_exits(c, high=h, low=lo, open_=o):
            fill = pos.exit_price
            closed = s.close_position(pos.position_id, fill, pos.exit_reason, fee=self.fee(fill, pos.size),
                                      timestamp=ts)
            self.result.closed.append((i, closed))
        exits = s.on_candle_close(p, i)
        sig = s.signal_at(p, i, self.balance())
        if sig is not None:
            self.result.signals.append((i, sig))
        if i == len(p) - 1:
            return None, []
        return sig, exits

    # ------------------------------------------------------------ ladder strategies
    def _sync(self, price: Decimal, i: int) -> None:
        for _ in range(10):
            intents = self.s.desired_orders(price, self.balance())
            markets = [x for x in intents if x.order_type == "market"]
            self.book = {x.tag: x for x in intents if x.order_type != "market"}
            if not markets:
                return
            for m in markets:
                self._fill(i, m, price)
        raise AssertionError("market intents did not settle")

    def _fill(self, i: int, intent: OrderIntent, price: Decimal) -> None:
        fee = self.fee(price, intent.qty)
        fill = Fill(i, intent.tag, intent.side, intent.price, price, intent.qty, fee)
        self.result.fills.append(fill)
        before = {x.position_id for x in self.s.closed_positions}
        self.s.on_order_filled(intent.tag, price, intent.qty, fee)
        for pos in self.s.closed_positions:
            if pos.position_id not in before:
                self.result.closed.append((i, pos))
                self.result.closed_by.append((fill, pos))

    def _ladder_bar(self, p, i):
        px = self.s.price_of
        o, h, lo, c = px(p.open[i]), px(p.high[i]), px(p.low[i]), px(p.close[i])
        eligible = dict(self.book)  # orders resting before this bar
        legs = [("down", lo), ("up", h)] if c >= o else [("up", h), ("down", lo)]
        for direction, extreme in legs:
            while True:
                cand = [
                    x for t, x in eligible.items()
                    if self.book.get(t) == x and _crosses(x, direction, extreme)
                ]
                if not cand:
                    break
                pick = max(cand, key=lambda x: x.price) if direction == "down" else min(cand, key=lambda x: x.price)
                fill = min(pick.price, o) if direction == "down" else max(pick.price, o)
                if pick.order_type == "stop":
                    fill = min(pick.price, o) if pick.side == "sell" else max(pick.price, o)
                del eligible[pick.tag]
                self._fill(i, pick, fill)
                self._sync(pick.price, i)
        self.s.on_candle_close(p, i)
        self._sync(c, i)


def _crosses(x: OrderIntent, direction: str, extreme: Decimal) -> bool:
    if direction == "down":
        return (x.order_type == "limit" and x.side == "buy" or x.order_type == "stop" and x.side == "sell") \
            and x.price >= extreme
    return (x.order_type == "limit" and x.side == "sell" or x.order_type == "stop" and x.side == "buy") \
        and x.price <= extreme
