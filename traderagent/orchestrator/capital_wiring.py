"""Persistence of the CapitalManager: every change is saved with ``db.save_capital_state``.

``CapitalManager.on_change`` is synchronous (the manager is pure); this adapter queues the
latest state and one background task writes it, so bursts of changes coalesce into one write
and the newest state always wins. ``flush()`` waits until what was queued is on disk.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from decimal import Decimal
from typing import Any

from traderagent.ports import StorePort
from traderagent.utils.capital_manager import CapitalManager, CapitalManagerError

log = logging.getLogger(__name__)


class CapitalPersister:
    def __init__(self, db: StorePort) -> None:
        self.db = db
        self._latest: dict[str, Any] | None = None
        self._task: asyncio.Task[None] | None = None
        self.saves = 0

    def __call__(self, state: dict[str, Any]) -> None:
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
            except Exception:
                log.exception("could not save the capital manager state")
                self._latest = self._latest or state
                await asyncio.sleep(1.0)

    async def flush(self) -> None:
        if self._task is not None and not self._task.done():
            await self._task
        if self._latest is not None:
            await self._drain()


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


def _now() -> datetime:
    from datetime import UTC

    return datetime.now(UTC)
