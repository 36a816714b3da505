"""One APScheduler job per bot on the service's own event loop.

Each bot ticks every ``tick_seconds`` with ``max_instances=1`` (a slow tick is never run twice
at once) and ``coalesce=True`` (a backlog of missed runs collapses into one). Start times are
spread across the first interval so a thousand bots do not all fire in the same millisecond.
Skipped runs (the previous tick still running) and misfires are counted and logged: they are
the "missed ticks" the benchmark reports.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_MAX_INSTANCES, EVENT_JOB_MISSED, JobEvent
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger

log = logging.getLogger(__name__)


@dataclass
class TickStats:
    latencies: list[float] = field(default_factory=list)  # seconds, every completed tick
    missed: int = 0  # runs skipped because the previous one was still running, or misfired
    errors: int = 0
    keep: int = 200_000

    started: float = field(default_factory=time.monotonic)
    timeline: list[tuple[float, float]] = field(default_factory=list)  # (seconds since start, latency)

    def record(self, seconds: float) -> None:
        if len(self.latencies) < self.keep:
            self.latencies.append(seconds)
            self.timeline.append((time.monotonic() - self.started, seconds))


class DeskScheduler:
    def __init__(self, *, misfire_grace_time: float = 1.0) -> None:
        self.scheduler = AsyncIOScheduler(timezone=UTC)
        self.misfire_grace_time = misfire_grace_time
        self.stats = TickStats()
        self.scheduler.add_listener(self._on_event, EVENT_JOB_MAX_INSTANCES | EVENT_JOB_MISSED | EVENT_JOB_ERROR)

    def _on_event(self, event: JobEvent) -> None:
        if event.code == EVENT_JOB_ERROR:
            if isinstance(getattr(event, "exception", None), asyncio.CancelledError):
                return  # a tick cut short by shutdown
            self.stats.errors += 1
            log.error("job %s raised: %s", event.job_id, getattr(event, "exception", None))
            return
        self.stats.missed += 1
        what = "still running (tick skipped)" if event.code == EVENT_JOB_MAX_INSTANCES else "misfired"
        log.warning("tick %s %s", event.job_id, what)

    def add_job(self, job_id: str, func: Callable[[], Awaitable[object]], seconds: float, *,
                offset: float = 0.0, name: str | None = None) -> None:
        """Run ``func`` every ``seconds``, first after ``offset`` seconds."""

        async def timed() -> None:
            started = time.perf_counter()
            try:
                await func()
            finally:
                self.stats.record(time.perf_counter() - started)

        self.scheduler.add_job(
            timed,
            IntervalTrigger(seconds=seconds),
            id=job_id,
            name=name or job_id,
            max_instances=1,
            coalesce=True,
            misfire_grace_time=max(1, math.ceil(max(self.misfire_grace_time, seconds / 2))),
            next_run_time=datetime.now(UTC) + timedelta(seconds=offset),
            replace_existing=True,
        )

    def remove_job(self, job_id: str) -> None:
        if self.scheduler.get_job(job_id):
            self.scheduler.remove_job(job_id)

    def start(self) -> None:
        if not self.scheduler.running:
            self.scheduler.start()

    def shutdown(self) -> None:
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)
