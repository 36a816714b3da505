"""A CPU budget for analysis-heavy work shared by every bot of a desk.

When a new candle closes, every bot on that timeframe wants to analyse it within the same second;
a thousand multi-timeframe SMC analyses at once would stall the event loop, and with it every
bot's position management. A preparation the analysis cache (``analysis.py``) does not already
hold therefore asks the budget first: it is granted while the analysis time spent in the last
``window`` seconds stays under ``share`` of that window. A bot that is refused leaves its candles
unseen and keeps managing exits on every tick; its next granted analysis walks every candle closed
since its last one, oldest first (``on_candle_close``: trailing stops, cooldowns, ladder clocks),
so candles are delayed, never skipped. An entry is decided only on the latest closed candle: a
signal of a candle already followed by another would be sent at a price it was not taken at.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable


class AnalysisBudget:
    def __init__(self, *, window: float = 1.0, share: float = 0.5,
                 clock: Callable[[], float] = time.perf_counter) -> None:
        self.window = window
        self.share = share
        self.clock = clock
        self._spent: deque[tuple[float, float]] = deque()  # (end time, seconds)
        self._total = 0.0
        self.granted = 0
        self.deferred = 0

    def _trim(self, now: float) -> None:
        while self._spent and self._spent[0][0] < now - self.window:
            self._total -= self._spent.popleft()[1]

    def allow(self) -> bool:
        now = self.clock()
        self._trim(now)
        if self._total < self.share * self.window:
            self.granted += 1
            return True
        self.deferred += 1
        return False

    def spend(self, seconds: float) -> None:
        self._spent.append((self.clock(), seconds))
        self._total += seconds


UNLIMITED = None  # BotOrchestrator(analysis_budget=None): analyse every new candle at once
