"""Trading events and the in-process event bus.

Publishing never blocks and never fails: every subscriber has its own unbounded queue and
worker task, so a slow subscriber (Telegram) delays only itself and loses nothing, and a
subscriber that raises is logged and keeps receiving events.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

log = logging.getLogger(__name__)


class EventType(StrEnum):
    # the spec's eight
    TRADE_OPENED = "TRADE_OPENED"
    TRADE_CLOSED = "TRADE_CLOSED"
    ORDER_PLACED = "ORDER_PLACED"
    ORDER_FILLED = "ORDER_FILLED"
    ORDER_CANCELLED = "ORDER_CANCELLED"
    SIGNAL_GENERATED = "SIGNAL_GENERATED"
    ERROR = "ERROR"
    STATUS_CHANGE = "STATUS_CHANGE"
    # what the desk needs besides
    ORDER_FAILED = "ORDER_FAILED"
    PHASE_CHANGED = "PHASE_CHANGED"
    SCALING_DECISION = "SCALING_DECISION"
    HALTED = "HALTED"
    RESUMED = "RESUMED"
    RISK_LIMIT = "RISK_LIMIT"
    POSITION_UPDATE = "POSITION_UPDATE"


# Events an operator can never mute: they mean money is at risk or trading stopped.
UNMUTABLE_EVENTS = frozenset({EventType.ERROR, EventType.HALTED, EventType.RISK_LIMIT})


def _json_safe(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, StrEnum):
        return value.value
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


@dataclass(frozen=True)
class TradingEvent:
    event_type: EventType
    bot_name: str
    data: dict[str, Any] = field(default_factory=dict)
    timestamp: datetime = field(default_factory=lambda: datetime.now(UTC))

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form (Decimals as strings, timestamp ISO 8601 UTC)."""
        return {
            "event_type": self.event_type.value,
            "bot_name": self.bot_name,
            "timestamp": self.timestamp.isoformat(),
            "data": _json_safe(self.data),
        }


Subscriber = Callable[[TradingEvent], Awaitable[None]]
BatchSubscriber = Callable[[list[TradingEvent]], Awaitable[None]]


class Subscription:
    """One subscriber's queue and worker; created by `EventBus.subscribe`."""

    def __init__(self, callback: Subscriber | BatchSubscriber, name: str, types: frozenset[EventType] | None,
                 batch: bool = False) -> None:
        self.callback = callback
        self.name = name
        self.types = types
        self.batch = batch
        self.queue: asyncio.Queue[TradingEvent] = asyncio.Queue()
        self.task: asyncio.Task[None] | None = None
        self.delivered = 0
        self.failed = 0

    def wants(self, event: TradingEvent) -> bool:
        return self.types is None or event.event_type in self.types

    async def run(self) -> None:
        while True:
            events = [await self.queue.get()]
            while self.batch and not self.queue.empty():
                events.append(self.queue.get_nowait())
            try:
                await self.callback(events if self.batch else events[0])  # type: ignore[arg-type]
                self.delivered += len(events)
            except Exception:
                self.failed += len(events)
                log.exception("event subscriber %r failed on %s", self.name, events[0].event_type)
            finally:
                for _ in events:
                    self.queue.task_done()


class EventBus:
    """Fan-out of TradingEvents to async subscribers, each at its own pace."""

    def __init__(self) -> None:
        self._subscriptions: list[Subscription] = []
        self._running = False

    def subscribe(
        self, callback: Subscriber | BatchSubscriber, *, name: str, types: Iterable[EventType] | None = None,
        batch: bool = False,
    ) -> Subscription:
        """``batch``: the callback takes a list: every event queued since its last call (for a
        writer that stores many events in one go)."""
        sub = Subscription(callback, name, frozenset(types) if types is not None else None, batch)
        self._subscriptions.append(sub)
        if self._running:
            sub.task = asyncio.create_task(sub.run(), name=f"events:{name}")
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        self._subscriptions.remove(sub)
        if sub.task:
            sub.task.cancel()

    def publish(self, event: TradingEvent) -> None:
        """Queue the event for every interested subscriber; returns at once.

        Events published before `start()` wait in the queues and are delivered once started.
        """
        for sub in self._subscriptions:
            if sub.wants(event):
                sub.queue.put_nowait(event)

    @property
    def pending(self) -> int:
        return sum(sub.queue.qsize() for sub in self._subscriptions)

    async def start(self) -> None:
        self._running = True
        for sub in self._subscriptions:
            if sub.task is None or sub.task.done():
                sub.task = asyncio.create_task(sub.run(), name=f"events:{sub.name}")

    async def drain(self, timeout: float | None = None) -> bool:
        """Wait until every queued event was handled; False when the timeout ran out first."""
        try:
            await asyncio.wait_for(asyncio.gather(*(s.queue.join() for s in self._subscriptions)), timeout)
            return True
        except TimeoutError:
            return False

    async def stop(self, timeout: float = 10.0) -> None:
        """Deliver what is queued (up to `timeout` seconds), then stop the workers."""
        if self._running and not await self.drain(timeout):
            log.warning("event bus stopped with %d undelivered events", self.pending)
        self._running = False
        tasks = [s.task for s in self._subscriptions if s.task]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for sub in self._subscriptions:
            sub.task = None
