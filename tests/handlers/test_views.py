"""Pure parts of the frontend: message splitting as Telegram counts, the views of the desk's results, the chart PNG."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from types import SimpleNamespace

import pytest

from handlers.charts import curve_points, render_equity_png
from handlers.formatting import split_message, tg_len
from handlers.views import bot_detail, bot_line, desk_pages, halted_view, log_line, phase_view
from traderagent.results import (
    BotStatus,
    BotSummary,
    CapitalReport,
    DeskStatus,
    EquityPoint,
    HaltOutcome,
    LogLine,
    PhaseRecord,
    PositionView,
)
from traderagent.utils.capital_manager import DEFAULT_PHASES, DeploymentPhase


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


def _bot(i: int, state: str = "RUNNING") -> BotSummary:
    return BotSummary(name=f"bot-{i:03d}", strategy="grid", symbol="XRPUSDT", market_type="linear", state=state,
                      paused_by=None, allocated_capital=Decimal("500"), realized_pnl=Decimal("1.5"),
                      unrealized_pnl=Decimal("-0.25"), open_positions=1, open_orders=9, last_price=Decimal("0.5"),
                      last_error="timeout <x>" if state == "ERROR" else None)


def _desk(bots: list[BotSummary]) -> DeskStatus:
    return DeskStatus(bots=tuple(bots), states={"RUNNING": len(bots) - 1, "ERROR": 1}, refused=(), halted=True,
                      halt_reason="manual <halt>", phase="phase_1_5pct", allocated_capital=Decimal("50000"),
                      exposure=Decimal("10"), exposure_limit=Decimal("25000"), day_pnl=Decimal("3"),
                      storage_lost="SQLite database /x/<desk>.db is full")


def test_desk_pages_hold_every_bot_under_the_limit() -> None:
    status = _desk([_bot(i, "ERROR" if i == 7 else "RUNNING") for i in range(100)])
    pages = desk_pages(status)
    assert len(pages) > 1 and all(tg_len(p) <= 4096 - 80 for p in pages)
    text = "\n".join(pages)
    assert all(f"bot-{i:03d}" in text for i in range(100))
    assert "manual &lt;halt&gt;" in pages[0] and "TRADING HALTED" in pages[-1]  # the header repeats on each page
    assert "DATABASE LOST</b>: SQLite database /x/&lt;desk&gt;.db is full" in pages[0]
    assert "PnL +150.00 · unrealised -25.00" in pages[0]
    assert "timeout &lt;x&gt;" in bot_line(status.bots[7])


def test_bot_detail_shows_the_fields_of_its_result() -> None:
    t0 = datetime(2026, 3, 1, 12, 30, tzinfo=UTC)
    position = PositionView(bot="bot-001", position_id="p1", side="long", size=Decimal("12.5"),
                            entry_price=Decimal("0.4811"), stop_loss=Decimal("0.47"), take_profit=None,
                            current_price=Decimal("0.4902"), unrealized_pnl=Decimal("0.11"), opened_at=t0)
    status = BotStatus(**dataclasses.asdict(_bot(1, "PAUSED")) | {"paused_by": "risk"}, ticks=42, last_tick_at=t0,
                       tick_seconds=5.0, timeframes=("1m", "15m"), params={}, positions=(position,),
                       total_trades=8, win_rate=0.75, total_fees=Decimal("1.234"), day_pnl=Decimal("-2"))
    text = bot_detail(status)
    for shown in ("paused (risk)", "XRPUSDT (linear) · grid · 1m, 15m", "Capital 500.00 · last price 0.5",
                  "today -2.00", "ticks 42 · last 03-01 12:30", "Trades 8 · win rate 75% · fees 1.23",
                  "Positions: 1", "long 12.5 @ 0.4811 → 0.4902 · uPnL +0.11 · SL 0.47"):
        assert shown in text, shown
    assert "TP" not in text


def test_a_result_missing_a_field_fails_instead_of_showing_a_default() -> None:
    fields = dataclasses.asdict(_bot(1))
    del fields["open_orders"]  # e.g. a renamed field, or an older shape of the result
    with pytest.raises(AttributeError, match="open_orders"):
        bot_line(SimpleNamespace(**fields))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="open_orders"):
        BotSummary(**fields)


def test_phase_view_before_and_during_a_phase() -> None:
    t0 = datetime(2026, 3, 1, tzinfo=UTC)
    record = PhaseRecord(phase="phase_1_5pct", started_at=t0, duration_days=4, total_trades=6, winning_trades=3,
                         win_rate=0.5, realized_pnl=Decimal("12"), unrealized_pnl=Decimal("-1"),
                         equity=Decimal("1011"), max_drawdown_pct=1.5, errors_count=2)
    report = CapitalReport(total_capital=Decimal("20000"), phase="phase_1_5pct", allocated_capital=Decimal("1000"),
                           halted=False, halt_reason=None, current=record, gates=DEFAULT_PHASES[DeploymentPhase.PHASE_1],
                           history=())
    text = phase_view(report)
    assert "In phase 4 days · trades 6 (won 3, win rate 50%)" in text
    assert "Max drawdown 1.50% · errors 2" in text and "≥5 trades" in text and "HALTED" not in text
    fresh = dataclasses.replace(report, phase="not_started", allocated_capital=Decimal(0), current=None, gates=None)
    assert phase_view(fresh).count("\n") == 1  # no record and no gates before phase 1


def test_chart_is_a_png_starting_at_the_capital_before_the_first_trade() -> None:
    t0 = datetime(2026, 3, 1, tzinfo=UTC)
    curve = [EquityPoint(t0 + timedelta(hours=i), Decimal(1000 + 5 * (i + 1)), Decimal(5), "b") for i in range(20)]
    times, values = curve_points(curve)
    assert values[0] == 1000.0 and values[-1] == 1100.0 and len(times) == 21
    png = render_equity_png(curve, "Equity · test")
    assert png.startswith(b"\x89PNG") and len(png) > 5000


def test_log_lines_and_the_halt_read_as_text_not_as_dumps() -> None:
    at = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    row = LogLine("btc", "INFO", "SIGNAL_GENERATED",
                  {"confidence": 0.40845763563638926, "client_order_id": "btctrend-1776-418bc93339d8456fa06ac6",
                   "phase": "phase_1_5pct", "by": "@op (555)", "held": 7500.0, "ratio": 1.23456789}, at)
    text = log_line(row)
    assert "confidence=41%" in text and "client_order_id=…6fa06ac6" in text and "phase=Phase 1" in text
    assert "by=@op " in text and "held=2 h 05 min" in text and "ratio=1.235" in text and "0.4084" not in text
    halted = halted_view(HaltOutcome("maintenance", ("grid",)), "@op (555)")
    assert halted.count("@op") == 1 and "555" not in halted and "Reason: maintenance\n" in halted
