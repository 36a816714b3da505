"""Grid: resting buy/sell limit orders on a ladder of price levels between lower and upper.

Model: ``num_levels`` prices L[0] < ... < L[n-1] (arithmetic or geometric, rounded to tick_size)
form ``n-1`` *slots*; slot k trades between L[k] and L[k+1] with a fixed quantity:

* long slot:  flat -> resting BUY at L[k] ("grid:k:buy"); when it fills the lot is held and a
  SELL goes exactly one level up at L[k+1] ("grid:{k+1}:sell"); when that fills the pair is
  booked (real fill prices, net of both fees) and the buy at L[k] is placed again.
* short slot (``mode="neutral"``, linear only): the mirror, SELL at L[k+1] first, BUY back at L[k].

A slot is activated only where its first order would rest as a maker: a long slot when
L[k] < price, a short slot when L[k+1] > price. So the initial book is buys below the price and,
for neutral grids, sells above; a long grid never sells what it does not hold. Idle slots
activate later as the price moves past them. Quantity per slot: ``qty_per_level`` (base units) or
``total_investment`` (default: the allocated capital; or ``amount_per_grid`` quote per slot) split
evenly over the slots, qty = share / L[k] rounded DOWN to qty_step.

Price outside [lower, upper] triggers ``out_of_range_action``: "pause" (no new slots, resting
orders and their counter orders kept; resumes when the price is back in range), "stop" (cancel
everything, keep the inventory), "stop_loss" (cancel everything and close the inventory with a
market order "grid:close:sell" / "grid:close:buy"). Without explicit bounds the range is
``price * (1 -/+ range_pct)`` fixed at the first ``desired_orders`` call.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal, localcontext
from typing import Any, ClassVar

import pandas as pd

from traderagent.numbers import ZERO, to_decimal
from traderagent.strategies import indicators as ind
from traderagent.strategies.base import BaseStrategy
from traderagent.strategies.numeric import round_down
from traderagent.strategies.params import Param, timeframe_param
from traderagent.strategies.types import (
    BaseMarketAnalysis,
    ExitReason,
    OrderIntent,
    PreparedData,
    SignalDirection,
)

RUNNING, PAUSED, CLOSING, STOPPED = "running", "paused", "closing", "stopped"


class GridAdapter(BaseStrategy):
    is_ladder: ClassVar[bool] = True
    PARAMS: ClassVar[tuple[Param, ...]] = (
        timeframe_param("5m", "candles the grid watches (range, status)"),
        Param("lower_price", Decimal, None, "bottom level (none: price x (1 - range_pct) at start)",
              low=ZERO, low_open=True, optional=True),
        Param("upper_price", Decimal, None, "top level, given with lower_price", low=ZERO, low_open=True, optional=True),
        Param("range_pct", Decimal, Decimal("0.05"), "half-width around the start price when no prices are given",
              low=ZERO, low_open=True, high=Decimal("0.5"), aliases=("grid_range", "range")),
        Param("num_levels", int, 15, "grid price levels (num_levels - 1 slots)", low=Decimal(2), high=Decimal(200),
              aliases=("grid_levels", "levels")),
        Param("spacing", str, "arithmetic", "level spacing", choices=("arithmetic", "geometric")),
        Param("total_investment", Decimal, None, "quote the grid invests (none: the bot's capital)",
              low=ZERO, low_open=True, optional=True, aliases=("investment",)),
        Param("amount_per_grid", Decimal, None, "quote per slot, instead of total_investment",
              low=ZERO, low_open=True, optional=True, aliases=("order_size",)),
        Param("qty_per_level", Decimal, None, "base quantity per slot; overrides the investment",
              low=ZERO, low_open=True, optional=True),
        Param("mode", str, "long", "neutral also sells first above the price (linear only)", choices=("long", "neutral")),
        Param("out_of_range_action", str, "pause", "what leaving the range does", choices=("pause", "stop", "stop_loss")),
        Param("fee_rate", Decimal, Decimal("0.001"), "fee per fill; each grid step must pay two",
              low=ZERO, high=Decimal("0.1")),
    )

    def __init__(self, params: dict[str, Any] | None = None, **kwargs: Any) -> None:
        super().__init__(params, **kwargs)
        self.num_levels = self._int_param("num_levels")
        self.spacing = self._str_param("spacing")
        self.mode = self._str_param("mode")
        if self.mode == "neutral" and self.market_type == "spot":
            raise ValueError("parameter 'mode' = 'neutral' needs a linear market (spot cannot short)")
        self.action = self._str_param("out_of_range_action")
        self.fee_rate = self._dec_param("fee_rate")
        self.range_pct = self._dec_param("range_pct")
        self.investment = self._opt_dec_param("total_investment")
        invested_as = "'total_investment'"
        per_slot = self._opt_dec_param("amount_per_grid")
        if per_slot is not None:
            if self.investment is not None:
                raise ValueError("give 'amount_per_grid' or 'total_investment', not both")
            self.investment = per_slot * (self.num_levels - 1)
            invested_as = f"'amount_per_grid' x {self.num_levels - 1} slots"
        self.qty_per_level = self._opt_dec_param("qty_per_level")
        if self.investment is not None and self.investment > self.allocated_capital:
            raise ValueError(
                f"parameter {invested_as} ({self.investment}) exceeds the allocated capital "
                f"({self.allocated_capital})"
            )
        self.timeframes = (self._str_param("timeframe"),)
        self.min_candles = 1
        self.status = RUNNING
        self.levels: list[Decimal] = []  # empty until built (from the bounds, or around the first price)
        self.slots: list[dict[str, Any]] = []
        self._intent_memo: dict[tuple[int, bool, bool], OrderIntent] = {}  # see _slot_intent
        lower, upper = self._opt_dec_param("lower_price"), self._opt_dec_param("upper_price")
        if lower is not None and upper is not None:
            self._build(lower, upper)
        elif (lower is None) != (upper is None):
            raise ValueError("parameters 'lower_price' and 'upper_price' must be given together")

    @property
    def strategy_type(self) -> str:
        return "grid"

    # ------------------------------------------------------------ levels
    def chart_levels(self) -> dict[str, list[Decimal]]:
        return {"grid level": list(self.levels)} if self.levels else {}

    def compute_levels(self, lower: Decimal, upper: Decimal) -> list[Decimal]:
        """The level prices, rounded to tick_size, strictly increasing."""
        if upper <= lower:
            raise ValueError("parameter 'upper_price' must be above 'lower_price'")
        n = self.num_levels
        with localcontext() as ctx:
            ctx.prec = 40
            if self.spacing == "arithmetic":
                step = (upper - lower) / (n - 1)
                raw = [lower + step * k for k in range(n)]
            else:
                ratio = (upper / lower) ** (Decimal(1) / (n - 1))
                raw = [lower * ratio**k for k in range(n)]
        levels = [self.round_price(p) for p in raw[:-1]] + [self.round_price(upper)]
        levels[0] = self.round_price(lower)
        if any(b <= a for a, b in zip(levels, levels[1:], strict=False)):
            raise ValueError(
                f"parameter 'num_levels' ({n}) too large: levels collapse after rounding to tick {self.tick_size}"
            )
        min_step = min((b - a) / a for a, b in zip(levels, levels[1:], strict=False))
        if min_step <= 2 * self.fee_rate:
            raise ValueError(
                f"grid step {min_step:.4%} does not cover two fees of {self.fee_rate} "
                "(fewer 'num_levels' or a wider range needed)"
            )
        return levels

    def _build(self, lower: Decimal, upper: Decimal) -> None:
        self.levels = self.compute_levels(lower, upper)
        self._intent_memo.clear()
        n_slots = len(self.levels) - 1
        budget = self.investment if self.investment is not None else self.allocated_capital
        self.slots = []
        for k in range(n_slots):
            raw = self.qty_per_level if self.qty_per_level is not None else budget / n_slots / self.levels[k]
            qty = self.round_qty(raw)
            if qty <= 0:
                raise ValueError(
                    f"investment per level too small: the order at level {k} (price {self.levels[k]}) would be "
                    f"{raw:.8g}, which rounds to 0 with qty_step {self.qty_step}"
                )
            self.slots.append({"k": k, "qty": qty, "role": None, "holding": False, "lot": None})
        if self.worst_case_capital() > self.allocated_capital:
            raise ValueError(
                f"grid needs {self.worst_case_capital()} but the allocated capital is {self.allocated_capital}"
                " (lower 'qty_per_level' / 'total_investment')"
            )

    @property
    def lower(self) -> Decimal | None:
        return self.levels[0] if self.levels else None

    @property
    def upper(self) -> Decimal | None:
        return self.levels[-1] if self.levels else None

    def worst_case_capital(self) -> Decimal:
        """Quote capital if every slot holds its lot (all buys filled at their levels)."""
        if not self.levels:
            return ZERO
        return sum((s["qty"] * self.levels[s["k"]] for s in self.slots), ZERO)

    def level_table(self) -> list[dict[str, Any]]:
        """One row per level for persistence (grid_levels): price, qty, resting side, status."""
        if not self.levels:
            return []
        rows = [
            {"index": j, "price": str(p), "qty": None, "side": None, "status": "idle"}
            for j, p in enumerate(self.levels)
        ]
        for intent in self._slot_intents():
            j = int(intent.tag.split(":")[1])
            rows[j].update(qty=str(intent.qty), side=intent.side, status="open", tag=intent.tag)
        return rows

    # ------------------------------------------------------------ analysis
    def prepare(self, *dataframes: pd.DataFrame) -> PreparedData:
        data = PreparedData.from_frame(dataframes[-1])
        adx, _, _ = ind.adx(data.high, data.low, data.close, 14)
        data.columns = {"atr": ind.atr(data.high, data.low, data.close, 14), "adx": adx}
        return data

    def analyze_at(self, prepared: PreparedData, i: int) -> BaseMarketAnalysis:
        i = prepared.index(i)
        adx, atr, close = prepared.columns["adx"][i], prepared.columns["atr"][i], prepared.close[i]
        trend = "unknown" if not math.isfinite(adx) else ("sideways" if adx < 25 else "trending")
        details: dict[str, Any] = {"status": self.status, "adx": adx if math.isfinite(adx) else None}
        if self.levels:
            details.update(lower=str(self.lower), upper=str(self.upper), in_range=bool(
                float(self.levels[0]) <= close <= float(self.levels[-1])))
        vol = float(atr / close) if math.isfinite(atr) and close > 0 else 0.0
        strength = min(1.0, float(adx) / 50.0) if math.isfinite(adx) else 0.0
        return BaseMarketAnalysis(trend, strength, vol, prepared.timestamp(i), self.strategy_type, details)

    def on_candle_close(self, prepared: PreparedData, i: int) -> list:
        self._see_candle(prepared, prepared.index(i))
        return []

    # ------------------------------------------------------------ intents
    def desired_orders(self, price: Decimal, balance: Decimal) -> list[OrderIntent]:
        price, balance = to_decimal(price), to_decimal(balance)
        return self._cached_intents(lambda: self._intents_key(price, balance), lambda: self._desired(price, balance))

    def _intents_key(self, price: Decimal, balance: Decimal) -> tuple | None:
        """What decides the intents besides the slots (fills drop the cache): every price test in
        ``_desired`` compares with a level, so the pair of bisections stands for the price."""
        levels = self.levels
        if not levels:
            return None
        return (self.status, len(self._positions), self.closed_count,
                bisect_left(levels, price), bisect_right(levels, price), balance)

    def _desired(self, price: Decimal, balance: Decimal) -> list[OrderIntent]:
        if not self.levels:
            self._build(self.round_price(price * (1 - self.range_pct)), self.round_price(price * (1 + self.range_pct)))
        if self.status == STOPPED:
            return []
        if self.status != CLOSING:
            self._apply_range(price)
        if self.status == CLOSING:
            return self._close_intents()
        if self.status == STOPPED:
            return []
        if self.status == RUNNING:
            self._activate(price, balance)
        return self._slot_intents()

    def _apply_range(self, price: Decimal) -> None:
        outside = price < self.levels[0] or price > self.levels[-1]
        if not outside:
            if self.status == PAUSED:
                self.status = RUNNING
            return
        if self.action == "pause":
            self.status = PAUSED
            return
        self._deactivate_flat_slots()
        if self.action == "stop" or not self._has_inventory():
            self.status = STOPPED
        else:
            self.status = CLOSING

    def _deactivate_flat_slots(self) -> None:
        for slot in self.slots:
            if not slot["holding"]:
                slot["role"] = None

    def _activate(self, price: Decimal, balance: Decimal) -> None:
        budget = min(balance, self.allocated_capital)
        committed = sum((s["qty"] * self.levels[s["k"]] for s in self.slots if s["role"]), ZERO)
        for slot in self.slots:
            if slot["role"] is not None:
                continue
            k = slot["k"]
            if self.levels[k] < price:
                role = "long"
            elif self.mode == "neutral" and self.levels[k + 1] > price:
                role = "short"
            else:
                continue
            cost = slot["qty"] * self.levels[k]
            if committed + cost > budget:
                continue
            slot["role"] = role
            committed += cost

    def _slot_intent(self, slot: dict[str, Any]) -> OrderIntent | None:
        k, role, holding = slot["k"], slot["role"], slot["holding"]
        if role is None:
            return None
        buy = (role == "long") != holding  # long flat or short holding -> buy at L[k]
        qty = slot["qty"] if not holding else self._positions[slot["lot"]].size
        key = (k, buy, holding)
        intent = self._intent_memo.get(key)
        if intent is None or intent.qty is not qty:  # immutable: a slot in the same state reuses its intent
            intent = self._intent_memo[key] = self._new_slot_intent(k, buy, qty, holding)
        return intent

    def _new_slot_intent(self, k: int, buy: bool, qty: Decimal, holding: bool) -> OrderIntent:
        reduce_only = self.market_type == "linear" and holding
        if buy:
            return OrderIntent(f"grid:{k}:buy", "buy", "limit", qty, self.levels[k], reduce_only)
        return OrderIntent(f"grid:{k + 1}:sell", "sell", "limit", qty, self.levels[k + 1], reduce_only)

    def _slot_intents(self) -> list[OrderIntent]:
        if self.status in (STOPPED, CLOSING):
            return []
        out = [self._slot_intent(s) for s in self.slots]
        return [o for o in out if o is not None]

    def _has_inventory(self) -> bool:
        return any(p.size > 0 for p in self._positions.values())

    def _close_intents(self) -> list[OrderIntent]:
        longs = sum((p.size for p in self._positions.values() if p.is_long), ZERO)
        shorts = sum((p.size for p in self._positions.values() if not p.is_long), ZERO)
        linear = self.market_type == "linear"
        out = []
        if longs > 0:
            out.append(OrderIntent("grid:close:sell", "sell", "market", longs, None, linear))
        if shorts > 0:
            out.append(OrderIntent("grid:close:buy", "buy", "market", shorts, None, linear))
        return out

    # ------------------------------------------------------------ fills
    def on_order_filled(
        self,
        tag: str,
        fill_price: Decimal,
        qty: Decimal,
        fee: Decimal,
        *,
        timestamp: datetime | None = None,
    ) -> list[OrderIntent]:
        fill_price, qty, fee, ts = self._fill_inputs(fill_price, qty, fee, timestamp)
        parts = tag.split(":")
        if len(parts) != 3 or parts[0] != "grid" or parts[2] not in ("buy", "sell"):
            raise ValueError(f"grid: unknown order tag {tag!r}")
        if parts[1] == "close":
            self._fill_close(parts[2], fill_price, qty, fee, ts)
            return []
        level, side = int(parts[1]), parts[2]
        k = level if side == "buy" else level - 1
        if not 0 <= k < len(self.slots):
            raise ValueError(f"grid: tag {tag!r} names no slot")
        slot = self.slots[k]
        expected = self._slot_intent(slot)
        if expected is None or expected.tag != tag:
            self._book_stray(slot, side, fill_price, qty, fee, ts)
            return []
        if slot["holding"]:
            self._close_part(slot["lot"], qty, fill_price, ExitReason.GRID_PAIR, fee=fee, timestamp=ts)
            if slot["lot"] not in self._positions:
                slot["holding"], slot["lot"] = False, None
        else:
            direction = SignalDirection.LONG if side == "buy" else SignalDirection.SHORT
            lot = self._open_raw(direction, qty, fill_price, fee, timestamp=ts,
                                 metadata={"slot": k, "level": level, "order_price": str(expected.price)})
            slot["holding"], slot["lot"] = True, lot.position_id
        if self.status in (STOPPED, CLOSING):
            return []
        follow = self._slot_intent(slot)
        return [follow] if follow is not None else []

    def _fill_close(self, side: str, price: Decimal, qty: Decimal, fee: Decimal, ts: datetime | None) -> None:
        self._reduce(side == "sell", price, qty, fee, ts)
        if not self._positions:
            self.status = STOPPED

    def _reduce(self, longs: bool, price: Decimal, qty: Decimal, fee: Decimal, ts: datetime | None) -> Decimal:
        """Close up to ``qty`` of the long (or short) lots at ``price``, the fee pro rata; returns what is left."""
        return self.reduce_side(longs, qty, price, ExitReason.STOP_LOSS, fee=fee, timestamp=ts)

    def reduce_side(self, longs: bool, qty: Decimal | None, price: Decimal, reason: ExitReason | str, *,
                    fee: Decimal = ZERO, timestamp: datetime | None = None) -> Decimal:
        """Close lots (``PositionBook.reduce_side``); a slot whose lot is gone is idle again (its price
        activates it anew). The exchange liquidating all of it idles every slot: the buys resting far above
        the crashed price would fill at once on a restart."""
        self._intents_cache = None
        left = super().reduce_side(longs, qty, price, reason, fee=fee, timestamp=timestamp)
        for slot in self.slots:
            if slot["lot"] is not None and slot["lot"] not in self._positions:
                slot["holding"], slot["lot"], slot["role"] = False, None, None
        if ExitReason(reason) is ExitReason.LIQUIDATION and not self._has_inventory():
            self._deactivate_flat_slots()
        return left

    def _book_stray(self, slot: dict[str, Any], side: str, price: Decimal, qty: Decimal, fee: Decimal,
                    ts: datetime | None) -> None:
        """A fill its slot no longer expects (it landed before its cancel, e.g. as the grid stopped): the
        coins are real. It first reduces the opposite inventory; the rest becomes a lot, held by the slot
        when that is flat (its counter order then takes it out at the next level)."""
        buy = side == "buy"
        lot = self._positions.get(slot["lot"]) if slot["holding"] else None
        if lot is not None and lot.is_long == buy:  # the rest of a partly filled order: the same lot
            self._add_to_position(lot.position_id, qty, price, fee)
            return
        left = self._reduce(not buy, price, qty, fee, ts)
        if left <= 0:
            return
        direction = SignalDirection.LONG if buy else SignalDirection.SHORT
        lot = self._open_raw(direction, left, price, fee * left / qty, timestamp=ts,
                             metadata={"slot": slot["k"], "stray": True})
        if not slot["holding"]:
            slot["holding"], slot["lot"], slot["role"] = True, lot.position_id, "long" if buy else "short"

    # ------------------------------------------------------------ state
    def get_state(self) -> dict[str, Any]:
        state = super().get_state()
        state["grid"] = {
            "status": self.status,
            "levels": [str(p) for p in self.levels] if self.levels else None,
            "slots": [{**s, "qty": str(s["qty"])} for s in self.slots],
        }
        return state

    def load_state(self, state: Mapping[str, Any]) -> None:
        super().load_state(state)
        grid = state.get("grid") or {}
        self.status = grid.get("status", RUNNING)
        self.levels = [to_decimal(p) for p in grid.get("levels") or ()]
        self._intent_memo.clear()
        self.slots = [{**s, "qty": to_decimal(s["qty"])} for s in grid.get("slots", [])]

    def expected_pair_profit(self, k: int) -> Decimal:
        """Net profit of one completed pair of slot k at its level prices with ``fee_rate`` fees."""
        qty, lo, hi = self.slots[k]["qty"], self.levels[k], self.levels[k + 1]
        return round_down((hi - lo) * qty - (hi + lo) * qty * self.fee_rate, Decimal("1e-12"))
