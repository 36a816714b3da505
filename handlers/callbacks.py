"""Inline buttons: one-time tokens in callback_data, and the dispatch of a press.

A keyboard is built from (label, action, arg) triples; every button gets a fresh token from the
frontend's TokenStore (12 characters, far below the 64-byte limit) and all buttons of one message
share a token group, so the first press voids its siblings. A press whose token is unknown, used,
expired or issued to another chat is answered "expired" and does nothing; a double tap therefore
acts once. Every press is answered (the client shows a spinner until then), also when the action
fails. Actions register themselves with `@action("name", role)` (handlers/commands.py defines them):
the role a press needs is declared there once and copied into each token; a Cancel button (role
None) needs the highest role of its keyboard. A press by a user whose role is too low is refused
and leaves the buttons usable. Every press is written to the audit trail with its outcome.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, cast

from telegram import CallbackQuery, InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.error import TelegramError
from telegram.ext import ContextTypes

from handlers.auth import Actor, Role, audit
from handlers.tokens import ButtonAction
from traderagent.control import ControlError
from traderagent.ports import DeskPort
from traderagent.utils.secrets_filter import mask

if TYPE_CHECKING:
    from handlers.app import TelegramFrontend

log = logging.getLogger(__name__)

EXPIRED = "This button has expired. Run the command again."
# what a press after the button's TTL says, by action (default EXPIRED)
LATE = {name: "This scaling decision has expired. Send /scale: the gates are checked again."
        for name in ("approve", "reject")}
MAX_ANSWER = 200

Button = tuple[str, str, str]  # label, action, arg
ActionFunc = Callable[["Press"], Awaitable[str | None]]

ACTIONS: dict[str, ActionFunc] = {}
ACTION_ROLES: dict[str, Role | None] = {}  # None: the highest role among the keyboard's other buttons


def action(name: str, role: Role | None) -> Callable[[ActionFunc], ActionFunc]:
    """Register what a button with this action does and the least role a press needs; the function
    returns the toast text."""

    def register(func: ActionFunc) -> ActionFunc:
        ACTIONS[name] = func
        ACTION_ROLES[name] = role
        return func

    return register


def frontend_of(context: ContextTypes.DEFAULT_TYPE) -> TelegramFrontend:
    return cast("TelegramFrontend", context.application.bot_data["frontend"])


def keyboard(frontend: TelegramFrontend, chat_id: int, rows: Sequence[Sequence[Button]], *,
             expires_at: datetime | None = None) -> InlineKeyboardMarkup | None:
    """Inline keyboard whose buttons carry one-time tokens of one group (until ``expires_at``, default the
    store's TTL)."""
    rows = [row for row in rows if row]
    if not rows:
        return None
    group = frontend.tokens.new_group()
    declared = [ACTION_ROLES[name] for row in rows for _, name, _ in row]
    highest = max((r for r in declared if r is not None), default=Role.VIEWER)

    def token(name: str, arg: str) -> str:
        role = ACTION_ROLES[name]
        return frontend.tokens.issue(name, arg, chat_id, group=group, role=highest if role is None else role,
                                     expires_at=expires_at)

    return InlineKeyboardMarkup([[InlineKeyboardButton(label, callback_data=token(name, arg))
                                  for label, name, arg in row] for row in rows])


@dataclass
class Interaction:
    """What every operator interaction (a command or a button press) can reach."""

    update: Update
    context: ContextTypes.DEFAULT_TYPE

    @property
    def frontend(self) -> TelegramFrontend:
        return frontend_of(self.context)

    @property
    def desk(self) -> DeskPort:
        return self.frontend.desk

    @property
    def actor(self) -> Actor:
        return self.frontend.guard.actor(self.update)

    @property
    def by(self) -> str:
        return self.actor.label

    def keyboard(self, rows: Sequence[Sequence[Button]]) -> InlineKeyboardMarkup | None:
        return keyboard(self.frontend, self.chat_id, rows)  # type: ignore[attr-defined]


@dataclass
class Press(Interaction):
    """One accepted button press: what it was, where, by whom."""

    query: CallbackQuery
    entry: ButtonAction
    chat_id: int

    @property
    def arg(self) -> str:
        return self.entry.arg

    async def edit(self, text: str, markup: InlineKeyboardMarkup | None = None) -> None:
        """Replace the pressed message in place, through the chat's outbox; an unchanged message is fine."""
        message = self.query.message
        if message is None:
            return  # too old for Telegram to say which message it was
        self.frontend.outbox.edit(self.chat_id, message.message_id, mask(text), markup)


async def answer(query: CallbackQuery, text: str | None = None, *, alert: bool = False) -> None:
    """Answer a press; a query Telegram already forgot (too old) is not worth an error."""
    try:
        await query.answer(mask(text)[:MAX_ANSWER] if text else None, show_alert=alert)
    except TelegramError as err:
        log.info("could not answer a button press: %s", err)


async def on_button(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Dispatch a press to its action, once, if the presser's role allows; always answer; audit it."""
    query = update.callback_query
    if query is None or update.effective_chat is None:
        return
    frontend = frontend_of(context)
    actor = frontend.guard.actor(update)
    late = frontend.tokens.lapsed(query.data or "", actor.chat_id)
    entry = frontend.tokens.peek(query.data or "", actor.chat_id)
    func = ACTIONS.get(entry.action) if entry else None
    if entry is None or func is None:
        await answer(query, LATE.get(late.action, EXPIRED) if late else EXPIRED, alert=late is not None)
        await audit(context, actor, "button", "", "expired")
        return
    record = functools.partial(audit, context, actor, f"button:{entry.action}", entry.arg)
    if actor.role < entry.role:
        refusal = f"🔒 This button needs the {Role(entry.role).label} role; you are {actor.role.label}."
        await answer(query, refusal, alert=True)
        await record("denied", refusal)
        return
    frontend.tokens.consume(query.data or "", actor.chat_id)
    try:
        toast = await func(Press(update, context, query, entry, actor.chat_id))
    except ControlError as exc:
        await answer(query, str(exc), alert=True)
        await record("refused", str(exc))
        return
    except Exception:
        await answer(query, "Internal error, see logs.")
        await record("error")
        raise  # to the Application's error handler (logs it, tells the chat)
    await answer(query, toast)
    await record("ok", toast or "")
