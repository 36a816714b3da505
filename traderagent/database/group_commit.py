"""Group commit: the small writes of many bots share one transaction.

A thousand bots each saving a snapshot, a grid table or an order acknowledgement would otherwise
queue a thousand small transactions behind one writer (SQLite has only one). Under load each of
them holds the write lock for several event-loop turns, so the queue, not the disk, sets every
bot's latency. Here a writer queues its rows under a *kind*; the next transaction takes everything
queued so far, writes each kind with a constant number of statements (executemany), commits, and
only then wakes the writers: a caller still returns only once its own rows are durable, so the
write-ahead order lifecycle keeps its guarantee. One write may carry parts of several kinds (a
fill's order status and the strategy snapshot that booked it): they always commit together. A
batch that fails is retried write by write, so an error reaches only the caller whose write caused
it, and the others are not lost. A batch holding a *durable* kind (the orders' write-ahead rows)
commits durably (SQLite `synchronous=FULL`): on disk before any of its writers is woken. A bot's
write carries a *fence* part (its lease token, engine.py) whose writer runs first: one check of
every bot in the batch; a write whose lease is gone fails alone, with LeaseLapsed, none of it written.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

# (session, items of one kind in submission order) -> None, or one result per item (e.g. a new row's id)
Writer = Callable[[AsyncSession, list[Any]], Awaitable[list[Any] | None]]


@dataclass
class _Write:
    parts: tuple[tuple[str, Any], ...]  # (kind, item)
    done: asyncio.Future[list[Any]]
    results: list[Any]


class GroupCommit:
    def __init__(self, transaction: Callable[[bool], AbstractAsyncContextManager[AsyncSession]],
                 writers: dict[str, Writer], *, durable: Iterable[str] = ()) -> None:
        """``transaction(durable)``: opens one write transaction (committed on a clean exit; durable:
        on disk when committed). ``writers``: one per kind, applied in this order inside each
        transaction. ``durable``: the kinds whose transaction must be durable."""
        self._transaction = transaction
        self._writers = writers
        self._durable = frozenset(durable)
        self._queue: list[_Write] = []
        self._task: asyncio.Task[None] | None = None
        self.transactions = 0  # committed, for tests and benchmarks
        self.writes = 0

    async def write(self, *parts: tuple[str, Any]) -> list[Any]:
        """Queue ``(kind, item)`` parts, committed in one transaction; returns, once they are
        committed, each part's result (None unless its writer returns one), or raises this write's
        own error with none of its parts written."""
        for kind, _ in parts:
            if kind not in self._writers:
                raise KeyError(f"no writer for {kind!r}")
        done = asyncio.get_running_loop().create_future()
        self._queue.append(_Write(parts, done, [None] * len(parts)))
        if self._task is None:
            self._task = asyncio.create_task(self._drain(), name="db-group-commit")
        # a caller cancelled while waiting does not cancel the write: the others share its transaction
        return await asyncio.shield(done)

    async def _drain(self) -> None:
        try:
            while self._queue:
                batch, self._queue = self._queue, []
                await self._commit(batch)
        finally:
            self._task = None

    async def _commit(self, batch: list[_Write]) -> None:
        durable = any(kind in self._durable for w in batch for kind, _ in w.parts)
        try:
            async with self._transaction(durable) as session:
                for kind, writer in self._writers.items():
                    slots = [(w, i) for w in batch for i, (k, _) in enumerate(w.parts) if k == kind]
                    if slots:
                        results = await writer(session, [w.parts[i][1] for w, i in slots])
                        if results is not None:
                            for (w, i), result in zip(slots, results, strict=True):
                                w.results[i] = result
        except BaseException as exc:
            if len(batch) > 1 and isinstance(exc, Exception):
                for w in batch:  # isolate the write at fault; the rest commit on their own
                    await self._commit([w])
                return
            for w in batch:
                if not w.done.done():
                    w.done.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        self.transactions += 1
        self.writes += len(batch)
        for w in batch:
            if not w.done.done():
                w.done.set_result(w.results)
