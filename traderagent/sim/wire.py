"""Endpoint bodies: ByBit V5 result objects (real field names, numbers as strings, newest-first lists).

Each endpoint is ``fn(sim, account_or_None, params) -> result dict`` and raises ApiError on a business error.
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from traderagent.sim import perp, protection
from traderagent.sim.config import PERMISSION_GROUPS
from traderagent.sim.market import INTERVALS, SymbolSpec
from traderagent.sim.matching import MMR, ZERO, Account, ApiError, Order, Position, fmt, fmt_n

if TYPE_CHECKING:
    from traderagent.sim.server import ExchangeSimulator

DAY_MS = 86_400_000
WEEK_MS = 7 * DAY_MS
CATEGORIES = ("spot", "linear", "inverse", "option")


def envelope(code: int, msg: str, result: dict) -> dict:
    return {"retCode": code, "retMsg": msg, "result": result, "retExtInfo": {}, "time": time.time_ns() // 10**6}


def _now() -> int:
    return time.time_ns() // 10**6


def _category(p: dict, allowed: tuple[str, ...] = CATEGORIES) -> str:
    c = p.get("category")
    if c not in CATEGORIES:
        raise ApiError(10001, "Illegal category")
    if c not in allowed:
        raise ApiError(10001, f"params error: category {c} is not supported here")
    return str(c)


def _int(p: dict, name: str, default: int | None, lo: int = 1, hi: int | None = None) -> int | None:
    raw = p.get(name)
    if raw in (None, ""):
        return default
    try:
        v = int(raw)
    except (TypeError, ValueError):
        raise ApiError(10001, f"params error: {name} invalid") from None
    if v < lo:
        raise ApiError(10001, f"params error: {name} invalid")
    return min(v, hi) if hi is not None else v


def _spec(sim: ExchangeSimulator, symbol: object, category: str) -> SymbolSpec:
    spec = sim.specs.get(str(symbol)) if symbol else None
    if spec is None or category not in spec.categories:
        raise ApiError(10001, "Not supported symbols" if category == "linear" else "Invalid symbol.")
    return spec


def _cursor_seq(p: dict) -> int | None:
    """Our cursors read "page_args=<seq>&" once aiohttp has decoded the query."""
    raw = p.get("cursor")
    if not raw:
        return None
    try:
        return int(str(raw).split("page_args=", 1)[1].split("&", 1)[0])
    except (IndexError, ValueError):
        raise ApiError(10001, "params error: cursor invalid") from None


def _page(items: Iterator[Any], limit: int) -> tuple[list[Any], str]:
    """Take ``limit`` items; the cursor (already percent-encoded, as ByBit sends it) points past the last."""
    out: list[Any] = []
    for it in items:
        if len(out) == limit:
            return out, quote(f"page_args={out[-1].seq}&", safe="")
        out.append(it)
    return out, ""


def _newest_first(seq_list: list, cursor: int | None) -> Iterator[Any]:
    """Iterate a seq-ascending list backwards, starting below ``cursor`` (O(log n) to find the start)."""
    end = len(seq_list) if cursor is None else bisect.bisect_left(seq_list, cursor, key=lambda x: x.seq)
    for i in range(end - 1, -1, -1):
        yield seq_list[i]


# --- public --------------------------------------------------------------------------------------------
def market_time(sim: ExchangeSimulator, acct: None, p: dict) -> dict:
    ns = time.time_ns()
    return {"timeSecond": str(ns // 10**9), "timeNano": str(ns)}


def _pct(last: Decimal, prev: Decimal) -> str:
    return fmt(((last - prev) / prev).quantize(Decimal("0.000001"))) if prev else "0"


def tickers(sim: ExchangeSimulator, acct: None, p: dict) -> dict:
    category = _category(p)
    if category in ("inverse", "option"):
        return {"category": category, "list": []}
    specs = [_spec(sim, p["symbol"], category)] if p.get("symbol") else \
        [s for s in sim.specs.values() if category in s.categories]
    return {"category": category, "list": [_ticker(sim, s, category) for s in specs]}


def _ticker(sim: ExchangeSimulator, spec: SymbolSpec, category: str) -> dict:
    series = sim.series[spec.symbol]
    st = series.stats()
    last = series.price
    tick = spec.tick_size
    size = fmt(spec.min_qty * 100)
    if category == "spot":
        return {"symbol": spec.symbol, "bid1Price": fmt(last), "bid1Size": size, "ask1Price": fmt(last + tick),
                "ask1Size": size, "lastPrice": fmt(last), "prevPrice24h": fmt(st["prev24h"]),
                "price24hPcnt": _pct(last, st["prev24h"]), "highPrice24h": fmt(st["high"]),
                "lowPrice24h": fmt(st["low"]), "turnover24h": fmt(st["turnover"]), "volume24h": fmt(st["volume"]),
                "usdIndexPrice": fmt(last)}
    return {"symbol": spec.symbol, "lastPrice": fmt(last), "indexPrice": fmt(last), "markPrice": fmt(last),
            "prevPrice24h": fmt(st["prev24h"]), "price24hPcnt": _pct(last, st["prev24h"]),
            "highPrice24h": fmt(st["high"]), "lowPrice24h": fmt(st["low"]), "prevPrice1h": fmt(st["prev1h"]),
            "openInterest": fmt(spec.max_qty * 10), "openInterestValue": fmt_n(spec.max_qty * 10 * last, 2),
            "turnover24h": fmt(st["turnover"]), "volume24h": fmt(st["volume"]), "fundingRate": fmt_n(sim.config.funding_rate),
            "nextFundingTime": str(sim.next_funding[spec.symbol]), "predictedDeliveryPrice": "", "basisRate": "",
            "deliveryFeeRate": "", "deliveryTime": "0", "ask1Size": size, "bid1Price": fmt(last),
            "ask1Price": fmt(last + tick), "bid1Size": size, "basis": "", "preOpenPrice": "", "preQty": "",
            "curPreListingPhase": "", "fundingIntervalHour": "8", "basisRateYear": "", "fundingCap": "0.005"}


def orderbook(sim: ExchangeSimulator, acct: None, p: dict) -> dict:
    category = _category(p, ("spot", "linear"))
    spec = _spec(sim, p.get("symbol"), category)
    depth = _int(p, "limit", 25 if category == "linear" else 1, hi=500) or 1
    last, tick, size = sim.price(spec.symbol), spec.tick_size, fmt(spec.min_qty * 100)
    bids = [[fmt(last - tick * i), size] for i in range(depth)]
    asks = [[fmt(last + tick * (i + 1)), size] for i in range(depth)]
    ts = _now()
    return {"s": spec.symbol, "b": bids, "a": asks, "ts": ts, "u": ts // 10, "seq": ts, "cts": ts}


def _linear_row(spec: SymbolSpec) -> dict:
    tick = spec.tick_size
    return {
        "symbol": spec.symbol, "symbolId": spec.symbol_id, "contractType": "LinearPerpetual", "status": "Trading",
        "baseCoin": spec.base_coin, "quoteCoin": spec.quote_coin, "launchTime": "1585526400000",
        "deliveryTime": "0", "deliveryFeeRate": "", "priceScale": str(spec.price_decimals),
        "leverageFilter": {"minLeverage": "1", "maxLeverage": f"{spec.max_leverage:.2f}", "leverageStep": "0.01"},
        "priceFilter": {"minPrice": fmt(tick), "maxPrice": fmt(tick * 19_999_998), "tickSize": fmt(tick)},
        "lotSizeFilter": {"maxOrderQty": fmt(spec.max_qty), "minOrderQty": fmt(spec.min_qty),
                          "qtyStep": fmt(spec.qty_step), "postOnlyMaxOrderQty": fmt(spec.max_qty),
                          "maxMktOrderQty": fmt(spec.max_mkt_qty), "minNotionalValue": fmt(spec.min_notional)},
        "unifiedMarginTrade": True, "fundingInterval": 480, "settleCoin": spec.quote_coin, "copyTrading": "both",
        "upperFundingRate": "0.00375", "lowerFundingRate": "-0.00375", "isPreListing": False,
        "preListingInfo": None, "riskParameters": {"priceLimitRatioX": "0.01", "priceLimitRatioY": "0.02"},
        "symbolType": "", "displayName": "",
    }


def _extra_linear_rows(sim: ExchangeSimulator) -> list[dict]:
    """Rows a client must skip: dated futures, a USDC perp and a contract that is not Trading."""
    base = next((s for s in sim.specs.values() if "linear" in s.categories), None)
    if base is None:
        return []
    dec25 = str(int(datetime(2025, 12, 26, 8, tzinfo=UTC).timestamp() * 1000))
    sep25 = str(int(datetime(2025, 9, 26, 8, tzinfo=UTC).timestamp() * 1000))
    rows = []
    for sym, ctype, status, settle, delivery, sid in (
        (f"{base.symbol}-26DEC25", "LinearFutures", "Trading", "USDT", dec25, 901),
        (f"{base.base_coin}PERP", "LinearPerpetual", "Trading", "USDC", "0", 902),
        (f"{base.symbol}-26SEP25", "LinearFutures", "Delivering", "USDT", sep25, 903),
    ):
        row = _linear_row(base)
        row.update(symbol=sym, symbolId=sid, contractType=ctype, status=status, settleCoin=settle,
                   quoteCoin=settle, deliveryTime=delivery, deliveryFeeRate="0.0005" if delivery != "0" else "")
        rows.append(row)
    return rows


def _spot_row(spec: SymbolSpec) -> dict:
    return {
        "symbolId": spec.symbol_id, "symbol": spec.symbol, "baseCoin": spec.base_coin,
        "quoteCoin": spec.quote_coin, "innovation": "0", "status": "Trading", "marginTrading": "utaOnly",
        "stTag": "0",
        "lotSizeFilter": {"basePrecision": fmt(spec.base_precision), "quotePrecision": fmt(spec.quote_precision),
                          "minOrderQty": fmt(spec.base_precision), "maxOrderQty": fmt(spec.spot_max_limit_qty or ZERO),
                          "minOrderAmt": fmt(spec.spot_min_amt), "maxOrderAmt": fmt(spec.spot_max_amt),
                          "maxLimitOrderQty": fmt(spec.spot_max_limit_qty or ZERO),
                          "maxMarketOrderQty": fmt(spec.spot_max_mkt_qty or ZERO),
                          "postOnlyMaxLimitOrderSize": "60000"},
        "priceFilter": {"tickSize": fmt(spec.tick_size)},
        "riskParameters": {"priceLimitRatioX": "0.005", "priceLimitRatioY": "0.01"}, "symbolType": "",
    }


def instruments(sim: ExchangeSimulator, acct: None, p: dict) -> dict:
    category = _category(p)
    status = p.get("status")
    symbol = p.get("symbol")
    if category in ("inverse", "option") or status == "PreLaunch":
        return {"category": category, "list": [], "nextPageCursor": ""}
    if category == "spot":  # spot does not paginate (and has no nextPageCursor key)
        rows = [_spot_row(s) for s in sim.specs.values() if "spot" in s.categories]
        rows = [r for r in rows if (not symbol or r["symbol"] == symbol) and (not status or r["status"] == status)]
        return {"category": "spot", "list": rows}
    rows = [_linear_row(s) for s in sim.specs.values() if "linear" in s.categories] + _extra_linear_rows(sim)
    rows = [r for r in rows if (not symbol or r["symbol"] == symbol) and (not status or r["status"] == status)
            and (not p.get("baseCoin") or r["baseCoin"] == p["baseCoin"])]
    limit = _int(p, "limit", 500, hi=1000) or 500
    offset = 0
    if p.get("cursor"):
        try:
            offset = int(str(p["cursor"]).split("offset=", 1)[1].split("&", 1)[0])
        except (IndexError, ValueError):
            raise ApiError(10001, "params error: cursor invalid") from None
    page = rows[offset:offset + limit]
    nxt = quote(f"offset={offset + limit}&", safe="") if offset + limit < len(rows) else ""
    return {"category": "linear", "list": page, "nextPageCursor": nxt}


def kline(sim: ExchangeSimulator, acct: None, p: dict) -> dict:
    category = p.get("category") or "linear"
    if category not in ("linear", "spot", "inverse"):
        raise ApiError(10001, "Illegal category")
    spec = _spec(sim, p.get("symbol"), "linear" if category == "inverse" else category)
    interval = p.get("interval")
    if interval not in INTERVALS:
        raise ApiError(10001, "Invalid period!")
    limit = _int(p, "limit", 200, hi=1000) or 200
    start, end = _int(p, "start", None, lo=0), _int(p, "end", None, lo=0)
    rows = sim.series[spec.symbol].klines(INTERVALS[str(interval)], start, end, limit)
    return {"category": category, "symbol": spec.symbol, "list": rows}


# --- account -----------------------------------------------------------------------------------------
def _usd(sim: ExchangeSimulator, coin: str) -> Decimal:
    if coin in ("USDT", "USDC"):
        return Decimal(1)
    spec = sim.specs.get(f"{coin}USDT")
    return sim.price(spec.symbol) if spec else ZERO


def wallet_balance(sim: ExchangeSimulator, acct: Account, p: dict) -> dict:
    if p.get("accountType") != "UNIFIED":
        raise ApiError(10001, "accountType only support UNIFIED.")
    e = sim.engine
    named = [c for c in str(p.get("coin") or "").split(",") if c]
    coins = named or [c for c, v in acct.wallet.items() if v]
    order_im, pos_im = e.order_im(acct), e.position_im(acct)
    upl = sum((e.upl(pos) for pos in acct.positions.values()), ZERO)
    pos_mm = sum((abs(pos.size) * pos.avg_price * MMR for pos in acct.positions.values()), ZERO)
    rows, t_wallet, t_equity, t_avail = [], ZERO, ZERO, ZERO
    for c in coins:
        wallet, locked = acct.wallet.get(c, ZERO), e.locked(acct, c)
        is_margin = c == "USDT"
        c_upl = upl if is_margin else ZERO
        equity = wallet + c_upl
        px = _usd(sim, c)
        t_wallet += wallet * px
        t_equity += equity * px
        t_avail += (equity - locked - (order_im + pos_im if is_margin else ZERO)) * px
        rows.append({
            "coin": c, "equity": fmt_n(equity), "usdValue": fmt_n(equity * px, 8), "walletBalance": fmt_n(wallet),
            "locked": fmt_n(locked), "spotHedgingQty": "0", "borrowAmount": "0", "accruedInterest": "0",
            "totalOrderIM": fmt_n(order_im if is_margin else ZERO),
            "totalPositionIM": fmt_n(pos_im if is_margin else ZERO),
            "totalPositionMM": fmt_n(pos_mm if is_margin else ZERO),
            "unrealisedPnl": fmt_n(c_upl), "cumRealisedPnl": fmt_n(acct.cum_realised.get(c, ZERO)), "bonus": "0",
            "marginCollateral": True, "collateralSwitch": True, "spotBorrow": "0",
            "availableToWithdraw": "", "availableToBorrow": "",
        })
    total_im = order_im + pos_im
    imr = fmt_n(total_im / t_equity, 4) if t_equity > 0 else "0"
    mmr = fmt_n(pos_mm / t_equity, 4) if t_equity > 0 else "0"
    account = {
        "accountType": "UNIFIED", "accountIMRate": imr, "accountIMRateByMp": imr, "accountMMRate": mmr,
        "accountMMRateByMp": mmr, "accountLTV": "0", "totalEquity": fmt_n(t_equity, 8),
        "totalWalletBalance": fmt_n(t_wallet, 8), "totalMarginBalance": fmt_n(t_equity, 8),
        "totalAvailableBalance": fmt_n(t_avail, 8), "totalPerpUPL": fmt_n(upl, 8),
        "totalInitialMargin": fmt_n(total_im, 8), "totalInitialMarginByMp": fmt_n(total_im, 8),
        "totalMaintenanceMargin": fmt_n(pos_mm, 8), "totalMaintenanceMarginByMp": fmt_n(pos_mm, 8),
        "coin": rows,
    }
    return {"list": [account]}


def account_info(sim: ExchangeSimulator, acct: Account, p: dict) -> dict:
    return {"marginMode": "REGULAR_MARGIN", "updatedTime": "1697078946000", "unifiedMarginStatus": 6,
            "dcpStatus": "OFF", "timeWindow": 10, "smpGroup": 0, "isMasterTrader": False,
            "spotHedgingStatus": "OFF"}


def query_api(sim: ExchangeSimulator, acct: Account, p: dict) -> dict:
    key = sim.key(acct.api_key)
    permissions = {group: list(key.permissions.get(group, ())) for group in PERMISSION_GROUPS}
    return {"id": str(acct.uid), "note": "simulator", "apiKey": acct.api_key, "readOnly": int(key.read_only),
            "secret": "", "permissions": permissions, "ips": list(key.ips), "type": 1, "deadlineDay": -1,
            "expiredAt": "", "createdAt": "2024-01-01T00:00:00Z",
            "unified": 0, "uta": 1, "userID": acct.uid, "inviterID": 0, "vipLevel": "No VIP",
            "mktMakerLevel": "0", "affiliateID": 0, "rsaPublicKey": "", "isMaster": True, "parentUid": "0",
            "kycLevel": "LEVEL_DEFAULT", "kycRegion": ""}


def fee_rate(sim: ExchangeSimulator, acct: Account, p: dict) -> dict:
    category = _category(p, ("spot", "linear"))
    specs = [_spec(sim, p["symbol"], category)] if p.get("symbol") else \
        [s for s in sim.specs.values() if category in s.categories]
    taker, maker = fmt(sim.config.taker_fee), fmt(sim.config.maker_fee)
    return {"category": category,
            "list": [{"symbol": s.symbol, "baseCoin": "", "takerFeeRate": taker, "makerFeeRate": maker}
                     for s in specs]}


def coin_info(sim: ExchangeSimulator, acct: Account, p: dict) -> dict:
    coins = {"USDT"} | {s.base_coin for s in sim.specs.values()}
    if p.get("coin"):
        coins &= {str(p["coin"])}
    rows = []
    for c in sorted(coins):
        chain = {"chainType": c, "confirmation": "10", "withdrawFee": "0", "depositMin": "0", "withdrawMin": "0",
                 "chain": c, "chainDeposit": "1", "chainWithdraw": "1", "minAccuracy": "8",
                 "withdrawPercentageFee": "0", "contractAddress": "", "safeConfirmNumber": "10"}
        rows.append({"name": c, "coin": c, "remainAmount": "10000000", "chains": [chain]})
    return {"rows": rows}


# --- orders ------------------------------------------------------------------------------------------
def create(sim: ExchangeSimulator, acct: Account, p: dict) -> dict:
    if protection.is_conditional(p):
        return protection.create_conditional(sim, acct, p)
    o = sim.engine.create_order(acct, p)
    return {"orderId": o.order_id, "orderLinkId": o.link_id}


def cancel(sim: ExchangeSimulator, acct: Account, p: dict) -> dict:
    o = sim.engine.cancel(acct, p)
    return {"orderId": o.order_id, "orderLinkId": o.link_id}


def cancel_all(sim: ExchangeSimulator, acct: Account, p: dict) -> dict:
    done = sim.engine.cancel_all(acct, p)
    return {"list": [{"orderId": o.order_id, "orderLinkId": o.link_id} for o in done], "success": "1"}


def _order_filter(sim: ExchangeSimulator, p: dict, category: str):
    symbol, base, settle = p.get("symbol"), p.get("baseCoin"), p.get("settleCoin")

    def keep(o: Order) -> bool:
        if o.category != category or (symbol and o.symbol != symbol):
            return False
        spec = sim.specs[o.symbol]
        return not ((base and spec.base_coin != base) or (settle and spec.quote_coin != settle)) \
            and protection.keep(o, p)
    return keep


def _by_id(sim: ExchangeSimulator, acct: Account, p: dict, category: str) -> list[Order] | None:
    if not (p.get("orderId") or p.get("orderLinkId")):
        return None
    o = sim.engine.find(acct, category, p.get("orderId"), p.get("orderLinkId"))
    return [o] if o is not None and (not p.get("symbol") or o.symbol == p["symbol"]) else []


def _orders_result(sim: ExchangeSimulator, orders: list[Order], cursor: str, category: str) -> dict:
    return {"category": category, "list": [o.to_wire(sim.specs[o.symbol]) for o in orders],
            "nextPageCursor": cursor}


def realtime(sim: ExchangeSimulator, acct: Account, p: dict) -> dict:
    category = _category(p)
    if category in ("inverse", "option"):
        return {"category": category, "list": [], "nextPageCursor": ""}
    if category == "linear" and not (p.get("symbol") or p.get("baseCoin") or p.get("settleCoin")
                                     or p.get("orderId") or p.get("orderLinkId")):
        raise ApiError(10001, "params error: symbol, baseCoin or settleCoin is required")
    found = _by_id(sim, acct, p, category)
    if found is not None:
        return _orders_result(sim, found, "", category)
    limit = _int(p, "limit", 20, hi=50) or 20
    keep = _order_filter(sim, p, category)
    closed = str(p.get("openOnly", "0")) == "1"
    items = (o for o in _newest_first(acct.orders, _cursor_seq(p)) if keep(o) and protection.is_live(o) != closed)
    page, cursor = _page(items, limit)
    return _orders_result(sim, page, cursor, category)


def _window(p: dict) -> tuple[int, int]:
    start, end = _int(p, "startTime", None, lo=0), _int(p, "endTime", None, lo=0)
    if start is None and end is None:
        end = _now() + 60_000
        start = end - WEEK_MS
    elif start is None:
        start = end - WEEK_MS  # type: ignore[operator]
    elif end is None:
        end = start + WEEK_MS
    if end - start > WEEK_MS:  # type: ignore[operator]
        raise ApiError(10001, "params error: the time range cannot exceed 7 days")
    return start, end  # type: ignore[return-value]


def history(sim: ExchangeSimulator, acct: Account, p: dict) -> dict:
    category = _category(p)
    if category in ("inverse", "option"):
        return {"category": category, "list": [], "nextPageCursor": ""}
    found = _by_id(sim, acct, p, category)
    if found is not None:
        return _orders_result(sim, found, "", category)
    start, end = _window(p)
    limit = _int(p, "limit", 20, hi=50) or 20
    keep = _order_filter(sim, p, category)
    status = p.get("orderStatus")
    items = (o for o in _newest_first(acct.orders, _cursor_seq(p))
             if keep(o) and start <= o.created <= end and (not status or o.status == status))
    page, cursor = _page(items, limit)
    return _orders_result(sim, page, cursor, category)


def executions(sim: ExchangeSimulator, acct: Account, p: dict) -> dict:
    category = _category(p)
    if category in ("inverse", "option"):
        return {"category": category, "list": [], "nextPageCursor": ""}
    start, end = _window(p)
    limit = _int(p, "limit", 50, hi=100) or 50
    symbol, oid, link = p.get("symbol"), p.get("orderId"), p.get("orderLinkId")
    exec_type = p.get("execType")
    items = (x for x in _newest_first(acct.executions, _cursor_seq(p))
             if x.category == category and (not symbol or x.symbol == symbol)
             and (not oid or x.order_id == oid) and (not link or x.link_id == link)
             and (not exec_type or _exec_type(x) == exec_type) and start <= x.time <= end)
    page, cursor = _page(items, limit)
    return {"category": category, "list": [x.to_wire() for x in page], "nextPageCursor": cursor}


def transaction_log(sim: ExchangeSimulator, acct: Account, p: dict) -> dict:
    """``GET /v5/account/transaction-log`` (UTA): the linear fills, liquidations and funding settlements,
    newest first. A window of 24 h by default (from ``startTime``, or up to ``endTime``), at most 7 days."""
    if p.get("accountType") not in (None, "", "UNIFIED"):
        raise ApiError(10001, "params error: accountType only support UNIFIED")
    category = p.get("category")
    if category not in (None, "", "linear"):
        return {"list": [], "nextPageCursor": ""}  # spot and the rest: not modelled
    start, end = _int(p, "startTime", None, lo=0), _int(p, "endTime", None, lo=0)
    if start is None:
        end = _now() if end is None else end
        start = end - DAY_MS
    elif end is None:
        end = start + DAY_MS
    if end - start > WEEK_MS:
        raise ApiError(10001, "params error: the time range cannot exceed 7 days")
    if end < start:
        raise ApiError(10001, "params error: endTime must be after startTime")
    limit = _int(p, "limit", 20, hi=50) or 20
    kind, currency, base = p.get("type"), p.get("currency"), p.get("baseCoin")
    items = (x for x in _newest_first(acct.executions, _cursor_seq(p))
             if x.category == "linear" and start <= x.time <= end and (not kind or perp.log_type(x) == kind)
             and (not currency or sim.specs[x.symbol].quote_coin == currency)
             and (not base or sim.specs[x.symbol].base_coin == base))
    page, cursor = _page(items, limit)
    return {"list": [perp.log_row(sim.engine, x) for x in page], "nextPageCursor": cursor}


def _exec_type(x: Any) -> str:
    return "Funding" if isinstance(x, perp.Funding) else x.exec_type


# --- positions ---------------------------------------------------------------------------------------
def position(sim: ExchangeSimulator, acct: Account, pos: Position) -> dict:
    """A /v5/position/list row (positionIdx 0 in one-way mode, 1 or 2 in hedge mode)."""
    spec = sim.specs[pos.symbol]
    e = sim.engine
    lev = e.leverage(acct, pos.symbol)
    size = abs(pos.size)
    value = size * pos.avg_price
    mark = sim.price(pos.symbol)
    side = "Buy" if pos.size > 0 else "Sell" if pos.size < 0 else ""
    tick = spec.tick_size
    liq = be = ""
    if size:
        taker = sim.config.taker_fee
        liq_px = perp.liq_price(e, acct, pos)
        if pos.size > 0:
            be_px = pos.avg_price * (1 + taker) / (1 - taker)
        else:
            be_px = pos.avg_price * (1 - taker) / (1 + taker)
        liq = fmt(max(tick, ((liq_px / tick).to_integral_value() * tick).quantize(tick)))  # on the tick
        be = fmt(be_px.quantize(tick))
    return {
        "positionIdx": pos.idx, "riskId": 1, "riskLimitValue": "2000000", "symbol": pos.symbol, "side": side,
        "size": fmt(size.quantize(spec.qty_step)), "avgPrice": fmt_n(pos.avg_price), "positionValue": fmt_n(value),
        "tradeMode": 0, "positionStatus": "Normal", "autoAddMargin": 0, "adlRankIndicator": 2 if size else 0,
        "leverage": fmt_n(lev), "breakEvenPrice": be, "positionBalance": fmt_n(value / lev) if size else "0",
        "markPrice": fmt(mark), "liqPrice": liq, "bustPrice": "", "positionMM": fmt_n(value * MMR),
        "positionMMByMp": fmt_n(value * MMR), "positionIM": fmt_n(value / lev), "positionIMByMp": fmt_n(value / lev),
        "tpslMode": "Full", "takeProfit": fmt(pos.take_profit) if pos.take_profit else "0.00",
        "stopLoss": fmt(pos.stop_loss) if pos.stop_loss else "0.00", "trailingStop": fmt(pos.trailing_stop) if pos.trailing_stop else "0.00", "sessionAvgPrice": "",
        "unrealisedPnl": fmt_n(e.upl(pos)), "curRealisedPnl": fmt_n(pos.cur_realised),
        "cumRealisedPnl": fmt_n(pos.cum_realised), "seq": pos.seq, "isReduceOnly": False,
        "mmrSysUpdatedTime": "", "leverageSysUpdatedTime": "",
        "createdTime": str(pos.created or _now()), "updatedTime": str(pos.updated or _now()),
        "openTime": pos.open_time if size else 0,
    }


def position_list(sim: ExchangeSimulator, acct: Account, p: dict) -> dict:
    category = _category(p, ("linear", "inverse", "option"))
    if category != "linear":
        return {"category": category, "list": [], "nextPageCursor": ""}
    symbol, settle = p.get("symbol"), p.get("settleCoin")
    if symbol:
        spec = _spec(sim, symbol, "linear")
        rows = [position(sim, acct, pos) for pos in perp.position_rows(acct, spec.symbol)]
    elif settle:
        rows = [position(sim, acct, pos) for pos in sorted(acct.positions.values(), key=lambda x: -x.updated)
                if pos.size and sim.specs[pos.symbol].quote_coin == settle]
    else:
        raise ApiError(10001, "params error: symbol or settleCoin is required")
    limit = _int(p, "limit", 20, hi=200) or 20
    return {"category": "linear", "list": rows[:limit], "nextPageCursor": ""}


def set_leverage(sim: ExchangeSimulator, acct: Account, p: dict) -> dict:
    sim.engine.set_leverage(acct, p)
    return {}


def switch_mode(sim: ExchangeSimulator, acct: Account, p: dict) -> dict:
    perp.switch_mode(sim.engine, acct, p)
    return {}
