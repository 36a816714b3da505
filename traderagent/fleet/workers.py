"""Several desk workers on one PostgreSQL database: each runs its share of the bots.

Every worker loads the same bots file and holds a *slot* lease, ``@worker/<i>``, in the bot leases
table (orchestrator/lease.py: the same heartbeat, timeout and takeover as a bot's lease). A bot
belongs to the live slot with the highest rendezvous hash ``score(bot, slot)``:

* the bots spread evenly over the slots, and every worker computes the same answer alone;
* a slot that dies (its lease expires, or its process is seen gone on this machine) loses only
  its own bots, and each of them goes to the survivor with the next highest score: evenly over
  the survivors, who take them over at their next heartbeats and reconcile their orders by
  orderLinkId;
* a slot that comes back gets exactly those bots back: each survivor hands them back gracefully
  (no tick after the one in flight, state saved, lease freed) and the returning worker takes them.

One worker of the fleet, whichever holds ``@desk``, also leads: it runs the desk-wide duties once for
the fleet (``Desk.leader``) and executes the scaling approvals; the scaling offers and the digest are
the console's (reports.py `FleetWatch`).

A worker takes its leases before it builds its bots, and building hundreds (instruments, recovery,
order reconciliation) can outlast the lease timeout: until the desk's own heartbeat runs, the leases
are renewed in the background (``Leases.keep``, started by ``join``; the first ``beat`` ends it).

``traderagent worker [--slot I] [--workers N]`` runs one worker (no Telegram frontend: the console
process talks to the chat); ``traderagent run --workers N`` supervises N of them (fleet/supervisor.py).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from traderagent.orchestrator.lease import DESK_LEASE, RESERVED, LeaseChanges, Leases, gone, held_elsewhere

if TYPE_CHECKING:
    from traderagent.config import Settings

log = logging.getLogger(__name__)

SLOT_PREFIX = "@worker/"


def slot_name(index: int) -> str:
    return f"{SLOT_PREFIX}{index}"


def score(bot: str, slot: str) -> int:
    """The rendezvous hash of a bot on a slot: the same on every worker and every run."""
    return int.from_bytes(hashlib.blake2b(f"{bot}\0{slot}".encode(), digest_size=8).digest(), "big")


def owner(bot: str, slots: Iterable[str]) -> str:
    """The slot that runs ``bot``: the highest score among ``slots`` (the live ones)."""
    return max(slots, key=lambda slot: score(bot, slot))


def assign(bots: Iterable[str], slots: Iterable[str]) -> dict[str, list[str]]:
    """slot -> the bots it runs (every slot listed, even one with no bot)."""
    slots = list(slots)
    share: dict[str, list[str]] = {slot: [] for slot in slots}
    for bot in bots:
        share[owner(bot, slots)].append(bot)
    return share


@dataclass(frozen=True)
class Worker:
    """What `traderagent worker` was asked: its slot (None: the first free one) of ``workers``."""

    slot: int | None = None
    workers: int = 1


class WorkerLeases(Leases):
    """A worker's leases: its slot, ``@desk`` when free, and the bots its slot has among the live
    ones. Each heartbeat first reads the live slots: the bots that became this slot's are wanted
    (taken when free), the ones that became another's are handed back (``LeaseChanges.handed_back``)."""

    def __init__(self, store: Any, *, bots: Iterable[str], slot: str, **kwargs: Any) -> None:
        super().__init__(store, **kwargs)
        self.fleet = True
        self.bots = sorted(bots)
        self.slot = slot
        self.runnable: Callable[[str], bool] = lambda bot: True  # the desk refuses some (app.py)

    async def live_slots(self) -> list[str]:
        """The slots whose worker renews its lease (this one's while it holds it)."""
        now = self.clock()
        rows = await self.store.leases_named(SLOT_PREFIX)
        live = {r.bot_name for r in rows if r.owner != self.owner and r.expires_at >= now and not gone(r, self.space)}
        return sorted(live | ({self.slot} if self.holds(self.slot) else set()))

    async def share(self) -> set[str]:
        """The bots this worker is to run now (none while another process holds its slot; a worker only
        slow past its slot's window confirms it first, or it would hand its own bots back)."""
        if not await self.confirm(self.slot):
            return set()
        slots = await self.live_slots()
        return {b for b in self.bots if owner(b, slots) == self.slot and self.runnable(b)}

    async def join(self) -> None:
        """Take the slot (and ``@desk`` when free), then this slot's bots; those another worker
        still runs are taken when it hands them back."""
        await self.acquire([self.slot, DESK_LEASE])
        if not self.holds(self.slot):
            raise SlotTaken(f"{self.slot} is held: {held_elsewhere({self.slot: self.elsewhere[self.slot]})}")
        if self.is_leader:
            log.warning("this worker (%s) leads the desk now: it runs the desk-wide duties", self.owner)
        await self.acquire(await self.share())
        self.keep()

    async def beat(self) -> LeaseChanges:
        mine = await self.share()
        self.unwant([b for b in self.elsewhere if not b.startswith(RESERVED) and b not in mine])
        self.want(mine)
        changes = await super().beat()
        return replace(changes, handed_back=tuple(b for b in self.held if b not in mine))


class SlotTaken(RuntimeError):
    """The slot asked for is held by another live worker."""


async def first_free_slot(store: Any, workers: int, leases: Leases) -> str:
    """The lowest slot of ``workers`` nobody holds (an expired or dead one is free too)."""
    now = leases.clock()
    held = {r.bot_name for r in await store.leases_named(SLOT_PREFIX)
            if r.expires_at >= now and not gone(r, leases.space)}
    for i in range(workers):
        if slot_name(i) not in held:
            return slot_name(i)
    raise SlotTaken(f"every slot of {workers} is held by a live worker (raise --workers to add one)")


def sqlite_refusal(settings: Settings, workers: int) -> str | None:
    """The one line refusing workers on SQLite, which serves one desk process (None: fine)."""
    from traderagent.config import FLEET_NEEDS_POSTGRESQL

    if settings.on_postgresql:
        return None
    return f"--workers {workers}: {FLEET_NEEDS_POSTGRESQL} (move an SQLite desk with `traderagent db copy`)"
