"""The desk's database as its bots see it: writable, or lost until it takes writes again.

Storage is lost when a write fails with ``DatabaseUnavailableError`` (disk full, I/O error,
read-only, its tables gone, a PostgreSQL server unreachable) or when the SQLite file at the
database path is not the one the desk opened (deleted or replaced: ``Store.check_storage``, a stat
every ``STORAGE_CHECK_S``; open connections go on writing to a deleted file without an error).
From that moment:

* no entry is sent (``BotOrchestrator.entries_allowed`` is False): its write-ahead row cannot be
  durable, and a new position is never worth that risk;
* open positions stay protected: bots keep ticking, exits and stops are decided and sent, fills
  are booked in memory, and every order row a bot would have written waits in its
  ``UnsavedRows``; resting orders stay on the exchange;
* one STORAGE_LOST alert says why.

Every ``STORAGE_CHECK_S`` the desk tries to come back (``StorageWatch.check``): a deleted SQLite
file is first written back at its path from the connection that still holds it
(``Store.restore_storage``: history before the loss is kept), then every bot writes its state and
everything it queued in one transaction (the write-ahead rows with the fills that ended them, the
runtime snapshot, the trade rows of positions opened or closed meanwhile). When every bot's write
commits, storage is back, entries are allowed again and STORAGE_RESTORED says for how long it was
lost; a write that fails again leaves it lost, quietly. A bot's storage fault never puts it in
ERROR. A desk that stops (or dies) while storage is lost loses what was queued: what it sent
meanwhile carries the bots' id prefix, so the next start refuses those symbols and reports them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Protocol

from traderagent.database.exceptions import DatabaseUnavailableError, LeaseLapsed
from traderagent.orchestrator.events import Payload, StorageLost, StorageRestored

log = logging.getLogger(__name__)

STORAGE_CHECK_S = 1.0  # how often the desk looks at its database file, or tries to come back


class StorageProbe(Protocol):
    async def check_storage(self) -> None: ...

    async def restore_storage(self) -> str | None: ...


class Resyncing(Protocol):
    async def resync_storage(self) -> bool: ...


@dataclass
class UnsavedRows:
    """The order rows a bot could not write while storage was lost, in their last known form: new
    rows with their later changes folded in, and the merged changes of rows the database has."""

    new: dict[str, dict[str, Any]] = field(default_factory=dict)
    updates: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.new or self.updates)

    def add(self, new_orders: Iterable[Mapping[str, Any]] = (),
            order_updates: Iterable[tuple[str, Mapping[str, Any]]] = ()) -> None:
        for row in new_orders:
            self.new[row["client_order_id"]] = dict(row)
        for cid, fields in order_updates:
            (self.new.get(cid) or self.updates.setdefault(cid, {})).update(fields)

    def drop(self, client_order_ids: Iterable[str]) -> None:
        for cid in client_order_ids:
            self.new.pop(cid, None)

    def take(self) -> tuple[list[dict[str, Any]], list[tuple[str, dict[str, Any]]]]:
        new, updates = list(self.new.values()), list(self.updates.items())
        self.new, self.updates = {}, {}
        return new, updates


class StorageWatch:
    """Whether the desk's database takes writes; shared by the desk and its bots."""

    def __init__(self, db: StorageProbe | None = None, publish: Callable[[Payload], None] | None = None) -> None:
        self.db = db
        self.publish = publish or (lambda payload: None)
        self.lost: str | None = None  # why, while it is lost
        self._lost_at = 0.0
        self._file_restored: str | None = None

    def trip(self, exc: BaseException | str) -> None:
        """Storage is lost (told once, however many writes fail)."""
        if self.lost is not None:
            return
        self.lost = str(exc)
        self._lost_at = time.monotonic()
        self._file_restored = None
        log.error("storage lost: %s; entries stopped, positions still protected", self.lost)
        self.publish(StorageLost(self.lost))

    async def check(self, bots: Iterable[Resyncing]) -> bool:
        """While writable: is the database file still there? While lost: try to come back (every
        bot's write concurrently, so they share group-committed transactions); True when it did."""
        if self.db is None:
            return False
        if self.lost is None:
            try:
                await self.db.check_storage()
            except DatabaseUnavailableError as exc:
                self.trip(exc)
            return False
        bots = list(bots)
        try:
            self._file_restored = await self.db.restore_storage() or self._file_restored
            results = await asyncio.gather(*(bot.resync_storage() for bot in bots), return_exceptions=True)
        except DatabaseUnavailableError as exc:
            log.info("storage still lost: %s", exc)
            return False
        failed = [r for r in results if r is not True and not isinstance(r, LeaseLapsed)]  # fenced: not ours
        if failed:
            log.info("storage still lost: %s", next((r for r in failed if r is not False), "a write failed"))
            return False
        lost_for = Decimal(str(round(time.monotonic() - self._lost_at, 1)))
        self.lost = None
        log.warning("storage back after %s s", lost_for)
        self.publish(StorageRestored(lost_for, len(bots), self._file_restored))
        return True
