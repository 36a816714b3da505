"""Analysis done once per candle and shared by every bot that needs it.

A strategy's ``prepare`` is pure (``strategies/base.py``): the same class, parameters and frames
give the same ``PreparedData``, and drivers only read it. So a desk of a thousand bots over a
few (strategy, parameters, symbol, timeframes) combinations prepares each combination once per
new candle, and every other bot of that combination takes the shared result.

The key names the frames by timeframe, length and first and last open time: closed candles never
change, so that is their content. Each combination keeps only its latest candle (a new candle
evicts the old), and at most ``combos`` combinations are kept, the least recently used dropped.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import pandas as pd

from traderagent.strategies.base import BaseStrategy
from traderagent.strategies.types import PreparedData

Combo = tuple[Hashable, ...]
Candles = tuple[tuple[int, int, int], ...]


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
    ms = frame.index.as_unit("ms").asi8  # type: ignore[attr-defined]
    return len(frame), int(ms[0]), int(ms[-1])


class AnalysisCache:
    def __init__(self, combos: int = 1024) -> None:
        self.combos = combos
        self._latest: OrderedDict[Combo, tuple[Candles, PreparedData]] = OrderedDict()
        self.hits = 0
        self.misses = 0

    @staticmethod
    def combo(strategy: BaseStrategy, symbol: str) -> Combo:
        """What besides the candles decides ``strategy.prepare`` (a bot computes it once)."""
        return type(strategy), _frozen(strategy.params), symbol, tuple(strategy.timeframes)

    @staticmethod
    def key(combo: Combo, frames: Sequence[pd.DataFrame]) -> tuple[Combo, Candles]:
        return combo, tuple(_candles(f) for f in frames)

    def get(self, key: tuple[Combo, Candles]) -> PreparedData | None:
        combo, candles = key
        entry = self._latest.get(combo)
        if entry is None or entry[0] != candles:
            self.misses += 1
            return None
        self._latest.move_to_end(combo)
        self.hits += 1
        return entry[1]

    def put(self, key: tuple[Combo, Candles], prepared: PreparedData) -> None:
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
