"""Candle bookkeeping ("soft" state) is saved once per SOFT_SAVE_S window at each bot's own phase in it:
the bots of a desk start together and see every candle close at once, and saving all of them in the same tick
piled thousands of snapshot writes onto the candle-close tick."""

from __future__ import annotations

import dataclasses
from collections import Counter
from types import SimpleNamespace
from typing import Any

from traderagent.orchestrator import bot_orchestrator
from traderagent.orchestrator.bot_orchestrator import SOFT_SAVE_S, next_soft_save, soft_phase

from .helpers import TREND, build_desk

CALM_TREND = dataclasses.replace(TREND, params={**TREND.params, "adx_threshold": 99.0})  # analyses, never enters


def test_the_phases_of_a_desk_of_bots_spread_over_the_window():
    names = [f"b{i:04d}-{kind}" for i in range(3000) for kind in ("grid",)]  # the benchmark's names
    seconds = Counter(int(soft_phase(name)) for name in names)
    assert set(seconds) == set(range(int(SOFT_SAVE_S)))  # every second of the window has its share
    assert max(seconds.values()) <= 1.5 * len(names) / SOFT_SAVE_S  # none piles up (a mean second: 100)


def test_the_next_save_is_at_the_phase_within_one_window():
    for phase in (0.0, 7.25, SOFT_SAVE_S - 0.001):
        for now in (0.0, 3.5, 7.25, 1000.0, 12345.678):
            due = next_soft_save(now, phase)
            assert now < due <= now + SOFT_SAVE_S
            assert abs((due - phase) / SOFT_SAVE_S - round((due - phase) / SOFT_SAVE_S)) < 1e-9


async def test_bookkeeping_is_saved_at_the_bots_phase_and_a_forced_save_at_once(sim, tmp_path, monkeypatch):
    h = await build_desk(sim.base_url, tmp_path / "desk.db", [CALM_TREND])
    now = [1000.0]  # the bots' monotonic clock (the module's only, not the event loop's)
    monkeypatch.setattr(bot_orchestrator, "time", SimpleNamespace(monotonic=lambda: now[0]))
    snapshots: list[float] = []
    real = h.db.save_bot_progress

    async def spy(name: str, **kw: Any) -> Any:
        if kw.get("runtime") is not None:
            snapshots.append(now[0])
        return await real(name, **kw)

    monkeypatch.setattr(h.db, "save_bot_progress", spy)

    async def candle_and_tick(at: float) -> None:
        now[0] = at
        sim.step_all(1)
        await h.desk.tick_all()

    try:
        bot = h.desk.bots[CALM_TREND.name].bot
        for _ in range(2):
            await candle_and_tick(1000.0)
        await candle_and_tick(1000.0 + SOFT_SAVE_S + 1)  # whatever the start-up left due is saved by now
        snapshots.clear()
        dirtied = 1000.0 + 2 * SOFT_SAVE_S
        due = next_soft_save(dirtied, soft_phase(bot.name))
        await candle_and_tick(dirtied)  # a candle closed: the bookkeeping changed
        await candle_and_tick(due - 0.5)  # another: still not the bot's moment
        assert snapshots == []
        await candle_and_tick(due)
        assert snapshots == [due] and due - dirtied <= SOFT_SAVE_S
        await candle_and_tick(due + 1)  # changed again: due a window later, but a forced save does not wait
        await bot.save()
        assert snapshots == [due, due + 1]
    finally:
        await h.close()
