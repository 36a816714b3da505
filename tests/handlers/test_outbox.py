"""The outbox on the fake Bot API server, which enforces Telegram's limits on its own clock (a second
lasts 10 ms here) and records every message beyond them: replies ahead of alerts, nothing lost to
429s, outages or a restart, every message within 4096 UTF-16 units."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta

import pytest
from telegram import InlineKeyboardButton, InlineKeyboardMarkup
from telegram.ext import ExtBot

from handlers.formatting import emoji, tg_len
from handlers.notifier import alert_of
from handlers.outbox import Alert, Outbox
from tests.fakes.telegram_server import FakeTelegram
from tests.handlers.harness import CHAT, FAST, SCALE, Operator, button, start_frontend, until
from traderagent.orchestrator.events import ErrorRaised, EventType, TradingEvent


def alert(text: str, at: datetime | None = None) -> Alert:
    event = TradingEvent(EventType.ERROR, "grid-xrp", ErrorRaised(text), timestamp=at or datetime.now(UTC))
    return alert_of(event)


@pytest.fixture
async def outbox(fake: FakeTelegram, bot: ExtBot):
    fake.enforce(SCALE)
    box = Outbox(bot, [CHAT], limits=FAST, emoji=emoji)
    yield box
    await box.stop(timeout=0)


async def test_replies_go_ahead_of_alerts_which_are_merged(fake: FakeTelegram, outbox: Outbox) -> None:
    await outbox.add_alerts([alert(f"alert {i}") for i in range(5)])
    replies = [outbox.reply(CHAT, f"reply {i}") for i in range(3)]
    await outbox.start()
    await asyncio.wait_for(asyncio.gather(*replies), 10)
    await asyncio.wait_for(outbox.flush(), 10)
    texts = fake.sent_texts(CHAT)
    assert texts[:3] == ["reply 0", "reply 1", "reply 2"]
    assert len(texts) == 4 and texts[3].startswith("📬 <b>5 alerts</b> · grid-xrp\n🚨 ")
    assert [texts[3].index(f"alert {i}") for i in range(5)] == sorted(texts[3].index(f"alert {i}") for i in range(5))
    assert replies[0].result().text == "reply 0"  # the caller gets the Message
    assert fake.violations == [] and outbox.stats.dropped == 0


async def test_a_long_reply_is_split_on_line_boundaries(fake: FakeTelegram, outbox: Outbox) -> None:
    lines = [f"line {i:03d} " + "é€😀" * 40 for i in range(150)]  # the emoji counts 2 UTF-16 units
    markup = InlineKeyboardMarkup([[InlineKeyboardButton("OK", callback_data="ok")]])
    await outbox.start()
    await asyncio.wait_for(outbox.reply(CHAT, "\n".join(lines), markup), 10)
    calls = fake.calls_of("sendMessage")
    assert len(calls) == 7 and all(4000 < tg_len(c.params["text"]) <= 4096 for c in calls[:-1])
    assert "\n".join(c.params["text"] for c in calls) == "\n".join(lines)  # cut between lines only
    assert [bool(c.params.get("reply_markup")) for c in calls] == [False] * 6 + [True]  # buttons last


async def test_group_and_bot_wide_limits_are_kept(fake: FakeTelegram, bot: ExtBot) -> None:
    fake.enforce(SCALE)
    group, privates = -100123, list(range(1, 41))
    outbox = Outbox(bot, [group, *privates], limits=FAST)
    await outbox.start()
    sent = [outbox.reply(group, f"group {i}") for i in range(25)]  # more than 20 a minute
    sent += [outbox.reply(chat, "hello") for chat in privates]  # more than 30 a second
    await asyncio.wait_for(asyncio.gather(*sent), 30)
    await outbox.stop()
    assert len(fake.calls_of("sendMessage")) == 65
    assert fake.violations == []


async def test_429_and_outages_are_waited_out(fake: FakeTelegram, outbox: Outbox) -> None:
    await outbox.start()
    fake.faults["sendMessage"] = [(429, "Too Many Requests: retry after 1", {"retry_after": 1})]
    await asyncio.wait_for(outbox.reply(CHAT, "after a 429"), 10)
    await fake.refuse()  # connection refused
    second = outbox.reply(CHAT, "after connection refused")
    await until(lambda: outbox.stats.retries >= 3)
    await fake.accept()
    await asyncio.wait_for(second, 10)
    fake.outage = 502
    third = outbox.reply(CHAT, "after 502s")
    await until(lambda: outbox.stats.retries >= 5)
    fake.outage = None
    await asyncio.wait_for(third, 10)
    assert fake.sent_texts(CHAT) == ["after a 429", "after connection refused", "after 502s"]
    assert outbox.stats.dropped == 0 and fake.violations == []


async def test_what_waits_longer_than_max_age_is_logged_with_its_reason(
        fake: FakeTelegram, bot: ExtBot, caplog: pytest.LogCaptureFixture) -> None:
    fake.outage = 502
    outbox = Outbox(bot, [CHAT], limits=FAST, max_age=timedelta(milliseconds=300))
    await outbox.start()
    await outbox.add_alerts([alert("never seen")])
    outbox.reply(CHAT, "never answered")
    with caplog.at_level(logging.ERROR, logger="handlers.outbox"):
        await until(lambda: outbox.stats.dropped == 2)
    await outbox.stop()
    assert "reply to chat 555 was undeliverable" in caplog.text and "Bad Gateway" in caplog.text
    assert "1 alert(s) to chat 555 undeliverable" in caplog.text and "never seen" in caplog.text


# ---------------------------------------------------------------------- the real Application
async def test_a_flood_of_200_commands_is_answered_in_full(op: Operator, fake: FakeTelegram, frontend) -> None:
    since = len(fake.calls)
    for second in range(10):  # 200 commands over 10 s of the fake server's clock, a /halt the 101st
        for i in range(20):
            fake.push_command(CHAT, "/halt flood" if second * 20 + i == 100 else "/status")
        await asyncio.sleep(SCALE)  # shapes the input only: no assertion depends on it

    def replies() -> list:
        return [c for c in fake.calls[since:] if c.method == "sendMessage" and c.status == 200]

    await until(lambda: len(replies()) >= 200, timeout=60)
    await frontend.outbox.flush()
    texts = [c.params["text"] for c in replies()]
    assert len(texts) == 200  # every command answered, once
    assert not [t for t in texts if "Internal error" in t]
    halt = next(i for i, t in enumerate(texts) if "Halt all trading?" in t)
    assert halt < 150  # in its turn: not behind the commands that came after it
    assert fake.violations == []  # and Telegram's pace was kept throughout
    confirm = replies()[halt]
    await op.press(confirm, button(confirm, "Halt trading"), match="Trading halted")


async def test_alerts_queued_during_an_outage_arrive_after_a_restart(fake: FakeTelegram, desk_h) -> None:
    front = await start_frontend(fake, desk_h.desk)
    front.stop_grace = 0.05
    fake.outage = 502
    base = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=3)
    for i in range(5):
        desk_h.desk.event_bus.publish(TradingEvent(EventType.ERROR, "grid-xrp", ErrorRaised(f"outage {i}"),
                                                   timestamp=base + timedelta(seconds=i)))
    await desk_h.desk.event_bus.drain(5)
    assert len(await desk_h.db.pending_outbox([CHAT])) == 5  # kept in the database
    await front.stop()
    fake.outage = None
    again = await start_frontend(fake, desk_h.desk)  # a new Application on the same database
    try:
        await asyncio.wait_for(again.outbox.flush(), 10)
    finally:
        await again.stop()
    [text] = [t for t in fake.sent_texts(CHAT) if "outage" in t]  # merged into one message
    assert text.startswith("📬 <b>5 alerts</b> · grid-xrp")
    at = [text.index(f"{base + timedelta(seconds=i):%H:%M:%S} <b>grid-xrp</b> error: outage {i}") for i in range(5)]
    assert at == sorted(at)  # oldest first, each with its own time
    assert await desk_h.db.pending_outbox([CHAT]) == []


async def test_a_reply_never_waits_for_the_database(op: Operator, fake: FakeTelegram, desk_h, frontend,
                                                    monkeypatch) -> None:
    """A delivered alert's row is deleted behind: a database slow to take the delete holds up no reply."""
    deleting, release = asyncio.Event(), asyncio.Event()
    delete = desk_h.db.delete_outbox

    async def slow_delete(ids: list[int]) -> None:
        deleting.set()
        await release.wait()
        await delete(ids)

    monkeypatch.setattr(desk_h.db, "delete_outbox", slow_delete)
    desk_h.desk.event_bus.publish(TradingEvent(EventType.ERROR, "grid-xrp", ErrorRaised("disk is slow")))
    await asyncio.wait_for(deleting.wait(), 30)  # the alert went out; its row's delete hangs
    await op.command("/status", match="Desk")
    assert len(await desk_h.db.pending_outbox([CHAT])) == 1
    release.set()
    await frontend.stop()  # a stop waits for the deletes queued
    assert await desk_h.db.pending_outbox([CHAT]) == []


async def test_an_overlong_argument_gets_a_sane_reply(op: Operator) -> None:
    call = await op.command("/pause " + "x" * 4089)
    text = call.params["text"]
    assert tg_len(text) < 200 and "usage: /pause [bot]" in text and "at most 64 characters" in text


async def test_a_text_telegram_refuses_is_logged_with_telegram_s_reason(
        fake: FakeTelegram, outbox: Outbox, caplog: pytest.LogCaptureFixture) -> None:
    fake.faults["sendMessage"] = [(400, "Bad Request: can't parse entities", None)]
    await outbox.add_alerts([alert("refused")])
    await outbox.start()
    with caplog.at_level(logging.ERROR, logger="handlers.outbox"):
        await until(lambda: outbox.stats.dropped == 1)
    await outbox.add_alerts([alert("the next one")])
    await asyncio.wait_for(outbox.flush(), 10)
    assert "refused 1 alert(s) to chat 555 (Can't parse entities); dropped: " in caplog.text
    assert fake.sent_texts(CHAT) == ["🚨 <b>Error</b> · grid-xrp\nthe next one"]
