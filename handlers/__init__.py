"""The Telegram operator interface (python-telegram-bot); talks only to traderagent.control and the event bus."""

from __future__ import annotations

from handlers.app import TelegramFrontend, build_application

__all__ = ["TelegramFrontend", "build_application"]
