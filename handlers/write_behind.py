"""Database writes that nobody waits for: a sent message, a pressed button goes on at once.

`WriteBehind` queues items and writes them with one task, in order, in batches (what is queued
during a write goes in the next); `flush()` waits for all queued so far (a stop). A failed write is
logged and not retried: what it was for still holds in memory, only a restart would not know it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")


class WriteBehind(Generic[T]):
    def __init__(self, write: Callable[[list[T]], Awaitable[object]], what: str) -> None:
        self._write = write
        self.what = what  # for the log: "delivered alert(s)", ...
        self._pending: list[T] = []
        self._task: asyncio.Task[None] | None = None

    def add(self, items: Iterable[T]) -> None:
        self._pending.extend(items)
        if self._pending and (self._task is None or self._task.done()):
            self._task = asyncio.get_running_loop().create_task(self._run(), name=f"write {self.what}")

    async def flush(self) -> None:
        """Wait until everything added so far is written (or its failure logged)."""
        if self._task is not None:
            await asyncio.shield(self._task)  # a caller giving up does not cut the write short

    async def _run(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, []
            try:
                await self._write(batch)
            except Exception:
                log.exception("could not write %d %s to the database", len(batch), self.what)
