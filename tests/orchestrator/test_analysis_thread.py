"""Preparations run in the analysis thread, off the event loop, once per combination and candle even
when the bots of a combination ask at the same time."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
from dataclasses import replace
from decimal import Decimal

import numpy as np
import pandas as pd
import pytest

from traderagent.backtest.engine import build_frames
from traderagent.orchestrator.analysis import AnalysisCache
from traderagent.strategies import create_strategy
from traderagent.strategies.indicators import load_candles_csv
from traderagent.timeframes import timeframe_ms

from .helpers import TREND, build_desk, run_ticks

GUARD_S = 30.0  # only a broken build waits this long: every wait below ends on an event


class Held:
    """A ``prepare`` the test holds in the analysis thread: it says when it runs and, until released,
    keeps the GIL busy (pure Python), as an SMC analysis does."""

    def __init__(self, prepare) -> None:
        self.prepare = prepare
        self.entered = threading.Event()
        self.release = threading.Event()
        self.finished = threading.Event()
        self.threads: list[str] = []

    def __call__(self, *frames):
        self.threads.append(threading.current_thread().name)
        self.entered.set()
        guard = time.monotonic() + GUARD_S
        while not self.release.is_set() and time.monotonic() < guard:
            sum(range(1000))
        try:
            return self.prepare(*frames)
        finally:
            self.finished.set()


async def test_the_event_loop_runs_while_a_slow_preparation_holds_the_analysis_thread(sim, tmp_path):
    h = await build_desk(sim.base_url, tmp_path / "desk.db", [TREND])
    try:
        strategy = h.desk.bots[TREND.name].bot.strategy
        strategy.prepare = held = Held(strategy.prepare)
        ticks = asyncio.ensure_future(h.desk.tick_all())
        assert await asyncio.to_thread(held.entered.wait, GUARD_S)
        for _ in range(50):  # fifty turns of the loop, each needing the GIL the preparation keeps busy
            await asyncio.sleep(0)
        assert not held.finished.is_set() and not ticks.done()  # the loop turned meanwhile; the tick waits
        held.release.set()
        await asyncio.wait_for(ticks, GUARD_S)
        assert held.threads == ["analysis_0"]
        assert h.desk.bots[TREND.name].bot._last_candle_ms is not None  # the tick took the preparation
    finally:
        await h.close()


def _any_entered(helds: list[Held]) -> bool:
    """Block (in a worker thread) until one of ``helds`` is entered, at most GUARD_S."""
    deadline = time.monotonic() + GUARD_S
    while not any(held.entered.is_set() for held in helds):
        if time.monotonic() > deadline:
            return False
        helds[0].entered.wait(0.005)
    return True


async def test_bots_of_one_combination_asking_at_once_prepare_once(sim, tmp_path):
    twin = replace(TREND, name="btc-trend-2", share=Decimal("0.2"))
    h = await build_desk(sim.base_url, tmp_path / "desk.db", [TREND, twin])
    try:
        await run_ticks(h, sim, 1)  # the first candle; the next one is asked for by both at once
        cache = h.desk.analysis_cache
        bots = [h.desk.bots[name].bot for name in (TREND.name, twin.name)]
        helds = [Held(bot.strategy.prepare) for bot in bots]
        for bot, held in zip(bots, helds, strict=True):
            bot.strategy.prepare = held
        seen: list[object] = []
        for bot in bots:
            close = bot.strategy.on_candle_close
            bot.strategy.on_candle_close = lambda prepared, i, close=close: seen.append(prepared) or close(prepared, i)
        asked = asyncio.Event()
        calls = 0
        prepared = cache.prepared

        async def counting(*args):
            nonlocal calls
            calls += 1
            if calls == 2:
                asked.set()  # the second bot asks while the first one's preparation is held
            return await prepared(*args)

        cache.prepared = counting
        hits = cache.hits
        ticks = asyncio.ensure_future(h.desk.tick_all())
        await asyncio.wait_for(asked.wait(), GUARD_S)
        # the first preparation was handed to the thread; wait until the thread has entered it
        assert await asyncio.to_thread(_any_entered, helds)
        assert sum(held.entered.is_set() for held in helds) == 1 and cache.hits == hits + 1  # it awaits the first
        for held in helds:
            held.release.set()
        await asyncio.wait_for(ticks, GUARD_S)
        assert sum(len(held.threads) for held in helds) == 1  # ONE preparation for both bots
        assert len(seen) == 2 and seen[0] is seen[1]
    finally:
        await h.close()


async def test_a_preparation_is_cached_even_if_the_bot_that_started_it_is_cancelled():
    from traderagent.strategies.types import PreparedData

    frame = pd.DataFrame({c: [1.0, 2.0] for c in ("open", "high", "low", "close", "volume")},
                         index=pd.date_range("2026-01-01", periods=2, freq="1min", tz="UTC"))
    cache = AnalysisCache()
    key = AnalysisCache.key(("combo",), [frame])
    held = Held(PreparedData.from_frame)
    first = asyncio.ensure_future(cache.prepared(key, lambda: held(frame), None))
    assert await asyncio.to_thread(held.entered.wait, GUARD_S)
    second = asyncio.ensure_future(cache.prepared(key, lambda: held(frame), None))
    await asyncio.sleep(0)
    first.cancel()  # its bot was stopped mid-tick
    held.release.set()
    result = await asyncio.wait_for(second, GUARD_S)
    assert first.cancelled() and len(held.threads) == 1
    assert cache.get(key) is result and await cache.prepared(key, lambda: held(frame), None) is result


@pytest.mark.parametrize(("name", "params"), [
    ("smc", {"timeframes": "1h,15m,5m", "max_age": 100}), ("trend_follower", {}), ("grid", {}), ("dca", {})])
def test_prepare_reads_only_its_inputs(name, params, candles_dir):
    """Why a preparation may run in another thread: it writes none of its frames, and what it keeps
    between calls (SMC's memo of its last detections) never changes a result."""
    used, fresh = (create_strategy(name, params, qty_step="0.0001", tick_size="0.00000001",
                                   allocated_capital="100000") for _ in range(2))
    history = build_frames(used, load_candles_csv(str(candles_dir / "ETH_BTC-5m.csv")), timeframe_ms("5m"))
    window = used.history_candles
    end = history[-1].index[window + 40] + pd.Timedelta(minutes=5)

    def live(shift: int) -> list[pd.DataFrame]:  # what live passes at a candle's close: the last closed candles
        closed = end - pd.Timedelta(minutes=5 * shift)
        return [f[f.index + pd.Timedelta(milliseconds=timeframe_ms(tf)) <= closed].iloc[-window:].copy()
                for f, tf in zip(history, used.timeframes, strict=True)]

    frames = live(0)
    copies = [f.copy(deep=True) for f in frames]
    for shift in (3, 2, 1):  # the used instance has prepared earlier candles (its memo is warm)
        used.prepare(*live(shift))
    a, b = used.prepare(*frames), fresh.prepare(*frames)
    assert all(f.equals(c) and f.index.equals(c.index) for f, c in zip(frames, copies, strict=True))
    assert same(a, b)


def same(a: object, b: object) -> bool:
    """Equal values, field by field (arrays and frames by content, NaN equal to NaN)."""
    if dataclasses.is_dataclass(a) and not isinstance(a, type):
        return type(a) is type(b) and all(same(getattr(a, f.name), getattr(b, f.name)) for f in dataclasses.fields(a))
    if isinstance(a, np.ndarray):
        return isinstance(b, np.ndarray) and a.shape == b.shape and bool(
            np.array_equal(a, b, equal_nan=a.dtype.kind == "f") if a.dtype.kind in "fiub" else (a == b).all())
    if isinstance(a, pd.DataFrame | pd.Series | pd.Index):
        return type(a) is type(b) and a.equals(b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, tuple | list):
        return type(a) is type(b) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return a == b or (a != a and b != b)  # noqa: PLR0124  NaN
