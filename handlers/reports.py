"""Desk reports that are more than a one-line alert: the scaling offer the desk pushes by itself,
with Approve / Reject buttons that live as long as the offer (TRADERAGENT_OFFER_TTL_HOURS), and the
daily digest. The notifier leaves these event types (OWN_MESSAGES) to this module; every other
report (desk started, stopping, ticks stalled) is an ordinary alert.

The buttons are the /scale buttons (actions "approve" / "reject"): approving re-checks the gates,
and a press after the offer expired answers so (callbacks.LATE).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from telegram import InlineKeyboardMarkup

from handlers import views
from handlers.callbacks import keyboard
from traderagent.orchestrator.events import (
    DailyDigest,
    EventBus,
    EventType,
    ScalingOffered,
    Subscription,
    TradingEvent,
)
from traderagent.utils.secrets_filter import mask

if TYPE_CHECKING:
    from handlers.app import TelegramFrontend

log = logging.getLogger(__name__)

OWN_MESSAGES = frozenset({EventType.SCALING_OFFERED, EventType.DAILY_DIGEST})

Message = tuple[str, InlineKeyboardMarkup | None]


class Reports:
    def __init__(self, frontend: TelegramFrontend) -> None:
        self.frontend = frontend

    def attach(self, bus: EventBus) -> Subscription:
        return bus.subscribe(self.on_event, name="telegram-reports", types=OWN_MESSAGES)

    async def on_event(self, event: TradingEvent) -> None:
        """Into each chat's outbox, paced and retried like a reply (kept in memory, not in the database:
        an offer lost to a restart comes again the next day; /scale and /digest ask any time). An offer's
        buttons are kept in the database: pressed after a restart, they still act."""
        for chat_id in self.frontend.outbox.chat_ids:
            for text, markup in self.render(event.data, chat_id):
                self.frontend.outbox.reply(chat_id, mask(text), markup)

    def render(self, payload: object, chat_id: int) -> list[Message]:
        if isinstance(payload, ScalingOffered):
            rows = [[("✅ Approve", "approve", payload.next_phase.value), ("✖️ Reject", "reject", "")]]
            return [(views.offer_view(payload), keyboard(self.frontend, chat_id, rows, expires_at=payload.expires_at))]
        if isinstance(payload, DailyDigest):
            return [(page, None) for page in views.digest_pages(payload.digest)]
        return []
