"""Analysis done once per candle and shared by every bot that needs it.

A strategy's ``prepare`` is pure (``strategies/base.py``): the same class, parameters and frames
give the same ``PreparedData``, and drivers only read it. So a desk of a thousand bots over a
few (strategy, parameters, symbol, timeframes) combinations prepares each combination once per
new candle, and every other bot of that combination takes the shared result.

The key names the frames by timeframe, length and first and last open time: closed candles never
change, so that is their content. Each combination keeps only its latest candle (a new candle
evicts the old), and at most ``combos`` combinations are kept, the least recently used dropped.

**Off the event loop.** A preparation (an SMC analysis of three timeframes: tens of milliseconds,
far more on a loaded machine) runs in the one analysis thread (``ANALYSIS_THREAD``), so the event
loop gets the GIL back every switch interval (5 ms) and an operator's command is not stuck behind
it. While a combination's preparation is in flight, the other bots of that combination await the
same future: it is computed once. This is thread-safe because ``prepare`` is pure and reads only
its arguments (``strategies/base.py``): the frames, which nobody writes into once built (market
data replaces a frame, never changes it), and the strategy's parameters. The only state it writes
is its own memo (SMC keeps its last detections), which nothing but ``prepare`` reads; the loop
never calls ``prepare``, and the one thread runs one preparation at a time.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pandas as pd

from traderagent.orchestrator.budget import AnalysisBudget
from traderagent.strategies.base import BaseStrategy
from traderagent.strategies.frames import open_ms_at
from traderagent.strategies.types import PreparedData

Combo = tuple[Hashable, ...]
Candles = tuple[tuple[int, int, int], ...]
Key = tuple[Combo, Candles]

# one thread: a second would only take the GIL from the event loop more often, not add a core
ANALYSIS_THREAD = ThreadPoolExecutor(max_workers=1, thread_name_prefix="analysis")


def _frozen(value: Any) -> Hashable:
    if isinstance(value, list | tuple):
        return tuple(_frozen(v) for v in value)
    if isinstance(value, Mapping):
        return tuple(sorted((k, _frozen(v)) for k, v in value.items()))
    return value


def _candles(frame: pd.DataFrame) -> tuple[int, int, int]:
    """(length, first open ms, last open ms) of a closed-candle frame indexed by time."""
    if len(frame) == 0:
        return 0, 0, 0
    index = frame.index
    assert isinstance(index, pd.DatetimeIndex)
    return len(frame), open_ms_at(index, 0), open_ms_at(index, -1)


class AnalysisCache:
    def __init__(self, combos: int = 1024) -> None:
        self.combos = combos
        self._latest: OrderedDict[Combo, tuple[Candles, PreparedData]] = OrderedDict()
        self._pending: dict[Key, asyncio.Task[PreparedData]] = {}  # preparations in flight
        self.hits = 0  # bots served without preparing: from the cache or another bot's preparation
        self.misses = 0

    @staticmethod
    def combo(strategy: BaseStrategy, symbol: str) -> Combo:
        """What besides the candles decides ``strategy.prepare`` (a bot computes it once)."""
        return type(strategy), _frozen(strategy.params), symbol, tuple(strategy.timeframes)

    @staticmethod
    def key(combo: Combo, frames: Sequence[pd.DataFrame]) -> Key:
        return combo, tuple(_candles(f) for f in frames)

    def get(self, key: Key) -> PreparedData | None:
        combo, candles = key
        entry = self._latest.get(combo)
        if entry is None or entry[0] != candles:
            self.misses += 1
            return None
        self._latest.move_to_end(combo)
        self.hits += 1
        return entry[1]

    def put(self, key: Key, prepared: PreparedData) -> None:
        combo, candles = key
        old = self._latest.get(combo)
        if old is not None and old[0][-1][2] > candles[-1][2]:
            return  # a late bot's older candle never evicts the newer one others share
        self._latest[combo] = (candles, prepared)
        self._latest.move_to_end(combo)
        while len(self._latest) > self.combos:
            self._latest.popitem(last=False)

    def __len__(self) -> int:
        return len(self._latest)

    async def prepared(self, key: Key, prepare: Callable[[], PreparedData],
                       budget: AnalysisBudget | None) -> PreparedData | None:
        """``key``'s preparation: cached, awaited from the bot already preparing it, or prepared now in
        the analysis thread if ``budget`` grants it; None when refused. Finished preparations are
        cached even when the bot that started one is cancelled meanwhile (the others await it)."""
        pending = self._pending.get(key)
        if pending is None:
            cached = self.get(key)
            if cached is not None:
                return cached
            if not granted(budget):
                return None
            pending = self._pending[key] = asyncio.ensure_future(self._prepare(key, prepare, budget))
        else:
            self.hits += 1
        return await asyncio.shield(pending)

    async def _prepare(self, key: Key, prepare: Callable[[], PreparedData],
                       budget: AnalysisBudget | None) -> PreparedData:
        try:
            prepared = await in_thread(prepare, budget)
        finally:
            del self._pending[key]
        self.put(key, prepared)
        return prepared


def _timed(prepare: Callable[[], PreparedData]) -> tuple[PreparedData, float]:
    started = time.thread_time()
    prepared = prepare()
    return prepared, time.thread_time() - started


def granted(budget: AnalysisBudget | None) -> bool:
    return budget is None or budget.allow()


async def in_thread(prepare: Callable[[], PreparedData], budget: AnalysisBudget | None) -> PreparedData:
    """``prepare()`` in the analysis thread; its CPU time is charged to ``budget``."""
    prepared, seconds = await asyncio.get_running_loop().run_in_executor(ANALYSIS_THREAD, _timed, prepare)
    if budget is not None:
        budget.spend(seconds)
    return prepared


async def prepare_shared(cache: AnalysisCache | None, key: Key, prepare: Callable[[], PreparedData],
                         budget: AnalysisBudget | None) -> PreparedData | None:
    """A bot's preparation of ``key``: shared through ``cache`` (``AnalysisCache.prepared``), or, without
    one, its own in the analysis thread if ``budget`` grants it; None when refused."""
    if cache is not None:
        return await cache.prepared(key, prepare, budget)
    return await in_thread(prepare, budget) if granted(budget) else None
