"""The desk reports in by itself: one watch loop beside the tick jobs.

Every ``period`` seconds `DeskWatch.check()` asks the desk whether the ticks stalled
(TICKS_STALLED), whether every scaling gate passes (SCALING_OFFERED, once per phase, daily until
answered) and whether the daily digest is due (DAILY_DIGEST at the operator's local time). Each
answer is an event on the bus; the console and Telegram render it. Everything is read from the
desk's clock, so a test advances the clock and calls ``check()``: no sleeping.

The loop is an asyncio task of its own, not an APScheduler job: a scheduler that stopped
running jobs must not also silence the alert that says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from zoneinfo import ZoneInfo

from traderagent.control import DESK, Desk
from traderagent.orchestrator.events import DailyDigest, TradingEvent

log = logging.getLogger(__name__)


class DigestTime:
    """The local time of day the digest goes out; due once per local day, only when that time is
    crossed while the desk runs (a desk started in the afternoon waits for tomorrow's)."""

    def __init__(self, at: dt.time, zone: str, now: dt.datetime) -> None:
        self.at = at
        self.zone = ZoneInfo(zone)
        local = now.astimezone(self.zone)
        self.last_day = local.date() if local.time() >= at else local.date() - dt.timedelta(days=1)

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


class DeskWatch:
    def __init__(self, desk: Desk, digest_time: DigestTime | None, *, period: float = 30.0) -> None:
        self.desk = desk
        self.digest_time = digest_time
        self.period = period
        self._task: asyncio.Task[None] | None = None

    async def check(self) -> None:
        self.desk.check_stall()
        if not self.desk.leader:  # the desk-wide reports go out once in a fleet of workers: from its leader
            return
        await self.desk.offer_scaling()
        end = self.digest_time.due(self.desk.clock()) if self.digest_time else None
        if end is not None:
            digest = await self.desk.digest(end)
            self.desk.event_bus.publish(TradingEvent.of(DESK, DailyDigest(digest)))

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.period)
            try:
                await self.check()
            except Exception:
                log.exception("desk watch failed; next check in %.0f s", self.period)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="desk-watch")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
