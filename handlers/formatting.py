"""HTML text for Telegram: events, tables, numbers. Every dynamic string is escaped here."""

from __future__ import annotations

import html
import re
from collections.abc import Iterable
from typing import Any

from traderagent.numbers import to_decimal
from traderagent.orchestrator.events import EventType, TradingEvent
from traderagent.utils.plain import decimal_text

MAX_MESSAGE = 4096

EMOJI = {
    EventType.TRADE_OPENED: "🟢",
    EventType.TRADE_CLOSED: "🏁",
    EventType.ORDER_PLACED: "📝",
    EventType.ORDER_FILLED: "✅",
    EventType.ORDER_CANCELLED: "↩️",
    EventType.ORDER_FAILED: "⚠️",
    EventType.SIGNAL_GENERATED: "📡",
    EventType.ERROR: "🚨",
    EventType.STATUS_CHANGE: "🔄",
    EventType.PHASE_CHANGED: "📈",
    EventType.SCALING_DECISION: "⚖️",
    EventType.HALTED: "🛑",
    EventType.RESUMED: "▶️",
    EventType.RISK_LIMIT: "⛔",
    EventType.LIQUIDATION_RISK: "🔥",
    EventType.LIQUIDATED: "💥",
    EventType.FUNDING: "💸",
    EventType.DESK_STARTED: "🚀",
    EventType.DESK_STOPPING: "🔌",
    EventType.SCALING_OFFERED: "⚖️",
    EventType.DAILY_DIGEST: "🗓",
    EventType.TICKS_STALLED: "🧊",
    EventType.PROTECTION_RESTORED: "🛡️",
    EventType.STORAGE_LOST: "💾",
    EventType.STORAGE_RESTORED: "💽",
}

STATE_EMOJI = {"RUNNING": "🟢", "PAUSED": "🟡", "STOPPED": "⚫", "ERROR": "🔴", "INITIALIZING": "⚪"}

def esc(value: Any) -> str:
    return html.escape(str(value), quote=False)


def fmt_num(value: Any, places: int | None = None) -> str:
    """Decimals without exponent or trailing zeros; optional fixed places."""
    if value is None or value == "":
        return "–"
    try:
        number = to_decimal(value)
    except Exception:
        return esc(value)
    return decimal_text(number, places)


def fmt_pnl(value: Any) -> str:
    if value is None:
        return "–"
    return decimal_text(to_decimal(value), 2, signed=True)


def emoji(kind: str) -> str:
    """The mark of an event type (by its value, as the outbox stores it)."""
    return EMOJI.get(EventType(kind), "🔔") if kind in EventType.__members__ else "🔔"


def event_title(event: TradingEvent) -> str:
    name = event.event_type.value.replace("_", " ").capitalize()
    return f"{emoji(event.event_type.value)} <b>{esc(name)}</b> · {esc(event.bot_name)}"


def format_event(event: TradingEvent) -> str:
    """A message of its own: the title, then what the payload says."""
    return f"{event_title(event)}\n{esc(event.data.summary())}"


def format_event_line(event: TradingEvent) -> str:
    """One line of a merged burst (the outbox puts the mark and the time before it)."""
    name = event.event_type.value.replace("_", " ").lower()
    return f"<b>{esc(event.bot_name)}</b> {esc(name)}: {esc(event.data.summary())}"


def tg_len(text: str) -> int:
    """Length as Telegram counts it: UTF-16 code units (an emoji outside the BMP counts 2)."""
    return len(text.encode("utf-16-le")) // 2


_TAG = re.compile(r"<[^>]*>")


def fit(line: str, budget: int) -> str:
    """A line cut to `budget` UTF-16 units; cut lines lose their tags so no tag or entity is split."""
    if tg_len(line) <= budget:
        return line
    pieces, used = [], 0
    for char in html.unescape(_TAG.sub("", line)):
        piece = esc(char)
        used += tg_len(piece)
        if used > budget - 1:  # room for the ellipsis
            break
        pieces.append(piece)
    return "".join(pieces) + "…"


def split_message(lines: Iterable[str], header: str = "", limit: int = MAX_MESSAGE) -> list[str]:
    """Pack lines into messages of at most `limit` UTF-16 units, never cutting a line (or its tags)."""
    messages: list[str] = []
    current = header
    size = tg_len(current)
    budget = limit - tg_len(header) - 1
    for line in lines:
        line = fit(line, budget)
        added = tg_len(line) + (1 if current else 0)
        if size + added > limit:
            messages.append(current)
            current = f"{header}\n{line}" if header else line
            size = tg_len(current)
        else:
            current = f"{current}\n{line}" if current else line
            size += added
    if current and current != header:
        messages.append(current)
    return messages


def table(rows: Iterable[Iterable[Any]], headers: Iterable[str]) -> str:
    """A monospace table inside <pre>."""
    all_rows = [list(map(str, headers))] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in all_rows) for i in range(len(all_rows[0]))]
    lines = ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in all_rows]
    return "<pre>" + esc("\n".join(lines)) + "</pre>"
