from __future__ import annotations

import asyncio
import json
from decimal import Decimal

from traderagent.orchestrator.events import EventBus, EventType, TradingEvent


def test_event_to_dict_is_json_safe() -> None:
    event = TradingEvent(EventType.TRADE_OPENED, "btc", {"qty": Decimal("0.001"), "side": "buy"})
    data = json.loads(json.dumps(event.to_dict()))
    assert data["event_type"] == "TRADE_OPENED" and data["data"]["qty"] == "0.001"
    assert data["timestamp"].endswith("+00:00")


async def test_slow_subscriber_never_blocks_publisher_and_loses_nothing() -> None:
    bus = EventBus()
    slow_seen: list[int] = []
    fast_seen: list[int] = []
    release = asyncio.Event()

    async def slow(event: TradingEvent) -> None:
        await release.wait()
        slow_seen.append(event.data["n"])

    async def fast(event: TradingEvent) -> None:
        fast_seen.append(event.data["n"])

    bus.subscribe(slow, name="slow")
    bus.subscribe(fast, name="fast")
    await bus.start()
    loop = asyncio.get_running_loop()
    started = loop.time()
    for n in range(1000):
        bus.publish(TradingEvent(EventType.ORDER_FILLED, "b", {"n": n}))
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

    sub = bus.subscribe(flaky, name="flaky", types=[EventType.ERROR, EventType.TRADE_CLOSED])
    bus.publish(TradingEvent(EventType.ERROR, "b"))  # before start: queued, not lost
    await bus.start()
    bus.publish(TradingEvent(EventType.ORDER_PLACED, "b"))
    bus.publish(TradingEvent(EventType.TRADE_CLOSED, "b"))
    assert await bus.drain(timeout=2)
    assert got == [EventType.ERROR, EventType.TRADE_CLOSED]
    assert sub.failed == 1 and sub.delivered == 1
    await bus.stop()


async def test_batch_subscriber_gets_what_queued_meanwhile_in_order() -> None:
    bus = EventBus()
    batches: list[list[int]] = []
    gate = asyncio.Event()

    async def writer(events: list[TradingEvent]) -> None:
        batches.append([e.data["n"] for e in events])
        await gate.wait()  # a slow write: the next events queue meanwhile

    sub = bus.subscribe(writer, name="writer", batch=True)
    await bus.start()
    bus.publish(TradingEvent(EventType.ORDER_PLACED, "b", {"n": 0}))
    await asyncio.sleep(0.01)
    for n in range(1, 500):
        bus.publish(TradingEvent(EventType.ORDER_PLACED, "b", {"n": n}))
    gate.set()
    assert await bus.drain(timeout=2)
    assert batches == [[0], list(range(1, 500))] and sub.delivered == 500
    await bus.stop()
