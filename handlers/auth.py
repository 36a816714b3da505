"""Who may command the desk: the allowed chats, and each operator's role by Telegram user id.

A guard in handler group -1 sees every update first.

- An update from a chat not on TELEGRAM_CHAT_IDS (message, button press, anything) is stopped there:
  no reply, no state change, no data; it is logged with the chat id, at most once a minute per chat
  so a stranger cannot flood the log.
- In an allowed chat, each user has a role: viewer (read-only commands) < trader (start, pause,
  stop one bot) < admin (halt, resume, scaling, all-bot actions, the audit trail). Roles come from
  TELEGRAM_ADMINS / TELEGRAM_TRADERS / TELEGRAM_VIEWERS (the highest list a user is on wins). With
  none of them set, the user of an allowed *private* chat is admin, so a one-person desk needs no
  new setting; members of an allowed group then have no role.
- A user without a role can do nothing. Their command gets one polite refusal (naming their user
  id, so an admin can add it) at most every REFUSE_EVERY seconds, and is written to the audit
  trail then; other commands and ordinary group chatter are ignored. Their button press is answered
  with the refusal (the client would spin otherwise) and does not use up the button.

What each command and button needs is declared once where it is defined (handlers/commands.py).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from enum import IntEnum
from typing import TYPE_CHECKING

from telegram import Update
from telegram.error import TelegramError
from telegram.ext import ApplicationHandlerStop, ContextTypes, TypeHandler

if TYPE_CHECKING:
    from traderagent.config import Settings

log = logging.getLogger(__name__)

LOG_EVERY = 60.0
REFUSE_EVERY = 600.0  # one refusal per user without a role in this many seconds; silence in between
ROLE_VARIABLES = "TELEGRAM_VIEWERS, TELEGRAM_TRADERS or TELEGRAM_ADMINS"


class Role(IntEnum):
    """Each role may do everything the lower ones may."""

    NONE = 0
    VIEWER = 1
    TRADER = 2
    ADMIN = 3

    @property
    def label(self) -> str:
        return "no role" if self is Role.NONE else self.name.lower()


@dataclass(frozen=True)
class Roles:
    """The configured user ids per role; all empty: the user of an allowed private chat is admin."""

    admins: frozenset[int] = frozenset()
    traders: frozenset[int] = frozenset()
    viewers: frozenset[int] = frozenset()

    @classmethod
    def from_settings(cls, settings: Settings) -> Roles:
        return cls(frozenset(settings.telegram_admins), frozenset(settings.telegram_traders),
                   frozenset(settings.telegram_viewers))

    @property
    def configured(self) -> bool:
        return bool(self.admins or self.traders or self.viewers)

    def holders(self) -> dict[int, Role]:
        """Every listed user with the highest role they are listed for."""
        return {user: role for role, ids in ((Role.VIEWER, self.viewers), (Role.TRADER, self.traders),
                                             (Role.ADMIN, self.admins)) for user in ids}

    def of(self, user_id: int | None, *, private_chat: bool) -> Role:
        if not self.configured:
            return Role.ADMIN if private_chat else Role.NONE
        for role, ids in ((Role.ADMIN, self.admins), (Role.TRADER, self.traders), (Role.VIEWER, self.viewers)):
            if user_id in ids:
                return role
        return Role.NONE


@dataclass(frozen=True)
class Actor:
    """Who acts in an update: the user, the chat, and the role they hold there."""

    user_id: int | None
    name: str  # "@username", else the full name
    chat_id: int
    role: Role

    @property
    def label(self) -> str:
        """For the desk's records and messages: "@name (id)"."""
        return "unknown" if self.user_id is None else f"{self.name} ({self.user_id})"


def actor_of(update: Update, roles: Roles) -> Actor:
    chat, user = update.effective_chat, update.effective_user
    assert chat is not None, "the guard stops updates without a chat"
    name = (f"@{user.username}" if user.username else user.full_name) if user else "unknown"
    role = roles.of(user.id if user else None, private_chat=chat.type == chat.PRIVATE)
    return Actor(user.id if user else None, name, chat.id, role)


async def audit(context: ContextTypes.DEFAULT_TYPE, actor: Actor, action: str, args: str, outcome: str,
                detail: str = "") -> None:
    """One row in the audit trail. A failed write is logged: the action itself has already happened."""
    desk = context.application.bot_data["frontend"].desk
    try:
        await desk.record_action(user_id=actor.user_id, user_name=actor.name, chat_id=actor.chat_id,
                                 role=actor.role.label, action=action, args=args, outcome=outcome, detail=detail)
    except Exception:
        log.exception("could not write the audit row of %s by %s", action, actor.label)


def no_role_text(actor: Actor) -> str:
    return (f"🔒 You have no role on this desk. An admin can add your user id <code>{actor.user_id}</code> "
            f"to {ROLE_VARIABLES}.")


class ChatGuard:
    def __init__(self, allowed_chat_ids: Iterable[int], roles: Roles | None = None) -> None:
        self.allowed = frozenset(allowed_chat_ids)
        self.roles = roles or Roles()
        self.rejected = 0  # updates from chats not on the list
        self.denied = 0  # updates from users without a role, handled (answered or ignored)
        self._last_logged: dict[int | None, float] = {}
        self._last_refused: dict[int | None, float] = {}

    def is_allowed(self, update: Update) -> bool:
        chat = update.effective_chat
        return chat is not None and chat.id in self.allowed

    def actor(self, update: Update) -> Actor:
        return actor_of(update, self.roles)

    async def __call__(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        if not self.is_allowed(update):
            self._reject_chat(update)
            raise ApplicationHandlerStop
        actor = self.actor(update)
        if actor.role is Role.NONE:
            await self._refuse(update, context, actor)
            raise ApplicationHandlerStop

    def _reject_chat(self, update: Update) -> None:
        self.rejected += 1
        chat_id = update.effective_chat.id if update.effective_chat else None
        if self._due(self._last_logged, chat_id, LOG_EVERY):
            log.warning("ignored update from unauthorised chat %s (%d refused so far)", chat_id, self.rejected)

    async def _refuse(self, update: Update, context: ContextTypes.DEFAULT_TYPE, actor: Actor) -> None:
        """A user without a role: the button press is answered; a command is refused now and then."""
        query, command = update.callback_query, command_of(update, context.bot.username)
        try:
            if query is not None:
                await query.answer("🔒 You have no role on this desk.", show_alert=True)
            if (query is None and command is None) or not self._due(self._last_refused, actor.user_id, REFUSE_EVERY):
                return  # chatter, or refused recently: silence
            if query is None:  # through the chat's outbox, like every message
                context.application.bot_data["frontend"].outbox.reply(actor.chat_id, no_role_text(actor))
            await audit(context, actor, command or "button", "", "denied", "no role")
        except TelegramError as err:  # e.g. a press too old to answer: not worth an error in the chat
            log.info("could not refuse user %s: %s", actor.user_id, err)
        finally:
            self.denied += 1

    @staticmethod
    def _due(last: dict[int | None, float], key: int | None, every: float) -> bool:
        now = time.monotonic()
        if now - last.get(key, -every) < every:
            return False
        last[key] = now
        return True

    def handler(self) -> TypeHandler:
        return TypeHandler(Update, self)


def command_of(update: Update, bot_username: str | None) -> str | None:
    """"/name" of a command message meant for this bot (also "/name@thisbot"); None for anything else,
    such as chatter or a command addressed to another bot in a group."""
    message = update.effective_message
    text = message.text if message is not None and update.callback_query is None else None
    if not text or not text.startswith("/"):
        return None
    name, _, addressee = text.split(maxsplit=1)[0].partition("@")
    if addressee and bot_username and addressee.lower() != bot_username.lower():
        return None
    return name.lower()
