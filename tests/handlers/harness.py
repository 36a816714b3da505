"""The real Telegram frontend (handlers.app.build_application) on the fake Bot API server, in front of
a real desk (orchestrators, SQLite, capital manager) trading on the exchange simulator.

`Operator` plays the human: it pushes commands and button presses into the fake server and waits
for what the bot sends back.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from telegram.constants import ParseMode
from telegram.ext import Defaults, ExtBot
from telegram.request import HTTPXRequest

from handlers.app import TelegramFrontend, build_application
from handlers.outbox import Limits
from tests.fakes.telegram_server import TOKEN, Call, FakeTelegram
from tests.orchestrator.helpers import GRID, TREND, Clock, Harness, build_desk
from traderagent.config import Secret, Settings

CHAT = 555
STRANGER = 666
SCALE = 0.01  # a Telegram second lasts 10 ms: the fake server enforces the limits on that clock
FAST = Limits().scaled(SCALE)

# names chosen so that "grid" is an ambiguous prefix and "grid-x" / "trend" are unique
XRP_GRID = dataclasses.replace(GRID, name="grid-xrp")
ETH_GRID = dataclasses.replace(GRID, name="grid-eth", symbol="ETHUSDT")
BTC_TREND = dataclasses.replace(TREND, name="trend-btc", share=Decimal("0.4"))
SPECS = [XRP_GRID, ETH_GRID, BTC_TREND]


def settings_for(fake: FakeTelegram, chats: tuple[int, ...] = (CHAT,), **settings: Any) -> Settings:
    return Settings(telegram_bot_token=Secret(TOKEN), telegram_chat_ids=chats, telegram_api_base_url=fake.url,
                    **settings)


async def start_frontend(fake: FakeTelegram, desk: Any, *, limits: Limits = FAST, **settings: Any) -> TelegramFrontend:
    """The real frontend, paced on the fake server's clock; the fake refuses (and records) any
    message beyond Telegram's limits. ``settings``: Settings fields (telegram_chat_ids as ``chats``, roles, ...)."""
    fake.enforce(SCALE)
    frontend = build_application(settings_for(fake, **settings), desk, desk.event_bus, limits=limits, poll_timeout=1)
    await frontend.start()
    return frontend


async def start_desk(sim: Any, tmp_path: Any, specs: list | None = None, clock: Clock | None = None) -> Harness:
    return await build_desk(sim.base_url, tmp_path / "tg.db", specs or SPECS, clock=clock or Clock())


async def until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    """Wait (polling) until `predicate()` holds; fail after `timeout` seconds."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached")
        await asyncio.sleep(0.01)


def buttons(call: Call) -> dict[str, str]:
    """label -> callback_data of the inline keyboard a call sent."""
    markup = call.params.get("reply_markup") or {}
    return {b["text"]: b["callback_data"] for row in markup.get("inline_keyboard", []) for b in row}


def button(call: Call, label: str) -> str:
    found = [data for text, data in buttons(call).items() if label in text]
    assert found, f"no button {label!r} in {list(buttons(call))}"
    return found[0]


class Operator:
    """The operator's chat, seen through the fake server."""

    def __init__(self, fake: FakeTelegram, chat_id: int = CHAT, user_id: int | None = None,
                 username: str | None = None) -> None:
        self.fake = fake
        self.chat_id = chat_id
        self.user = {"user_id": user_id, "username": username}  # who types and presses (default: the chat's user)

    def _find(self, method: str, since: int, pred: Callable[[Call], bool]) -> Call | None:
        for call in self.fake.calls[since:]:
            if call.method == method and call.status == 200 and pred(call):
                return call
        return None

    async def next(self, method: str, since: int, match: str | None = None, timeout: float = 10.0) -> Call:
        """The first successful `method` call after index `since` (whose text contains `match`)."""

        def pred(call: Call) -> bool:
            text = call.params.get("text") or call.params.get("caption") or ""
            return match is None or match in text

        deadline = asyncio.get_running_loop().time() + timeout
        while (found := self._find(method, since, pred)) is None:
            if asyncio.get_running_loop().time() > deadline:
                seen = [(c.method, c.status, str(c.params.get("text", ""))[:80]) for c in self.fake.calls[since:]]
                raise AssertionError(f"no {method} matching {match!r}; calls since: {seen}")
            await asyncio.sleep(0.01)
        return found

    async def command(self, text: str, match: str | None = None, method: str = "sendMessage") -> Call:
        since = len(self.fake.calls)
        self.fake.push_command(self.chat_id, text, **self.user)
        return await self.next(method, since, match)

    async def press(self, message: Call, data: str, method: str | None = "editMessageText",
                    match: str | None = None) -> tuple[Call, Call | None]:
        """Press a button under `message`; returns (answerCallbackQuery, the `method` call or None)."""
        since = len(self.fake.calls)
        self.fake.push_callback(self.chat_id, message.result["message_id"], data, **self.user)
        answer = await self.next("answerCallbackQuery", since)
        follow = await self.next(method, since, match) if method else None
        return answer, follow


# ---------------------------------------------------------------------- fixtures (imported by conftest / e2e)
@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def bot(fake: FakeTelegram):
    """A bare PTB Bot on the fake server (HTML by default, as the Application's)."""
    request = HTTPXRequest(httpx_kwargs={"trust_env": False})
    async with ExtBot(TOKEN, base_url=f"{fake.url}/bot", request=request,
                      defaults=Defaults(parse_mode=ParseMode.HTML)) as b:
        yield b


@pytest.fixture
async def desk_h(sim, tmp_path, clock):
    harness = await start_desk(sim, tmp_path, clock=clock)
    yield harness
    await harness.close()


@pytest.fixture
async def frontend(fake, desk_h):
    front = await start_frontend(fake, desk_h.desk)
    yield front
    await front.stop()
    assert fake.violations == [], "the bot exceeded Telegram's limits"


@pytest.fixture
def op(fake, frontend) -> Operator:
    return Operator(fake)
