"""Persistence of the CapitalManager: every change is saved with ``db.save_capital_state``.

``CapitalManager.on_change`` is synchronous (the manager is pure); this adapter queues the
latest state and one background task writes it, so bursts of changes coalesce into one write
and the newest state always wins. ``flush()`` waits until what was queued is on disk.

In a fleet of workers (fleet/workers.py) the database row is the one capital state: only the leader
writes it (``CapitalPersister.may_write``); the other workers re-read it (``reload_capital``) when the
leader tells them (a NOTIFY after an approval or a rejection) and at every lease heartbeat.

`ScalingOffers` decides when the desk pushes a scaling offer by itself and remembers, in the
approvals table, what it offered.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from traderagent.database.exceptions import DatabaseUnavailableError
from traderagent.orchestrator.events import ScalingOffered
from traderagent.ports import StorePort
from traderagent.utils.capital_manager import (
    CapitalManager,
    CapitalManagerError,
    DeploymentPhase,
    ScalingDecision,
)

log = logging.getLogger(__name__)


class CapitalPersister:
    def __init__(self, db: StorePort) -> None:
        self.db = db
        self._latest: dict[str, Any] | None = None
        self._task: asyncio.Task[None] | None = None
        self.saves = 0
        self.may_write: Callable[[], bool] = lambda: True  # a fleet's worker: only while it leads

    def __call__(self, state: dict[str, Any]) -> None:
        if not self.may_write():
            return  # the row is the leader's: this worker re-reads it (reload_capital)
        self._latest = state
        if self._task is None or self._task.done():
            try:
                self._task = asyncio.get_running_loop().create_task(self._drain())
            except RuntimeError:  # no loop (a synchronous test): saved by the next flush()
                self._task = None

    async def _drain(self) -> None:
        while self._latest is not None:
            state, self._latest = self._latest, None
            try:
                await self.db.save_capital_state(state)
                self.saves += 1
            except DatabaseUnavailableError:  # storage lost: kept for the desk's flush once it is back
                self._latest = self._latest or state
                return
            except Exception:
                log.exception("could not save the capital manager state")
                self._latest = self._latest or state
                await asyncio.sleep(1.0)

    async def flush(self) -> None:
        if self._task is not None and not self._task.done():
            await self._task
        if self._latest is not None:
            await self._drain()


OFFER = "offer"  # approvals.action of an offer the desk pushed (beside the operators' "approve" / "reject")
ANSWERS = frozenset({"approve", "reject"})


@dataclass
class Offer:
    phase: str  # the phase it was made in
    at: datetime
    times: int  # 1, then one more per re-offer
    answered: bool = False


class ScalingOffers:
    """When every gate of the current phase passes, offer the next phase once, then again every
    ``every`` until an operator approves or rejects. Each offer is an approvals row (action "offer"),
    so a restarted desk neither re-offers at once nor forgets an unanswered offer."""

    def __init__(self, db: StorePort, *, every: timedelta = timedelta(days=1),
                 ttl: timedelta = timedelta(hours=24)) -> None:
        self.db = db
        self.every = every
        self.ttl = ttl  # how long the offer's buttons answer
        self.last: Offer | None = None

    async def load(self) -> None:
        """The newest offer or answer decides: an offer still waiting, or an answer. A partial approval
        ("approve 1/2") is neither: its count lives in memory, so the offer stays open."""
        rows = await self.db.list_approvals(limit=100)  # newest first
        row = next((r for r in rows if r.action in ANSWERS | {OFFER}), None)
        if row is not None:
            answered = row.action in ANSWERS
            at = datetime.fromisoformat(row.decision.get("offered_at") or row.created_at.isoformat())
            self.last = Offer(row.phase_from or "", at, int(row.decision.get("times", 0)), answered)

    def due(self, phase: str, now: datetime) -> int | None:
        """The offer's number if one is due in ``phase`` now, else None."""
        last = self.last
        if last is None or last.phase != phase:
            return 1
        if last.answered or now - last.at < self.every:
            return None
        return last.times + 1

    async def record(self, decision: ScalingDecision, now: datetime, times: int) -> None:
        phase_to = decision.next_phase.value if decision.next_phase else None
        await self.db.record_approval(OFFER, decision.current_phase.value, phase_to, "desk",
                                      {**decision.to_dict(), "offered_at": now.isoformat(), "times": times})
        self.last = Offer(decision.current_phase.value, now, times)

    async def offer(self, decision: ScalingDecision, now: datetime) -> ScalingOffered | None:
        """The offer to push now for ``decision`` (recorded), or None: a gate blocks, or none is due."""
        times = self.due(decision.current_phase.value, now) if decision.can_scale else None
        if times is None or decision.next_phase is None:
            return None
        await self.record(decision, now, times)
        return ScalingOffered(decision.current_phase, decision.next_phase, tuple(decision.reasons), times,
                              now + self.ttl)

    def answered(self, phase: str, now: datetime) -> None:
        """An operator approved or rejected in ``phase``: no more offers there."""
        self.last = Offer(phase, now, self.last.times if self.last else 0, answered=True)


async def load_capital_manager(db: StorePort, total_capital: Decimal, *, clock: Any = None) -> tuple[CapitalManager, CapitalPersister]:
    """The saved manager (phase, record, halt survive a restart) or a new one, wired to save itself."""
    persister = CapitalPersister(db)
    kwargs: dict[str, Any] = {"on_change": persister}
    if clock is not None:
        kwargs["clock"] = clock
    state = await db.load_capital_state()
    cm: CapitalManager | None = None
    if state:
        try:
            cm = CapitalManager.from_state(state, **kwargs)
        except (CapitalManagerError, KeyError, ValueError) as exc:
            log.error("saved capital state unusable (%s); starting a new record", exc)
    if cm is None:
        cm = CapitalManager(Decimal(total_capital), clock=clock or _now, on_change=persister)
    elif cm.total_capital != Decimal(total_capital):
        log.warning("TRADERAGENT_TOTAL_CAPITAL is %s but the saved record says %s; the record is kept",
                    total_capital, cm.total_capital)
    return cm, persister


async def reload_capital(cm: CapitalManager, db: StorePort) -> DeploymentPhase | None:
    """The state the fleet's leader wrote, taken into ``cm`` in place; the phase before it when the phase
    changed (the bots are to be re-sized), else None."""
    state = await db.load_capital_state()
    if not state:
        return None
    before = cm.phase
    try:
        cm.adopt(state)
    except (CapitalManagerError, KeyError, ValueError) as exc:
        log.error("the saved capital state is unusable (%s); keeping the one in memory", exc)
        return None
    return before if cm.phase is not before else None


def _now() -> datetime:
    from datetime import UTC

    return datetime.now(UTC)
