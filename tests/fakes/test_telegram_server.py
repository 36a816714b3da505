"""The fake Bot API server, exercised by the real python-telegram-bot Application."""

from __future__ import annotations

import asyncio

import pytest
from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.error import BadRequest, Forbidden, InvalidToken
from telegram.ext import AIORateLimiter, ApplicationBuilder, CallbackQueryHandler, CommandHandler
from telegram.request import HTTPXRequest

from tests.fakes.telegram_server import TOKEN, FakeTelegram


def _request() -> HTTPXRequest:
    return HTTPXRequest(httpx_kwargs={"trust_env": False})


def make_bot(fake: FakeTelegram, token: str = TOKEN) -> Bot:
    return Bot(token, base_url=f"{fake.url}/bot", base_file_url=f"{fake.url}/file/bot", request=_request())


async def test_updates_it_emits_parse_in_ptb(fake: FakeTelegram) -> None:
    bot = make_bot(fake)
    command = Update.de_json(fake.push_command(555, "/status btc"), bot)
    assert command.message.text == "/status btc" and command.effective_chat.id == 555
    sent = fake._store_message({"chat_id": 555}, {"text": "hello"})
    press = Update.de_json(fake.push_callback(555, sent["message_id"], "r:1"), bot)
    assert press.callback_query.data == "r:1" and press.callback_query.message.text == "hello"


async def test_limits_enforced_like_telegram(fake: FakeTelegram) -> None:
    async with make_bot(fake) as bot:
        with pytest.raises(BadRequest, match="too long"):
            await bot.send_message(555, "x" * 4097)
        with pytest.raises(BadRequest, match="empty"):
            await bot.send_message(555, " ")
        long_data = InlineKeyboardMarkup([[InlineKeyboardButton("b", callback_data="x" * 65)]])
        with pytest.raises(BadRequest, match="(?i)button_data_invalid"):
            await bot.send_message(555, "hi", reply_markup=long_data)
        message = await bot.send_message(555, "same")
        with pytest.raises(BadRequest, match="not modified"):
            await bot.edit_message_text("same", chat_id=555, message_id=message.message_id)
        fake.faults["sendMessage"] = [(403, "Forbidden: bot was blocked by the user", None)]
        with pytest.raises(Forbidden):
            await bot.send_message(555, "blocked")
    with pytest.raises(InvalidToken):
        async with make_bot(fake, token="1:wrong"):
            pass


async def test_application_polls_replies_edits_and_retries_429(fake: FakeTelegram) -> None:
    async def status(update, context) -> None:
        keyboard = InlineKeyboardMarkup([[InlineKeyboardButton("Refresh", callback_data="refresh")]])
        await update.message.reply_html("<b>Status</b>: PnL &lt; 0", reply_markup=keyboard)

    async def refresh(update, context) -> None:
        await update.callback_query.answer("refreshing")
        await update.callback_query.edit_message_text("Status: refreshed")

    app = (
        ApplicationBuilder().token(TOKEN).base_url(f"{fake.url}/bot").base_file_url(f"{fake.url}/file/bot")
        .request(_request()).get_updates_request(_request())
        .rate_limiter(AIORateLimiter(max_retries=2)).build()
    )
    app.add_handler(CommandHandler("status", status))
    app.add_handler(CallbackQueryHandler(refresh, pattern="^refresh$"))
    async with app:
        await app.bot.set_my_commands([("status", "Show status")])
        await app.start()
        await app.updater.start_polling(timeout=1)
        fake.push_command(555, "/status")
        (sent,) = await fake.wait_for("sendMessage")
        assert sent.params["parse_mode"] == "HTML"
        fake.push_callback(555, sent.result["message_id"], "refresh")
        await fake.wait_for("answerCallbackQuery")
        (edit,) = await fake.wait_for("editMessageText")
        assert edit.result["text"] == "Status: refreshed"
        fake.faults["sendMessage"] = [(429, "Too Many Requests: retry after 1", {"retry_after": 1})]
        loop = asyncio.get_running_loop()
        started = loop.time()
        await app.bot.send_message(555, "after flood")
        assert loop.time() - started >= 1.0
        assert [c.status for c in fake.calls if c.method == "sendMessage"][-2:] == [429, 200]
        await app.updater.stop()
        await app.stop()
    assert fake.commands == [{"command": "status", "description": "Show status"}]
    assert [c.method for c in fake.calls[:3]] == ["getMe", "setMyCommands", "deleteWebhook"]


async def test_flood_limits_are_enforced_and_recorded(fake: FakeTelegram) -> None:
    from telegram.error import RetryAfter

    fake.enforce(scale=100.0)  # a "second" of 100 s: the second message cannot be late enough
    async with make_bot(fake) as bot:
        await bot.send_message(555, "first")
        with pytest.raises(RetryAfter):
            await bot.send_message(555, "too soon")
        await bot.send_message(556, "another chat is free")
        assert [(v.chat_id, v.rule) for v in fake.violations] == [(555, "1 message per second per chat")]
        for n in range(19):
            await bot.send_message(-1000 - n, "group")  # 21 private and group chats by now
        await bot.send_message(-100, "a group's first")  # 21 this "second": still within 30
        for n in range(8):
            await bot.send_message(600 + n, "bot-wide")
        with pytest.raises(RetryAfter):
            await bot.send_message(700, "the 31st this second")
        assert fake.violations[-1].rule == "30 messages per second per bot"


async def test_outages_refuse_and_fail(fake: FakeTelegram) -> None:
    from telegram.error import NetworkError

    async with make_bot(fake) as bot:
        fake.outage = 502
        with pytest.raises(NetworkError):
            await bot.send_message(555, "during a 502")
        fake.outage = None
        await fake.refuse()
        with pytest.raises(NetworkError):
            await bot.send_message(555, "while refused")
        await fake.accept()
        assert (await bot.send_message(555, "back")).text == "back"
