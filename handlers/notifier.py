"""Push every TradingEvent to the operator's chats without ever stalling the trading loop.

The event-bus callback only appends to a queue. One sender task per chat drains it at
Telegram's pace (about one message a second per chat): a single pending event goes out as
its own message; a burst is merged into as few messages as the 4096-character limit allows.
A message is retried on RetryAfter (after the wait Telegram asks for) and on network errors
(with backoff) until it is delivered or the notifier stops, so nothing is lost.
"""

from __future__ import annotations

import asyncio
import logging
import warnings
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

from telegram.error import BadRequest, Forbidden, NetworkError, RetryAfter, TelegramError

from handlers.formatting import esc, format_event, format_event_line, split_message
from traderagent.orchestrator.events import UNMUTABLE_EVENTS, EventBus, EventType, TradingEvent

log = logging.getLogger(__name__)

SendFunc = Callable[[int, str], Awaitable[object]]


@dataclass
class NotifierStats:
    received: int = 0
    muted: int = 0
    delivered: int = 0  # (event, chat) pairs that reached the chat inside some message
    messages: int = 0
    retries: int = 0
    dropped: int = 0  # only on Forbidden (the operator blocked the bot) or undeliverable text


def _retry_after_seconds(err: RetryAfter) -> float:
    with warnings.catch_warnings():  # PTB 22 warns that the int will become a timedelta
        warnings.simplefilter("ignore")
        value = err.retry_after
    return value.total_seconds() if hasattr(value, "total_seconds") else float(value)


class _ChatSender:
    """The queue and pacing of one chat."""

    def __init__(self, chat_id: int, notifier: Notifier) -> None:
        self.chat_id = chat_id
        self.notifier = notifier
        self.queue: deque[TradingEvent] = deque()
        self.wakeup = asyncio.Event()
        self.idle = asyncio.Event()
        self.idle.set()
        self.task: asyncio.Task[None] | None = None
        self.last_sent = 0.0

    def put(self, event: TradingEvent) -> None:
        self.queue.append(event)
        self.idle.clear()
        self.wakeup.set()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self.queue:
                self.wakeup.clear()
                await self.wakeup.wait()
            wait = self.last_sent + self.notifier.min_interval - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)  # pace; meanwhile a burst accumulates and merges
            batch = list(self.queue)
            texts = self.notifier.render(batch)
            for i, text in enumerate(texts):  # more than one only when a burst exceeds 4096 chars
                if i:
                    await asyncio.sleep(max(0.0, self.last_sent + self.notifier.min_interval - loop.time()))
                await self._deliver(text)
            for _ in batch:
                self.queue.popleft()
            self.notifier.stats.delivered += len(batch)
            if not self.queue:
                self.idle.set()

    async def _deliver(self, text: str) -> None:
        loop = asyncio.get_running_loop()
        backoff = 1.0
        while True:
            try:
                await self.notifier.send(self.chat_id, text)
                self.notifier.stats.messages += 1
                self.last_sent = loop.time()
                return
            except RetryAfter as err:
                self.notifier.stats.retries += 1
                await asyncio.sleep(_retry_after_seconds(err) + 0.1)
            except Forbidden:
                log.warning("chat %s blocked the bot; notification dropped", self.chat_id)
                self.notifier.stats.dropped += 1
                return
            except BadRequest as err:
                log.error("Telegram refused a notification (%s); it is dropped", err.message)
                self.notifier.stats.dropped += 1
                return
            except (NetworkError, TelegramError) as err:
                self.notifier.stats.retries += 1
                log.warning("notification to %s failed (%s); retrying in %.0fs", self.chat_id, err, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 30.0)


class Notifier:
    """Event-bus subscriber that turns TradingEvents into Telegram messages."""

    def __init__(self, send: SendFunc, chat_ids: Iterable[int], *, min_interval: float = 1.05) -> None:
        self.send = send
        self.min_interval = min_interval
        self.muted: set[EventType] = set()
        self.stats = NotifierStats()
        self._chats = {chat_id: _ChatSender(chat_id, self) for chat_id in chat_ids}

    # --- wiring ------------------------------------------------------------------
    def attach(self, bus: EventBus) -> None:
        bus.subscribe(self.on_event, name="telegram")

    async def start(self) -> None:
        for chat in self._chats.values():
            if chat.task is None:
                chat.task = asyncio.create_task(chat.run(), name=f"notifier:{chat.chat_id}")

    async def stop(self, timeout: float = 5.0) -> None:
        """Give queued events `timeout` seconds to go out, then stop."""
        try:
            await asyncio.wait_for(self.flush(), timeout)
        except TimeoutError:
            log.warning("notifier stopped with %d events unsent", self.pending)
        for chat in self._chats.values():
            if chat.task:
                chat.task.cancel()
        await asyncio.gather(*(c.task for c in self._chats.values() if c.task), return_exceptions=True)
        for chat in self._chats.values():
            chat.task = None

    async def flush(self) -> None:
        """Wait until every queued event has been delivered."""
        await asyncio.gather(*(chat.idle.wait() for chat in self._chats.values()))

    @property
    def pending(self) -> int:
        return sum(len(c.queue) for c in self._chats.values())

    # --- events ------------------------------------------------------------------
    async def on_event(self, event: TradingEvent) -> None:
        self.stats.received += 1
        if event.event_type in self.muted and event.event_type not in UNMUTABLE_EVENTS:
            self.stats.muted += 1
            return
        for chat in self._chats.values():
            chat.put(event)

    def set_muted(self, event_type: EventType, muted: bool) -> bool:
        """Mute or unmute a type; returns False for the types that can never be muted."""
        if event_type in UNMUTABLE_EVENTS:
            return False
        (self.muted.add if muted else self.muted.discard)(event_type)
        return True

    @staticmethod
    def render(batch: list[TradingEvent]) -> list[str]:
        if len(batch) == 1:
            return [format_event(batch[0])]
        header = f"📬 <b>{len(batch)} events</b>"
        bots = sorted({e.bot_name for e in batch})
        if len(bots) <= 3:
            header += " · " + esc(", ".join(bots))
        return split_message((format_event_line(e) for e in batch), header=header)
