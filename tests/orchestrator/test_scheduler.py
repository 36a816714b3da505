"""The per-bot tick jobs: one instance at a time, overruns counted as missed ticks."""

from __future__ import annotations

import asyncio

from traderagent.orchestrator.budget import AnalysisBudget
from traderagent.orchestrator.scheduler import DeskScheduler


async def test_overrunning_tick_is_skipped_and_counted():
    sched = DeskScheduler()
    running = 0
    peak = 0
    runs = 0

    async def slow():
        nonlocal running, peak, runs
        running += 1
        peak = max(peak, running)
        runs += 1
        await asyncio.sleep(2.5)
        running -= 1

    async def quick():
        await asyncio.sleep(0)

    sched.add_job("slow", slow, 1)
    sched.add_job("quick", quick, 1)
    sched.start()
    await asyncio.sleep(3.3)
    sched.shutdown()
    assert peak == 1  # never two ticks of one bot at once
    assert sched.stats.missed >= 1
    assert len(sched.stats.latencies) >= 3  # the quick job kept its pace


def test_analysis_budget_defers_past_its_share():
    now = [0.0]
    budget = AnalysisBudget(window=1.0, share=0.5, clock=lambda: now[0])
    assert budget.allow()
    budget.spend(0.6)
    assert not budget.allow()  # over half of the last second went to analysis
    now[0] = 1.7
    assert budget.allow()  # the window moved on
    assert (budget.granted, budget.deferred) == (2, 1)
