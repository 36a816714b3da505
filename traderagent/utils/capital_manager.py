"""Phased capital deployment behind performance gates.

A pure state machine: 5% of the total capital first, then 25%, then 100%. Moving up needs
every gate of the current phase to pass (days in phase, trades, win rate, drawdown on
equity including unrealised PnL, net PnL >= 0, error count) *and* an operator's approval:
nothing here scales by itself. `halt()` stops new trading at once and keeps the phase, so
`resume()` continues where it was. Every mutation calls `on_change(state)` so the wiring can
persist the state; `from_state()` restores it after a restart.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from traderagent.utils.plain import decimal_text

STATE_VERSION = 1


class DeploymentPhase(StrEnum):
    NOT_STARTED = "not_started"
    PHASE_1 = "phase_1_5pct"
    PHASE_2 = "phase_2_25pct"
    PHASE_3 = "phase_3_100pct"


class CapitalManagerError(RuntimeError):
    """An operation that the current phase or state does not allow."""


class ScalingBlockedError(CapitalManagerError):
    """advance_phase() with a failing gate; the message lists the blockers."""


@dataclass(frozen=True)
class PhaseGates:
    """What a phase must show before the next one may be approved."""

    allocation: Decimal
    min_days: int
    min_trades: int
    min_win_rate: float
    max_drawdown_pct: float
    max_errors: int


DEFAULT_PHASES: dict[DeploymentPhase, PhaseGates] = {
    DeploymentPhase.PHASE_1: PhaseGates(Decimal("0.05"), 3, 5, 0.40, 5.0, 5),
    DeploymentPhase.PHASE_2: PhaseGates(Decimal("0.25"), 7, 20, 0.45, 10.0, 10),
    DeploymentPhase.PHASE_3: PhaseGates(Decimal("1"), 0, 0, 0.0, 15.0, 0),
}

NEXT_PHASE = {
    DeploymentPhase.NOT_STARTED: DeploymentPhase.PHASE_1,
    DeploymentPhase.PHASE_1: DeploymentPhase.PHASE_2,
    DeploymentPhase.PHASE_2: DeploymentPhase.PHASE_3,
    DeploymentPhase.PHASE_3: None,
}


@dataclass
class ScalingDecision:
    can_scale: bool
    current_phase: DeploymentPhase
    next_phase: DeploymentPhase | None
    reasons: list[str]  # passed gates
    blockers: list[str]  # failed gates

    def to_dict(self) -> dict[str, Any]:
        return {
            "can_scale": self.can_scale,
            "current_phase": self.current_phase.value,
            "next_phase": self.next_phase.value if self.next_phase else None,
            "reasons": list(self.reasons),
            "blockers": list(self.blockers),
        }


@dataclass
class PhaseMetrics:
    """The record of one phase, measured on the phase's own equity."""

    phase: DeploymentPhase
    started_at: datetime
    allocation: Decimal
    total_trades: int = 0
    winning_trades: int = 0
    realized_pnl: Decimal = Decimal("0")
    unrealized_pnl: Decimal = Decimal("0")
    peak_equity: Decimal = Decimal("0")
    max_drawdown_pct: float = 0.0
    errors_count: int = 0
    ended_at: datetime | None = None

    @property
    def equity(self) -> Decimal:
        return self.allocation + self.realized_pnl + self.unrealized_pnl

    @property
    def win_rate(self) -> float:
        return self.winning_trades / self.total_trades if self.total_trades else 0.0

    def mark(self) -> None:
        """Track the peak and the deepest drawdown of equity (including unrealised PnL)."""
        equity = self.equity
        if equity > self.peak_equity:
            self.peak_equity = equity
        if self.peak_equity > 0:
            drawdown = float((self.peak_equity - equity) / self.peak_equity * 100)
            self.max_drawdown_pct = max(self.max_drawdown_pct, drawdown)

    def to_dict(self, now: datetime | None = None) -> dict[str, Any]:
        data = asdict(self)
        for key in ("allocation", "realized_pnl", "unrealized_pnl", "peak_equity"):
            data[key] = str(data[key])
        data["phase"] = self.phase.value
        data["started_at"] = self.started_at.isoformat()
        data["ended_at"] = self.ended_at.isoformat() if self.ended_at else None
        data["win_rate"] = round(self.win_rate, 4)
        data["equity"] = str(self.equity)
        if now is not None:
            data["duration_days"] = (now - self.started_at).days
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PhaseMetrics:
        return cls(
            phase=DeploymentPhase(data["phase"]),
            started_at=datetime.fromisoformat(data["started_at"]),
            allocation=Decimal(data["allocation"]),
            total_trades=int(data["total_trades"]),
            winning_trades=int(data["winning_trades"]),
            realized_pnl=Decimal(data["realized_pnl"]),
            unrealized_pnl=Decimal(data["unrealized_pnl"]),
            peak_equity=Decimal(data["peak_equity"]),
            max_drawdown_pct=float(data["max_drawdown_pct"]),
            errors_count=int(data["errors_count"]),
            ended_at=datetime.fromisoformat(data["ended_at"]) if data.get("ended_at") else None,
        )


def _check_version(state: dict[str, Any]) -> None:
    if state.get("version") != STATE_VERSION:
        raise CapitalManagerError(f"unknown capital state version {state.get('version')!r}")


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class _Halt:
    reason: str
    at: datetime


@dataclass
class CapitalManager:
    total_capital: Decimal
    clock: Callable[[], datetime] = field(default=_utcnow, repr=False)
    on_change: Callable[[dict[str, Any]], None] | None = field(default=None, repr=False)
    phases: dict[DeploymentPhase, PhaseGates] = field(default_factory=lambda: dict(DEFAULT_PHASES))
    phase: DeploymentPhase = DeploymentPhase.NOT_STARTED
    metrics: PhaseMetrics | None = None
    history: list[PhaseMetrics] = field(default_factory=list)
    _halt: _Halt | None = None

    def __post_init__(self) -> None:
        self.total_capital = Decimal(self.total_capital)
        if self.total_capital <= 0:
            raise CapitalManagerError("total_capital must be greater than 0")

    # --- queries -----------------------------------------------------------------------
    @property
    def halted(self) -> bool:
        return self._halt is not None

    @property
    def halt_reason(self) -> str | None:
        return self._halt.reason if self._halt else None

    @property
    def allocated_capital(self) -> Decimal:
        """Capital the current phase deploys (0 before phase 1)."""
        if self.phase is DeploymentPhase.NOT_STARTED:
            return Decimal("0")
        return self.total_capital * self.phases[self.phase].allocation

    @property
    def can_open_positions(self) -> bool:
        return self.phase is not DeploymentPhase.NOT_STARTED and not self.halted

    # --- phase changes -----------------------------------------------------------------
    def start_phase_1(self) -> Decimal:
        if self.phase is not DeploymentPhase.NOT_STARTED:
            raise CapitalManagerError(f"already deploying ({self.phase.value}); phase 1 starts only once")
        self._enter(DeploymentPhase.PHASE_1)
        return self.allocated_capital

    def evaluate_scaling(self) -> ScalingDecision:
        nxt = NEXT_PHASE[self.phase]
        if self.metrics is None:
            return ScalingDecision(False, self.phase, nxt, [], ["No active phase: start phase 1 first"])
        if nxt is None:
            return ScalingDecision(False, self.phase, None, ["Already at maximum allocation"], [])
        reasons, blockers = self._check_gates(self.phases[self.phase], self.metrics)
        if self.halted:
            blockers.insert(0, f"Trading is halted: {self.halt_reason}")
        return ScalingDecision(not blockers, self.phase, nxt, reasons, blockers)

    def advance_phase(self) -> Decimal:
        """Scale to the next phase; only ever called on an operator's approval."""
        decision = self.evaluate_scaling()
        if not decision.can_scale or decision.next_phase is None:
            raise ScalingBlockedError("Cannot advance: " + "; ".join(decision.blockers or decision.reasons))
        self._enter(decision.next_phase)
        return self.allocated_capital

    def halt(self, reason: str) -> None:
        """Stop all new trading now; the phase and its record are kept."""
        self._halt = _Halt(reason or "no reason given", self.clock())
        self._changed()

    def resume(self) -> None:
        if not self.halted:
            raise CapitalManagerError("trading is not halted")
        self._halt = None
        self._changed()

    # --- recording ---------------------------------------------------------------------
    def record_trade(self, won: bool, pnl: Decimal) -> None:
        metrics = self._active()
        metrics.total_trades += 1
        metrics.winning_trades += 1 if won else 0
        metrics.realized_pnl += Decimal(pnl)
        metrics.mark()
        self._changed()

    def record_pnl(self, pnl: Decimal) -> None:
        """Realised PnL that is no trade (funding): in the record's PnL, not in its trade count."""
        metrics = self._active()
        metrics.realized_pnl += Decimal(pnl)
        metrics.mark()
        self._changed()

    def record_error(self) -> None:
        self._active().errors_count += 1
        self._changed()

    def update_unrealized_pnl(self, total_unrealized: Decimal) -> None:
        metrics = self._active()
        metrics.unrealized_pnl = Decimal(total_unrealized)
        metrics.mark()
        self._changed()

    # --- reporting and persistence -----------------------------------------------------
    def get_report(self) -> dict[str, Any]:
        now = self.clock()
        gates = self.phases.get(self.phase)
        return {
            "total_capital": str(self.total_capital),
            "current_phase": self.phase.value,
            "allocated_capital": str(self.allocated_capital),
            "halted": self.halted,
            "halt_reason": self.halt_reason,
            "current_metrics": self.metrics.to_dict(now) if self.metrics else None,
            "gates": {k: str(v) if isinstance(v, Decimal) else v for k, v in asdict(gates).items()}
            if gates
            else None,
            "phase_history": [m.to_dict() for m in self.history],
        }

    def to_state(self) -> dict[str, Any]:
        return {
            "version": STATE_VERSION,
            "total_capital": str(self.total_capital),
            "phase": self.phase.value,
            "metrics": self.metrics.to_dict() if self.metrics else None,
            "history": [m.to_dict() for m in self.history],
            "halt": {"reason": self._halt.reason, "at": self._halt.at.isoformat()} if self._halt else None,
        }

    @classmethod
    def from_state(
        cls,
        state: dict[str, Any],
        *,
        clock: Callable[[], datetime] = _utcnow,
        on_change: Callable[[dict[str, Any]], None] | None = None,
    ) -> CapitalManager:
        _check_version(state)
        cm = cls(Decimal(state["total_capital"]), clock=clock)
        cm.adopt(state)
        cm.on_change = on_change
        return cm

    def adopt(self, state: dict[str, Any]) -> None:
        """Take ``state`` (``to_state()``'s, e.g. written by a fleet's leader) in place: the bots holding
        this manager see it at once. Not a change of this manager's own: ``on_change`` is not called."""
        _check_version(state)
        self.total_capital = Decimal(state["total_capital"])
        self.phase = DeploymentPhase(state["phase"])
        self.metrics = PhaseMetrics.from_dict(state["metrics"]) if state.get("metrics") else None
        self.history = [PhaseMetrics.from_dict(m) for m in state.get("history", [])]
        halt = state.get("halt")
        self._halt = _Halt(halt["reason"], datetime.fromisoformat(halt["at"])) if halt else None

    # --- internals ---------------------------------------------------------------------
    def _active(self) -> PhaseMetrics:
        if self.metrics is None:
            raise CapitalManagerError("no active phase: start phase 1 first")
        return self.metrics

    def _enter(self, phase: DeploymentPhase) -> None:
        now = self.clock()
        if self.metrics is not None:
            self.metrics.ended_at = now
            self.history.append(self.metrics)
        allocation = self.total_capital * self.phases[phase].allocation
        self.phase = phase
        self.metrics = PhaseMetrics(phase=phase, started_at=now, allocation=allocation, peak_equity=allocation)
        self._changed()

    def _check_gates(self, gates: PhaseGates, m: PhaseMetrics) -> tuple[list[str], list[str]]:
        days = (self.clock() - m.started_at).days
        checks = [
            (days >= gates.min_days, f"{days} days in phase (minimum {gates.min_days})"),
            (m.total_trades >= gates.min_trades, f"{m.total_trades} trades (minimum {gates.min_trades})"),
            (
                m.total_trades > 0 and m.win_rate >= gates.min_win_rate or gates.min_trades == 0,
                f"win rate {m.win_rate:.1%} (minimum {gates.min_win_rate:.0%})",
            ),
            (
                m.max_drawdown_pct <= gates.max_drawdown_pct,
                f"max drawdown {m.max_drawdown_pct:.2f}% (limit {gates.max_drawdown_pct:.0f}%)",
            ),
            (m.realized_pnl >= 0, f"net PnL {decimal_text(m.realized_pnl, 2)} (must not be negative)"),
            (m.errors_count <= gates.max_errors, f"{m.errors_count} errors (maximum {gates.max_errors})"),
        ]
        reasons = [text for ok, text in checks if ok]
        blockers = [text for ok, text in checks if not ok]
        return reasons, blockers

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change(self.to_state())
