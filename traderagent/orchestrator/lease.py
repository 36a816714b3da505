"""One owner per bot: a running desk holds a lease on each bot it runs.

A lease is a row per bot in the database (``bot_leases``: bot name, owner, expiry), the same
mechanism on SQLite and PostgreSQL. The owner is the desk process (``host:pid:random``):

* **acquire**: one atomic conditional upsert per bot takes a lease that is free, expired or already
  ours; a bot whose lease another desk holds and renews is not run here (``elsewhere``);
* **heartbeat** (every ``heartbeat`` s, an APScheduler job of the desk): renew every lease still
  ours, find the ones another desk took over, and try again the ones held elsewhere -- a lease
  whose owner died (kill -9, a lost host) expires ``timeout`` s after its last renewal and is
  taken over then;
* **release** on a clean stop: the bots are free at once.

A desk restarted after a crash need not wait for the timeout: a lease whose owner was a process of
the same process space (this boot of this machine, this pid namespace) that no longer runs is taken
over at once. Anywhere else (another host, another container) only the timeout can tell.

Fencing, on two levels:

* the desk's clock: ``holds(bot)`` is true only until ``fence`` seconds before the lease can
  expire, counted from the moment the last renewal was started. A desk frozen longer than that (or
  cut off from its database) stops sending that bot's orders, and writing its state, before any
  other desk can take the bot over; the send gate asks ``holds`` after an order request is signed,
  right before it is written. ``fence`` covers the exchange's request window (recvWindow, plus
  clock skew): a request signed in time but delayed by a freeze is refused by the exchange once
  the lease has expired, so the next owner can reconcile the bot's orders at once. A desk only slow
  (a busy machine stalled its event loop past the window) is not left unsure for long: before it
  refuses a send or a write, ``confirm`` renews, and the bot goes on if its row still names this desk.
* the database, for what that check cannot see (a write already under way when the desk froze):
  every acquisition by another owner, or of a free bot, writes a new random ``token`` into the
  lease row (an owner acquiring or renewing its own lease keeps it). The desk hands ``token`` to its
  store (``fence_writes``), and every write of a bot's rows (orders, order updates, trades, grid
  levels and runtime snapshot: ``save_bot_progress``; the bots row: ``create_bot``, ``update_bot``)
  carries the token this desk held when the write was made, and commits only if, first in its own
  transaction, the lease row still carries it; else nothing of it is written and it raises
  ``LeaseLapsed``, as the clock check does (a tick logs one line; the heartbeat drops the bot).
  So once another desk's takeover has committed, no write this desk made before can commit, however
  long it was frozen, even if the bot has come back to this desk since (the token changed each
  time). SQLite serialises writers: the check and the write are one transaction under the write
  lock. PostgreSQL: the check locks the lease row (FOR SHARE) until the commit, so a takeover waits
  for that commit; and the server ends a transaction left idle for ``PG_IDLE_IN_TRANSACTION_MS``
  (database/engine.py, 5 s: less than the fence), so a desk frozen inside one holds a takeover off
  no longer than that. Not fenced: log lines, the audit trail and the desk-wide rows (capital
  state, approvals, outbox). Not covered: the token is looked up when the write is made, so a bot
  object of an earlier lease whose tick is still under way when this desk takes the bot back
  writes under the new lease (the tick would have to outlast a takeover and a lease expiry).

Names starting with ``@`` are not bots but desk-wide leases held the same way: a worker's slot
(``@worker/<i>``, traderagent/fleet/workers.py) and ``@desk``, the fleet's leader (``is_leader``),
which runs the desk-wide duties once in the fleet. A heartbeat's changes list bots only.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import secrets
import socket
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from traderagent.ports import LeaseRow, LeaseStorePort

log = logging.getLogger(__name__)


def new_owner_id() -> str:
    """This process, unique even when a pid is reused: ``host:pid:random``."""
    return f"{socket.gethostname()[:80]}:{os.getpid()}:{secrets.token_hex(4)}"


def process_space() -> str | None:
    """Where a pid names one process: this boot of this machine and this pid namespace (Linux);
    None where that cannot be told."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        namespace = os.readlink("/proc/self/ns/pid")
    except OSError:
        return None
    return hashlib.sha256(f"{boot}/{namespace}".encode()).hexdigest()[:16]


def gone(row: LeaseRow, space: str | None) -> bool:
    """Is the lease's owner a process of our process space that no longer runs? (A pid reused since
    looks alive: then the lease only expires.)"""
    if space is None or row.process_space != space:
        return False
    try:
        pid = int(row.owner.split(":")[-2])
    except (IndexError, ValueError):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # e.g. another user's process: it runs
        return False
    return False


@dataclass(frozen=True)
class Holder:
    """Who holds a bot's lease, and until when (unless renewed)."""

    owner: str
    expires_at: datetime

    @classmethod
    def of(cls, row: LeaseRow) -> Holder:
        return cls(row.owner, row.expires_at)


RESERVED = "@"  # lease names that are not bots (bot names are letters, digits, _ and -)
DESK_LEASE = "@desk"  # held by one live worker of a fleet: its leader


NOBODY = Holder("nobody (its lease was deleted)", datetime.min.replace(tzinfo=UTC))


@dataclass(frozen=True)
class LeaseChanges:
    """What one heartbeat found: leases lost to another desk, leases taken over from a dead one."""

    lost: Mapping[str, Holder]
    gained: Mapping[str, Holder]  # the previous holder
    handed_back: tuple[str, ...] = ()  # bots this worker gives back to a returning one (fleet/workers.py)


def _bots(holders: Mapping[str, Holder]) -> dict[str, Holder]:
    return {name: h for name, h in holders.items() if not name.startswith(RESERVED)}


def held_elsewhere(holders: Mapping[str, Holder]) -> str:
    """One line: ``xrp-grid, sol-dca run by another desk (host:123:ab12cd34, lease until 12:00:20 UTC)``."""
    by_owner: dict[Holder, list[str]] = {}
    for bot, holder in sorted(holders.items()):
        by_owner.setdefault(holder, []).append(bot)
    return "; ".join(f"{', '.join(bots)} run by another desk ({h.owner}, lease until {h.expires_at:%H:%M:%S} UTC)"
                     for h, bots in by_owner.items())


class Leases:
    """This desk's leases; see the module docstring."""

    def __init__(self, store: LeaseStorePort, *, heartbeat: float = 5.0, timeout: float = 25.0,
                 fence: float | None = None, owner: str | None = None,
                 clock: Callable[[], datetime] | None = None, space: str | None = None) -> None:
        fence = max(heartbeat, fence or 0.0)
        if heartbeat <= 0 or timeout < fence + 2 * heartbeat:
            raise ValueError(f"the lease timeout ({timeout:g} s) must cover two heartbeats ({heartbeat:g} s) and "
                             f"the fence before it ({fence:g} s: the exchange's request window and clock skew)")
        self.store = store
        self.heartbeat = heartbeat
        self.timeout = timedelta(seconds=timeout)
        self.fence = timedelta(seconds=fence)
        self.owner = owner or new_owner_id()
        self.space = space if space is not None else process_space()
        self.clock = clock or (lambda: datetime.now(UTC))
        self._sends_until: dict[str, datetime] = {}  # bots held -> end of their fenced window
        self._tokens: dict[str, str] = {}  # bots held -> the fencing token of the lease (see token)
        self.elsewhere: dict[str, Holder] = {}  # bots wanted here that another desk holds
        self.fleet = False  # one of several workers: leads only while it holds DESK_LEASE
        self._keeper: asyncio.Task[None] | None = None  # renews while the desk is built (see keep)
        self._confirming = asyncio.Lock()  # one confirming renewal at a time (see confirm)
        self.renewed = 0  # renewals by the keeper (tests wait on it)

    @property
    def held(self) -> list[str]:
        """The bots held (not the desk-wide leases)."""
        return sorted(n for n in self._sends_until if not n.startswith(RESERVED))

    def holds(self, bot: str) -> bool:
        """May this desk send ``bot``'s orders now? (Its lease is ours and cannot have expired yet.)"""
        until = self._sends_until.get(bot)
        return until is not None and self.clock() < until

    async def confirm(self, bot: str) -> bool:
        """``holds(bot)``, or, once its window passed without a renewal (a desk slowed down by a busy
        machine), whether a renewal now still finds the lease ours: a slow desk keeps its own bots.
        Safe as a heartbeat is: the renewal extends only rows still naming this owner (one another
        desk took over names that desk), and the new window counts from before the renewal, so
        the fence before expiry stands; the database fencing token is untouched."""
        if self.holds(bot) or bot not in self._sends_until:
            return self.holds(bot)
        async with self._confirming:  # a stall lapses every bot at once: one renewal answers them all
            if not self.holds(bot) and bot in self._sends_until:
                try:
                    await self._extend()
                except Exception:  # the database is away: unsure, so refuse as before
                    log.exception("could not confirm the lease of %s", bot)
        return self.holds(bot)

    def token(self, bot: str) -> str | None:
        """The fencing token of this desk's lease of ``bot`` (None: it holds none): its writes
        commit only while the lease row still carries it (the database checks, see Fencing)."""
        return self._tokens.get(bot)

    def owns(self, bot: str) -> bool:
        """Is ``bot``'s lease ours (renewed or not yet: a desk starting many bots has not beaten yet)?"""
        return bot in self._sends_until

    @property
    def is_leader(self) -> bool:
        """Does this desk run the desk-wide duties? A lone desk always; a fleet's worker while it holds
        DESK_LEASE."""
        return not self.fleet or self.holds(DESK_LEASE)

    def want(self, names: Iterable[str]) -> None:
        """Take these leases too, at the next heartbeat that finds them free."""
        for name in names:
            if name not in self._sends_until:
                self.elsewhere.setdefault(name, NOBODY)

    def unwant(self, names: Iterable[str]) -> None:
        """Stop waiting for these leases (another worker is to run those bots)."""
        for name in names:
            self.elsewhere.pop(name, None)

    def _window(self, started: datetime) -> datetime:
        return started + self.timeout - self.fence

    async def acquire(self, bots: Iterable[str]) -> dict[str, Holder]:
        """Take the lease of every bot in ``bots`` no other live desk holds; returns, for each bot
        it holds, its previous holder (NOBODY for a free one), and keeps the others in ``elsewhere``."""
        now = self.clock()
        names = list(bots)
        before = {n: self.elsewhere.get(n, NOBODY) for n in names}
        rows = {r.bot_name: r for r in await self.store.acquire_leases(names, self.owner, now, now + self.timeout,
                                                                         process_space=self.space)}
        dead = sorted({r.owner for r in rows.values() if r.owner != self.owner and gone(r, self.space)})
        if dead:
            log.warning("taking over at once the bots of %s: that process no longer runs", ", ".join(dead))
            orphans = [n for n, r in rows.items() if r.owner in dead]
            rows.update((r.bot_name, r) for r in await self.store.acquire_leases(
                orphans, self.owner, now, now + self.timeout, process_space=self.space, dead=dead))
        taken: dict[str, Holder] = {}
        for row in rows.values():
            if row.owner == self.owner:
                self._sends_until[row.bot_name] = self._window(now)
                self._tokens[row.bot_name] = row.token
                self.elsewhere.pop(row.bot_name, None)
                taken[row.bot_name] = before[row.bot_name]
            else:
                self.elsewhere[row.bot_name] = Holder.of(row)
        return taken

    def keep(self) -> None:
        """Renew what is held every heartbeat until the first ``beat``: a desk takes its leases before it
        builds and recovers its bots, which can outlast the timeout (hundreds of bots, a busy machine),
        and its own heartbeat starts only with its scheduler."""
        if self._keeper is None:
            self._keeper = asyncio.create_task(self._keep_until_beat(), name="lease-keeper")

    async def _keep_until_beat(self) -> None:
        """Nothing is taken over or handed back meanwhile: the first ``beat`` does that."""
        while True:
            await asyncio.sleep(self.heartbeat)
            try:
                await self.renew()
            except Exception:  # the database may be away: the next round tries again
                log.exception("could not renew the leases while building the bots")

    async def renew(self) -> None:
        """Extend the leases still ours; one lost meanwhile is left for the next ``beat`` to notice."""
        await self._extend()
        self.renewed += 1

    async def _extend(self) -> set[str]:
        """Renew every lease still ours and reopen its window; returns what the database kept."""
        now = self.clock()  # before the write: the window never outlasts what the database grants
        kept = set(await self.store.renew_leases(self.owner, now + self.timeout))
        for name in kept & self._sends_until.keys():
            self._sends_until[name] = self._window(now)
        return kept

    async def stop_keeping(self) -> None:
        if self._keeper is not None:
            self._keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._keeper
            self._keeper = None

    async def beat(self) -> LeaseChanges:
        """One heartbeat: renew what is ours, notice what was taken over, take over what expired."""
        await self.stop_keeping()  # the desk's heartbeat runs from now on
        now = self.clock()
        kept = await self._extend()
        lost_names = [b for b in self._sends_until if b not in kept]
        lost: dict[str, Holder] = {}
        if lost_names:
            for bot in lost_names:
                del self._sends_until[bot], self._tokens[bot]
            holders = {row.bot_name: Holder.of(row) for row in await self.store.lease_holders(lost_names)}
            lost = {b: holders.get(b, NOBODY) for b in lost_names}
            self.elsewhere.update(lost)
        gained = await self._take_free(now)
        if DESK_LEASE in gained:
            log.warning("this worker (%s) leads the desk now: it runs the desk-wide duties", self.owner)
        return LeaseChanges(_bots(lost), _bots(gained))

    async def _take_free(self, now: datetime) -> dict[str, Holder]:
        """Acquire the bots held elsewhere whose lease is gone, expired or its owner's process gone
        (one read of them first: a conditional write per bot costs more)."""
        if not self.elsewhere:
            return {}
        rows = {r.bot_name: r for r in await self.store.lease_holders(list(self.elsewhere))}
        self.elsewhere.update((b, Holder.of(r)) for b, r in rows.items())
        free = [b for b in self.elsewhere if (r := rows.get(b)) is None or r.expires_at < now or gone(r, self.space)]
        return await self.acquire(free) if free else {}

    async def release(self, bots: Iterable[str] | None = None) -> None:
        """Give up the leases of ``bots`` (default: every one): another desk may run them at once."""
        if bots is None:  # stopping (or a failed build): nothing left to renew
            await self.stop_keeping()
        names = None if bots is None else [b for b in bots if b in self._sends_until]
        if names == []:
            return
        for bot in names if names is not None else list(self._sends_until):
            del self._sends_until[bot], self._tokens[bot]
        await self.store.release_leases(self.owner, names)
