"""Fixtures for the Telegram frontend tests: fake Bot API + real desk on the simulator + real Application."""

from __future__ import annotations

from tests.handlers.harness import bot, clock, desk_h, frontend, op  # noqa: F401
