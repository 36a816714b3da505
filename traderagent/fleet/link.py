"""A desk worker's link to the fleet's console (TRADERAGENT_CONSOLE=external): the operator's commands
for the leases it holds are served (fleet/bus.py), and its events become alerts written to the outbox
table, which the console delivers. The worker itself sends nothing to Telegram, nor the scaling offers
and the digest (the console does: reports.py `FleetWatch`); leading, it judges the scaling gates on the
fleet's record (fleet/record.py), as the console did when it offered the step.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from functools import partial

from traderagent.control import Desk
from traderagent.database.manager import DatabaseManager
from traderagent.fleet.bus import CommandServer, FleetSignals
from traderagent.fleet.record import judge_fleet_wide
from traderagent.ports import NotifierPort

log = logging.getLogger(__name__)
VERBOSITY_SECONDS = 10.0  # a verbosity the operator widened on the console reaches the worker within this


class ConsoleLink:
    """``attach()`` before the desk starts (its start-up events are stored too), ``serve()`` once it
    runs, ``stop()`` before it stops. ``notifier`` renders the desk's events into the outbox table; the
    composition root builds it (app.py ``worker_notifier``), so a worker's link needs nothing of handlers/."""

    def __init__(self, desk: Desk, db: DatabaseManager, notifier: NotifierPort) -> None:
        self.desk = desk
        self.db = db
        self.notifier = notifier
        self.commands = CommandServer(desk, db)
        self.signals = FleetSignals(desk, db, self.commands.listener)  # the fleet's desk rails and capital state
        desk.capital_record = partial(judge_fleet_wide, db)  # an approval re-checks the gates fleet-wide
        self._reload: asyncio.Task[None] | None = None

    async def attach(self) -> None:
        await self.notifier.load()
        self.subscription = self.notifier.attach(self.desk.event_bus)
        self._reload = asyncio.create_task(self._reload_verbosity(), name="console-verbosity")

    async def _reload_verbosity(self) -> None:
        """The console saves the verbosity the operator sets; a narrower one it applies itself at once
        (it filters what it delivers), a wider one reaches this notifier here."""
        while True:
            await asyncio.sleep(VERBOSITY_SECONDS)
            try:
                await self.notifier.load()
            except Exception:  # the database may be away: the next round tries again
                log.exception("could not read the alert verbosity")

    async def serve(self) -> None:
        await self.commands.start()
        self.signals.start()

    async def stop(self) -> None:
        if self._reload is not None:
            self._reload.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reload
        await self.signals.stop()
        await self.commands.stop()
