"""Every event type, emitted by the real code (orchestrators on the simulator, the desk, the
capital manager), reaches the console, the chat and the database log with every field."""

from __future__ import annotations

import dataclasses
import datetime as dt
import html
import re
from dataclasses import fields
from datetime import timedelta
from decimal import Decimal
from enum import Enum
from typing import Any

from handlers.formatting import emoji
from handlers.notifier import alert_of
from handlers.outbox import pack
from tests.orchestrator.helpers import (
    DCA,
    GRID,
    SIM_KEY,
    TREND,
    Clock,
    build_desk,
    build_spot_desk,
    run_ticks,
)
from tests.sim.helpers import SignedClient
from traderagent.app import format_event as console_line
from traderagent.bots import BotSpec
from traderagent.control import LOGGED_EVENTS
from traderagent.orchestrator.events import (
    EventType,
    OrderFilled,
    OrderRef,
    Payload,
    ScalingDecisionMade,
    StatusChanged,
    TradingEvent,
    duration,
    operator_name,
)
from traderagent.orchestrator.state import BotState
from traderagent.reports import DeskWatch, DigestTime
from traderagent.results import Digest
from traderagent.sim import perp
from traderagent.sim.protection import trading_stop
from traderagent.utils.capital_manager import DeploymentPhase
from traderagent.utils.plain import decimal_text

OPERATOR = "@alice (42)"
GHOST = BotSpec("ghost", "grid", "NOPEUSDT", timeframes=("1m",), share=Decimal("0.1"))  # no such market
NEGATIVE_ZERO = re.compile(r"-0\.0+(?!\d)")
IDS = {"client_order_id", "position_id", "summarised"}  # for the database log and the notifier, not for people


def shown(name: str, value: Any) -> list[str]:
    """The texts a reader must find for one field (any of them)."""
    if isinstance(value, bool):
        return ["ready to scale" if value else "scaling blocked"]
    if isinstance(value, DeploymentPhase):
        number = list(DeploymentPhase).index(value)
        return [f"phase {number}" if number else "not started"]
    if isinstance(value, BotState):
        return [value.value.lower()]
    if isinstance(value, Enum):
        return [str(value.value)]
    if name in ("share", "distance", "threshold"):  # fractions shown as percentages
        return [f"{decimal_text(value * 100)} %"]
    if name in ("by", "approved_by"):
        return [operator_name(value)]  # the numeric user id is for the audit, not for people
    if name == "reason":
        return [str(value).replace("_", " ")]
    if isinstance(value, timedelta):
        return [duration(value)]
    if isinstance(value, Decimal):
        return [decimal_text(value), decimal_text(value, 2), decimal_text(value, grouped=True),
                decimal_text(value, 2, grouped=True)]
    if isinstance(value, float) and name.endswith("_seconds"):
        return [f"{value:.0f} s"]
    if isinstance(value, float):
        return [f"{value:.0%}"]
    if isinstance(value, dt.datetime):
        return [f"{value:%Y-%m-%d %H:%M}"]
    if isinstance(value, Digest):  # the chat gets pages of their own (handlers/reports.py); one line says the totals
        return [f"digest {value.day:%Y-%m-%d}: PnL {decimal_text(value.pnl, 2, signed=True)} USDT · {value.trades} trade"]
    return [str(value)]


async def _auto_deleverage_a_lot(h, sim) -> None:
    """The grid holds lots (the price fell through part of its ladder); ByBit auto-deleverages one of them."""
    grid = h.desk.bots["xrp-grid"].bot
    sim.set_price("XRPUSDT", sim.price("XRPUSDT") * Decimal("0.995"))
    await h.desk.tick_all()
    lot = grid.strategy.get_active_positions()[0]
    perp.auto_deleverage(sim.engine, sim.engine.accounts[SIM_KEY], "XRPUSDT", lot.size)
    await grid.book_exchange_close()  # what the stream's AdlTrade row starts


def missing(payload: Payload, text: str) -> list[str]:
    """The fields of ``payload`` that ``text`` does not show (case aside)."""
    out = []
    for f in fields(payload):
        value = getattr(payload, f.name)
        if f.name in IDS or value is None or value == ():
            continue
        if isinstance(value, OrderRef):
            out += [f"order.{name}" for name in missing(value, text)]  # type: ignore[arg-type]
            continue
        items = value if isinstance(value, tuple) else (value,)
        if not all(any(t.lower() in text.lower() for t in shown(f.name, item)) for item in items):
            out.append(f.name)
    return out


async def test_every_event_type_shows_every_field_on_console_chat_and_db_log(sim, tmp_path) -> None:
    clock = Clock()
    h = await build_desk(sim.base_url, tmp_path / "events.db", [GRID, TREND, GHOST], clock=clock, start=False)
    try:
        desk, capital = h.desk, h.desk.capital
        assert capital is not None
        desk.announce_started("paper", await desk.start(schedule=False))
        await desk.evaluate_scaling()  # fresh phase 1: some gates pass, days and trades block
        for _ in range(5):
            capital.record_trade(True, Decimal("2"))
        clock.advance(days=3)
        assert await desk.offer_scaling()
        await desk.approve_scaling(OPERATOR)
        await run_ticks(h, sim, 60)
        trend = desk.bots["btc-trend"].bot
        for _ in range(60):  # a trend position whose exchange-held stop someone removed: restored and told
            if trend.strategy.get_active_positions():
                break
            await run_ticks(h, sim, 1)
        trading_stop(sim, sim.engine.accounts[SIM_KEY], {"category": "linear", "symbol": "BTCUSDT", "tpslMode": "Full",
                                                        "positionIdx": 0, "stopLoss": "0", "takeProfit": "0"})
        await trend._reconcile_protection()
        await desk.tick_all()
        await _auto_deleverage_a_lot(h, sim)
        await desk.halt("exchange maintenance", OPERATOR)
        await desk.resume_trading(OPERATOR)
        await desk.stop_bot("xrp-grid", OPERATOR)  # its resting ladder is cancelled
        wallet = sim.engine.accounts[SIM_KEY].wallet
        funds, wallet["USDT"] = wallet["USDT"], Decimal(0)
        await desk.start_bot("xrp-grid", OPERATOR)
        await desk.tick_all()  # the new ladder is refused: no funds
        wallet["USDT"] = funds
        desk.risk.add_realized("ghost", -capital.allocated_capital)
        await desk.check_desk_risk()
        await _perpetual_risk_by_hand(sim)
        await desk.check_perp()  # the XRPUSDT funding is the grid's; the 50x ETHUSDT long is near liquidation
        (tmp_path / "events.db").unlink()
        await desk.check_storage()  # storage lost
        await desk.check_storage()  # the file written back
        watch = DeskWatch(desk, DigestTime(dt.time(0, 0), "UTC", clock()))
        desk.started_at = clock()
        clock.advance(days=1)
        await watch.check()  # a new day: the digest is due; and no tick ran since the "start": stalled
        desk.announce_stopping("SIGTERM")
        await desk.event_bus.drain(5)

        by_type: dict[EventType, list[TradingEvent]] = {}
        for event in h.events:
            by_type.setdefault(event.event_type, []).append(event)
        assert set(by_type) == set(EventType), set(EventType) - set(by_type)
        logged = {(r.message, r.bot_name or "desk", str(r.context)) for r in await h.db.get_logs(None, limit=100_000)}
        for event_type, events in by_type.items():
            for event in events:
                console = console_line(event)
                alone, _ = pack([alert_of(event)], event.timestamp, emoji)
                burst = pack([alert_of(event)] * 2, event.timestamp, emoji)[0].split("\n")[1]
                assert "\n" not in console and "\n" not in burst and alone.count("\n") == 1
                for where, text in (("console", console), ("chat", html.unescape(alone)),
                                    ("chat burst", html.unescape(burst))):
                    assert not missing(event.data, text), (where, missing(event.data, text), text)
                    assert not NEGATIVE_ZERO.search(text) and "E+" not in text, text
                if event_type in LOGGED_EVENTS:
                    assert (event_type.value, event.bot_name, str(event.data.to_dict())) in logged, event

        halted = [e for e in by_type[EventType.STATUS_CHANGE]
                  if isinstance(e.data, StatusChanged) and e.data.reason == "halt" and e.data.new is BotState.PAUSED]
        assert halted and all(e.data == StatusChanged(BotState.RUNNING, BotState.PAUSED, "halt", OPERATOR) for e in halted)
        assert "running → paused (halt, operator @alice)" in console_line(halted[0])
        phase = by_type[EventType.PHASE_CHANGED][-1]
        assert "Phase 2 · 25 % · 5,000 USDT (was phase 1) · approved by @alice" in console_line(phase)
        decision = by_type[EventType.SCALING_DECISION][0].data
        assert isinstance(decision, ScalingDecisionMade) and decision.passed and decision.blocked
    finally:
        await h.close()


async def _perpetual_risk_by_hand(sim) -> None:
    """Positions opened on the account by hand: a funding settlement and a liquidation alert to come."""
    sim.set_price("XRPUSDT", Decimal("0.5"))
    sim.set_price("ETHUSDT", Decimal("3000"))
    async with SignedClient(sim.base_url) as raw:
        await raw.ok("POST", "/v5/position/set-leverage", {"category": "linear", "symbol": "ETHUSDT",
                                                            "buyLeverage": "50", "sellLeverage": "50"})
        for symbol, qty in (("XRPUSDT", "10000"), ("ETHUSDT", "1")):
            await raw.ok("POST", "/v5/order/create", {"category": "linear", "symbol": symbol, "side": "Buy",
                                                      "orderType": "Market", "qty": qty})
    sim.charge_funding("XRPUSDT")


async def test_a_spot_buy_fill_says_its_fee_is_in_the_base_coin(sim, tmp_path) -> None:
    h = await build_spot_desk(sim.base_url, tmp_path / "spot.db")
    desk = h.desk
    await desk.add_bot(dataclasses.replace(DCA, market_type="spot", share=None, capital=Decimal("1000")))
    try:
        await desk.start(schedule=False)
        await desk.tick_all()  # the base order: a market buy
        await desk.event_bus.drain(5)
        (base,) = [e.data for e in h.of(EventType.ORDER_FILLED) if isinstance(e.data, OrderFilled)]
        assert (base.order.side, base.fee_coin, base.order.quote_coin) == ("buy", "SOL", "USDT")
        assert f"fee {decimal_text(base.fee)} SOL (dca:base)" in console_line(TradingEvent.of("sol-dca", base))
    finally:
        await h.close()
