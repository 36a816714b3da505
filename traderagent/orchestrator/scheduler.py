"""The desk's clock: one tick loop for every bot, and the periodic jobs, all driven by APScheduler.

APScheduler runs the periodic jobs (desk risk, ...) and one more job, the tick loop, every
``resolution`` seconds. The loop keeps the bots' next due times in a heap and takes every bot that
is due as one batch, in due order (``Desk._schedule`` puts the bots of one account next to each
other, so they start together and share the account's open-orders and balance requests). A
thousand bots cost one timer, not a thousand APScheduler jobs.

At most ``concurrency`` ticks are in flight: the due ticks beyond it wait in a FIFO and each starts
as another ends. A tick spends most of its time waiting on I/O (the exchange, the group commit), so
a few dozen in flight keep the throughput; but every tick started is a callback in the event loop's
ready queue, and a thousand started at once would put an operator's command behind all of them.

A bot never runs two ticks at once: a tick due while the previous one still runs (or still waits
for its turn) waits for it and starts late. A bot behind by a whole interval or more skips the ticks
in between (a backlog collapses into one tick); those are counted as skipped. Latency is measured
from the tick's DUE time to its end, so time spent waiting for the loop, for a turn, for a slow
predecessor or for the event loop counts; a tick that ends more than ``late_after`` seconds after
it was due is counted as late. Skipped + late ticks are the "missed ticks" the benchmark reports.
Once APScheduler is paused (a stop) no tick starts, not even one waiting for its turn.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_MISSED, JobEvent
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.schedulers.base import STATE_PAUSED
from apscheduler.triggers.interval import IntervalTrigger

log = logging.getLogger(__name__)


class _CancelledJobs(logging.Filter):
    """APScheduler logs a job the desk's shutdown cancelled as "raised an exception", with a traceback:
    it raised nothing (our listener skips those too)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], asyncio.CancelledError))


logging.getLogger("apscheduler.executors.default").addFilter(_CancelledJobs())

LOOP_JOB = "desk:ticks"
TICKS_IN_FLIGHT = 64  # enough for ticks waiting on I/O; few enough that a command finds a short ready queue


@dataclass
class TickStats:
    late_after: float = 1.0  # a tick ending later than this after its due time is late (missed)
    latencies: list[float] = field(default_factory=list)  # seconds from due time to end, every completed tick
    skipped: int = 0  # ticks never run: the bot was a whole interval or more behind
    late: int = 0
    errors: int = 0
    keep: int = 200_000  # samples kept (the benchmark resets the stats after its warm-up)

    started: float = field(default_factory=time.monotonic)
    timeline: list[tuple[float, float]] = field(default_factory=list)  # (seconds since start, latency)

    @property
    def missed(self) -> int:
        return self.skipped + self.late

    def record(self, seconds: float, now: float) -> None:
        if seconds > self.late_after:
            self.late += 1
        if len(self.latencies) < self.keep:
            self.latencies.append(seconds)
            self.timeline.append((now - self.started, seconds))


@dataclass
class _Tick:
    key: str
    func: Callable[[], Awaitable[object]]
    seconds: float
    running: bool = False
    removed: bool = False
    waiting: float | None = None  # a due time that came while the previous tick still ran


class DeskScheduler:
    def __init__(self, *, resolution: float = 0.05, late_after: float = 1.0,
                 clock: Callable[[], float] = time.monotonic, concurrency: int = TICKS_IN_FLIGHT) -> None:
        self.scheduler = AsyncIOScheduler(timezone=UTC)
        self.resolution = resolution
        self.clock = clock
        self.stats = TickStats(late_after, started=clock())
        self.batches = 0
        self.concurrency = concurrency
        self.in_flight = 0
        self.peak_in_flight = 0
        self._ticks: dict[str, _Tick] = {}
        self._due: list[tuple[float, int, _Tick]] = []  # heap of (due time, order, tick)
        self._order = itertools.count()
        self._running: set[asyncio.Task[None]] = set()  # the ticks' tasks (held, or they may be collected)
        self._turns: deque[tuple[_Tick, float]] = deque()  # (tick, due) taken from the heap, waiting for a turn
        self.scheduler.add_listener(self._on_event, EVENT_JOB_MISSED | EVENT_JOB_ERROR)

    def _on_event(self, event: JobEvent) -> None:
        if event.code == EVENT_JOB_ERROR:
            if isinstance(getattr(event, "exception", None), asyncio.CancelledError):
                return  # a job cut short by shutdown
            log.error("job %s raised: %s", event.job_id, getattr(event, "exception", None))
            return
        log.warning("job %s misfired", event.job_id)

    # ------------------------------------------------------------------ bots' ticks
    def add_tick(self, key: str, func: Callable[[], Awaitable[object]], seconds: float, *,
                 offset: float = 0.0) -> None:
        """Run ``func`` every ``seconds``, first ``offset`` seconds from now (replaces ``key``)."""
        self.remove_tick(key)
        tick = self._ticks[key] = _Tick(key, func, seconds)
        self._push(self.clock() + offset, tick)

    def remove_tick(self, key: str) -> None:
        tick = self._ticks.pop(key, None)
        if tick is not None:
            tick.removed = True  # its heap entry is dropped when it comes up

    def run_due(self) -> int:
        """Take every tick due by now, as one batch, and start as many as have a turn; returns how many
        were taken (the loop job)."""
        now = self.clock()
        taken = 0
        while self._due and self._due[0][0] <= now:
            due, _, tick = heapq.heappop(self._due)
            if tick.removed:
                continue
            if tick.running:  # the previous tick still runs: this one starts (late) right after it
                tick.waiting = due
                continue
            behind = int((now - due) // tick.seconds)  # whole intervals already passed: skipped
            self.stats.skipped += behind
            tick.running = True
            self._turns.append((tick, due + behind * tick.seconds))
            self._push(due + (behind + 1) * tick.seconds, tick)
            taken += 1
        if taken:
            self.batches += 1
        self._start_turns()
        return taken

    def _push(self, due: float, tick: _Tick) -> None:
        heapq.heappush(self._due, (due, next(self._order), tick))

    def _start_turns(self) -> None:
        """Start waiting ticks, oldest first, while fewer than ``concurrency`` are in flight."""
        if self.scheduler.state == STATE_PAUSED:
            return
        while self._turns and self.in_flight < self.concurrency:
            tick, due = self._turns.popleft()
            if tick.removed:
                tick.running = False
                continue
            self.in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
            task = asyncio.ensure_future(self._one(tick, due))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def _one(self, tick: _Tick, due: float) -> None:
        try:
            await tick.func()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bot's tick handles its own failures; this is a bug around it
            self.stats.errors += 1
            log.error("tick %s raised: %s", tick.key, exc, exc_info=exc)
        finally:
            self.in_flight -= 1
            tick.running = False
            now = self.clock()
            self.stats.record(now - due, now)
            if tick.waiting is not None and not tick.removed:
                self._push(tick.waiting, tick)  # the loop's next pass starts it
            tick.waiting = None
        self._start_turns()  # its turn passes on at once (not after a cancel: the desk is going away)

    async def _loop(self) -> None:
        self.run_due()

    # ------------------------------------------------------------------ periodic jobs
    def add_job(self, job_id: str, func: Callable[[], Awaitable[object]], seconds: float, *,
                offset: float = 0.0, name: str | None = None) -> None:
        """An APScheduler job: ``func`` every ``seconds``, first after ``offset`` seconds."""
        self.scheduler.add_job(
            func,
            IntervalTrigger(seconds=seconds),
            id=job_id,
            name=name or job_id,
            max_instances=1,
            coalesce=True,
            misfire_grace_time=max(1, int(seconds)),
            next_run_time=datetime.now(UTC) + timedelta(seconds=offset),
            replace_existing=True,
        )

    def remove_job(self, job_id: str) -> None:
        if self.scheduler.get_job(job_id):
            self.scheduler.remove_job(job_id)

    def start(self) -> None:
        if not self.scheduler.get_job(LOOP_JOB):
            self.scheduler.add_job(self._loop, IntervalTrigger(seconds=self.resolution), id=LOOP_JOB,
                                   max_instances=1, coalesce=True, misfire_grace_time=None,
                                   next_run_time=datetime.now(UTC))  # the first pass at once
        if not self.scheduler.running:
            self.scheduler.start()

    def shutdown(self) -> None:
        for tick, _ in self._turns:  # never started: their bots tick again only once rescheduled
            tick.running = False
        self._turns.clear()
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)
