"""The desk reports in by itself: one watch loop beside the tick jobs.

Every ``period`` seconds `DeskWatch.check()` asks the desk whether the ticks stalled
(TICKS_STALLED), whether every scaling gate passes (SCALING_OFFERED, once per phase, daily until
answered) and whether the daily digest is due (DAILY_DIGEST at the operator's local time). Each
answer is an event on the bus; the console and Telegram render it. Everything is read from the
desk's clock, so a test advances the clock and calls ``check()``: no sleeping.

The loop is an asyncio task of its own, not an APScheduler job: a scheduler that stopped
running jobs must not also silence the alert that says so.

In a fleet (traderagent/fleet) every worker's `DeskWatch` still tells of its own stalled ticks (the
alert names the worker), while the scaling offers and the digest are the console's: `FleetWatch`.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from traderagent.control import DESK, Desk
from traderagent.orchestrator.events import DailyDigest, EventBus, TradingEvent

if TYPE_CHECKING:
    from traderagent.fleet.console import ConsoleDesk
    from traderagent.orchestrator.capital_wiring import ScalingOffers

log = logging.getLogger(__name__)


class DigestTime:
    """The local time of day the digest goes out; due once per local day, only when that time is
    crossed while the desk runs (a desk started in the afternoon waits for tomorrow's)."""

    def __init__(self, at: dt.time, zone: str, now: dt.datetime) -> None:
        self.at = at
        self.zone = ZoneInfo(zone)
        local = now.astimezone(self.zone)
        self.last_day = local.date() if local.time() >= at else local.date() - dt.timedelta(days=1)

    def sent(self, day: dt.date) -> None:
        """The digest of ``day`` went out already (a fleet's console reads it back at start): due next the
        day after, also when that time already passed while no console ran."""
        self.last_day = day

    def due(self, now: dt.datetime) -> dt.datetime | None:
        """The local end of the day to report on, when the digest is due now (then not again that day)."""
        local = now.astimezone(self.zone)
        if local.date() == self.last_day or local.time() < self.at:
            return None
        self.last_day = local.date()
        return dt.datetime.combine(local.date(), self.at, tzinfo=self.zone)

    def now(self, now: dt.datetime) -> dt.datetime:
        """``now`` in the operator's zone (the end of an on-demand digest)."""
        return now.astimezone(self.zone)


class Watch:
    """A report loop: ``check()`` every ``period`` seconds until stopped, a failed check logged."""

    period: float
    _task: asyncio.Task[None] | None = None

    async def check(self) -> None:
        raise NotImplementedError

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.period)
            try:
                await self.check()
            except Exception:
                log.exception("%s failed; next check in %.0f s", type(self).__name__, self.period)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=type(self).__name__)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


class DeskWatch(Watch):
    """A desk's watch: its stalled ticks always; the scaling offers and the digest unless ``reports`` is
    off (a desk whose chat is a fleet's console, which sends those: `FleetWatch`)."""

    def __init__(self, desk: Desk, digest_time: DigestTime | None, *, period: float = 30.0,
                 reports: bool = True) -> None:
        self.desk = desk
        self.digest_time = digest_time
        self.period = period
        self.reports = reports

    async def check(self) -> None:
        self.desk.check_stall()
        if not self.reports or not self.desk.leader:
            return
        await self.desk.offer_scaling()
        end = self.digest_time.due(self.desk.clock()) if self.digest_time else None
        if end is not None:
            digest = await self.desk.digest(end)
            self.desk.event_bus.publish(TradingEvent.of(DESK, DailyDigest(digest)))


DIGEST = "digest"  # desk_reports.kind of the daily digest


class FleetWatch(Watch):
    """A fleet's scaling offers and daily digest, sent by its console (`traderagent console`).

    Why the console and not the leader worker: the console is the one process of the fleet that talks
    to the chat. It issues the offer's buttons (one-time tokens, handlers/tokens.py) and sends the
    offer and the digest as the single desk does, with nothing new to carry between processes (an
    alert a worker stores is text without buttons). It reads every worker's bots from the database,
    and the leader changing (a worker restarting, a rolling deploy) does not move the duty at all.
    What a restarted console must not repeat or skip is in the database: each offer (and its answer,
    given on any worker) in the approvals table (`ScalingOffers`, read again at every check), and the
    last day a digest went out in ``desk_reports``, claimed by one conditional write before sending.
    A console stopped between that write and the send loses that day's digest (as a single desk
    loses an offer or a digest queued in memory when it stops); /digest asks for it any time.

    The gates are judged on the whole fleet's record (fleet/record.py); a press of Approve goes to the
    leader, which judges them again on the same record and executes the step.
    """

    def __init__(self, desk: ConsoleDesk, bus: EventBus, offers: ScalingOffers, digest_time: DigestTime | None,
                 *, period: float = 30.0) -> None:
        self.desk = desk
        self.bus = bus
        self.offers = offers
        self.digest_time = digest_time
        self.period = period

    async def load(self) -> None:
        """The day of the last digest sent, when any was (by this console before a restart, or another)."""
        last = await self.desk.db.last_report(DIGEST)
        if last is not None and self.digest_time is not None:
            self.digest_time.sent(dt.date.fromisoformat(last))

    async def check(self) -> None:
        await self.offer_scaling()
        await self.send_digest()

    async def offer_scaling(self) -> bool:
        """SCALING_OFFERED when every gate passes on the fleet's record: once per phase, again daily until
        an operator answers. True when an offer went out now."""
        decision = await self.desk.scaling_decision()
        if decision is None:
            return False
        await self.offers.load()  # answered on the leader, or offered before a restart
        offer = await self.offers.offer(decision, self.desk.clock())
        if offer is not None:
            self.bus.publish(TradingEvent.of(DESK, offer))
        return offer is not None

    async def send_digest(self) -> bool:
        """DAILY_DIGEST when its local time has come and that day's went out from no console yet."""
        if self.digest_time is None:
            return False
        before = self.digest_time.last_day
        end = self.digest_time.due(self.desk.clock())
        if end is None:
            return False
        try:
            digest = await self.desk.digest(end)
            claimed = await self.desk.db.claim_report(DIGEST, end.date().isoformat())
        except BaseException:
            self.digest_time.sent(before)  # due again at the next check
            raise
        if claimed:
            self.bus.publish(TradingEvent.of(DESK, DailyDigest(digest)))
        return claimed
