"""A rolling-window limiter for the endpoints ByBit charges per order (the batch endpoints).

ByBit counts orders over a rolling second. A leaky bucket (aiolimiter) admits its capacity plus its
drain within one second, so a bucket deep enough for a whole batch would let twice the rate through;
this limiter admits at most ``rate`` units in any window of ``period`` seconds, FIFO.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable


class RollingLimiter:
    def __init__(self, rate: int, period: float = 1.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_rate = rate
        self.period = period
        self._clock = clock
        self._spent: deque[tuple[float, int]] = deque()  # (when, units), oldest first
        self._used = 0
        self._turn = asyncio.Lock()  # FIFO: a large request is not overtaken by small ones

    def _expire(self, now: float) -> None:
        while self._spent and self._spent[0][0] <= now - self.period:
            self._used -= self._spent.popleft()[1]

    def has_capacity(self, amount: int = 1) -> bool:
        self._expire(self._clock())
        return self._used + amount <= self.max_rate

    async def acquire(self, amount: int = 1) -> None:
        if amount > self.max_rate:
            raise ValueError(f"{amount} units can never fit a window of {self.max_rate}")
        async with self._turn:
            while not self.has_capacity(amount):  # noqa: ASYNC110 - waits a known time, not for an event
                await asyncio.sleep(self._spent[0][0] + self.period - self._clock())
            self._spent.append((self._clock(), amount))
            self._used += amount
