from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from traderagent.utils.capital_manager import (
    CapitalManager,
    CapitalManagerError,
    DeploymentPhase,
    ScalingBlockedError,
)


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kw: float) -> None:
        self.now += timedelta(**kw)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def cm(clock: Clock) -> CapitalManager:
    manager = CapitalManager(Decimal("10000"), clock=clock)
    manager.start_phase_1()
    return manager


def passing_phase_1(cm: CapitalManager, clock: Clock) -> None:
    """Five trades, 4 wins, net +30, three days: every phase-1 gate passes."""
    for won, pnl in [(True, "10"), (True, "10"), (False, "-5"), (True, "10"), (True, "5")]:
        cm.record_trade(won, Decimal(pnl))
    clock.advance(days=3)


def test_phase_1_allocates_five_percent(clock: Clock) -> None:
    manager = CapitalManager(Decimal("10000"), clock=clock)
    assert manager.allocated_capital == 0
    assert not manager.can_open_positions
    assert manager.start_phase_1() == Decimal("500.00")
    assert manager.phase is DeploymentPhase.PHASE_1
    assert manager.can_open_positions
    with pytest.raises(CapitalManagerError):
        manager.start_phase_1()


def test_all_gates_pass_and_advance_to_25_then_100(cm: CapitalManager, clock: Clock) -> None:
    passing_phase_1(cm, clock)
    decision = cm.evaluate_scaling()
    assert decision.can_scale, decision.blockers
    assert decision.next_phase is DeploymentPhase.PHASE_2
    assert len(decision.reasons) == 6 and decision.blockers == []
    assert cm.advance_phase() == Decimal("2500.00")
    assert cm.history[0].phase is DeploymentPhase.PHASE_1
    # phase 2 starts a fresh record: its gates are not met yet
    assert not cm.evaluate_scaling().can_scale
    for i in range(20):
        cm.record_trade(i % 2 == 0 or i % 3 == 0, Decimal("3") if i % 2 == 0 or i % 3 == 0 else Decimal("-1"))
    clock.advance(days=7)
    assert cm.advance_phase() == Decimal("10000")
    final = cm.evaluate_scaling()
    assert not final.can_scale and final.next_phase is None
    assert final.reasons == ["Already at maximum allocation"]


@pytest.mark.parametrize(
    ("spoil", "blocker"),
    [
        ("days", "days in phase"),
        ("trades", "trades (minimum"),
        ("win_rate", "win rate"),
        ("drawdown", "max drawdown"),
        ("pnl", "net PnL"),
        ("errors", "errors (maximum"),
    ],
)
def test_each_gate_blocks_alone(clock: Clock, spoil: str, blocker: str) -> None:
    cm = CapitalManager(Decimal("10000"), clock=clock)
    cm.start_phase_1()
    trades = [(True, "10"), (True, "10"), (False, "-5"), (True, "10"), (True, "5")]
    if spoil == "trades":
        trades = trades[:4]
    if spoil == "win_rate":
        trades = [(True, "40"), (False, "-1"), (False, "-1"), (False, "-1"), (False, "-1")]
    if spoil == "pnl":
        trades = [(True, "1"), (True, "1"), (True, "1"), (False, "-10"), (True, "1")]
    for won, pnl in trades:
        cm.record_trade(won, Decimal(pnl))
    if spoil == "drawdown":  # an open loss of 6% of the 500 allocation, unrealised
        cm.update_unrealized_pnl(Decimal("-65"))
        cm.update_unrealized_pnl(Decimal("0"))
    if spoil == "errors":
        for _ in range(6):
            cm.record_error()
    clock.advance(days=2 if spoil == "days" else 3)
    decision = cm.evaluate_scaling()
    assert not decision.can_scale
    assert len(decision.blockers) == 1 and blocker in decision.blockers[0], decision.blockers
    with pytest.raises(ScalingBlockedError, match=blocker.split(" (")[0]):
        cm.advance_phase()
    assert cm.phase is DeploymentPhase.PHASE_1


def test_drawdown_counts_unrealised_equity(cm: CapitalManager) -> None:
    cm.record_trade(True, Decimal("100"))  # equity 600, the peak
    cm.update_unrealized_pnl(Decimal("-60"))  # equity 540: 10% below the peak
    assert cm.metrics is not None
    assert cm.metrics.max_drawdown_pct == pytest.approx(10.0)


def test_error_exactly_at_limit_passes(cm: CapitalManager, clock: Clock) -> None:
    passing_phase_1(cm, clock)
    for _ in range(5):
        cm.record_error()
    assert cm.evaluate_scaling().can_scale


def test_halt_blocks_trading_and_scaling_and_resume_keeps_phase(cm: CapitalManager, clock: Clock) -> None:
    passing_phase_1(cm, clock)
    cm.halt("exchange outage")
    assert cm.halted and not cm.can_open_positions
    decision = cm.evaluate_scaling()
    assert not decision.can_scale and "halted: exchange outage" in decision.blockers[0]
    with pytest.raises(ScalingBlockedError):
        cm.advance_phase()
    cm.record_trade(True, Decimal("1"))  # exits closing after a halt are still booked
    cm.resume()
    assert cm.phase is DeploymentPhase.PHASE_1 and cm.can_open_positions
    assert cm.evaluate_scaling().can_scale
    with pytest.raises(CapitalManagerError):
        cm.resume()


def test_approval_rechecks_gates_at_that_moment(cm: CapitalManager, clock: Clock) -> None:
    passing_phase_1(cm, clock)
    assert cm.evaluate_scaling().can_scale  # the operator is shown a passing decision ...
    cm.record_trade(False, Decimal("-100"))  # ... then a loss lands before the tap
    with pytest.raises(ScalingBlockedError, match="net PnL"):
        cm.advance_phase()


def test_record_needs_an_active_phase(clock: Clock) -> None:
    cm = CapitalManager(Decimal("1000"), clock=clock)
    with pytest.raises(CapitalManagerError):
        cm.record_trade(True, Decimal("1"))
    assert cm.evaluate_scaling().blockers == ["No active phase: start phase 1 first"]


def test_state_round_trips_through_json_and_reports_every_change(clock: Clock) -> None:
    saved: list[dict] = []
    cm = CapitalManager(Decimal("10000"), clock=clock, on_change=saved.append)
    cm.start_phase_1()
    passing_phase_1(cm, clock)
    cm.record_error()
    cm.update_unrealized_pnl(Decimal("-12.5"))
    cm.halt("manual")
    assert len(saved) == 1 + 5 + 1 + 1 + 1
    restored = CapitalManager.from_state(json.loads(json.dumps(saved[-1])), clock=clock)
    assert restored.to_state() == cm.to_state()
    assert restored.halted and restored.halt_reason == "manual"
    assert restored.metrics is not None and restored.metrics.realized_pnl == Decimal("30")
    report = restored.get_report()
    assert report["current_phase"] == "phase_1_5pct"
    assert report["allocated_capital"] == "500.00"
    assert report["current_metrics"]["duration_days"] == 3
    assert report["current_metrics"]["total_trades"] == 5


def test_rejects_bad_state_and_capital() -> None:
    with pytest.raises(CapitalManagerError):
        CapitalManager(Decimal("0"))
    with pytest.raises(CapitalManagerError, match="version"):
        CapitalManager.from_state({"version": 99})
