"""The position book every strategy keeps: open positions, closed records, exits and realised pnl.

``PositionBook`` is a base of ``BaseStrategy`` (see ``strategies/base.py`` for how drivers use it):
positions are opened from signals or ladder fills, checked against their stop / target
(``check_exits``) and closed fully or in part; each closed record books its pnl net of all fees.
Position ids are ``<strategy_type>-<n>``. Closed records are numbered from 0 in the order they closed
(``closed_count``, ``closed_since``); a driver that stored them elsewhere lets the book forget them
(``forget_closed``), the performance figures being running totals (``TradeTally``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import fields
from datetime import datetime
from decimal import Decimal
from types import MappingProxyType
from typing import Any

from traderagent.metrics import TradeTally
from traderagent.numbers import ZERO, to_decimal
from traderagent.strategies.types import BaseSignal, ExitReason, PositionInfo, SignalDirection

CLOSED_KEEP = 4  # closed records a book keeps after its driver stored them (the latest, for a look at them)


class PositionBook(ABC):
    """Open positions by id, the closed records not forgotten yet and the running totals of all of them."""

    allocated_capital: Decimal  # the start of the realised equity curve (set by the strategy)

    def __init__(self) -> None:
        self._positions: dict[str, PositionInfo] = {}
        self._closed: list[PositionInfo] = []  # closed records numbered from _closed_base on
        self._closed_base = 0
        self._tally = TradeTally()
        self._next_id = 1

    @property
    @abstractmethod
    def strategy_type(self) -> str: ...

    def _new_id(self) -> str:
        pid = f"{self.strategy_type}-{self._next_id}"
        self._next_id += 1
        return pid

    def open_position(
        self,
        signal: BaseSignal,
        size: Decimal,
        fill_price: Decimal,
        *,
        fee: Decimal = ZERO,
        timestamp: datetime | None = None,
    ) -> PositionInfo:
        size, fill_price = to_decimal(size), to_decimal(fill_price)
        if size <= 0:
            raise ValueError("position size must be > 0")
        pos = PositionInfo(
            position_id=self._new_id(),
            direction=signal.direction,
            entry_price=fill_price,
            current_price=fill_price,
            size=size,
            stop_loss=signal.stop_loss,
            take_profit=signal.take_profit,
            unrealized_pnl=-to_decimal(fee),
            entry_time=timestamp or signal.timestamp,
            strategy_type=self.strategy_type,
            metadata={"initial_stop": str(signal.stop_loss), **signal.metadata},
            fees=to_decimal(fee),
        )
        self._positions[pos.position_id] = pos
        return pos

    def _open_raw(
        self,
        direction: SignalDirection,
        size: Decimal,
        price: Decimal,
        fee: Decimal,
        *,
        metadata: dict[str, Any] | None = None,
        stop_loss: Decimal | None = None,
        take_profit: Decimal | None = None,
        timestamp: datetime | None = None,
    ) -> PositionInfo:
        """Open a position from a fill (ladder strategies)."""
        pos = PositionInfo(
            position_id=self._new_id(),
            direction=direction,
            entry_price=price,
            current_price=price,
            size=size,
            stop_loss=stop_loss,
            take_profit=take_profit,
            unrealized_pnl=-fee,
            entry_time=timestamp,
            strategy_type=self.strategy_type,
            metadata=dict(metadata or {}),
            fees=fee,
        )
        self._positions[pos.position_id] = pos
        return pos

    def _add_to_position(self, position_id: str, qty: Decimal, price: Decimal, fee: Decimal) -> PositionInfo:
        """Average into an open position (DCA safety orders)."""
        pos = self._positions[position_id]
        cost = (pos.cost_basis if pos.cost_basis is not None else pos.entry_price * pos.size) + price * qty
        pos.size += qty
        pos.cost_basis = cost
        pos.entry_price = cost / pos.size
        pos.fees += fee
        return pos

    def get_active_positions(self) -> list[PositionInfo]:
        return list(self._positions.values())

    @property
    def open_positions(self) -> Mapping[str, PositionInfo]:
        """Read-only live view of the open positions by id (no copy: for drivers' per-candle loops)."""
        return MappingProxyType(self._positions)

    @property
    def closed_count(self) -> int:
        """Number of closed position records ever booked (forgotten ones included)."""
        return self._closed_base + len(self._closed)

    def closed_since(self, start: int) -> list[PositionInfo]:
        """Closed position records from number ``start`` on (those booked since ``closed_count`` was start)."""
        return self._closed[max(start - self._closed_base, 0):]

    def forget_closed(self, upto: int) -> None:
        """Drop the closed records numbered below ``upto`` (the driver stored them) but the last CLOSED_KEEP:
        a long-running book stays bounded; ``closed_count`` and the performance figures are unchanged."""
        drop = min(upto - self._closed_base, len(self._closed) - CLOSED_KEEP)
        if drop > 0:
            del self._closed[:drop]
            self._closed_base += drop

    def get_position(self, position_id: str) -> PositionInfo:
        try:
            return self._positions[position_id]
        except KeyError:
            raise KeyError(f"no open position {position_id!r}") from None

    def check_exits(
        self,
        price: Decimal,
        *,
        high: Decimal | None = None,
        low: Decimal | None = None,
        open_: Decimal | None = None,
    ) -> list[PositionInfo]:
        """Positions whose stop / target lies within [low, high]; exit_price = fill to assume."""
        high = price if high is None else high
        low = price if low is None else low
        out = []
        for pos in self._positions.values():
            pos.current_price = price
            pos.unrealized_pnl = pos.gross_pnl_at(price) - pos.fees
            hit = self._exit_hit(pos, high, low, open_)
            if hit is not None:
                pos.exit_reason, pos.exit_price = hit
                out.append(pos)
        return out

    def _exit_hit(
        self, pos: PositionInfo, high: Decimal, low: Decimal, open_: Decimal | None
    ) -> tuple[ExitReason, Decimal] | None:
        stop_reason = ExitReason(pos.metadata.get("stop_reason", ExitReason.STOP_LOSS.value))
        # a bar that opened beyond the level gapped through it: the fill is the open
        if pos.is_long:
            if pos.stop_loss is not None and low <= pos.stop_loss:
                return stop_reason, open_ if open_ is not None and open_ < pos.stop_loss else pos.stop_loss
            if pos.take_profit is not None and high >= pos.take_profit:
                return ExitReason.TAKE_PROFIT, open_ if open_ is not None and open_ > pos.take_profit else pos.take_profit
        else:
            if pos.stop_loss is not None and high >= pos.stop_loss:
                return stop_reason, open_ if open_ is not None and open_ > pos.stop_loss else pos.stop_loss
            if pos.take_profit is not None and low <= pos.take_profit:
                return ExitReason.TAKE_PROFIT, open_ if open_ is not None and open_ < pos.take_profit else pos.take_profit
        return None

    def close_position(
        self,
        position_id: str,
        exit_price: Decimal,
        reason: ExitReason | str,
        *,
        fee: Decimal = ZERO,
        timestamp: datetime | None = None,
    ) -> PositionInfo:
        """Close fully at ``exit_price``; books realised pnl net of entry and exit fees."""
        pos = self.get_position(position_id)
        exit_price, fee = to_decimal(exit_price), to_decimal(fee)
        pos.fees += fee
        del self._positions[position_id]
        self._book_exit(pos, exit_price, reason, timestamp)
        return pos

    def _close_part(
        self,
        position_id: str,
        qty: Decimal,
        exit_price: Decimal,
        reason: ExitReason | str,
        *,
        fee: Decimal = ZERO,
        timestamp: datetime | None = None,
    ) -> PositionInfo:
        """Close ``qty`` of a position (all of it when qty >= size); entry fees are split pro rata."""
        pos = self.get_position(position_id)
        if qty >= pos.size:
            return self.close_position(position_id, exit_price, reason, fee=fee, timestamp=timestamp)
        part_fees = pos.fees * qty / pos.size
        part_cost = pos.cost_basis * qty / pos.size if pos.cost_basis is not None else None
        part = PositionInfo(**{f.name: getattr(pos, f.name) for f in fields(pos)})
        part.metadata = dict(pos.metadata)
        part.position_id = f"{pos.position_id}.{self.closed_count + 1}"
        part.size, part.fees, part.cost_basis = qty, part_fees + fee, part_cost
        pos.size -= qty
        pos.fees -= part_fees
        if pos.cost_basis is not None and part_cost is not None:
            pos.cost_basis -= part_cost
        self._book_exit(part, exit_price, reason, timestamp)
        return part

    def reduce_side(self, longs: bool, qty: Decimal | None, price: Decimal, reason: ExitReason | str, *,
                    fee: Decimal = ZERO, timestamp: datetime | None = None) -> Decimal:
        """Close ``qty`` (None: all) of the long (or short) positions at ``price``, oldest first, ``fee`` pro
        rata: an exit that closes what it finds (a grid's market close, the exchange liquidating or
        auto-deleveraging the position). Returns the part of ``qty`` no position held."""
        positions = [p for p in self._positions.values() if p.is_long == longs]
        if qty is None:
            qty = sum((p.size for p in positions), ZERO)
        asked = qty
        for pos in positions:
            if qty <= 0:
                break
            part = min(pos.size, qty)
            self._close_part(pos.position_id, part, price, reason, fee=fee * part / asked, timestamp=timestamp)
            qty -= part
        return qty

    def _book_exit(
        self, pos: PositionInfo, exit_price: Decimal, reason: ExitReason | str, timestamp: datetime | None
    ) -> None:
        """Mark a closed record (its fees already include the exit fee) and add it to the history."""
        pos.realized_pnl = pos.gross_pnl_at(exit_price) - pos.fees
        pos.exit_price, pos.exit_reason, pos.exit_time = exit_price, ExitReason(reason), timestamp
        pos.current_price, pos.unrealized_pnl, pos.status = exit_price, ZERO, "closed"
        self._record_closed(pos)

    def _record_closed(self, pos: PositionInfo) -> None:
        self._closed.append(pos)
        self._tally.add(pos.realized_pnl or ZERO, pos.fees, self.allocated_capital)

    @property
    def closed_positions(self) -> list[PositionInfo]:
        """The closed records kept: all of them unless the driver let the book forget some."""
        return list(self._closed)


__all__ = ["PositionBook"]
