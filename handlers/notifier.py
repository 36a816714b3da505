"""Push TradingEvents to the operator's chats without ever stalling the trading loop.

The event-bus callback takes every event queued since its last call, drops what the chat does not
want to hear (muted types, and each bot's verbosity), renders the rest once and hands it to the
outbox (handlers/outbox.py), which stores, paces, merges and delivers it. In a desk worker of a fleet
the sink is `StoredAlerts`: the alerts go to the outbox table only, and the console delivers them.

Verbosity is set per bot or per strategy (`/verbosity`), kept in the database; a bot's own setting
wins over its strategy's, which wins over `DEFAULT_VERBOSITY` (a grid places and cancels orders all
day: by default the chat hears its fills and closes only).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from handlers.formatting import format_event, format_event_line
from handlers.outbox import Alert
from handlers.reports import OWN_MESSAGES
from traderagent.orchestrator.events import (
    UNMUTABLE_EVENTS,
    EventBus,
    EventType,
    Subscription,
    TradingEvent,
    never_muted,
)
from traderagent.ports import OutboxStore

log = logging.getLogger(__name__)


class Verbosity(StrEnum):
    ALL = "all"  # every event
    TRADES = "trades"  # no order-placed / cancelled / signal chatter
    ERRORS = "errors"  # only what needs the operator: errors, failed orders, halts, risk limits


CHATTER = frozenset({EventType.ORDER_PLACED, EventType.ORDER_CANCELLED, EventType.SIGNAL_GENERATED})
ALARMS = UNMUTABLE_EVENTS | {EventType.ORDER_FAILED}
DEFAULT_VERBOSITY = {"grid": Verbosity.TRADES}


def heard(event_type: EventType, level: Verbosity) -> bool:
    if level is Verbosity.ALL:
        return True
    if level is Verbosity.TRADES:
        return event_type not in CHATTER
    return event_type in ALARMS


class AlertSink(Protocol):
    """Where alerts go: the chat's `Outbox`, or (a fleet worker) `StoredAlerts`."""

    async def add_alerts(self, alerts: Sequence[Alert], chat_ids: Iterable[int] | None = None) -> None: ...


@dataclass
class NotifierStats:
    received: int = 0
    muted: int = 0  # by type or by verbosity


class Notifier:
    """Event-bus subscriber that turns TradingEvents into alerts in every chat's outbox."""

    def __init__(self, outbox: AlertSink, *, strategy_of: Callable[[str], str | None] = lambda bot: None,
                 store: OutboxStore | None = None) -> None:
        self.outbox = outbox
        self.strategy_of = strategy_of
        self.store = store
        self.muted: set[EventType] = set()
        self.levels: dict[str, Verbosity] = {}  # "bot:<name>" / "strategy:<name>" -> level
        self.stats = NotifierStats()

    def attach(self, bus: EventBus) -> Subscription:
        """Every event but those handlers/reports.py sends itself (OWN_MESSAGES)."""
        return bus.subscribe(self.on_events, name="telegram", batch=True, types=frozenset(EventType) - OWN_MESSAGES)

    async def load(self) -> None:
        """The verbosity the operator set before a restart."""
        if self.store is not None:
            self.levels = {scope: Verbosity(level) for scope, level in (await self.store.load_verbosity()).items()
                           if level in Verbosity.__members__.values()}

    # --- events ------------------------------------------------------------------
    async def on_events(self, events: list[TradingEvent]) -> None:
        self.stats.received += len(events)
        wanted = [e for e in events if self.wants(e)]
        self.stats.muted += len(events) - len(wanted)
        await self.outbox.add_alerts([alert_of(e) for e in wanted])

    def wants(self, event: TradingEvent) -> bool:
        return never_muted(event) or self.hears(event.event_type, event.bot_name)

    def hears(self, event_type: EventType, bot: str) -> bool:
        if event_type in UNMUTABLE_EVENTS:
            return True
        return event_type not in self.muted and heard(event_type, self.verbosity(bot))

    def admits(self, alert: Alert) -> bool:
        """An alert another process (a fleet worker) stored: does the chat want it now? (Mutes and
        verbosity set on the console apply to the workers' alerts too; an urgent one is always heard.)"""
        if alert.urgent:
            return True
        try:
            event_type = EventType(alert.kind)
        except ValueError:  # not an event's alert: nothing to filter it by
            return True
        return self.hears(event_type, alert.bot)

    def set_muted(self, event_type: EventType, muted: bool) -> bool:
        """Mute or unmute a type; returns False for the types that can never be muted."""
        if event_type in UNMUTABLE_EVENTS:
            return False
        (self.muted.add if muted else self.muted.discard)(event_type)
        return True

    # --- verbosity ---------------------------------------------------------------
    def verbosity(self, bot: str) -> Verbosity:
        strategy = self.strategy_of(bot) or ""
        return (self.levels.get(f"bot:{bot}") or self.levels.get(f"strategy:{strategy}")
                or DEFAULT_VERBOSITY.get(strategy, Verbosity.ALL))

    async def set_verbosity(self, scope: str, level: Verbosity) -> None:
        """`scope` is "bot:<name>" or "strategy:<name>"; kept across restarts."""
        self.levels[scope] = level
        if self.store is not None:
            await self.store.save_verbosity(scope, level.value)


def alert_of(event: TradingEvent) -> Alert:
    return Alert(event.event_type.value, event.bot_name, format_event(event), format_event_line(event),
                 event.timestamp, urgent=never_muted(event))
