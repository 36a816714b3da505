"""A desk worker's link to the fleet's console (TRADERAGENT_CONSOLE=external): the operator's commands
for the leases it holds are served (fleet/bus.py), and its events become alerts written to the outbox
table, which the console delivers. The worker itself sends nothing to Telegram.
"""

from __future__ import annotations

from handlers.notifier import Notifier
from handlers.outbox import StoredAlerts
from traderagent.config import Settings
from traderagent.control import Desk
from traderagent.database.manager import DatabaseManager
from traderagent.fleet.bus import CommandServer, channel


class ConsoleLink:
    """``attach()`` before the desk starts (its start-up events are stored too), ``serve()`` once it
    runs, ``stop()`` before it stops."""

    def __init__(self, settings: Settings, desk: Desk, db: DatabaseManager) -> None:
        self.desk = desk
        self.db = db
        self.alerts = StoredAlerts(db, settings.telegram_chat_ids, notify=channel(db, "outbox"))
        self.notifier = Notifier(self.alerts, strategy_of=desk.strategy_of, store=db)
        self.commands = CommandServer(desk, db)

    async def attach(self) -> None:
        await self.notifier.load()
        self.subscription = self.notifier.attach(self.desk.event_bus)

    async def serve(self) -> None:
        await self.commands.start()

    async def stop(self) -> None:
        await self.commands.stop()
