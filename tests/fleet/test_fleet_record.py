"""The fleet's capital record is recounted from what every worker wrote since the phase began: trades
(funding in the PnL, not in the count), the bots' failures, the unrealised PnL of their saved marks, and
the drawdown over the equity replayed in the order the trades closed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from traderagent.database.manager import DatabaseManager
from traderagent.fleet.record import fleet_capital
from traderagent.orchestrator.bot_orchestrator import TICK_FAILED
from traderagent.orchestrator.perp import FUNDING_TAG
from traderagent.results import BotMark
from traderagent.utils.capital_manager import CapitalManager

pytestmark = [pytest.mark.postgres]


async def test_the_record_counts_every_workers_rows_since_the_phase_began(db: DatabaseManager):
    now = datetime.now(UTC)
    cm = CapitalManager(Decimal("20000"), clock=lambda: now - timedelta(days=4))
    cm.start_phase_1()  # 1000 deployed, four days ago
    cm.record_trade(True, Decimal("999"))  # what one worker's manager counted: replaced by the recount
    await db.save_capital_state(cm.to_state())
    for name in ("a", "b"):  # two workers' bots
        await db.create_bot(name, "grid", "XRPUSDT", "linear", {}, "500")
    await db.record_trade("a", "XRPUSDT", "buy", "1", "1", "1", "7", closed_at=now - timedelta(days=5))  # before
    for bot, pnl, tag, minutes in (("a", "10", None, 50), ("b", "-30", None, 40), ("a", "5", f"{FUNDING_TAG}1", 30)):
        await db.record_trade(bot, "XRPUSDT", "buy", "1", "1", "1", pnl, closed_at=now - timedelta(minutes=minutes),
                              tag=tag)
    await db.add_log("a", "ERROR", f"{TICK_FAILED}boom")
    await db.add_log("b", "ERROR", f"{TICK_FAILED}bang")
    await db.add_log("b", "ERROR", "an ERROR event's line: not a failure of its own")
    await db.save_marks({"b": BotMark(Decimal("1"), Decimal("1"), Decimal("1"), Decimal("-5"), Decimal("1"), now)})

    record = await fleet_capital(db)
    assert record is not None and record.metrics is not None
    m = record.metrics
    assert (m.total_trades, m.winning_trades, m.errors_count) == (2, 1, 2)
    assert m.realized_pnl == Decimal("-15") and m.unrealized_pnl == Decimal("-5")
    assert m.peak_equity == Decimal("1010")
    assert m.max_drawdown_pct == pytest.approx(30 / 1010 * 100)  # 1010 -> 980, then 985, then 980 with -5 open
    blockers = " ".join(record.evaluate_scaling().blockers)
    assert "2 trades" in blockers and "net PnL -15" in blockers


async def test_no_capital_state_no_record(db: DatabaseManager):
    assert await fleet_capital(db) is None
