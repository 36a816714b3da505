"""Perpetual-futures mechanics of the simulated exchange: position mode, funding and liquidation.

- **Position mode** (``/v5/position/switch-mode``): per symbol, 0 = one-way (the default), 3 = hedge. In
  hedge mode every linear order must name its side's position (positionIdx 1 = long, 2 = short); an order
  against that side reduces it, as ByBit's hedge mode does. A mismatch answers ByBit's 10001.
- **Funding**: at every funding time (every 8 h of the replay's candle clock) each open position pays
  value-at-mark x rate when the rate is positive and it is long (receives when short), booked in the
  wallet and listed by ``/v5/execution/list`` as an ``execType=Funding`` row (``execFee`` > 0 = paid).
- **Liquidation**: a position whose price range reaches its liquidation price (the isolated-style
  estimate ``/v5/position/list`` shows as ``liqPrice``) has the account's active orders on the symbol
  cancelled (``CancelAllBeforeLiq``) and is taken over at its bankruptcy price: its whole
  margin is lost, and the fill is an ``execType=BustTrade`` row of a ``CreateByLiq`` market order, pushed on
  the order and execution streams; what is left of the position's TP/SL is cancelled.
- **Auto-deleveraging** (``auto_deleverage``, a test hook: the simulator has no counterparties to go bankrupt):
  part or all of a position closed at the current price, an ``execType=AdlTrade`` row; its orders stay.
- **Transaction log** (``/v5/account/transaction-log``, UTA): the linear fills (``TRADE``), liquidations
  (``LIQUIDATION``) and funding settlements (``SETTLEMENT``, ``funding`` > 0 received) with ByBit's
  ``change = cashFlow + funding - fee`` and the wallet after each; spot rows and transfers are not modelled.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING

from traderagent.sim import matching as m
from traderagent.sim import protection

if TYPE_CHECKING:
    from traderagent.sim.matching import Account, Engine, Execution, Position

ONE_WAY, HEDGE = 0, 3
FUNDING_INTERVAL_MS = 8 * 3_600_000
IDX_MISMATCH = "position idx not match position mode"


# ------------------------------------------------------------------ position mode
def position_idx(acct: Account, symbol: str, raw: object, side: str) -> tuple[int, bool]:
    """The order's positionIdx under the symbol's mode, and whether it closes its hedge side."""
    try:
        idx = int(raw) if raw not in (None, "") else 0  # type: ignore[call-overload]
    except (TypeError, ValueError):
        raise m.ApiError(10001, IDX_MISMATCH) from None
    if acct.modes.get(symbol, ONE_WAY) == ONE_WAY:
        if idx != 0:
            raise m.ApiError(10001, IDX_MISMATCH)
        return 0, False
    if idx not in (1, 2):
        raise m.ApiError(10001, IDX_MISMATCH)
    return idx, (idx == 1) != (side == "Buy")


def switch_mode(engine: Engine, acct: Account, p: dict) -> None:
    """POST /v5/position/switch-mode: by symbol, or every symbol of a settle ``coin``."""
    if p.get("category") != "linear":
        raise m.ApiError(10001, "params error: only USDT perpetuals support hedge mode")
    try:
        mode = int(p.get("mode"))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        mode = -1
    if mode not in (ONE_WAY, HEDGE):
        raise m.ApiError(10001, "params error: mode invalid")
    if p.get("symbol"):
        symbols = [m._LinearRules(engine).symbol(p["symbol"]).symbol]
    elif p.get("coin"):
        symbols = [s for s, spec in engine.specs.items() if "linear" in spec.categories
                   and spec.quote_coin == p["coin"]]
    else:
        raise m.ApiError(10001, "params error: symbol or coin is required")
    changing = [s for s in symbols if acct.modes.get(s, ONE_WAY) != mode]
    if not changing:
        raise m.ApiError(110025, "Position mode has not been modified")
    if any(pos.size for pos in acct.positions.values() if pos.symbol in changing):
        raise m.ApiError(110024, "You have existing positions, so position mode cannot be switched")
    if any(o.symbol in changing and o.category == "linear" for o in acct.open_orders.values()):
        raise m.ApiError(110028, "You have existing open orders, so position mode cannot be switched")
    for s in changing:
        acct.modes[s] = mode
        for key in [k for k, pos in acct.positions.items() if pos.symbol == s]:
            del acct.positions[key]  # flat rows of the other mode


def position_rows(acct: Account, symbol: str) -> list[Position]:
    """What /v5/position/list?symbol= lists: one row in one-way mode, the long and short rows in hedge."""
    if acct.modes.get(symbol, ONE_WAY) == ONE_WAY:
        return [acct.positions.get(symbol) or m.Position(symbol)]
    return [acct.positions.get(m.pos_key(symbol, i)) or m.Position(symbol, idx=i) for i in (1, 2)]


# ------------------------------------------------------------------ risk prices
def liq_price(engine: Engine, acct: Account, pos: Position) -> Decimal:
    """Where the position's margin, less the maintenance margin, is used up."""
    lev = engine.leverage(acct, pos.symbol)
    if pos.size > 0:
        return pos.avg_price * (1 - 1 / lev + m.MMR)
    return pos.avg_price * (1 + 1 / lev - m.MMR)


def bust_price(engine: Engine, acct: Account, pos: Position) -> Decimal:
    """Where the whole initial margin is lost."""
    lev = engine.leverage(acct, pos.symbol)
    return pos.avg_price * (1 - 1 / lev) if pos.size > 0 else pos.avg_price * (1 + 1 / lev)


# ------------------------------------------------------------------ liquidation
def liquidate_crossed(engine: Engine, symbol: str, low: Decimal, high: Decimal) -> int:
    """Take over every position of ``symbol`` whose liquidation price the range [low, high] reached."""
    n = 0
    for acct in engine.accounts.values():
        for pos in [p for p in acct.positions.values() if p.symbol == symbol and p.size]:
            liq = liq_price(engine, acct, pos)
            if (pos.size > 0 and low <= liq) or (pos.size < 0 and high >= liq):
                _take_over(engine, acct, pos)
                n += 1
    return n


def _take_over(engine: Engine, acct: Account, pos: Position) -> None:
    for o in [o for o in acct.open_orders.values() if o.symbol == pos.symbol and o.category == "linear"]:
        engine._close(acct, o, "Cancelled", cancel_type="CancelAllBeforeLiq")  # ByBit's first step
    tick = engine.specs[pos.symbol].tick_size
    bust = (bust_price(engine, acct, pos) / tick).to_integral_value() * tick
    _exchange_close(engine, acct, pos, abs(pos.size), bust, "BustTrade", "CreateByLiq")


def auto_deleverage(engine: Engine, acct: Account, symbol: str, qty: Decimal) -> Execution:
    """Auto-deleverage ``qty`` of the account's one-way ``symbol`` position at the current price (a bankrupt
    counterparty's position closed against it): an ``execType=AdlTrade`` fill of a ``CreateByAdl_PassThrough``
    market order, pushed on the streams; the rest of the position and its orders stay."""
    pos = acct.positions[symbol]
    if not 0 < qty <= abs(pos.size):
        raise ValueError(f"cannot auto-deleverage {qty} of a {pos.size} position")
    return _exchange_close(engine, acct, pos, qty, engine.price(symbol), "AdlTrade", "CreateByAdl_PassThrough")


def _exchange_close(engine: Engine, acct: Account, pos: Position, qty: Decimal, price: Decimal, exec_type: str,
                    create_type: str) -> Execution:
    """The exchange closes ``qty`` of the position at ``price`` itself (no fee): the order and its fill."""
    spec = engine.specs[pos.symbol]
    now = engine.now_ms()
    side = "Sell" if pos.size > 0 else "Buy"
    o = m.Order(engine._uuid(), "", acct.api_key, "linear", pos.symbol, side, "Market", qty, price, "IOC", True,
                True, "", now, engine._next_seq(), engine.price(pos.symbol), updated=now, position_idx=pos.idx,
                create_type=create_type)
    acct.orders.append(o)
    acct.by_id[o.order_id] = o
    before = acct.wallet.get(spec.quote_coin, m.ZERO)
    closed = engine._apply_linear(acct, o, price, qty, m.ZERO)  # a takeover's loss is the margin; no fee on top
    o.cum_qty, o.cum_value, o.fee_coin, o.status = qty, price * qty, spec.quote_coin, "Filled"
    execution = m.Execution(engine._uuid(), o, price, qty, m.ZERO, m.ZERO, spec.quote_coin, False, now,
                            engine._next_seq(), engine.price(pos.symbol), closed, m.ZERO, exec_type=exec_type)
    stamp(acct, execution, before)
    acct.executions.append(execution)
    protection.position_changed(engine, acct, pos.symbol)  # flat: what is left of its TP/SL goes
    engine.on_change(acct, o, execution)  # pushed on the order and execution streams like any fill
    return execution


def stamp(acct: Account, execution: Execution, balance_before: Decimal) -> None:
    """Note on a linear fill what the transaction log shows of it: the PnL it settled (fee excluded),
    the position and the wallet after it."""
    coin = execution.fee_coin
    pos = acct.positions.get(m.pos_key(execution.symbol, execution.order.position_idx))
    execution.balance_after = acct.wallet.get(coin, m.ZERO)
    execution.cash_flow = execution.balance_after - balance_before + execution.fee
    execution.size_after = pos.size if pos is not None else m.ZERO


# ------------------------------------------------------------------ funding
@dataclass
class Funding:
    """One settlement of one position: an ``execType=Funding`` row (``fee`` > 0 = paid)."""

    exec_id: str
    symbol: str
    side: str  # the position's side
    size: Decimal
    mark: Decimal
    rate: Decimal
    fee: Decimal
    time: int
    seq: int
    category: str = "linear"
    order_id: str = ""
    link_id: str = ""
    balance_after: Decimal | None = None  # the wallet after it (the transaction log's cashBalance)

    def to_wire(self) -> dict:
        value = self.size * self.mark
        return {
            "symbol": self.symbol, "orderId": "", "orderLinkId": "", "side": self.side, "orderPrice": "0",
            "orderQty": "0", "leavesQty": "0", "createType": "", "orderType": "UNKNOWN",
            "stopOrderType": "UNKNOWN", "execFee": m.fmt_n(self.fee), "execFeeV2": "", "execId": self.exec_id,
            "execPrice": m.fmt(self.mark), "execQty": m.fmt(self.size), "execType": "Funding",
            "execValue": m.fmt_n(value), "execTime": str(self.time), "feeCurrency": "", "isMaker": False,
            "feeRate": m.fmt_n(self.rate), "tradeIv": "", "markIv": "", "markPrice": m.fmt(self.mark),
            "indexPrice": "", "underlyingPrice": "", "blockTradeId": "", "closedSize": "0", "seq": self.seq,
            "extraFees": "",
        }


def charge_funding(engine: Engine, symbol: str, rate: Decimal) -> int:
    """Settle funding of every open ``symbol`` position at the current mark; returns the rows booked. The
    rows are stamped with the exchange's (wall) clock, as its trades are, whatever the replay's clock."""
    mark, now = engine.price(symbol), engine.now_ms()
    coin = engine.specs[symbol].quote_coin
    n = 0
    for acct in engine.accounts.values():
        for pos in [p for p in acct.positions.values() if p.symbol == symbol and p.size]:
            fee = abs(pos.size) * mark * rate * (1 if pos.size > 0 else -1)
            acct.wallet[coin] = acct.wallet.get(coin, m.ZERO) - fee
            acct.cum_realised[coin] = acct.cum_realised.get(coin, m.ZERO) - fee
            pos.cum_realised -= fee
            pos.cur_realised -= fee
            pos.updated, pos.seq = now, engine._next_seq()
            acct.executions.append(Funding(engine._uuid(), symbol, "Buy" if pos.size > 0 else "Sell",
                                           abs(pos.size), mark, rate, fee, now, engine._next_seq(),
                                           balance_after=acct.wallet[coin]))
            n += 1
    return n


def next_funding_ms(t_ms: int) -> int:
    """The first funding time after ``t_ms`` (00:00, 08:00, 16:00 UTC)."""
    return (t_ms // FUNDING_INTERVAL_MS + 1) * FUNDING_INTERVAL_MS


# ------------------------------------------------------------------ transaction log
LOG_TYPES = {"Trade": "TRADE", "BustTrade": "LIQUIDATION", "AdlTrade": "ADL", "Funding": "SETTLEMENT"}


def log_type(x: Execution | Funding) -> str:
    """The transaction-log ``type`` of an execution or funding row."""
    return LOG_TYPES["Funding" if isinstance(x, Funding) else x.exec_type]


def log_row(engine: Engine, x: Execution | Funding) -> dict:
    """One ``/v5/account/transaction-log`` row (UTA): ``change = cashFlow + funding - fee``; ``funding`` > 0
    received (the opposite sign of the execution row's ``execFee``)."""
    spec = engine.specs[x.symbol]
    if isinstance(x, Funding):
        size = x.size if x.side == "Buy" else -x.size
        qty, price, fee, funding, flow = x.size, x.mark, m.ZERO, -x.fee, m.ZERO
        rate, trade_id, order_id, link, side = x.rate, x.exec_id, "", "", x.side
    else:
        size = x.size_after if x.size_after is not None else m.ZERO
        qty, price, fee, funding, flow = x.qty, x.price, x.fee, m.ZERO, x.cash_flow or m.ZERO
        rate, trade_id, order_id, link, side = x.fee_rate, x.exec_id, x.order_id, x.link_id, x.order.side
    return {
        "id": f"{x.seq}_{x.symbol}_{x.time}", "symbol": x.symbol, "category": "linear", "side": side,
        "transactionTime": str(x.time), "type": log_type(x), "transSubType": "", "qty": m.fmt(qty),
        "size": m.fmt_n(size), "currency": spec.quote_coin, "tradePrice": m.fmt(price), "funding": m.fmt_n(funding),
        "fee": m.fmt_n(fee), "cashFlow": m.fmt_n(flow), "change": m.fmt_n(flow + funding - fee),
        "cashBalance": m.fmt_n(x.balance_after) if x.balance_after is not None else "", "feeRate": m.fmt_n(rate),
        "bonusChange": "", "tradeId": trade_id, "orderId": order_id, "orderLinkId": link, "extraFees": "",
    }
