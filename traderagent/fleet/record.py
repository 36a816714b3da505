"""The capital record of a whole fleet, recounted from the database.

Each worker's capital manager sees only its own bots: their trades, failures and unrealised PnL. The
scaling gates of a fleet are judged on this record instead: by the console before it offers the next
phase (reports.py `FleetWatch`) and in the digest, and by the leader before it executes an approval
(``Desk.capital_record``), each from the same rows, so an offer and its approval agree.

The phase itself (which one, since when, its allocation, the halt, the history) is the saved capital
state; what the gates measure is recounted from what every worker wrote since the phase began: the
trades closed (funding in the PnL, not in the trade count), the bots' failures logged, and the
unrealised PnL of the marks the workers wrote (results.BotMark). The drawdown replays the equity over
the phase's closed trades in the order they closed, then adds today's unrealised PnL: a dip of an
open position between two looks is not seen (a single desk samples its own every few seconds).
"""

from __future__ import annotations

import dataclasses

from traderagent.control import is_funding
from traderagent.numbers import ZERO
from traderagent.orchestrator.bot_orchestrator import TICK_FAILED
from traderagent.ports import StorePort
from traderagent.utils.capital_manager import CapitalManager, PhaseMetrics


async def fleet_metrics(db: StorePort, metrics: PhaseMetrics) -> PhaseMetrics:
    """``metrics`` (the saved record of the current phase) with what the gates measure recounted fleet-wide."""
    closed = await db.closed_trades(metrics.started_at)
    trades = [t for t in closed if not is_funding(t)]
    open_pnl = await db.fleet_unrealized()
    equity = peak = metrics.allocation
    drawdown = 0.0
    for pnl in [*(t.pnl or ZERO for t in closed), open_pnl]:
        equity += pnl
        peak = max(peak, equity)
        if peak > 0:
            drawdown = max(drawdown, float((peak - equity) / peak * 100))
    return dataclasses.replace(
        metrics, total_trades=len(trades), winning_trades=sum(1 for t in trades if (t.pnl or ZERO) > 0),
        realized_pnl=sum((t.pnl or ZERO for t in closed), ZERO), unrealized_pnl=open_pnl, peak_equity=peak,
        max_drawdown_pct=drawdown,
        errors_count=await db.count_logs("ERROR", metrics.started_at, starting=TICK_FAILED))


async def judge_fleet_wide(db: StorePort, cm: CapitalManager) -> None:
    """Bring ``cm``'s record of the current phase up to the fleet's figures (before its gates are judged)."""
    if cm.metrics is not None:
        cm.metrics = await fleet_metrics(db, cm.metrics)


async def fleet_capital(db: StorePort) -> CapitalManager | None:
    """The saved capital state with the fleet's record (None: no capital state saved yet)."""
    state = await db.load_capital_state()
    if not state:
        return None
    cm = CapitalManager.from_state(state)
    await judge_fleet_wide(db, cm)
    return cm
