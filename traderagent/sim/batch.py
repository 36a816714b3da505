"""Amend and the batch endpoints (create-batch, amend-batch, cancel-batch) with ByBit's per-item results.

A batch answers retCode 0 with two parallel lists in request order: ``result.list`` (a failed item has
``orderId: ""``) and ``retExtInfo.list`` (``{code, msg}`` per item). The batch bucket is charged per order
on linear and spot; the items past what the rolling second allows fail with 10006, the first ones succeed.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING

from traderagent.sim.matching import Account, ApiError, Order, _dec, on_step

if TYPE_CHECKING:
    from traderagent.sim.server import ExchangeSimulator

MAX_ITEMS = {"linear": 20, "inverse": 20, "option": 20, "spot": 10}  # items per batch request
RATE_LIMITED = (10006, "Too many visits. Exceeded the API Rate Limit.")


@dataclass
class Reply:
    """A batch answer: ``result`` plus the per-item ``retExtInfo.list``."""

    result: dict
    ext: list[dict]


def cost(params: dict) -> int:
    """The units a batch takes from its bucket: one per order (one per request on option)."""
    items = params.get("request")
    if params.get("category") == "option" or not isinstance(items, list):
        return 1
    return max(1, len(items))


def _items(p: dict) -> tuple[str, list[dict]]:
    category = p.get("category")
    if category not in MAX_ITEMS:
        raise ApiError(10001, "Illegal category")
    if category not in ("linear", "spot"):
        raise ApiError(10001, f"params error: category {category} is not supported by the simulator")
    items = p.get("request")
    if not isinstance(items, list) or not items or not all(isinstance(i, dict) for i in items):
        raise ApiError(10001, "params error: request must be a non-empty list of orders")
    if len(items) > MAX_ITEMS[category]:
        raise ApiError(10001, f"params error: at most {MAX_ITEMS[category]} orders per batch on {category}")
    return category, items


def _run(sim: ExchangeSimulator, p: dict, granted: int, one, extra) -> Reply:
    """Apply ``one(item) -> Order`` to each item; per item a result row and a ``{code, msg}``."""
    category, items = _items(p)
    rows, ext = [], []
    for n, item in enumerate(items):
        body = {**item, "category": category}
        try:
            if n >= granted:
                raise ApiError(*RATE_LIMITED)
            o = one(body)
        except ApiError as e:
            rows.append({"category": category, "symbol": str(item.get("symbol", "")), "orderId": "",
                         "orderLinkId": str(item.get("orderLinkId", "")), **extra(None)})
            ext.append({"code": e.code, "msg": e.msg})
            continue
        rows.append({"category": category, "symbol": o.symbol, "orderId": o.order_id, "orderLinkId": o.link_id,
                     **extra(o)})
        ext.append({"code": 0, "msg": "OK"})
    return Reply({"list": rows}, ext)


def _no_extra(o: Order | None) -> dict:
    return {}


def _created_at(o: Order | None) -> dict:
    return {"createAt": str(o.created) if o is not None else ""}


def create_batch(sim: ExchangeSimulator, acct: Account, p: dict, granted: int) -> Reply:
    return _run(sim, p, granted, lambda body: sim.engine.create_order(acct, body), _created_at)


def cancel_batch(sim: ExchangeSimulator, acct: Account, p: dict, granted: int) -> Reply:
    return _run(sim, p, granted, lambda body: sim.engine.cancel(acct, body), _no_extra)


def amend_batch(sim: ExchangeSimulator, acct: Account, p: dict, granted: int) -> Reply:
    return _run(sim, p, granted, lambda body: amend_order(sim, acct, body), _no_extra)


def amend(sim: ExchangeSimulator, acct: Account, p: dict) -> dict:
    o = amend_order(sim, acct, p)
    return {"orderId": o.order_id, "orderLinkId": o.link_id}


def amend_order(sim: ExchangeSimulator, acct: Account, p: dict) -> Order:
    """Change an open order's qty and/or price in place; a new price that crosses the market fills at once."""
    engine = sim.engine
    rules, spec, o = engine.target(acct, p)
    if o is None:
        raise ApiError(110001, "Order does not exist")
    if not o.is_open:
        raise ApiError(110010 if o.status == "Cancelled" else 110008, "The order has been finished or cancelled")
    qty = _new_qty(p.get("qty"), o, spec.qty_step)
    price = o.price
    if p.get("price") not in (None, "") and o.order_type == "Limit":
        price = rules.price(p["price"], spec, o.order_type, o.side, engine.price(spec.symbol))
    engine.reprice(acct, o, qty, price)
    return o


def _new_qty(raw: object, o: Order, step: Decimal) -> Decimal:
    if raw in (None, ""):
        return o.qty
    q = _dec(raw)
    if q is None or q <= 0 or not on_step(q, step):
        raise ApiError(10001, "Qty invalid")
    if q <= o.cum_qty:
        raise ApiError(110064, "The modified contract quantity cannot be less than or equal to the filled quantity")
    return q.quantize(step)
