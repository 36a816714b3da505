"""Only the configured chats may command the desk.

A guard in handler group -1 sees every update first. An update from any other chat (message,
button press, anything) is stopped there: no reply, no state change, no data; it is logged with
the chat id, at most once a minute per chat so a stranger cannot flood the log.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable

from telegram import Update
from telegram.ext import ApplicationHandlerStop, ContextTypes, TypeHandler

log = logging.getLogger(__name__)

LOG_EVERY = 60.0


class ChatGuard:
    def __init__(self, allowed_chat_ids: Iterable[int]) -> None:
        self.allowed = frozenset(allowed_chat_ids)
        self.rejected = 0
        self._last_logged: dict[int | None, float] = {}

    def is_allowed(self, update: Update) -> bool:
        # an allowed group chat trusts its members: the operator chose to add them
        chat = update.effective_chat
        return chat is not None and chat.id in self.allowed

    async def __call__(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        if self.is_allowed(update):
            return
        self.rejected += 1
        chat_id = update.effective_chat.id if update.effective_chat else None
        now = time.monotonic()
        if now - self._last_logged.get(chat_id, -LOG_EVERY) >= LOG_EVERY:
            self._last_logged[chat_id] = now
            log.warning("ignored update from unauthorised chat %s (%d refused so far)", chat_id, self.rejected)
        raise ApplicationHandlerStop

    def handler(self) -> TypeHandler:
        return TypeHandler(Update, self)
