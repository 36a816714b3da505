"""Exchange-held protection: ``POST /v5/position/trading-stop`` and conditional orders (spot and linear).

What ByBit does (docs/exchange.md section 6a), as the simulator does it:

* trading-stop (linear, ``tpslMode=Full``) sets the position's ``takeProfit``/``stopLoss``; the exchange
  holds them as internal conditional orders, ``orderStatus=Untriggered`` with ``stopOrderType``
  ``TakeProfit``/``StopLoss``, listed by /v5/order/realtime (``orderFilter=StopOrder``). ``"0"`` cancels
  one; the same values again answer 34040 "not modified". When the position closes, what is left is
  cancelled (``CancelByTpSlTsClear``).
* A conditional order is ``/v5/order/create`` with ``triggerPrice`` (linear: ``triggerDirection`` 1 = rises
  to, 2 = falls to; spot: ``orderFilter=StopOrder`` or ``tpslOrder``, the direction following from the
  price). A spot ``tpslOrder`` reserves its assets at once, a ``StopOrder`` only when it triggers.
* On trigger the order becomes a Market order filled at once (taker fee and the simulator's market
  slippage) at the price the market had when it crossed the trigger: the trigger itself when the range
  traversed contains it, else the range's nearest edge (a gap: the price jumped past the trigger). The
  order keeps its ``stopOrderType``; its fills carry it and ``createType`` (``CreateByStopLoss``, ...).
  This is the backtest's rule too (``PositionBook.check_exits``: the level, or the open on a gap; stop
  and target slip and pay the taker fee as market orders do).

* ``trailingStop`` (a distance in price; ``"0"`` cancels) with an optional ``activePrice`` (a long's above
  the last price, a short's below): a ``TrailingStop`` order (``CreateByTrailingStop`` on trigger) that arms
  when the last price reaches ``activePrice`` (at once without one), then follows the best last price since:
  a long's stop is that peak minus the distance, and it executes when the price falls to it. Its
  ``triggerPrice`` shows the activation price until it arms, the stop afterwards; the position shows the
  distance as ``trailingStop``. Within one traversed range the stop is checked before the range's extreme
  moves it (the range's low may have come before its high), as the backtest orders stop and target.

The simulator's mark price is its last price, so ``triggerBy`` ``MarkPrice`` and ``LastPrice`` trigger
alike (``IndexPrice`` is accepted and does the same); the value is kept and shown as sent. A trailing stop
follows the last price, as ByBit's does. Not modelled: ``tpslMode=Partial``, limit TP/SL, hedge mode.
"""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING

from traderagent.sim import matching as m  # a module: matching calls back into this one
from traderagent.sim.market import SymbolSpec

if TYPE_CHECKING:
    from traderagent.sim.matching import Account, Engine, Order, Position
    from traderagent.sim.server import ExchangeSimulator

TRIGGER_BY = ("LastPrice", "MarkPrice", "IndexPrice")
POSITION_STOPS = {"TakeProfit": "CreateByTakeProfit", "StopLoss": "CreateByStopLoss",
                  "TrailingStop": "CreateByTrailingStop"}
SPOT_FILTERS = {"StopOrder": "Stop", "tpslOrder": "tpslOrder"}  # orderFilter -> stopOrderType


# ---------------------------------------------------------------------- endpoints
def trading_stop(sim: ExchangeSimulator, acct: Account, p: dict) -> dict:
    """``POST /v5/position/trading-stop``: set or cancel the position's TP/SL (Full mode)."""
    engine = sim.engine
    if p.get("category") != "linear":
        raise m.ApiError(10001, "params error: category only support linear, inverse, option")
    spec = m._LinearRules(engine).symbol(p.get("symbol"))
    if p.get("tpslMode") not in ("Full", "Partial"):
        raise m.ApiError(10001, "params error: tpslMode invalid")
    if p.get("tpslMode") == "Partial":
        raise m.ApiError(10001, "params error: tpslMode Partial is not supported by the simulator")
    if str(p.get("positionIdx", "")) != "0":
        raise m.ApiError(10001, "position idx not match position mode")
    pos = acct.positions.get(spec.symbol)
    if pos is None or not pos.size:
        raise m.ApiError(10001, "can not set tp/sl/ts for zero position")
    trailing = None
    if p.get("trailingStop") not in (None, ""):
        active = _level(p.get("activePrice"), "activePrice", spec) if p.get("activePrice") not in (None, "") else None
        trailing = (_level(p.get("trailingStop"), "trailingStop", spec), active)
        _check_trailing(engine, pos, *trailing)
    levels = []
    for kind, key in (("TakeProfit", "takeProfit"), ("StopLoss", "stopLoss")):
        if p.get(key) in (None, ""):
            continue
        level = _level(p.get(key), key, spec)
        by = _trigger_by(p.get("tpTriggerBy" if kind == "TakeProfit" else "slTriggerBy"))
        _check_level(engine, pos, kind, level)
        levels.append((kind, level, by))
    # the whole request is checked before any of it applies: a refused one changes nothing
    changed = trailing is not None and _set_trailing(engine, acct, pos, *trailing)
    for kind, level, by in levels:
        changed |= _set_level(engine, acct, pos, kind, level, by)
    if not changed:
        raise m.ApiError(34040, "not modified")
    return {}


def create_conditional(sim: ExchangeSimulator, acct: Account, p: dict) -> dict:
    """``/v5/order/create`` with ``triggerPrice``: a conditional order, Untriggered until then."""
    engine = sim.engine
    category = p.get("category")
    rules = m._SpotRules(engine) if category == "spot" else m._LinearRules(engine)
    spec = rules.symbol(p.get("symbol"))
    side = rules.side(p.get("side"))
    otype = rules.order_type(p.get("orderType"))
    if otype != "Market":
        raise m.ApiError(10001, "params error: the simulator's conditional orders are Market orders")
    last = engine.price(spec.symbol)
    trigger = _level(p.get("triggerPrice"), "triggerPrice", spec)
    if not trigger:
        raise m.ApiError(10001, "params error: triggerPrice invalid")
    direction = _direction(p, category, trigger, last)
    reduce_only = m._bool(p.get("reduceOnly")) and category == "linear"
    unit = rules.market_unit({"marketUnit": p.get("marketUnit") or "baseCoin"}, side, otype)
    pos = acct.positions.get(spec.symbol)  # one-way mode (hedge mode: not modelled here)
    qty = rules.qty(p.get("qty"), spec, otype, unit, pos, reduce_only, m._bool(p.get("closeOnTrigger")))
    rules.notional(qty, trigger, spec, unit)
    link = rules.link_id(acct, p.get("orderLinkId"))
    stop_type = "Stop" if category == "linear" else SPOT_FILTERS.get(str(p.get("orderFilter")), "Stop")
    if stop_type == "tpslOrder":  # reserved at once
        rules.balance(acct, spec, side, otype, qty, trigger, last, unit, reduce_only, pos)
    o = _untriggered(engine, acct, spec, side, qty, trigger, direction, stop_type, "CreateByStopOrder",
                     _trigger_by(p.get("triggerBy")), str(category), reduce_only=reduce_only, link=link)
    return {"orderId": o.order_id, "orderLinkId": o.link_id}


def is_conditional(p: dict) -> bool:
    """A create request for a conditional order (rather than an active one)."""
    return p.get("triggerPrice") not in (None, "") or p.get("orderFilter") in SPOT_FILTERS


# ---------------------------------------------------------------------- engine hooks
def trigger(engine: Engine, symbol: str, low: Decimal, high: Decimal) -> int:
    """Execute the conditional orders of ``symbol`` the traversed range [low, high] reached; returns
    how many filled."""
    # a range that reaches both stop and target has no path: the stop goes first, as the backtest assumes
    waiting = [o for acct in engine.accounts.values() for o in acct.conditionals.values() if o.symbol == symbol]
    hit = sorted((o for o in waiting if (_trail(o, low, high) if o.trail else _reached(o, low, high))),
                 key=lambda o: (o.stop_order_type == "TakeProfit", o.seq))
    n = 0
    for o in hit:
        acct = engine.accounts[o.api_key]
        if o.order_id not in acct.conditionals:
            continue  # cleared by an earlier trigger in this range (its position closed)
        del acct.conditionals[o.order_id]
        assert o.trigger_price is not None
        n += _execute(engine, acct, o, min(max(o.trigger_price, low), high))
    return n


def cancel(engine: Engine, acct: Account, o: Order) -> Order:
    """Cancel an untriggered order: a spot one ends ``Deactivated``, a linear one ``Cancelled``."""
    acct.conditionals.pop(o.order_id, None)
    o.status = "Deactivated" if o.category == "spot" else "Cancelled"
    o.cancel_type, o.updated = "CancelByUser", engine.now_ms()
    if o.stop_order_type in POSITION_STOPS:
        pos = acct.positions.get(o.symbol)
        if pos is not None:
            _forget(pos, o.stop_order_type)
    return o


def position_changed(engine: Engine, acct: Account, symbol: str) -> None:
    """A linear position went flat: ByBit cancels what is left of its TP/SL."""
    pos = acct.positions.get(symbol)
    if pos is not None and pos.size:
        return
    for o in [o for o in acct.conditionals.values() if o.symbol == symbol and o.stop_order_type in POSITION_STOPS]:
        del acct.conditionals[o.order_id]
        o.status, o.cancel_type, o.updated = "Deactivated", "CancelByTpSlTsClear", engine.now_ms()
    if pos is not None:
        pos.take_profit = pos.stop_loss = pos.trailing_stop = m.ZERO


def reserved(acct: Account, coin: str, specs: dict[str, SymbolSpec]) -> Decimal:
    """What spot ``tpslOrder`` orders hold of ``coin`` before they trigger."""
    total = m.ZERO
    for o in acct.conditionals.values():
        if o.stop_order_type != "tpslOrder":
            continue
        spec = specs[o.symbol]
        if o.side == "Sell" and spec.base_coin == coin:
            total += o.qty
        elif o.side == "Buy" and spec.quote_coin == coin and o.trigger_price is not None:
            total += o.qty * o.trigger_price
    return total


def keep(o: Order, p: dict) -> bool:
    """/v5/order/realtime's ``orderFilter``: ``Order`` active orders only, ``StopOrder`` conditional
    and TP/SL orders, ``tpslOrder`` spot TP/SL; none: all kinds (a UTA's default)."""
    f = p.get("orderFilter")
    conditional = o.stop_order_type != "UNKNOWN"
    if f == "Order":
        return not conditional
    if f == "StopOrder":
        return conditional and o.stop_order_type != "tpslOrder"
    if f == "tpslOrder":
        return o.stop_order_type == "tpslOrder"
    return True


def is_live(o: Order) -> bool:
    """Listed among open orders: active ones and those still waiting for their trigger."""
    return o.is_open or o.status == "Untriggered"


# ---------------------------------------------------------------------- internals
def _level(raw: object, name: str, spec: SymbolSpec) -> Decimal:
    x = m._dec(raw)
    if x is None or x < 0:
        raise m.ApiError(10001, f"params error: {name} invalid")
    if x and not m.on_step(x, spec.tick_size):
        raise m.ApiError(10001, f"params error: {name} invalid: not a multiple of tickSize {m.fmt(spec.tick_size)}")
    return x


def _trigger_by(raw: object) -> str:
    if raw in (None, ""):
        return "LastPrice"
    if raw not in TRIGGER_BY:
        raise m.ApiError(10001, "params error: triggerBy invalid")
    return str(raw)


def _direction(p: dict, category: object, trigger: Decimal, last: Decimal) -> int:
    if category == "spot":
        return 1 if trigger > last else 2
    raw = str(p.get("triggerDirection", ""))
    if raw not in ("1", "2"):
        raise m.ApiError(10001, "params error: triggerDirection invalid")
    if raw == "1" and trigger <= last:
        raise m.ApiError(110092, f"expect Rising, but trigger_price[{m.fmt(trigger)}] <= current[{m.fmt(last)}]")
    if raw == "2" and trigger >= last:
        raise m.ApiError(110093, f"expect Falling, but trigger_price[{m.fmt(trigger)}] >= current[{m.fmt(last)}]")
    return int(raw)


def _set_level(engine: Engine, acct: Account, pos: Position, kind: str, level: Decimal, by: str) -> bool:
    """Set (or with 0 cancel) the position's TP or SL (checked by ``_check_level``); False when it is already so."""
    current = pos.take_profit if kind == "TakeProfit" else pos.stop_loss
    current_by = pos.tp_trigger_by if kind == "TakeProfit" else pos.sl_trigger_by
    if level == current and (not level or by == current_by):
        return False
    long = pos.size > 0
    for o in [o for o in acct.conditionals.values() if o.symbol == pos.symbol and o.stop_order_type == kind]:
        del acct.conditionals[o.order_id]
        o.status, o.cancel_type, o.updated = "Deactivated", "CancelByUser", engine.now_ms()
    if kind == "TakeProfit":
        pos.take_profit, pos.tp_trigger_by = level, by
    else:
        pos.stop_loss, pos.sl_trigger_by = level, by
    if level:
        rises = (kind == "TakeProfit") == long
        _untriggered(engine, acct, engine.specs[pos.symbol], "Sell" if long else "Buy", abs(pos.size), level,
                     1 if rises else 2, kind, POSITION_STOPS[kind], by, "linear", reduce_only=True)
    return True


def _check_level(engine: Engine, pos: Position, kind: str, level: Decimal) -> None:
    """A new TP above and a new SL below a long's last price (a short's the other way round); 0 cancels."""
    if level == (pos.take_profit if kind == "TakeProfit" else pos.stop_loss):
        return
    last, long = engine.price(pos.symbol), pos.size > 0
    above = kind == "TakeProfit" if long else kind == "StopLoss"
    if level and (above and level <= last or not above and level >= last):
        raise m.ApiError(10001, f"{kind}:{m.fmt(level)} set for {'Buy' if long else 'Sell'} position should be "
                                f"{'higher' if above else 'lower'} than base_price:{m.fmt(last)}??LastPrice")


def _check_trailing(engine: Engine, pos: Position, distance: Decimal, active: Decimal | None) -> None:
    last, long = engine.price(pos.symbol), pos.size > 0
    if active is not None and distance and (active <= last if long else active >= last):
        raise m.ApiError(10001, f"activePrice:{m.fmt(active)} set for {'Buy' if long else 'Sell'} position should be "
                                f"{'higher' if long else 'lower'} than base_price:{m.fmt(last)}??LastPrice")


def _set_trailing(engine: Engine, acct: Account, pos: Position, distance: Decimal, active: Decimal | None) -> bool:
    """Set (or with 0 cancel) the position's trailing stop (checked by ``_check_trailing``); False when it is
    already so."""
    if distance == pos.trailing_stop and active is None:
        return False
    last, long = engine.price(pos.symbol), pos.size > 0
    for o in [o for o in acct.conditionals.values() if o.symbol == pos.symbol and o.stop_order_type == "TrailingStop"]:
        del acct.conditionals[o.order_id]
        o.status, o.cancel_type, o.updated = "Deactivated", "CancelByUser", engine.now_ms()
    pos.trailing_stop = distance
    if distance:
        armed = active is None
        start = active if active is not None else last - distance if long else last + distance
        o = _untriggered(engine, acct, engine.specs[pos.symbol], "Sell" if long else "Buy", abs(pos.size),
                         start, 2 if long else 1, "TrailingStop", POSITION_STOPS["TrailingStop"],
                         "LastPrice", "linear", reduce_only=True)
        o.trail, o.trail_peak = distance, last if armed else None
    return True


def _trail(o: Order, low: Decimal, high: Decimal) -> bool:
    """A trailing stop over the traversed range: arm it, or check its stop, then let the range's best price
    move it (checked first: the range's worst price may have come before its best)."""
    assert o.trail is not None and o.trigger_price is not None
    closes_long = o.side == "Sell"
    if o.trail_peak is None:  # waiting for the activation price
        if not (high >= o.trigger_price if closes_long else low <= o.trigger_price):
            return False
    elif low <= o.trigger_price if closes_long else high >= o.trigger_price:
        return True
    o.trail_peak = max(o.trail_peak or high, high) if closes_long else min(o.trail_peak or low, low)
    o.trigger_price = o.trail_peak - o.trail if closes_long else o.trail_peak + o.trail
    return False


def _forget(pos: Position, kind: str) -> None:
    if kind == "TakeProfit":
        pos.take_profit = m.ZERO
    elif kind == "TrailingStop":
        pos.trailing_stop = m.ZERO
    else:
        pos.stop_loss = m.ZERO


def _untriggered(engine: Engine, acct: Account, spec: SymbolSpec, side: str, qty: Decimal, trigger: Decimal,
                 direction: int, stop_type: str, create_type: str, by: str, category: str, *,
                 reduce_only: bool, link: str = "") -> Order:
    now = engine.now_ms()
    o = m.Order(engine._order_id(category), link, acct.api_key, category, spec.symbol, side, "Market", qty, None,
              "IOC", reduce_only, reduce_only, "baseCoin" if category == "spot" else "", now, engine._next_seq(),
              engine.price(spec.symbol), status="Untriggered", updated=now, stop_order_type=stop_type,
              create_type=create_type, trigger_price=trigger, trigger_by=by, trigger_direction=direction)
    acct.orders.append(o)
    acct.by_id[o.order_id] = o
    if link:
        acct.link_ids[(category, link)] = o.order_id
    acct.conditionals[o.order_id] = o
    return o


def _reached(o: Order, low: Decimal, high: Decimal) -> bool:
    assert o.trigger_price is not None
    return high >= o.trigger_price if o.trigger_direction == 1 else low <= o.trigger_price


def _execute(engine: Engine, acct: Account, o: Order, price: Decimal) -> int:
    """The triggered order becomes a Market order and fills now at ``price`` (plus market slippage)."""
    if o.stop_order_type in POSITION_STOPS:
        pos = acct.positions.get(o.symbol)
        if pos is None or not pos.size:
            o.status, o.cancel_type = "Deactivated", "CancelByTpSlTsClear"
            return 0
        o.qty = abs(pos.size)  # Full mode: the whole position as it is now
        _forget(pos, o.stop_order_type)
    spec = engine.specs[o.symbol]
    o.status, o.updated = "New", engine.now_ms()
    if o.category == "spot":
        try:  # a StopOrder's assets are checked only now
            m._SpotRules(engine).balance(acct, spec, o.side, "Market", o.qty, None, price, o.market_unit, False, None)
        except m.ApiError:
            o.status, o.cancel_type, o.reject_reason = "Cancelled", "UNKNOWN", "EC_InsufficientBalance"
            return 0
    engine._on_new(acct, o, price)
    return 1 if o.status == "Filled" else 0
