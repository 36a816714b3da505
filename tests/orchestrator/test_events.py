from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from decimal import Decimal

import pytest

from traderagent.orchestrator.events import (
    PAYLOADS,
    ErrorRaised,
    EventBus,
    EventType,
    Halted,
    OrderFilled,
    OrderRef,
    PhaseChanged,
    ScalingDecisionMade,
    StatusChanged,
    TradeClosed,
    TradingEvent,
    duration,
    operator_name,
    phase_name,
)
from traderagent.orchestrator.state import BotState
from traderagent.utils.capital_manager import CapitalManager, DeploymentPhase
from traderagent.utils.plain import decimal_text


def _n(n: int) -> TradingEvent:
    return TradingEvent.of("b", ErrorRaised(str(n)))


def _fill(**changes: object) -> OrderFilled:
    order = OrderRef("b-1", "grid:5:buy", "XRPUSDT", "buy", "limit", Decimal("10"), Decimal("1.2"), "USDT")
    fields: dict[str, object] = {"filled": Decimal("10"), "avg_price": Decimal("1.2"), "fee": Decimal("0.0072"),
                                 "fee_coin": "USDT"} | changes
    return OrderFilled(order, **fields)  # type: ignore[arg-type]


def _closed() -> TradeClosed:
    """A flat trade: the pnl rounds to a negative zero, the numbers come with exponents."""
    return TradeClosed(7, "p", "BTCUSDT", "long", Decimal("1E-3"), Decimal("5E+4"), Decimal("50000.00"),
                       Decimal("-0.001"), "time_exit", "USDT")


def test_every_event_type_has_one_payload_type() -> None:
    assert set(PAYLOADS) == set(EventType)
    assert all(cls.EVENT is et for et, cls in PAYLOADS.items())


def test_an_event_refuses_a_payload_of_another_type() -> None:
    with pytest.raises(TypeError, match="ERROR event: data must be ErrorRaised, not OrderFilled"):
        TradingEvent(EventType.ERROR, "b", _fill())
    assert TradingEvent(EventType.ORDER_FILLED, "b", data=_fill()).data.value == Decimal("12.0")  # type: ignore[attr-defined]


def test_the_specs_plain_dict_event_still_renders() -> None:
    """api-spec.md builds an event with a plain dict: it is kept as Details and shown by every renderer."""
    event = TradingEvent(event_type=EventType.TRADE_OPENED, bot_name="btc_smc",
                         data={"symbol": "BTC/USDT", "side": "buy", "amount": Decimal("0.001")})  # type: ignore[arg-type]
    assert event.data["amount"] == Decimal("0.001")  # type: ignore[index]
    assert event.data.summary() == "symbol BTC/USDT · side buy · amount 0.001"
    assert event.to_dict()["data"] == {"symbol": "BTC/USDT", "side": "buy", "amount": "0.001"}


def test_event_to_dict_is_json_safe() -> None:
    data = json.loads(json.dumps(TradingEvent.of("xrp", _fill()).to_dict()))
    assert data["event_type"] == "ORDER_FILLED" and data["timestamp"].endswith("+00:00")
    assert data["data"] == {"client_order_id": "b-1", "tag": "grid:5:buy", "symbol": "XRPUSDT", "side": "buy",
                            "order_type": "limit", "qty": "10", "price": "1.2", "quote_coin": "USDT", "filled": "10",
                            "avg_price": "1.2", "fee": "0.0072", "fee_coin": "USDT"}  # flat, as the log rows are


def test_summaries_read_as_money_without_negative_zero_or_exponents() -> None:
    assert _fill().summary() == "buy limit 10 XRPUSDT @ 1.2 = 12.00 USDT · fee 0.0072 USDT (grid:5:buy)"
    partly = _fill(filled=Decimal("4"), avg_price=Decimal("1.19"))
    assert partly.summary().startswith("buy limit 4 of 10 XRPUSDT @ 1.19 (limit 1.2) = 4.76 USDT")
    assert _closed().summary() == "long 0.001 BTCUSDT 50000 → 50000 · PnL 0.00 USDT (0.00 %) · time exit (trade #7)"
    assert decimal_text(Decimal("-0.004"), 2) == "0.00" and decimal_text(Decimal("2.5E+3"), 2) == "2500.00"
    assert ErrorRaised("line one\n  line two").summary() == "line one line two"


def test_status_phase_and_scaling_summaries_say_what_changed_and_why() -> None:
    halt = StatusChanged(BotState.RUNNING, BotState.PAUSED, "halt", "@alice (42)")
    assert halt.summary() == "running → paused (halt, operator @alice)"
    phase = PhaseChanged(DeploymentPhase.PHASE_2, DeploymentPhase.PHASE_1, Decimal("0.25"), Decimal("2500"), "@bob")
    assert phase.summary() == "Phase 2 · 25 % · 2,500 USDT (was phase 1) · approved by @bob"
    decision = ScalingDecisionMade(False, DeploymentPhase.PHASE_1, DeploymentPhase.PHASE_2,
                                   ("3 days in phase (minimum 3)",), ("2 trades (minimum 5)", "net PnL -4"))
    assert decision.summary() == ("phase 1 → phase 2: scaling blocked · ✓ 3 days in phase (minimum 3) · "
                                  "✗ 2 trades (minimum 5) · ✗ net PnL -4")


def test_alerts_speak_in_money() -> None:
    closed = TradeClosed(9, "p", "SOLUSDT", "long", Decimal("10"), Decimal("150"), Decimal("153.015"),
                         Decimal("29.85"), "take_profit", "USDT", timedelta(hours=2, minutes=5), Decimal("1234.5"))
    assert closed.summary() == ("long 10 SOLUSDT 150 → 153.015 · PnL +29.85 USDT (+1.99 %) · take profit · "
                                "held 2 h 05 min · bot today +1,234.50 USDT (trade #9)")
    assert _fill(avg_price=Decimal("1500.5"), filled=Decimal("10")).summary().startswith(
        "buy limit 10 XRPUSDT @ 1500.5 (limit 1.2) = 15,005.00 USDT · fee 0.0072 USDT")
    started = PhaseChanged(DeploymentPhase.PHASE_1, DeploymentPhase.NOT_STARTED, Decimal("0.05"),
                           Decimal("500.5"), None)
    assert started.summary() == "Phase 1 · 5 % · 500.50 USDT (was not started)"
    assert StatusChanged(BotState.RUNNING, BotState.PAUSED, "operator", "@bob (7)").summary() == \
        "running → paused (operator @bob)"
    assert StatusChanged(BotState.RUNNING, BotState.PAUSED, "risk", "risk rail").summary() == \
        "running → paused (risk, by risk rail)"
    error = ErrorRaised("rejected", BotState.RUNNING, "xrpgrid-1776-418bc93339d8456fa06ac6")
    assert error.summary() == "rejected (while running, order …6fa06ac6)"  # ids by their tail
    assert Halted("maintenance", "@ann (1)", ("a",)).summary() == "trading halted by @ann: maintenance · paused: a"
    assert (phase_name("phase_3_100pct"), phase_name(DeploymentPhase.NOT_STARTED)) == ("Phase 3", "not started")
    assert (duration(timedelta(days=3, hours=4, minutes=1)), duration(timedelta(seconds=42))) == ("3 d 4 h", "42 s")
    assert operator_name("Jane Doe (12345)") == "Jane Doe" and operator_name("risk rail") == "risk rail"


async def test_slow_subscriber_never_blocks_publisher_and_loses_nothing() -> None:
    bus = EventBus()
    slow_seen: list[int] = []
    fast_seen: list[int] = []
    release = asyncio.Event()

    async def slow(event: TradingEvent) -> None:
        await release.wait()
        slow_seen.append(int(event.data.error))  # type: ignore[attr-defined]

    async def fast(event: TradingEvent) -> None:
        fast_seen.append(int(event.data.error))  # type: ignore[attr-defined]

    bus.subscribe(slow, name="slow")
    bus.subscribe(fast, name="fast")
    await bus.start()
    loop = asyncio.get_running_loop()
    started = loop.time()
    for n in range(1000):
        bus.publish(_n(n))
    assert loop.time() - started < 0.5  # publish returned at once despite the stalled subscriber
    await asyncio.sleep(0.01)
    assert fast_seen == list(range(1000)) and slow_seen == []
    release.set()
    await bus.stop()
    assert slow_seen == list(range(1000))


async def test_failing_subscriber_keeps_receiving_and_type_filter() -> None:
    bus = EventBus()
    got: list[EventType] = []

    async def flaky(event: TradingEvent) -> None:
        got.append(event.event_type)
        if event.event_type is EventType.ERROR:
            raise RuntimeError("boom")

    sub = bus.subscribe(flaky, name="flaky", types=[EventType.ERROR, EventType.ORDER_FILLED])
    bus.publish(_n(1))  # before start: queued, not lost
    await bus.start()
    bus.publish(TradingEvent.of("b", _closed()))
    bus.publish(TradingEvent.of("b", _fill()))
    assert await bus.drain(timeout=2)
    assert got == [EventType.ERROR, EventType.ORDER_FILLED]
    assert sub.failed == 1 and sub.delivered == 1
    await bus.stop()


async def test_batch_subscriber_gets_what_queued_meanwhile_in_order() -> None:
    bus = EventBus()
    batches: list[list[int]] = []
    gate = asyncio.Event()

    async def writer(events: list[TradingEvent]) -> None:
        batches.append([int(e.data.error) for e in events])  # type: ignore[attr-defined]
        await gate.wait()  # a slow write: the next events queue meanwhile

    sub = bus.subscribe(writer, name="writer", batch=True)
    await bus.start()
    bus.publish(_n(0))
    await asyncio.sleep(0.01)
    for n in range(1, 500):
        bus.publish(_n(n))
    gate.set()
    assert await bus.drain(timeout=2)
    assert batches == [[0], list(range(1, 500))] and sub.delivered == 500
    await bus.stop()


def test_a_scaling_gate_shows_money_not_a_decimal_repr() -> None:
    cm = CapitalManager(Decimal("10000"))
    cm.start_phase_1()
    cm.record_trade(True, Decimal("0.10000000"))
    cm.record_trade(False, Decimal("-0.10000000"))  # the sum is Decimal("0E-8")
    assert "net PnL 0.00 (must not be negative)" in cm.evaluate_scaling().reasons
