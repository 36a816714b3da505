"""One outbox per chat for everything the bot sends: replies, confirmations, edits, photos, alerts.

Telegram allows about one message a second per chat, 20 a minute in a group and 30 a second per
bot, and answers 429 with `retry_after` beyond that. Every send goes through `Outbox`, which stays
within those limits (`Limits`) instead of finding them out:

- each chat has one sender task. What the operator asked for (`reply`, `edit`, `photo`) goes first,
  in order; alerts wait behind it and are merged into as few messages as the 4096-unit limit allows;
- a send is retried until it is delivered: after `retry_after` on 429, with backoff on network
  errors and outages. Only what is still undelivered after `max_age` is given up, with a log line
  saying why; a text Telegram refuses (400) is logged with Telegram's reason;
- alerts stay in the database (`OutboxStore`) until sent, so those produced during an outage or
  while the desk restarts are delivered afterwards, oldest first, each with its original time.
  A send cut short by a stop may be repeated after the restart: at least once, never lost. A sent
  alert's row is deleted behind (`WriteBehind`): the chat's next message never waits for the disk.

In a fleet (traderagent/fleet) the desk workers send nothing: `StoredAlerts` writes their alerts to the
outbox table and tells the console, whose `Outbox.pick_up` takes up the new rows (each once, in
order) and delivers them like its own.
"""

from __future__ import annotations

import asyncio
import logging
import time
import warnings
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from telegram import Bot, InlineKeyboardMarkup
from telegram.error import BadRequest, Forbidden, RetryAfter, TelegramError

from handlers.formatting import MAX_MESSAGE, esc, fit, split_message, tg_len
from handlers.write_behind import WriteBehind
from traderagent.ports import OutboxStore

log = logging.getLogger(__name__)

LATE = timedelta(minutes=1)  # an alert delivered later than this shows when it happened
MAX_CAPTION = 1024


@dataclass(frozen=True)
class Limits:
    """Telegram's pace; `scaled(0.01)` runs the same limits 100 times faster (tests)."""

    chat_interval: float = 1.0  # seconds between two messages to one chat
    group_count: int = 20  # messages per `group_span` seconds in a group chat
    group_span: float = 60.0
    bot_count: int = 30  # messages per `bot_span` seconds over all chats
    bot_span: float = 1.0
    max_backoff: float = 30.0  # longest wait between two tries while Telegram is unreachable

    def scaled(self, factor: float) -> Limits:
        return replace(self, chat_interval=self.chat_interval * factor, group_span=self.group_span * factor,
                       bot_span=self.bot_span * factor, max_backoff=self.max_backoff * factor)


class Window:
    """At most `count` sends in any `span` seconds. A send holds its slot from its start until `span`
    after its answer, so however long the request travelled, Telegram never sees more in a span."""

    def __init__(self, count: int, span: float) -> None:
        self.count, self.span = count, span
        self.in_flight = 0
        self.finished: deque[float] = deque()

    def delay(self, now: float) -> float | None:
        """0 when a slot is free now; else seconds until one frees, None when only an answer frees one."""
        while self.finished and self.finished[0] + self.span <= now:
            self.finished.popleft()
        if self.in_flight + len(self.finished) < self.count:
            return 0.0
        return self.finished[0] + self.span - now if self.finished else None


class Pacer:
    """Takes slots in several windows at once (the chat's, the group's, the bot's)."""

    def __init__(self, limits: Limits, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.bot = Window(limits.bot_count, limits.bot_span)
        self._changed = asyncio.Condition()

    async def acquire(self, windows: Sequence[Window]) -> None:
        async with self._changed:
            while True:
                delays = [w.delay(self.clock()) for w in windows]
                if all(d == 0 for d in delays):
                    for w in windows:
                        w.in_flight += 1
                    return
                timeout = None if None in delays else max(d for d in delays if d is not None)
                try:
                    await asyncio.wait_for(self._changed.wait(), timeout)
                except TimeoutError:
                    pass

    async def release(self, windows: Sequence[Window]) -> None:
        async with self._changed:
            now = self.clock()
            for w in windows:
                w.in_flight -= 1
                w.finished.append(now)
            self._changed.notify_all()


@dataclass
class OutboxStats:
    alerts: int = 0  # alerts queued (per chat)
    delivered: int = 0  # alerts that reached their chat inside some message
    requests: int = 0  # replies, edits, photos queued
    messages: int = 0  # successful Bot API sends
    retries: int = 0
    dropped: int = 0  # refused by Telegram (400) or older than max_age: each logged with its reason


@dataclass(frozen=True)
class Alert:
    """An alert for one chat: `text` as a message of its own, `line` as one line of a burst."""

    kind: str
    bot: str
    text: str
    line: str
    created_at: datetime
    id: int | None = None  # its outbox row
    urgent: bool = False  # heard whatever is muted (events.never_muted): a fleet's console keeps it too

    def row(self, chat_id: int) -> dict[str, Any]:
        return {"chat_id": chat_id, "kind": self.kind, "bot_name": self.bot, "text": self.text,
                "line": self.line, "created_at": self.created_at, "urgent": self.urgent}


@dataclass
class Request:
    """A reply, confirmation, edit or photo: one Bot API call, sent as it is."""

    what: str
    call: Callable[[Bot], Awaitable[Any]]
    done: asyncio.Future[Any]
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))


def retry_after_seconds(err: RetryAfter) -> float:
    with warnings.catch_warnings():  # PTB 22 warns that the int will become a timedelta
        warnings.simplefilter("ignore")
        value = err.retry_after
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


def stamp(at: datetime) -> str:
    """The time an alert happened; with its date once it is not from today."""
    at = at.astimezone(UTC)
    return f"{at:%H:%M:%S}" if at.date() == datetime.now(UTC).date() else f"{at:%m-%d %H:%M}"


def pack(alerts: Sequence[Alert], now: datetime, emoji: Callable[[str], str]) -> tuple[str, int]:
    """The next message for a queue of alerts, and how many of them it holds (oldest first)."""
    first = alerts[0]
    if len(alerts) == 1:
        late = f"\n<i>at {stamp(first.created_at)} UTC</i>" if now - first.created_at > LATE else ""
        return fit(first.text, MAX_MESSAGE - tg_len(late)) + late, 1
    bots = sorted({a.bot for a in alerts})
    names = " · " + esc(", ".join(bots)) if len(bots) <= 3 else ""
    lines = [f"{emoji(a.kind)} {stamp(a.created_at)} {a.line}" for a in alerts]
    header = f"📬 <b>{len(alerts)} alerts</b>{names}"
    text = split_message(lines, header=header)[0]
    count = text.count("\n")
    return f"📬 <b>{count} alerts</b>{names}" + text[len(header):], count


class _Chat:
    """The queues, pacing and sender task of one chat."""

    def __init__(self, chat_id: int, outbox: Outbox) -> None:
        self.chat_id = chat_id
        self.outbox = outbox
        self.requests: deque[Request] = deque()
        self.alerts: list[Alert] = []
        self.wakeup = asyncio.Event()
        self.idle = asyncio.Event()
        self.idle.set()
        self.task: asyncio.Task[None] | None = None
        limits = outbox.limits
        self.windows = [Window(1, limits.chat_interval), outbox.pacer.bot]
        if chat_id < 0:  # groups and channels have negative ids
            self.windows.append(Window(limits.group_count, limits.group_span))
        self.backoff = 0.0
        self.last_error = ""

    def poke(self) -> None:
        self.idle.clear()
        self.wakeup.set()

    async def run(self) -> None:
        while True:
            if not self.requests and not self.alerts:
                self.idle.set()
                self.wakeup.clear()
                await self.wakeup.wait()
                continue
            self._expire()
            if self.requests or self.alerts:
                wait = await self._attempt()
                if wait:
                    await asyncio.sleep(wait)

    async def _attempt(self) -> float:
        """One paced try of what is first in line; the seconds to wait before the next try."""
        request = self.requests[0] if self.requests else None
        batch: list[Alert] = []
        if request is None:
            text, count = pack(self.alerts, datetime.now(UTC), self.outbox.emoji)
            batch = self.alerts[:count]
            call = _sender(self.chat_id, text, None)
        else:
            call = request.call
        await self.outbox.pacer.acquire(self.windows)
        try:
            result = await call(self.outbox.bot)
        except RetryAfter as err:
            self.outbox.stats.retries += 1
            self.last_error = str(err)
            return retry_after_seconds(err)
        except BadRequest as err:
            if request is not None and request.what == "edit" and "not modified" in err.message.lower():
                return self._done(request, None)
            self._refused(request, err.message, batch)
            return 0.0
        except TelegramError as err:  # network, outage, 5xx, Forbidden (blocked bot): keep trying
            self.outbox.stats.retries += 1
            self.last_error = str(err)
            self.backoff = min(max(self.backoff * 2, self.outbox.limits.chat_interval), self.outbox.limits.max_backoff)
            level = logging.WARNING if isinstance(err, Forbidden) or self.backoff >= 1 else logging.DEBUG
            log.log(level, "send to chat %s failed (%s); retrying in %.1f s", self.chat_id, err, self.backoff)
            return self.backoff
        finally:
            await self.outbox.pacer.release(self.windows)
        self.outbox.stats.messages += 1
        self.backoff = 0.0
        if request is not None:
            return self._done(request, result)
        self._delivered(batch)
        return 0.0

    def _done(self, request: Request, result: Any) -> float:
        self.requests.popleft()
        if not request.done.done():
            request.done.set_result(result)
        return 0.0

    def _remove(self, alerts: list[Alert]) -> None:
        gone = set(map(id, alerts))
        self.alerts = [a for a in self.alerts if id(a) not in gone]

    def _delivered(self, alerts: list[Alert]) -> None:
        self._remove(alerts)
        self.outbox.stats.delivered += len(alerts)
        self.outbox.forget(alerts)

    def _refused(self, request: Request | None, reason: str, alerts: list[Alert]) -> None:
        self.outbox.stats.dropped += 1
        if request is not None:
            log.error("Telegram refused a %s to chat %s (%s); it is dropped", request.what, self.chat_id, reason)
            self._done(request, None)
            return
        log.error("Telegram refused %d alert(s) to chat %s (%s); dropped: %s", len(alerts), self.chat_id, reason,
                  "; ".join(a.line for a in alerts)[:500])
        self._remove(alerts)
        self.outbox.forget(alerts)

    def _expire(self) -> None:
        """Give up, loudly, what waited longer than max_age."""
        oldest = datetime.now(UTC) - self.outbox.max_age
        while self.requests and self.requests[0].created_at < oldest:
            request = self.requests[0]
            self.outbox.stats.dropped += 1
            log.error("a %s to chat %s was undeliverable for %s (%s); given up", request.what, self.chat_id,
                      self.outbox.max_age, self.last_error or "no answer")
            self._done(request, None)
        stale = [a for a in self.alerts if a.created_at < oldest]
        if stale:
            self.outbox.stats.dropped += len(stale)
            log.error("%d alert(s) to chat %s undeliverable for %s (%s); given up: %s", len(stale), self.chat_id,
                      self.outbox.max_age, self.last_error or "no answer", "; ".join(a.line for a in stale)[:500])
            self._remove(stale)
            self.outbox.forget(stale)


class Outbox:
    """Every message the bot sends, per chat, paced, retried and (alerts) persisted."""

    def __init__(self, bot: Bot, chat_ids: Iterable[int], *, store: OutboxStore | None = None,
                 limits: Limits | None = None, max_age: timedelta = timedelta(hours=24),
                 emoji: Callable[[str], str] = lambda kind: "") -> None:
        self.bot = bot
        self.store = store
        self.limits = limits or Limits()
        self.max_age = max_age
        self.emoji = emoji
        self.pacer = Pacer(self.limits)
        self.stats = OutboxStats()
        self.chat_ids = tuple(chat_ids)
        self._chats: dict[int, _Chat] = {}
        self._running = False
        self.admits: Callable[[Alert], bool] = lambda alert: True  # a stored alert still wanted (pick_up)
        self._rows = asyncio.Lock()  # a pick-up reads the table while no delivered row is being deleted
        self._leaving: set[int] = set()  # rows delivered (or given up) whose deletion is not yet done
        self._deletes = WriteBehind(self._delete, "delivered alert(s)") if store is not None else None

    def chat(self, chat_id: int) -> _Chat:
        chat = self._chats.get(chat_id)
        if chat is None:
            chat = self._chats[chat_id] = _Chat(chat_id, self)
            if self._running:
                chat.task = asyncio.create_task(chat.run(), name=f"outbox:{chat_id}")
        return chat

    # --- lifecycle ---------------------------------------------------------------
    async def start(self) -> None:
        """Take up the alerts an earlier run left undelivered, then start sending."""
        if self.store is not None:
            try:
                await self.pick_up()
            except Exception:
                log.exception("could not read the undelivered alerts; they stay in the database")
        self._running = True
        for chat in [self.chat(c) for c in self.chat_ids]:
            if chat.task is None:
                chat.task = asyncio.create_task(chat.run(), name=f"outbox:{chat.chat_id}")

    async def pick_up(self) -> int:
        """Queue the stored alerts not queued yet: those an earlier run left, and those other processes
        (a fleet's workers) wrote. Each row once, oldest first; returns how many were new."""
        assert self.store is not None
        new, unwanted = 0, list[Alert]()
        async with self._rows:
            rows = await self.store.pending_outbox(self.chat_ids)
            for chat_id in {row.chat_id for row in rows}:
                chat = self.chat(chat_id)
                known = {a.id for a in chat.alerts} | self._leaving  # queued by this run already, or sent
                fresh: list[Alert] = []
                for row in rows:
                    if row.chat_id == chat_id and row.id not in known:
                        alert = Alert(row.kind, row.bot_name, row.text, row.line, row.created_at, id=row.id,
                                      urgent=row.urgent)
                        (fresh if self.admits(alert) else unwanted).append(alert)
                if fresh:
                    chat.alerts = sorted(chat.alerts + fresh, key=lambda a: (a.created_at, a.id or 0))
                    chat.poke()
                    new += len(fresh)
        self.forget(unwanted)
        return new

    async def stop(self, timeout: float = 5.0) -> None:
        """Give the queues `timeout` seconds, then stop; undelivered alerts stay in the database."""
        try:
            await asyncio.wait_for(self.flush(), timeout)
        except TimeoutError:
            pass
        requests = sum(len(c.requests) for c in self._chats.values())
        if self.pending_alerts or requests:
            log.warning("outbox stopped with %d alert(s) (kept for the next start) and %d request(s) unsent",
                        self.pending_alerts, requests)
        self._running = False
        tasks = [c.task for c in self._chats.values() if c.task]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for chat in self._chats.values():
            chat.task = None
            for request in chat.requests:
                request.done.cancel()
            chat.requests.clear()
        if self._deletes is not None:
            await self._deletes.flush()

    async def flush(self) -> None:
        """Wait until every queue is empty and the rows of what was delivered or dropped are deleted."""
        await asyncio.gather(*(chat.idle.wait() for chat in self._chats.values()))
        if self._deletes is not None:
            await self._deletes.flush()

    @property
    def pending_alerts(self) -> int:
        return sum(len(c.alerts) for c in self._chats.values())

    @property
    def oldest_alert(self) -> datetime | None:
        """When the oldest undelivered alert happened (the health check's measure of delivery)."""
        return min((a.created_at for c in self._chats.values() for a in c.alerts), default=None)

    # --- what the operator asked for --------------------------------------------
    def request(self, chat_id: int, what: str, call: Callable[[Bot], Awaitable[Any]]) -> asyncio.Future[Any]:
        """Queue one Bot API call for the chat, ahead of its alerts; the future gets its result."""
        request = Request(what, call, asyncio.get_running_loop().create_future())
        chat = self.chat(chat_id)
        chat.requests.append(request)
        self.stats.requests += 1
        chat.poke()
        return request.done

    def reply(self, chat_id: int, text: str, markup: InlineKeyboardMarkup | None = None) -> asyncio.Future[Any]:
        """A message; a text over 4096 units goes as several, split on line boundaries (the buttons
        under the last). The future is the last message's."""
        parts = split_message(text.split("\n")) if tg_len(text) > MAX_MESSAGE else [text]
        done: asyncio.Future[Any] | None = None
        for i, part in enumerate(parts):
            buttons = markup if i == len(parts) - 1 else None
            done = self.request(chat_id, "reply", _sender(chat_id, part, buttons))
        assert done is not None
        return done

    def edit(self, chat_id: int, message_id: int, text: str,
             markup: InlineKeyboardMarkup | None = None) -> asyncio.Future[Any]:
        """Replace a message in place (cut to one message's length); an unchanged text is fine."""
        text = text if tg_len(text) <= MAX_MESSAGE else split_message(text.split("\n"))[0]

        async def call(bot: Bot) -> Any:
            return await bot.edit_message_text(text, chat_id, message_id, reply_markup=markup)

        return self.request(chat_id, "edit", call)

    def photo(self, chat_id: int, png: bytes, caption: str) -> asyncio.Future[Any]:
        caption = fit(caption, MAX_CAPTION)

        async def call(bot: Bot) -> Any:
            return await bot.send_photo(chat_id, photo=png, caption=caption)

        return self.request(chat_id, "photo", call)

    # --- alerts --------------------------------------------------------------------
    async def add_alerts(self, alerts: Sequence[Alert], chat_ids: Iterable[int] | None = None) -> None:
        """Queue alerts for every chat (kept in the database until delivered)."""
        targets = [self.chat(c) for c in (self.chat_ids if chat_ids is None else chat_ids)]
        queued = [(chat, alert) for chat in targets for alert in alerts]
        if self.store is not None and queued:
            try:
                ids = await self.store.add_outbox([alert.row(chat.chat_id) for chat, alert in queued])
                queued = [(chat, replace(alert, id=i)) for (chat, alert), i in zip(queued, ids, strict=True)]
            except Exception:
                log.exception("could not store %d alert(s); they are kept in memory only", len(queued))
        restored = {chat.chat_id: {a.id for a in chat.alerts} for chat in targets}  # a start may have read them
        for chat, alert in queued:
            if alert.id is None or alert.id not in restored[chat.chat_id]:
                chat.alerts.append(alert)
                chat.poke()
        self.stats.alerts += len(queued)

    def forget(self, alerts: Iterable[Alert]) -> None:
        """Delete these alerts from the database, behind: the chat's next message does not wait for it."""
        ids = [a.id for a in alerts if a.id is not None]
        if self._deletes is not None and ids:
            self._leaving.update(ids)  # at once: a pick-up must not queue them again
            self._deletes.add(ids)

    async def _delete(self, ids: list[int]) -> None:
        """The writer's delete (a pick-up waits meanwhile); a failure is logged by the writer and leaves
        the ids in ``_leaving``: this run does not send them again."""
        assert self.store is not None, "deletes are queued only with a store"
        async with self._rows:
            await self.store.delete_outbox(ids)
        self._leaving.difference_update(ids)


class StoredAlerts:
    """A fleet worker's alerts: written to the outbox table for every chat, ``notify`` told in the same
    transaction; the console's `Outbox` delivers them. Nothing is sent from here."""

    def __init__(self, store: OutboxStore, chat_ids: Iterable[int], *, notify: str | None = None) -> None:
        self.store = store
        self.chat_ids = tuple(chat_ids)
        self.notify = notify
        self.stored = 0

    async def add_alerts(self, alerts: Sequence[Alert], chat_ids: Iterable[int] | None = None) -> None:
        rows = [alert.row(chat) for chat in (self.chat_ids if chat_ids is None else chat_ids) for alert in alerts]
        if not rows:
            return
        try:
            await self.store.add_outbox(rows, notify=self.notify)
        except Exception:  # the database is the only way to the chat: the desk's own log keeps the events
            log.exception("could not store %d alert(s) for the console; they are lost to the chat", len(rows))
            return
        self.stored += len(rows)


def _sender(chat_id: int, text: str, markup: InlineKeyboardMarkup | None) -> Callable[[Bot], Awaitable[Any]]:
    async def call(bot: Bot) -> Any:
        return await bot.send_message(chat_id, text, reply_markup=markup)

    return call
