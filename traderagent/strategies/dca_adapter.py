"""DCA (3Commas style, long): base order, safety orders on a widening ladder, take profit on the average.

Cycle ("deal"):
1. idle -> when the start condition holds (``"asap"``, or ``"rsi"``: RSI(rsi_period) < rsi_below at
   the last closed candle), the cooldown is over and the capital for the WHOLE ladder is available
   (``worst_case_capital(price)``), a market buy "dca:base" of ``base_order`` quote is sent.
2. On the base fill at price B the ladder is fixed: safety order k (1..max_safety_orders) is a
   limit buy "dca:so{k}" at ``B * (1 - dev_k)`` rounded down to tick, with
   ``dev_k = price_deviation * (1 + s + s^2 + ... + s^(k-1))`` (s = step_scale), of
   ``safety_order * volume_scale^(k-1)`` quote (qty rounded down to qty_step).
3. Take profit "dca:tp": a limit sell of the whole position at the price where selling (paying
   ``fee_rate``) returns ``take_profit`` on the total cost including entry fees:
   ``tp = cost * (1 + take_profit) / (qty * (1 - fee_rate))`` rounded UP to tick. Moves after every
   safety fill.
4. Optional stop loss "dca:sl" (a driver-held stop, see base.py): ``stop_loss`` below the
   average entry (``stop_loss_from="average"``) or below the base fill (``"base"``).
5. After the TP/SL fill the deal is booked (pnl net of every fee), the remaining safety orders
   drop out of ``desired_orders`` (the driver cancels them) and a new deal may start after
   ``cooldown_candles`` full candles following the closing candle.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from traderagent.numbers import ZERO, to_decimal
from traderagent.strategies import indicators as ind
from traderagent.strategies.base import BaseStrategy
from traderagent.strategies.numeric import round_down, round_up
from traderagent.strategies.params import Param, timeframe_param
from traderagent.strategies.types import (
    BaseMarketAnalysis,
    ExitReason,
    OrderIntent,
    PreparedData,
    SignalDirection,
)

IDLE, ACTIVE, COOLDOWN = "idle", "active", "cooldown"


class DCAAdapter(BaseStrategy):
    is_ladder: ClassVar[bool] = True
    PARAMS: ClassVar[tuple[Param, ...]] = (
        timeframe_param("5m", "candles the start condition and cooldown count"),
        Param("base_order", Decimal, Decimal("25"), "first buy, quote currency", low=ZERO, low_open=True,
              aliases=("base_order_size",)),
        Param("safety_order", Decimal, Decimal("25"), "first safety order, quote currency", low=ZERO, low_open=True,
              aliases=("safety_order_size",)),
        Param("max_safety_orders", int, 5, "safety orders per deal", low=ZERO, high=Decimal(10),
              aliases=("safety_orders", "num_safety_orders")),
        Param("max_active_safety_orders", int, None, "safety orders resting at once (none: all)",
              low=Decimal(1), optional=True),
        Param("price_deviation", Decimal, Decimal("0.015"), "drop from the base price to safety order 1",
              low=ZERO, low_open=True, high=Decimal("0.5"), aliases=("safety_step", "step_pct", "deviation")),
        Param("step_scale", Decimal, Decimal("1.2"), "multiplier of each successive gap",
              low=Decimal("0.5"), high=Decimal(3), aliases=("martingale_step_coefficient",)),
        Param("volume_scale", Decimal, Decimal("1.5"), "multiplier of each successive safety order",
              low=Decimal("0.5"), high=Decimal(3), aliases=("volume_multiplier", "martingale_volume_coefficient")),
        Param("take_profit", Decimal, Decimal("0.015"), "profit on the deal's cost, net of fees",
              low=ZERO, low_open=True, high=Decimal("0.5"), aliases=("take_profit_pct",)),
        Param("stop_loss", Decimal, None, "loss that closes the deal (none: no stop)",
              low=ZERO, low_open=True, high=Decimal("0.99"), optional=True),
        Param("stop_loss_from", str, "average", "stop_loss measured from", choices=("average", "base")),
        Param("cooldown_candles", int, 0, "candles to wait after a deal", low=ZERO),
        Param("start_condition", str, "asap", "when a deal starts", choices=("asap", "rsi")),
        Param("rsi_period", int, 14, "RSI period of the rsi start condition", low=Decimal(2)),
        Param("rsi_below", float, 30.0, "RSI under which a deal starts (rsi start condition)",
              low=ZERO, high=Decimal(100)),
        Param("fee_rate", Decimal, Decimal("0.001"), "fee per fill, in the take-profit price", low=ZERO, high=Decimal("0.1")),
    )

    def __init__(self, params: dict[str, Any] | None = None, **kwargs: Any) -> None:
        super().__init__(params, **kwargs)
        self.base_order = self._dec_param("base_order")
        self.safety_order = self._dec_param("safety_order")
        self.max_so = self._int_param("max_safety_orders")
        active = self.params["max_active_safety_orders"]
        self.max_active = self.max_so if active is None else int(active)
        self.deviation = self._dec_param("price_deviation")
        self.step_scale = self._dec_param("step_scale")
        self.volume_scale = self._dec_param("volume_scale")
        self.take_profit = self._dec_param("take_profit")
        self.stop_loss = self._opt_dec_param("stop_loss")
        self.sl_from = self._str_param("stop_loss_from")
        self.cooldown = self._int_param("cooldown_candles")
        self.start_condition = self._str_param("start_condition")
        self.rsi_period = self._int_param("rsi_period")
        self.rsi_below = float(self.params["rsi_below"])
        self.fee_rate = self._dec_param("fee_rate")
        devs = self.deviations()
        if devs and devs[-1] >= 1:
            raise ValueError(
                f"safety order {len(devs)} would sit {devs[-1]:.2%} below the base price: lower "
                "'price_deviation', 'step_scale' or 'max_safety_orders'"
            )
        if self.stop_loss is not None and self.sl_from == "base" and devs and self.stop_loss <= devs[-1]:
            raise ValueError(
                f"parameter 'stop_loss' ({self.stop_loss}) must lie below the last safety order ({devs[-1]})"
            )
        if self.worst_case_capital() > self.allocated_capital:
            raise ValueError(
                f"DCA ladder needs {self.worst_case_capital()} (base + all safety orders + fees) but the "
                f"allocated capital is {self.allocated_capital}"
            )
        self.timeframes = (self._str_param("timeframe"),)
        self.min_candles = self.rsi_period + 1 if self.start_condition == "rsi" else 1
        self.status = IDLE
        self._entry_ok = self.start_condition == "asap"
        self._cooldown_left = 0
        self._skip_closing_candle = False
        self.deal: dict[str, Any] | None = None

    @property
    def strategy_type(self) -> str:
        return "dca"

    # ------------------------------------------------------------ ladder maths
    def deviations(self) -> list[Decimal]:
        """Cumulative deviation of each safety order below the base fill (3Commas)."""
        out, gap, total = [], self.deviation, ZERO
        for _ in range(self.max_so):
            total += gap
            out.append(total)
            gap *= self.step_scale
        return out

    def safety_quotes(self) -> list[Decimal]:
        return [self.safety_order * self.volume_scale**k for k in range(self.max_so)]

    def ladder(self, base_price: Decimal) -> list[dict[str, Any]]:
        """Safety orders for a base fill at ``base_price``: k, price, qty, deviation, quote."""
        rows = []
        for k, (dev, quote) in enumerate(zip(self.deviations(), self.safety_quotes(), strict=True), start=1):
            price = round_down(base_price * (1 - dev), self.tick_size)
            qty = self.round_qty(quote / price) if price > 0 else ZERO
            rows.append({"k": k, "price": price, "qty": qty, "deviation": dev, "quote": quote})
        return rows

    def worst_case_capital(self, reference_price: Decimal | None = None, *, include_fees: bool = True) -> Decimal:
        """Quote capital the full ladder needs: base + every safety order at its price (+ entry fees).

        Without a price: the configured quote sizes. With a price: the real rounded notionals.
        """
        if reference_price is None:
            total = self.base_order + sum(self.safety_quotes(), ZERO)
        else:
            price = to_decimal(reference_price)
            total = self.round_qty(self.base_order / price) * price
            total += sum((r["qty"] * r["price"] for r in self.ladder(price)), ZERO)
        return total * (1 + self.fee_rate) if include_fees else total

    def take_profit_price(self, cost: Decimal, qty: Decimal) -> Decimal:
        """Exit price that returns ``take_profit`` on ``cost`` after the exit fee (rounded up)."""
        return round_up(cost * (1 + self.take_profit) / (qty * (1 - self.fee_rate)), self.tick_size)

    @property
    def history_candles(self) -> int:
        """The rsi start condition's RSI smooths once (Wilder)."""
        if self.start_condition != "rsi":
            return super().history_candles
        return self.min_candles + ind.unstable_candles(ind.wilder_alpha(self.rsi_period))

    # ------------------------------------------------------------ analysis
    def prepare(self, *dataframes: pd.DataFrame) -> PreparedData:
        data = PreparedData.from_frame(dataframes[-1])
        rsi = ind.rsi(data.close, self.rsi_period)
        with np.errstate(invalid="ignore"):
            entry_ok = rsi < self.rsi_below if self.start_condition == "rsi" else np.ones(len(data), bool)
        data.columns = {"rsi": rsi, "atr": ind.atr(data.high, data.low, data.close, 14), "entry_ok": entry_ok}
        return data

    def analyze_at(self, prepared: PreparedData, i: int) -> BaseMarketAnalysis:
        i = prepared.index(i)
        rsi, atr, close = prepared.columns["rsi"][i], prepared.columns["atr"][i], prepared.close[i]
        if not math.isfinite(rsi):
            trend = "unknown"
        else:
            trend = "bearish" if rsi < 40 else ("bullish" if rsi > 60 else "sideways")
        vol = float(atr / close) if math.isfinite(atr) and close > 0 else 0.0
        details = {"rsi": float(rsi) if math.isfinite(rsi) else None, "status": self.status,
                   "entry_ok": bool(prepared.columns["entry_ok"][i])}
        return BaseMarketAnalysis(trend, abs(float(rsi) - 50) / 50 if math.isfinite(rsi) else 0.0, vol,
                                  prepared.timestamp(i), self.strategy_type, details)

    def on_candle_close(self, prepared: PreparedData, i: int) -> list:
        i = prepared.index(i)
        self._see_candle(prepared, i)
        self._entry_ok = bool(prepared.columns["entry_ok"][i])
        if self.status == COOLDOWN:
            if self._skip_closing_candle:
                self._skip_closing_candle = False
            else:
                self._cooldown_left -= 1
            if self._cooldown_left <= 0:
                self.status = IDLE
        return []

    # ------------------------------------------------------------ intents
    def desired_orders(self, price: Decimal, balance: Decimal) -> list[OrderIntent]:
        price = to_decimal(price)
        if self.status == IDLE:  # price- and balance-dependent, and brief: not cached
            return self._start_intents(price, to_decimal(balance))
        # an active deal's ladder moves only on fills (they drop the cache)
        return self._cached_intents(lambda: (self.status, len(self._positions), self.closed_count),
                                    lambda: self._deal_intents() if self.status == ACTIVE else [])

    def _start_intents(self, price: Decimal, balance: Decimal) -> list[OrderIntent]:
        if not self._entry_ok or price <= 0:
            return []
        if min(balance, self.allocated_capital) < self.worst_case_capital(price):
            return []
        qty = self.round_qty(self.base_order / price)
        if qty <= 0:
            return []
        return [OrderIntent("dca:base", "buy", "market", qty, None)]

    def _deal_intents(self) -> list[OrderIntent]:
        deal = self.deal
        assert deal is not None, "called only while a deal is active"
        pos = self._positions[deal["position_id"]]
        out = []
        pending = [r for r in deal["ladder"] if r["k"] > deal["filled"] and r["qty"] > 0]
        for row in pending[: self.max_active]:
            out.append(OrderIntent(f"dca:so{row['k']}", "buy", "limit", row["qty"], row["price"]))
        linear = self.market_type == "linear"
        cost = (pos.cost_basis if pos.cost_basis is not None else pos.entry_price * pos.size) + pos.fees
        out.append(OrderIntent("dca:tp", "sell", "limit", pos.size, self.take_profit_price(cost, pos.size), linear))
        sl = self.stop_price()
        if sl is not None:
            out.append(OrderIntent("dca:sl", "sell", "stop", pos.size, sl, linear))
        return out

    def stop_price(self) -> Decimal | None:
        if self.stop_loss is None or self.deal is None:
            return None
        pos = self._positions[self.deal["position_id"]]
        ref = pos.entry_price if self.sl_from == "average" else to_decimal(self.deal["base_price"])
        return round_down(ref * (1 - self.stop_loss), self.tick_size)

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
        if tag in ("dca:tp", "dca:sl"):
            return self._book_sell(tag, qty, fill_price, fee, ts)
        if tag != "dca:base" and not tag.startswith("dca:so"):
            raise ValueError(f"dca: unknown order tag {tag!r}")
        if self.status != ACTIVE:
            # a base, or a safety order that filled as its deal closed (in the same candle as the take
            # profit, or before its cancel arrived): real inventory, the base of the next deal
            return self._start_deal(qty, fill_price, fee, ts)
        deal = self.deal
        assert deal is not None, "an ACTIVE ladder has a deal"
        pid = deal["position_id"]
        self._add_to_position(pid, qty, fill_price, fee)
        k = int(tag[6:]) if tag.startswith("dca:so") else 0
        if k != deal["filled"] + 1:
            # a buy of a closed deal that landed in this one (its cancel came too late): the coins
            # are averaged in, the ladder keeps its place; only the exits follow the new size
            return [i for i in self._deal_intents() if i.tag in ("dca:tp", "dca:sl")]
        deal["filled"] = k
        self._positions[pid].metadata["safety_orders_filled"] = k
        return [i for i in self._deal_intents() if i.tag in ("dca:tp", "dca:sl", f"dca:so{k + self.max_active}")]

    def _book_sell(self, tag: str, qty: Decimal, fill_price: Decimal, fee: Decimal, ts: Any) -> list[OrderIntent]:
        """A take profit or stop fill closes (part of) the deal; a sell with no deal open cannot happen
        on the exchange (reduce-only on linear, no coins on spot) and is refused."""
        if self.status != ACTIVE:
            raise ValueError(f"dca: fill for {tag!r} while {self.status}")
        deal = self.deal
        assert deal is not None, "an ACTIVE ladder has a deal"
        pid = deal["position_id"]
        reason = ExitReason.TAKE_PROFIT if tag == "dca:tp" else ExitReason.STOP_LOSS
        pos = self._close_part(pid, qty, fill_price, reason, fee=fee, timestamp=ts)
        pos.metadata["safety_orders_filled"] = deal["filled"]
        if pid not in self._positions:
            self._end_deal()
        return []

    def reduce_side(self, longs: bool, qty: Decimal | None, price: Decimal, reason: ExitReason | str, *,
                    fee: Decimal = ZERO, timestamp: datetime | None = None) -> Decimal:
        """The exchange closed (part of) the deal (a liquidation, an auto-deleveraging): booked at ``price``;
        a deal closed whole ends as a take profit or stop would end it (the next one after the cooldown)."""
        self._intents_cache = None
        left = super().reduce_side(longs, qty, price, reason, fee=fee, timestamp=timestamp)
        if self.deal is not None and self.deal["position_id"] not in self._positions:
            self._end_deal()
        return left

    def _start_deal(self, qty: Decimal, fill_price: Decimal, fee: Decimal, ts: Any) -> list[OrderIntent]:
        pos = self._open_raw(SignalDirection.LONG, qty, fill_price, fee, timestamp=ts,
                             metadata={"base_price": str(fill_price)})
        self.deal = {"position_id": pos.position_id, "base_price": str(fill_price), "filled": 0,
                     "ladder": self.ladder(fill_price)}
        self.status = ACTIVE
        return self._deal_intents()

    def _end_deal(self) -> None:
        self.deal = None
        if self.cooldown > 0:
            self.status, self._cooldown_left, self._skip_closing_candle = COOLDOWN, self.cooldown, True
        else:
            self.status = IDLE

    # ------------------------------------------------------------ state
    def get_state(self) -> dict[str, Any]:
        state = super().get_state()
        deal = None
        if self.deal is not None:
            deal = {**self.deal, "ladder": [{k: str(v) if isinstance(v, Decimal) else v for k, v in r.items()}
                                            for r in self.deal["ladder"]]}
        state["dca"] = {"status": self.status, "entry_ok": self._entry_ok, "cooldown_left": self._cooldown_left,
                        "skip_closing_candle": self._skip_closing_candle, "deal": deal}
        return state

    def load_state(self, state: Mapping[str, Any]) -> None:
        super().load_state(state)
        dca = state.get("dca") or {}
        self.status = dca.get("status", IDLE)
        self._entry_ok = bool(dca.get("entry_ok", self.start_condition == "asap"))
        self._cooldown_left = int(dca.get("cooldown_left", 0))
        self._skip_closing_candle = bool(dca.get("skip_closing_candle", False))
        deal = dca.get("deal")
        if deal is not None:
            deal = {**deal, "ladder": [
                {"k": int(r["k"]), **{f: to_decimal(r[f]) for f in ("price", "qty", "deviation", "quote")}}
                for r in deal["ladder"]]}
        self.deal = deal
