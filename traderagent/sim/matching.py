"""Accounts, order validation, the resting book, fills, UNIFIED balances and linear positions (one-way, or
hedge with positionIdx 1/2: see perp.py with funding and liquidation).

All money and quantities are Decimal. The engine knows nothing about HTTP: it raises ``ApiError(code, msg)``
with ByBit's retCodes and the server turns that into an envelope.
"""

from __future__ import annotations

import bisect
import random
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import Any

from traderagent.numbers import NumberError, decimal_or
from traderagent.sim import perp, protection
from traderagent.sim.market import SymbolSpec

ZERO = Decimal(0)
LINK_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,36}$")
OPEN_STATUSES = ("New", "PartiallyFilled")
MMR = Decimal("0.005")  # maintenance margin rate used for the (approximate) liquidation price


class ApiError(Exception):
    """A ByBit business error: answered as HTTP 200 with this retCode/retMsg."""

    def __init__(self, code: int, msg: str) -> None:
        super().__init__(f"{code} {msg}")
        self.code = code
        self.msg = msg


def fmt(x: Decimal | None) -> str:
    """Plain decimal string (no exponent), trailing zeros kept as they are."""
    if x is None:
        return ""
    return format(x, "f")


def fmt_n(x: Decimal, places: int = 10) -> str:
    """Decimal string rounded to at most ``places`` decimals, trailing zeros removed."""
    q = x.quantize(Decimal(1).scaleb(-places)) if x.as_tuple().exponent < -places else x  # type: ignore[operator]
    s = format(q.normalize(), "f")
    return "0" if s in ("-0", "") else s


def _fmt_avg(avg: Decimal, tick: Decimal) -> str:
    return fmt(avg.quantize(tick)) if on_step(avg, tick) else fmt_n(avg)


def on_step(x: Decimal, step: Decimal) -> bool:
    return (x / step) == (x / step).to_integral_value()


@dataclass
class Order:
    order_id: str
    link_id: str
    api_key: str
    category: str
    symbol: str
    side: str
    order_type: str
    qty: Decimal
    price: Decimal | None
    time_in_force: str
    reduce_only: bool
    close_on_trigger: bool
    market_unit: str
    created: int
    seq: int
    last_price_on_created: Decimal
    status: str = "New"
    cum_qty: Decimal = ZERO
    cum_value: Decimal = ZERO
    cum_fee: Decimal = ZERO
    fee_coin: str = ""
    cancel_type: str = "UNKNOWN"
    reject_reason: str = "EC_NoError"
    updated: int = 0
    position_idx: int = 0
    create_type: str = "CreateByUser"  # "CreateByLiq": the exchange's takeover of a liquidated position
    # conditional and TP/SL orders (sim/protection.py): untriggered until the price reaches trigger_price
    stop_order_type: str = "UNKNOWN"
    trigger_price: Decimal | None = None
    trigger_by: str = "UNKNOWN"
    trigger_direction: int = 0
    # a position's trailing stop: its distance, and the best price since it armed (None: waiting for its
    # activation price, held in trigger_price; once armed trigger_price is the stop, peak -/+ distance)
    trail: Decimal | None = None
    trail_peak: Decimal | None = None

    @property
    def leaves(self) -> Decimal:
        if self.status not in OPEN_STATUSES:
            return ZERO
        return self.qty - self.cum_qty

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES

    @property
    def avg_price(self) -> Decimal | None:
        return self.cum_value / self.cum_qty if self.cum_qty else None

    def to_wire(self, spec: SymbolSpec) -> dict:
        """The order object of /v5/order/realtime and /v5/order/history."""
        spot = self.category == "spot"
        qd = spec.qty_decimals
        avg = self.avg_price
        price = self.price if self.price is not None else ZERO
        w = {
            "orderId": self.order_id, "orderLinkId": self.link_id, "blockTradeId": "", "symbol": self.symbol,
            "price": fmt(price), "qty": fmt(self.qty), "side": self.side,
            "isLeverage": "0" if spot else "", "positionIdx": self.position_idx, "orderStatus": self.status,
            "createType": self.create_type, "cancelType": self.cancel_type, "rejectReason": self.reject_reason,
            "avgPrice": _fmt_avg(avg, spec.tick_size) if avg is not None else ("" if spot else "0"),
            "leavesQty": fmt(self.leaves), "leavesValue": fmt_n(self.leaves * price),
            "cumExecQty": fmt(self.cum_qty) if self.cum_qty else f"{ZERO:.{qd}f}",
            "cumExecValue": fmt_n(self.cum_value), "cumExecFee": fmt_n(self.cum_fee),
            "cumFeeDetail": {self.fee_coin: fmt_n(self.cum_fee)} if self.cum_fee else {},
            "timeInForce": self.time_in_force, "orderType": self.order_type,
            "stopOrderType": self.stop_order_type, "orderIv": "", "marketUnit": self.market_unit,
            "triggerPrice": fmt(self.trigger_price) if self.trigger_price is not None else "0.00",
            "takeProfit": "0.00", "stopLoss": "0.00", "tpTriggerBy": "UNKNOWN", "slTriggerBy": "UNKNOWN",
            "triggerDirection": self.trigger_direction, "triggerBy": self.trigger_by, "lastPriceOnCreated": "" if spot else fmt(self.last_price_on_created),
            "basePrice": fmt(self.last_price_on_created) if spot else "", "reduceOnly": self.reduce_only,
            "closeOnTrigger": self.close_on_trigger, "smpType": "None", "smpGroup": 0, "smpOrderId": "",
            "tpslMode": "", "tpLimitPrice": "", "slLimitPrice": "", "placeType": "", "parentOrderLinkId": "",
            "slippageToleranceType": "UNKNOWN", "slippageTolerance": "0", "extraFees": "",
            "createdTime": str(self.created), "updatedTime": str(self.updated or self.created),
        }
        if spot:
            del w["createType"]
        return w


@dataclass
class Execution:
    exec_id: str
    order: Order
    price: Decimal
    qty: Decimal
    fee: Decimal
    fee_rate: Decimal
    fee_coin: str
    is_maker: bool
    time: int
    seq: int
    mark: Decimal
    closed_size: Decimal
    leaves_after: Decimal
    exec_type: str = "Trade"  # "BustTrade": a liquidation's fill
    # linear, for the transaction log (perp.log_row): PnL settled, position and wallet after the fill
    cash_flow: Decimal | None = None
    size_after: Decimal | None = None
    balance_after: Decimal | None = None

    @property
    def category(self) -> str:
        return self.order.category

    @property
    def symbol(self) -> str:
        return self.order.symbol

    @property
    def order_id(self) -> str:
        return self.order.order_id

    @property
    def link_id(self) -> str:
        return self.order.link_id

    def to_wire(self) -> dict:
        o = self.order
        return {
            "symbol": o.symbol, "orderId": o.order_id, "orderLinkId": o.link_id, "side": o.side,
            "orderPrice": fmt(o.price if o.price is not None else ZERO), "orderQty": fmt(o.qty),
            "leavesQty": fmt(self.leaves_after), "createType": o.create_type, "orderType": o.order_type,
            "stopOrderType": o.stop_order_type, "execFee": fmt_n(self.fee), "execFeeV2": "", "execId": self.exec_id,
            "execPrice": fmt(self.price), "execQty": fmt(self.qty), "execType": self.exec_type,
            "execValue": fmt_n(self.price * self.qty), "execTime": str(self.time),
            "feeCurrency": self.fee_coin if o.category == "spot" else "", "isMaker": self.is_maker,
            "feeRate": fmt_n(self.fee_rate), "tradeIv": "", "markIv": "", "markPrice": fmt(self.mark),
            "indexPrice": "", "underlyingPrice": "", "blockTradeId": "",
            "closedSize": fmt(self.closed_size) if o.category == "linear" else "", "seq": self.seq,
            "extraFees": "",
        }


@dataclass
class Position:
    symbol: str
    size: Decimal = ZERO  # signed: > 0 long, < 0 short
    avg_price: Decimal = ZERO
    cum_realised: Decimal = ZERO  # includes fees, as ByBit's cumRealisedPnl does
    cur_realised: Decimal = ZERO
    created: int = 0
    updated: int = 0
    open_time: int = 0
    seq: int = 0
    # exchange-held TP/SL set through /v5/position/trading-stop (ZERO: none); see sim/protection.py
    take_profit: Decimal = ZERO
    stop_loss: Decimal = ZERO
    tp_trigger_by: str = "LastPrice"
    sl_trigger_by: str = "LastPrice"
    trailing_stop: Decimal = ZERO  # the trailing stop's distance in price
    idx: int = 0  # positionIdx: 0 one-way, 1 hedge long side, 2 hedge short side


def pos_key(symbol: str, idx: int = 0) -> str:
    """The key of a position in ``Account.positions``: the symbol alone in one-way mode."""
    return symbol if idx == 0 else f"{symbol}:{idx}"


@dataclass
class Account:
    api_key: str
    api_secret: str
    uid: int
    wallet: dict[str, Decimal] = field(default_factory=dict)
    cum_realised: dict[str, Decimal] = field(default_factory=dict)
    orders: list[Order] = field(default_factory=list)  # creation order
    by_id: dict[str, Order] = field(default_factory=dict)
    open_orders: dict[str, Order] = field(default_factory=dict)
    link_ids: dict[tuple[str, str], str] = field(default_factory=dict)
    executions: list[Any] = field(default_factory=list)  # Execution and perp.Funding rows, by seq
    positions: dict[str, Position] = field(default_factory=dict)  # pos_key -> position
    leverage: dict[str, Decimal] = field(default_factory=dict)
    modes: dict[str, int] = field(default_factory=dict)  # symbol -> position mode (0 one-way, 3 hedge)
    conditionals: dict[str, Order] = field(default_factory=dict)  # Untriggered, by orderId (sim/protection.py)

    def __repr__(self) -> str:  # never show the secret
        return f"Account(api_key={self.api_key!r}, uid={self.uid})"


@dataclass
class Fees:
    taker: Decimal = Decimal("0.00055")
    maker: Decimal = Decimal("0.0002")
    slippage: Decimal = Decimal("0.0002")
    price_band: Decimal = Decimal("0.10")
    default_leverage: Decimal = Decimal("10")


class Book:
    """Resting limit orders of one (category, symbol) from every account, sorted by price."""

    def __init__(self) -> None:
        self.buys: list[tuple[Decimal, int, Order]] = []
        self.sells: list[tuple[Decimal, int, Order]] = []

    def add(self, o: Order) -> None:
        assert o.price is not None
        side = self.buys if o.side == "Buy" else self.sells
        bisect.insort(side, (o.price, o.seq, o), key=lambda e: (e[0], e[1]))

    def remove(self, o: Order) -> None:
        side = self.buys if o.side == "Buy" else self.sells
        i = bisect.bisect_left(side, (o.price, o.seq), key=lambda e: (e[0], e[1]))
        if i < len(side) and side[i][2] is o:
            side.pop(i)

    def crossed(self, low: Decimal, high: Decimal) -> list[Order]:
        """Pop the orders the price range [low, high] touches (buys at >= low, sells at <= high)."""
        out: list[Order] = []
        while self.buys and self.buys[-1][0] >= low:
            out.append(self.buys.pop()[2])
        while self.sells and self.sells[0][0] <= high:
            out.append(self.sells.pop(0)[2])
        return sorted(out, key=lambda o: o.seq)

    def __len__(self) -> int:
        return len(self.buys) + len(self.sells)


class Engine:
    """The exchange's books and accounts. ``price(symbol)`` gives the current last price."""

    def __init__(self, specs: dict[str, SymbolSpec], price: Callable[[str], Decimal], now_ms: Callable[[], int],
                 fees: Fees, seed: int) -> None:
        self.specs = specs
        self.price = price
        self.now_ms = now_ms
        self.fees = fees
        self.accounts: dict[str, Account] = {}
        self.books: dict[tuple[str, str], Book] = {}
        self._rng = random.Random(seed)
        self._seq = 0
        self._spot_id = 1_900_000_000_000_000_000
        # told of every order change, with the execution when it filled (the WebSocket pushes)
        self.on_change: Callable[[Account, Order, Execution | None], None] = lambda acct, o, ex: None

    # --- ids ---------------------------------------------------------------------------------------
    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def _uuid(self) -> str:
        return str(uuid.UUID(int=self._rng.getrandbits(128), version=4))

    def _order_id(self, category: str) -> str:
        if category == "spot":
            self._spot_id += self._rng.randint(1, 1000)
            return str(self._spot_id)
        return self._uuid()

    # --- accounts ----------------------------------------------------------------------------------
    def add_account(self, api_key: str, api_secret: str, balances: dict[str, Decimal] | None = None) -> Account:
        acct = Account(api_key, api_secret, uid=100_000 + len(self.accounts))
        acct.wallet = {c: Decimal(v) for c, v in (balances or {}).items()}
        self.accounts[api_key] = acct
        return acct

    def leverage(self, acct: Account, symbol: str) -> Decimal:
        return acct.leverage.get(symbol, self.fees.default_leverage)

    def position(self, acct: Account, symbol: str, idx: int = 0) -> Position:
        key = pos_key(symbol, idx)
        pos = acct.positions.get(key)
        if pos is None:
            pos = acct.positions[key] = Position(symbol, idx=idx)
        return pos

    # --- balances ----------------------------------------------------------------------------------
    def locked(self, acct: Account, coin: str) -> Decimal:
        """Spot open orders' reservations of ``coin``."""
        total = ZERO
        for o in acct.open_orders.values():
            if o.category != "spot":
                continue
            spec = self.specs[o.symbol]
            if o.side == "Buy" and spec.quote_coin == coin and o.price is not None:
                total += o.leaves * o.price
            elif o.side == "Sell" and spec.base_coin == coin:
                total += o.leaves
        return total + protection.reserved(acct, coin, self.specs)

    def order_im(self, acct: Account) -> Decimal:
        return sum((o.leaves * o.price / self.leverage(acct, o.symbol) for o in acct.open_orders.values()
                    if o.category == "linear" and not o.reduce_only and o.price is not None), ZERO)

    def position_im(self, acct: Account) -> Decimal:
        return sum((abs(p.size) * p.avg_price / self.leverage(acct, p.symbol) for p in acct.positions.values()),
                   ZERO)

    def upl(self, pos: Position) -> Decimal:
        if not pos.size:
            return ZERO
        return (self.price(pos.symbol) - pos.avg_price) * pos.size

    def available(self, acct: Account, coin: str) -> Decimal:
        """What a new order may use: wallet - spot locks (- margin and + unrealised PnL for USDT)."""
        free = acct.wallet.get(coin, ZERO) - self.locked(acct, coin)
        if coin == "USDT":
            free += sum((self.upl(p) for p in acct.positions.values()), ZERO)
            free -= self.order_im(acct) + self.position_im(acct)
        return free

    # --- order creation ----------------------------------------------------------------------------
    def create_order(self, acct: Account, p: dict) -> Order:
        category = p.get("category")
        if category not in ("linear", "spot"):
            raise ApiError(10001, "Illegal category" if category not in ("inverse", "option") else
                           f"params error: category {category} is not supported by the simulator")
        v = _SpotRules(self) if category == "spot" else _LinearRules(self)
        spec = v.symbol(p.get("symbol"))
        side = v.side(p.get("side"))
        otype = v.order_type(p.get("orderType"))
        tif = v.tif(p.get("timeInForce"), otype)
        reduce_only = _bool(p.get("reduceOnly")) and category == "linear"
        close_on_trigger = _bool(p.get("closeOnTrigger")) and category == "linear"
        idx, closes_side = perp.position_idx(acct, spec.symbol, p.get("positionIdx"), side) \
            if category == "linear" else (0, False)
        reduce_only = reduce_only or closes_side
        last = self.price(spec.symbol)
        unit = v.market_unit(p, side, otype)
        key = pos_key(spec.symbol, idx)
        qty = v.qty(p.get("qty"), spec, otype, unit, acct.positions.get(key), reduce_only, close_on_trigger)
        price = v.price(p.get("price"), spec, otype, side, last)
        ref = price if price is not None else last
        v.notional(qty, ref, spec, unit)
        link = v.link_id(acct, p.get("orderLinkId"))
        if reduce_only:
            self._check_reduce_only(acct.positions.get(key), side)
        v.balance(acct, spec, side, otype, qty, price, last, unit, reduce_only, acct.positions.get(key))
        now = self.now_ms()
        if otype == "Market":  # ByBit shows a market order's slippage-protection price
            band = Decimal("1.03") if side == "Buy" else Decimal("0.97")
            price = _round_tick(last * band, spec.tick_size, side == "Buy")
        order = Order(self._order_id(category), link, acct.api_key, category, spec.symbol, side, otype, qty,
                      price, tif, reduce_only, close_on_trigger, unit, now, self._next_seq(), last, updated=now,
                      position_idx=idx)
        acct.orders.append(order)
        acct.by_id[order.order_id] = order
        if link:
            acct.link_ids[(category, link)] = order.order_id
        self._on_new(acct, order, last)
        return order

    @staticmethod
    def _check_reduce_only(pos: Position | None, side: str) -> None:
        if pos is None or not pos.size or (pos.size > 0) == (side == "Buy"):
            raise ApiError(110017, "Reduce-only rule not satisfied")

    def _on_new(self, acct: Account, o: Order, last: Decimal) -> None:
        """Fill a market order or a crossing limit now (taker); otherwise rest it."""
        spec = self.specs[o.symbol]
        if o.order_type == "Market":
            slip = self.fees.slippage
            px = last * (1 + slip) if o.side == "Buy" else last * (1 - slip)
            self._fill(acct, o, _round_tick(px, spec.tick_size, o.side == "Buy"), maker=False)
            return
        assert o.price is not None
        ask = last + spec.tick_size
        crosses = o.price >= ask if o.side == "Buy" else o.price <= last
        if crosses and o.time_in_force == "PostOnly":
            self._close(acct, o, "Cancelled", cancel_type="CancelByUser", reason="EC_PostOnlyWillTakeLiquidity")
        elif crosses:
            self._fill(acct, o, ask if o.side == "Buy" else last, maker=False)
        elif o.time_in_force in ("IOC", "FOK"):
            self._close(acct, o, "Cancelled", cancel_type="CancelByUser", reason="EC_NoImmediateQtyToFill")
        else:
            acct.open_orders[o.order_id] = o
            self.books.setdefault((o.category, o.symbol), Book()).add(o)
            self.on_change(acct, o, None)

    # --- fills -------------------------------------------------------------------------------------
    def _close(self, acct: Account, o: Order, status: str, *, cancel_type: str = "UNKNOWN",
               reason: str = "EC_NoError") -> None:
        if o.order_id in acct.open_orders:
            del acct.open_orders[o.order_id]
            book = self.books.get((o.category, o.symbol))
            if book is not None and o.price is not None:
                book.remove(o)
        if o.category == "spot" and status == "Cancelled" and o.cum_qty:
            status = "PartiallyFilledCanceled"
        o.status, o.cancel_type, o.reject_reason = status, cancel_type, reason
        o.updated = self.now_ms()
        if status != "Filled":  # a fill is told with its execution
            self.on_change(acct, o, None)

    def _fill(self, acct: Account, o: Order, price: Decimal, *, maker: bool, part: Decimal | None = None) -> None:
        spec = self.specs[o.symbol]
        qty = o.qty - o.cum_qty if part is None else min(part, o.qty - o.cum_qty)
        if o.category == "spot" and o.market_unit == "quoteCoin":
            qty = ((o.qty - o.cum_value) / price).quantize(spec.base_precision, rounding=ROUND_FLOOR)
        closed = ZERO
        if o.category == "linear" and o.reduce_only:
            pos = acct.positions.get(pos_key(o.symbol, o.position_idx))
            room = ZERO if pos is None or (pos.size > 0) == (o.side == "Buy") else abs(pos.size)
            if not room:
                self._close(acct, o, "Cancelled", cancel_type="CancelByReduceOnly")
                return
            qty = min(qty, room)
        rate = self.fees.maker if maker else self.fees.taker
        value = price * qty
        before = acct.wallet.get(spec.quote_coin, ZERO)
        if o.category == "linear":
            fee, coin = value * rate, spec.quote_coin
            closed = self._apply_linear(acct, o, price, qty, fee)
            protection.position_changed(self, acct, o.symbol)
        else:
            fee, coin = self._apply_spot(acct, o, spec, price, qty, rate)
        o.cum_qty += qty
        o.cum_value += value
        o.cum_fee += fee
        o.fee_coin = coin
        now = self.now_ms()
        done = o.market_unit == "quoteCoin" or o.cum_qty >= o.qty or o.reduce_only
        if done:
            if o.reduce_only and o.cum_qty < o.qty:  # ByBit shrinks a reduce-only order to the position
                o.qty = o.cum_qty
            self._close(acct, o, "Filled")
        o.updated = now
        execution = Execution(self._uuid(), o, price, qty, fee, rate, coin, maker, now,
                              self._next_seq(), self.price(o.symbol), closed, o.leaves)
        if o.category == "linear":
            perp.stamp(acct, execution, before)
        acct.executions.append(execution)
        self.on_change(acct, o, execution)

    def _apply_linear(self, acct: Account, o: Order, price: Decimal, qty: Decimal, fee: Decimal) -> Decimal:
        """One-way position update; returns the closed size. Realised PnL and the fee hit the USDT wallet."""
        pos = self.position(acct, o.symbol, o.position_idx)
        now = self.now_ms()
        delta = qty if o.side == "Buy" else -qty
        closed = ZERO
        pnl = ZERO
        if pos.size and (pos.size > 0) != (delta > 0):
            closed = min(abs(delta), abs(pos.size))
            direction = 1 if pos.size > 0 else -1
            pnl = (price - pos.avg_price) * closed * direction
            rest = abs(delta) - closed
            pos.size += closed if pos.size < 0 else -closed
            if rest:
                pos.size, pos.avg_price, pos.open_time = (rest if delta > 0 else -rest), price, now
            elif not pos.size:
                pos.avg_price = ZERO
        else:
            new_size = abs(pos.size) + qty
            pos.avg_price = (pos.avg_price * abs(pos.size) + price * qty) / new_size
            if not pos.size:
                pos.open_time = now
                pos.created = pos.created or now
            pos.size += delta
        pos.cum_realised += pnl - fee
        pos.cur_realised += pnl - fee
        pos.updated, pos.seq = now, self._next_seq()
        coin = self.specs[o.symbol].quote_coin
        acct.wallet[coin] = acct.wallet.get(coin, ZERO) + pnl - fee
        acct.cum_realised[coin] = acct.cum_realised.get(coin, ZERO) + pnl - fee
        return closed

    def _apply_spot(self, acct: Account, o: Order, spec: SymbolSpec, price: Decimal, qty: Decimal,
                    rate: Decimal) -> tuple[Decimal, str]:
        """Spot: a buy pays its fee in the base coin, a sell in the quote coin (as ByBit does)."""
        w, base, quote = acct.wallet, spec.base_coin, spec.quote_coin
        value = price * qty
        if o.side == "Buy":
            fee = qty * rate
            w[quote] = w.get(quote, ZERO) - value
            w[base] = w.get(base, ZERO) + qty - fee
            return fee, base
        fee = value * rate
        w[base] = w.get(base, ZERO) - qty
        w[quote] = w.get(quote, ZERO) + value - fee
        return fee, quote

    def match(self, symbol: str, low: Decimal, high: Decimal) -> int:
        """Fill resting orders of ``symbol`` that the traversed price range touched (maker fills at their
        limit price). Returns the number of orders filled."""
        n = 0
        for category in ("linear", "spot"):
            book = self.books.get((category, symbol))
            if not book:
                continue
            for o in book.crossed(low, high):
                assert o.price is not None
                self._fill(self.accounts[o.api_key], o, o.price, maker=True)
                n += 1
        return n + perp.liquidate_crossed(self, symbol, low, high) + protection.trigger(self, symbol, low, high)

    def fill_resting(self, acct: Account, link_id: str, qty: Decimal | None = None) -> Order:
        """Fill (``qty`` of) a resting limit order at its price as a maker, whatever the market does."""
        o = next(o for o in acct.open_orders.values() if o.link_id == link_id)
        assert o.price is not None
        self._fill(acct, o, o.price, maker=True, part=qty)
        return o

    # --- cancel ------------------------------------------------------------------------------------
    def find(self, acct: Account, category: str, order_id: str | None, link_id: str | None) -> Order | None:
        if order_id:
            o = acct.by_id.get(order_id)
            return o if o is not None and o.category == category else None
        if link_id:
            oid = acct.link_ids.get((category, link_id))
            return acct.by_id.get(oid) if oid else None
        return None

    def target(self, acct: Account, p: dict) -> tuple[_LinearRules | _SpotRules, SymbolSpec, Order | None]:
        """The order a cancel or amend names (``orderId`` wins over ``orderLinkId``), with its category's rules."""
        category = p.get("category")
        if category not in ("linear", "spot"):
            raise ApiError(10001, "Illegal category")
        v = _SpotRules(self) if category == "spot" else _LinearRules(self)
        spec = v.symbol(p.get("symbol"))
        order_id, link_id = p.get("orderId") or None, p.get("orderLinkId") or None
        if not order_id and not link_id:
            raise ApiError(10001 if category == "linear" else 170105,
                           "params error: OrderId or orderLinkId is required")
        o = self.find(acct, category, order_id, link_id)
        return v, spec, (o if o is not None and o.symbol == spec.symbol else None)

    def cancel(self, acct: Account, p: dict) -> Order:
        category = p.get("category")
        o = self.target(acct, p)[2]
        if o is not None and o.order_id in acct.conditionals:
            return protection.cancel(self, acct, o)
        if o is None or not o.is_open:
            if category == "spot":
                raise ApiError(170213, "Order does not exist.")
            raise ApiError(110001, "Order does not exist" if o is None else
                           "order not exists or too late to cancel")
        self._close(acct, o, "Cancelled", cancel_type="CancelByUser")
        return o

    def reprice(self, acct: Account, o: Order, qty: Decimal, price: Decimal | None) -> None:
        """Amend an open order in place: off the book, new qty/price, then rest or fill as a new one would."""
        self._close(acct, o, o.status)
        o.qty, o.price = qty, price
        self._on_new(acct, o, self.price(o.symbol))

    def cancel_all(self, acct: Account, p: dict) -> list[Order]:
        category = p.get("category")
        if category not in ("linear", "spot"):
            raise ApiError(10001, "Illegal category")
        symbol, base, settle = p.get("symbol"), p.get("baseCoin"), p.get("settleCoin")
        if category == "linear" and not (symbol or base or settle):
            raise ApiError(10001, "params error: symbol, baseCoin or settleCoin is required")
        out = []
        for o in list(acct.open_orders.values()):
            spec = self.specs[o.symbol]
            if o.category != category or (symbol and o.symbol != symbol) or (base and spec.base_coin != base) \
                    or (settle and spec.quote_coin != settle):
                continue
            self._close(acct, o, "Cancelled", cancel_type="CancelByUser")
            out.append(o)
        return out

    # --- leverage ----------------------------------------------------------------------------------
    def set_leverage(self, acct: Account, p: dict) -> None:
        if p.get("category") != "linear":
            raise ApiError(10001, "Illegal category")
        spec = _LinearRules(self).symbol(p.get("symbol"))
        buy, sell = _dec(p.get("buyLeverage")), _dec(p.get("sellLeverage"))
        if buy is None or sell is None:
            raise ApiError(10001, "params error: buyLeverage and sellLeverage are required")
        if buy != sell:
            raise ApiError(10001, "params error: buy leverage must equal sell leverage in one-way mode")
        if not Decimal(1) <= buy <= spec.max_leverage:
            raise ApiError(10001, f"leverage invalid: must be in [1, {fmt(spec.max_leverage)}]")
        if self.leverage(acct, spec.symbol) == buy:
            raise ApiError(110043, "Set leverage has not been modified")
        acct.leverage[spec.symbol] = buy


def _bool(x: object) -> bool:
    return x is True or (isinstance(x, str) and x.lower() == "true") or x == 1


def _dec(x: object) -> Decimal | None:
    """The request's number; None when absent or malformed (the caller answers with ByBit's error code)."""
    try:
        return decimal_or(x, None)
    except NumberError:
        return None


def _round_tick(x: Decimal, tick: Decimal, up: bool) -> Decimal:
    return (x / tick).to_integral_value(rounding=ROUND_CEILING if up else ROUND_FLOOR) * tick


class _Rules:
    """Validation shared by both categories; subclasses give ByBit's codes per category."""

    category = ""
    symbol_err: tuple[int, str] = (10001, "")
    side_err = type_err = tif_err = (10001, "")

    def __init__(self, engine: Engine) -> None:
        self.e = engine

    def symbol(self, s: object) -> SymbolSpec:
        spec = self.e.specs.get(str(s)) if s else None
        if spec is None or self.category not in spec.categories:
            raise ApiError(*self.symbol_err)
        return spec

    def side(self, s: object) -> str:
        if s not in ("Buy", "Sell"):
            raise ApiError(*self.side_err)
        return str(s)

    def order_type(self, t: object) -> str:
        if t not in ("Market", "Limit"):
            raise ApiError(*self.type_err)
        return str(t)

    def tif(self, t: object, otype: str) -> str:
        if otype == "Market":
            return "IOC"
        if t in (None, ""):
            return "GTC"
        if t not in ("GTC", "IOC", "FOK", "PostOnly"):
            raise ApiError(*self.tif_err)
        return str(t)

    def market_unit(self, p: dict, side: str, otype: str) -> str:
        return ""

    def link_id(self, acct: Account, link: object) -> str:
        if link in (None, ""):
            return ""
        if not isinstance(link, str) or not LINK_ID_RE.match(link):
            raise ApiError(*self.bad("orderLinkId"))
        if (self.category, link) in acct.link_ids:
            raise ApiError(*self.dup_err)
        return link

    dup_err: tuple[int, str] = (0, "")

    def bad(self, name: str) -> tuple[int, str]:
        return 10001, f"params error: {name} invalid"


class _LinearRules(_Rules):
    category = "linear"
    symbol_err = (10001, "params error: symbol invalid")
    dup_err = (110072, "OrderLinkedID is duplicate")
    side_err = (10001, "params error: side invalid")
    type_err = (10001, "params error: orderType invalid")
    tif_err = (10001, "params error: timeInForce invalid")

    def qty(self, raw: object, spec: SymbolSpec, otype: str, unit: str, pos: Position | None,
            reduce_only: bool, close_on_trigger: bool) -> Decimal:
        q = _dec(raw)
        if q is None or q < 0:
            raise ApiError(10001, "Qty invalid")
        if q == 0 and reduce_only and close_on_trigger:  # close the whole position
            q = abs(pos.size) if pos is not None and pos.size else ZERO
            if not q:
                raise ApiError(110017, "Reduce-only rule not satisfied")
        if q < spec.qty_step:
            raise ApiError(110017, "orderQty will be truncated to zero")
        if not on_step(q, spec.qty_step):
            raise ApiError(10001, "Qty invalid")
        if q < spec.min_qty:
            raise ApiError(10001, "The number of contracts exceeds minimum limit allowed")
        cap = spec.max_mkt_qty if otype == "Market" else spec.max_qty
        if q > cap:
            raise ApiError(10001, "The number of contracts exceeds maximum limit allowed: too large, "
                                  f"order_qty:{int(q * 10**8)} > max_qty:{int(cap * 10**8)}")
        return q.quantize(spec.qty_step)

    def price(self, raw: object, spec: SymbolSpec, otype: str, side: str, last: Decimal) -> Decimal | None:
        if otype == "Market":
            return None
        p = _dec(raw)
        if p is None or p <= 0:
            raise ApiError(10001, "params error: price invalid" if raw not in (None, "") else
                           "params error: price is required for a limit order")
        if not on_step(p, spec.tick_size):
            raise ApiError(10001, "Price invalid")
        band = self.e.fees.price_band
        if (side == "Buy" and p > last * (1 + band)) or (side == "Sell" and p < last * (1 - band)):
            raise ApiError(110003, "Order price is out of permissible range")
        return p.quantize(spec.tick_size)

    def notional(self, qty: Decimal, ref: Decimal, spec: SymbolSpec, unit: str) -> None:
        if qty * ref < spec.min_notional:
            raise ApiError(110094, f"Order does not meet minimum order value {fmt(spec.min_notional)}USDT")

    def balance(self, acct: Account, spec: SymbolSpec, side: str, otype: str, qty: Decimal,
                price: Decimal | None, last: Decimal, unit: str, reduce_only: bool, pos: Position | None) -> None:
        if reduce_only:
            return
        opening = qty
        if pos is not None and pos.size and (pos.size > 0) != (side == "Buy"):
            opening = max(ZERO, qty - abs(pos.size))
        ref = price if price is not None else last
        cost = opening * ref / self.e.leverage(acct, spec.symbol) + qty * ref * self.e.fees.taker
        if opening and cost > self.e.available(acct, spec.quote_coin):
            raise ApiError(110007, "Insufficient available balance")


class _SpotRules(_Rules):
    category = "spot"
    symbol_err = (170121, "Invalid symbol.")
    dup_err = (170141, "Duplicate clientOrderId.")
    side_err = (170117, "Invalid side.")
    type_err = (170116, "Invalid orderType.")
    tif_err = (170115, "Invalid timeInForce.")

    def bad(self, name: str) -> tuple[int, str]:
        return 170130, f"Data sent for paramter '{name}' is not valid."

    def market_unit(self, p: dict, side: str, otype: str) -> str:
        if otype != "Market":
            return ""
        unit = p.get("marketUnit") or ("quoteCoin" if side == "Buy" else "baseCoin")
        if unit not in ("baseCoin", "quoteCoin"):
            raise ApiError(*self.bad("marketUnit"))
        return str(unit)

    def qty(self, raw: object, spec: SymbolSpec, otype: str, unit: str, pos: Position | None,
            reduce_only: bool, close_on_trigger: bool) -> Decimal:
        if raw in (None, ""):
            raise ApiError(170105, "Parameter 'qty' was empty.")
        q = _dec(raw)
        if q is None or q <= 0:
            raise ApiError(*self.bad("qty"))
        if unit == "quoteCoin":
            if not on_step(q, spec.quote_precision):
                raise ApiError(170148, "Market order amount decimal too long.")
            if q > spec.spot_max_amt:
                raise ApiError(170124, "Order amount too large.")
            return q
        if not on_step(q, spec.base_precision):
            raise ApiError(170137, "Order volume decimal too long.")
        if q < spec.base_precision:
            raise ApiError(170136, "Order quantity below the lower limit.")
        cap = spec.spot_max_mkt_qty if otype == "Market" else spec.spot_max_limit_qty
        if cap is not None and q > cap:
            raise ApiError(170124, "Order amount too large.")
        return q.quantize(spec.base_precision)

    def price(self, raw: object, spec: SymbolSpec, otype: str, side: str, last: Decimal) -> Decimal | None:
        if otype == "Market":
            return None
        if raw in (None, ""):
            raise ApiError(170105, "Parameter 'price' was empty.")
        p = _dec(raw)
        if p is None or p <= 0:
            raise ApiError(*self.bad("price"))
        if not on_step(p, spec.tick_size):
            raise ApiError(170134, "Order price decimal too long.")
        band = self.e.fees.price_band
        if side == "Buy" and p > last * (1 + band):
            raise ApiError(170132, "Order price too high.")
        if side == "Sell" and p < last * (1 - band):
            raise ApiError(170133, "Order price too low.")
        return p.quantize(spec.tick_size)

    def notional(self, qty: Decimal, ref: Decimal, spec: SymbolSpec, unit: str) -> None:
        value = qty if unit == "quoteCoin" else qty * ref
        if value < spec.spot_min_amt:
            raise ApiError(170140, "Order value exceeded lower limit.")

    def balance(self, acct: Account, spec: SymbolSpec, side: str, otype: str, qty: Decimal,
                price: Decimal | None, last: Decimal, unit: str, reduce_only: bool, pos: Position | None) -> None:
        if side == "Buy":
            if unit == "quoteCoin":
                need = qty
            else:
                need = qty * (price if price is not None else last * (1 + self.e.fees.slippage))
            ok = need <= self.e.available(acct, spec.quote_coin)
        else:
            ok = qty <= self.e.available(acct, spec.base_coin)
        if not ok:
            raise ApiError(170131, "Insufficient balance.")
