"""Pure parts of the frontend: message splitting as Telegram counts, the status pages, the chart PNG."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from handlers.charts import curve_points, render_equity_png
from handlers.commands import bot_line, desk_pages
from handlers.formatting import split_message, tg_len


def test_split_counts_utf16_like_telegram() -> None:
    lines = [f"📝 <b>bot-{i}</b> order placed · qty {i}" for i in range(600)]
    messages = split_message(lines, header="📬 <b>600 events</b>")
    assert all(tg_len(m) <= 4096 for m in messages)
    assert max(len(m) for m in messages) < 4096 < max(len(m.encode("utf-16-le")) // 2 + 60 for m in messages)
    body = [line for m in messages for line in m.split("\n")[1:]]
    assert body == lines  # nothing lost, order kept
    assert all(m.startswith("📬 <b>600 events</b>\n") for m in messages)


def test_an_overlong_line_is_cut_without_breaking_html() -> None:
    (message,) = split_message(["<b>" + "R&amp;D " * 2000 + "</b>"], header="H", limit=200)
    assert tg_len(message) <= 200 and message.endswith("…")
    assert "<b>" not in message and "&amp;" in message and not message[:-1].endswith("&am")


def _bot(i: int, state: str = "RUNNING") -> dict:
    return {"name": f"bot-{i:03d}", "strategy": "grid", "symbol": "XRPUSDT", "state": state, "paused_by": None,
            "allocated_capital": Decimal("500"), "realized_pnl": Decimal("1.5"), "unrealized_pnl": Decimal("-0.25"),
            "open_positions": 1, "open_orders": 9, "last_error": "timeout <x>" if state == "ERROR" else None}


def test_desk_pages_hold_every_bot_under_the_limit() -> None:
    status = {"bots": [_bot(i, "ERROR" if i == 7 else "RUNNING") for i in range(100)], "states": {"RUNNING": 99, "ERROR": 1},
              "halted": True, "halt_reason": "manual <halt>", "phase": "phase_1_5pct",
              "allocated_capital": Decimal("50000"), "exposure": Decimal("10"), "exposure_limit": Decimal("25000"),
              "day_pnl": Decimal("3"), "refused": []}
    pages = desk_pages(status)
    assert len(pages) > 1 and all(tg_len(p) <= 4096 - 80 for p in pages)
    text = "\n".join(pages)
    assert all(f"bot-{i:03d}" in text for i in range(100))
    assert "manual &lt;halt&gt;" in pages[0] and "TRADING HALTED" in pages[-1]  # the header repeats on each page
    assert "PnL +150.00 · unrealised -25.00" in pages[0]
    assert "timeout &lt;x&gt;" in bot_line(status["bots"][7])


def test_chart_is_a_png_starting_at_the_capital_before_the_first_trade() -> None:
    t0 = datetime(2026, 3, 1, tzinfo=UTC)
    curve = [{"time": t0 + timedelta(hours=i), "equity": Decimal(1000 + 5 * (i + 1)), "pnl": Decimal(5)}
             for i in range(20)]
    times, values = curve_points(curve)
    assert values[0] == 1000.0 and values[-1] == 1100.0 and len(times) == 21
    png = render_equity_png(curve, "Equity · test")
    assert png.startswith(b"\x89PNG") and len(png) > 5000
