"""The desk's tick loop: due bots start together, one tick of a bot at a time, latency from the due time."""

from __future__ import annotations

import asyncio

from traderagent.orchestrator.budget import AnalysisBudget
from traderagent.orchestrator.scheduler import DeskScheduler


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_due_bots_start_together_as_one_batch():
    clock = Clock()
    sched = DeskScheduler(clock=clock)
    started: list[str] = []

    def bot(name: str):
        async def tick() -> None:
            started.append(name)
        return tick

    sched.add_tick("a", bot("a"), 1.0)
    sched.add_tick("b", bot("b"), 1.0)
    sched.add_tick("c", bot("c"), 1.0, offset=0.5)
    assert sched.run_due() == 2
    await settle()
    assert sorted(started) == ["a", "b"] and sched.batches == 1
    clock.now = 0.5
    assert sched.run_due() == 1
    clock.now = 1.0
    assert sched.run_due() == 2
    await settle()
    assert sorted(started) == ["a", "a", "b", "b", "c"]
    sched.remove_tick("b")
    clock.now = 1.5
    assert sched.run_due() == 1
    clock.now = 2.0
    assert sched.run_due() == 1  # b is gone
    await settle()
    assert started[-2:] == ["c", "a"] and sched.stats.missed == 0


async def test_a_slow_tick_delays_the_next_and_is_measured_from_its_due_time():
    clock = Clock()
    sched = DeskScheduler(clock=clock, late_after=1.0)
    release = asyncio.Event()
    runs = 0

    async def slow() -> None:
        nonlocal runs
        runs += 1
        if runs == 1:
            await release.wait()

    sched.add_tick("slow", slow, 1.0)
    sched.run_due()
    await settle()
    clock.now = 1.0
    assert sched.run_due() == 0  # never two ticks of one bot at once: the due tick waits
    clock.now = 2.6
    release.set()
    await settle()
    assert sched.stats.latencies == [2.6] and sched.stats.late == 1  # the first tick ended 2.6 s after due
    assert sched.run_due() == 1  # the tick due at 1.0 is one whole interval behind: the one due at 2.0 runs
    await settle()
    assert runs == 2 and sched.stats.skipped == 1
    assert abs(sched.stats.latencies[-1] - 0.6) < 1e-9
    assert sched.stats.missed == 2


async def test_apscheduler_drives_the_loop():
    sched = DeskScheduler(resolution=0.01)
    ticked = asyncio.Event()

    async def tick() -> None:
        ticked.set()

    sched.add_tick("bot", tick, 1.0)
    sched.start()
    try:
        await asyncio.wait_for(ticked.wait(), 10)
    finally:
        sched.shutdown()


def test_analysis_budget_defers_past_its_share():
    now = [0.0]
    budget = AnalysisBudget(window=1.0, share=0.5, clock=lambda: now[0])
    assert budget.allow()
    budget.spend(0.6)
    assert not budget.allow()  # over half of the last second went to analysis
    now[0] = 1.7
    assert budget.allow()  # the window moved on
    assert (budget.granted, budget.deferred) == (2, 1)


async def test_a_batch_never_has_more_than_its_concurrency_in_flight_and_every_due_tick_runs():
    clock = Clock()
    sched = DeskScheduler(clock=clock, concurrency=3)
    gates = {f"bot-{i}": asyncio.Event() for i in range(10)}
    running: set[str] = set()
    peak = 0
    ran: list[str] = []

    def bot(name: str):
        async def tick() -> None:
            nonlocal peak
            running.add(name)
            peak = max(peak, len(running))
            await gates[name].wait()  # waits on I/O, as a tick does
            running.discard(name)
            ran.append(name)
        return tick

    for name in gates:
        sched.add_tick(name, bot(name), 1.0)
    assert sched.run_due() == 10 and sched.batches == 1  # all ten due, taken as one batch
    await settle()
    assert running == {"bot-0", "bot-1", "bot-2"}  # the first three in due order; the others wait their turn
    clock.now = 0.4
    for name in gates:  # each end gives the next its turn
        gates[name].set()
        await settle()
        assert len(running) <= 3
    assert ran == list(gates) and peak == 3 and sched.peak_in_flight == 3 and sched.in_flight == 0
    assert len(sched.stats.latencies) == 10 and sched.stats.latencies[-1] == 0.4  # from the due time: waits count


async def test_a_paused_scheduler_starts_no_tick_waiting_for_its_turn():
    sched = DeskScheduler(clock=Clock(), concurrency=1)
    release = asyncio.Event()
    started: list[str] = []

    def bot(name: str):
        async def tick() -> None:
            started.append(name)
            await release.wait()
        return tick

    sched.add_tick("a", bot("a"), 1.0)
    sched.add_tick("b", bot("b"), 1.0)
    assert sched.run_due() == 2
    await settle()
    assert started == ["a"]
    sched.scheduler.start(paused=True)  # the desk's stop pauses it: no new tick from this instant
    try:
        release.set()
        await settle()
        assert started == ["a"] and sched.in_flight == 0  # b waited for a turn and never starts
    finally:
        sched.shutdown()


def test_a_job_cancelled_by_shutdown_is_not_logged_as_raising(caplog):
    import logging

    import traderagent.orchestrator.scheduler  # noqa: F401  (installs the filter)

    executor = logging.getLogger("apscheduler.executors.default")
    for exc in (asyncio.CancelledError(), ValueError("a real failure")):
        try:
            raise exc
        except BaseException:
            executor.exception("Job %s raised an exception", type(exc).__name__)
    assert [r.getMessage() for r in caplog.records] == ["Job ValueError raised an exception"]
