"""The desk's one gate to the exchange for new orders: open while the desk runs, closed once at stop.

Every order send goes through ``SendGate.send`` (the orchestrator, before the client's rate
limiter) and ``on_wire`` (called by the exchange client after the rate limiter, right before the
request is written). ``close()`` is synchronous, so a signal handler closes the gate before any
other task runs again. From then on:

* no send starts (``send`` and ``on_wire`` raise ``SendsStopped``; a retry is refused too);
* sends still waiting for the rate limiter are cancelled: they never reach the exchange;
* sends already on the wire finish; ``drain()`` waits for them (bounded). No further request of
  theirs is written (a batch's later chunk, a retry), not even after a ``reopen``.

A send none of whose requests was written (refused or abandoned before its first ``on_wire``) raises
``NeverSent``: its orders cannot reach the exchange and are FAILED at once. One refused after a request
of it was written (a retry, a batch's later chunk) is uncertain: its write-ahead rows stay PENDING until
the order sync, or the reconciliation at the next start, finds them by orderLinkId or they can no
longer arrive.

Fencing (one owner per bot, orchestrator/lease.py): ``holds(bot)`` is asked by ``admits`` and
again right before a bot's order is written; a bot whose lease this desk cannot be sure of any
more sends nothing, and writes nothing to the database (``check_owner``, raising ``LeaseLapsed``),
while the desk's other bots trade on. Before a send starts, after its turn at the budget, and before a
write, a lapsed window is first ``confirm``-ed (a renewal, Leases.confirm): a desk that was only slow
keeps its bots; ``on_wire`` itself only asks ``holds`` (it runs after signing, and must not wait).

The account's per-second order limit is shared by all its bots (``OrderBudget``, one per market
type): only a few sends wait at the client's FIFO rate limiter at a time; the others wait here, exits
and protective orders first, entries in fair turns between the bots, so one bot's ladder cannot
hold the limiter while another bot's stop waits behind it.

Sends queue without blocking ticks: a tick writes its orders' write-ahead rows and hands their sends
to ``queue`` (a task that waits for its turn at the account's budget, exits before entries, then
books the answers under the bot's lock), so a bot's next tick is never late because its ladder waits
for the rate limiter. ``abandon(bot)`` (the bot stops) cancels that bot's entries still waiting (its
exits still go); ``drain`` waits for the queued sends too, and ``settled`` (tests, ``--ticks``) until
every queued send is answered and booked.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, TypeVar

from traderagent.database.exceptions import LeaseLapsed

log = logging.getLogger(__name__)
T = TypeVar("T")
__all__ = ["LeaseLapsed", "NeverSent", "OrderBudget", "SendGate", "SendsStopped"]


class SendsStopped(Exception):
    """The desk is stopping (or the send came too late, or its bot is fenced): the send stopped here. A
    request of it may have been written before (a retry refused): its orders are uncertain."""


class NeverSent(SendsStopped):
    """Stopped before any request of the send was written: its orders cannot reach the exchange."""


def _always(bot: str) -> bool:
    return True


@dataclass(eq=False)
class _Send:
    task: asyncio.Task[object]  # the one ``send`` runs in (a batch request may go out from a task of its own)
    bot: str
    urgent: bool  # an exit or a protective order
    late: Callable[[], bool] | None
    wired: bool = False  # a request of it passed ``on_wire``: it may be on the exchange
    stopped: bool = False  # refused, abandoned or over: no request of it is written any more
    abandoned: bool = False  # cancelled by ``abandon`` before any request of it was written


_SENDING: ContextVar[_Send | None] = ContextVar("sending", default=None)  # the send under way


class OrderBudget:
    """Turns at one account's rate limiter: at most ``in_flight`` sends hold a turn at once. The waiting
    ones go urgent first (exits, protective orders), then by weighted fair queueing: each bot's order
    finishes, on a virtual clock, ``cost`` after the later of now and its own previous one, so a bot with
    a long ladder does not delay a bot with one order by more than one order."""

    def __init__(self, in_flight: int = 4) -> None:
        self._free = in_flight
        self._waiting: list[tuple[int, float, int, asyncio.Future[None]]] = []
        self._finish: dict[str, float] = {}  # per bot, the virtual finish of its latest order
        self._now = 0.0  # the virtual finish of the latest order admitted
        self._seq = itertools.count()

    @asynccontextmanager
    async def turn(self, bot: str, cost: int = 1, urgent: bool = False) -> AsyncIterator[None]:
        finish = max(self._now, self._finish.get(bot, 0.0)) + cost
        self._finish[bot] = finish
        if self._free and not self._waiting:
            self._free -= 1
            self._now = finish
        else:
            turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            heapq.heappush(self._waiting, (0 if urgent else 1, finish, next(self._seq), turn))
            try:
                await turn
            except asyncio.CancelledError:
                if turn.done() and not turn.cancelled():  # granted, then abandoned: pass it on
                    self._release()
                raise
        try:
            yield
        finally:
            self._release()

    def _release(self) -> None:
        while self._waiting:
            _, finish, _, turn = heapq.heappop(self._waiting)
            if not turn.done():  # a cancelled waiter left its entry behind
                self._now = finish
                turn.set_result(None)
                return
        self._free += 1

    @property
    def queued(self) -> int:
        return sum(not t.done() for *_, t in self._waiting)


class SendGate:
    def __init__(self) -> None:
        self.closed = False
        self.holds: Callable[[str], bool] = _always  # may this desk send this bot's orders (its lease)?
        self.confirm: Callable[[str], Awaitable[bool]] | None = None  # renew a lapsed window (Leases.confirm)
        self.budgets: dict[str, OrderBudget] = {}  # per market type (its own client and limits)
        self.sent = 0  # create requests written to the exchange
        self.refused = 0  # sends (or requests of theirs) refused or abandoned
        self._sends: dict[asyncio.Task[object], _Send] = {}  # admitted and not over, by the task they run in
        self._queued: set[asyncio.Task[None]] = set()  # sends handed over by ticks, until booked

    def admits(self, bot: str) -> bool:
        """May ``bot`` decide and send orders now (the desk runs, and owns the bot)?"""
        return not self.closed and self.holds(bot)

    async def send(self, call: Callable[[], Awaitable[T]], *, lane: str = "", bot: str = "", cost: int = 1,
                   urgent: bool = False, late: Callable[[], bool] | None = None) -> T:
        """Run one order send (``call``, ``cost`` orders) of ``bot`` as long as the gate admits it, in its
        turn at ``lane``'s budget (``urgent``: an exit or a protective order). ``late()`` true: its
        request is not written any more (asked at every attempt, as ``admits``)."""
        if not self.closed:
            await self._confirm(bot)
        if not self.admits(bot):
            self.refused += 1
            raise NeverSent("the desk is stopping" if self.closed else f"this desk no longer owns {bot}")
        task = asyncio.current_task()
        assert task is not None
        send = self._sends[task] = _Send(task, bot, urgent, late)
        sending = _SENDING.set(send)  # seen by on_wire in the client's tasks too (a batch's)
        try:
            async with self.budgets.setdefault(lane, OrderBudget()).turn(bot, cost, urgent):
                await self._confirm(bot)  # the wait for the turn may have outlasted the window
                return await call()
        except asyncio.CancelledError:
            if not send.abandoned:
                raise
            task.uncancel()
            raise NeverSent("send abandoned before it reached the exchange (stopping)") from None
        finally:
            send.stopped = True  # a chunk of its batch still at the rate limiter is not written after it
            del self._sends[task]
            _SENDING.reset(sending)

    def on_wire(self) -> None:
        """The client is about to write a create request (every attempt, retries included)."""
        send = _SENDING.get()
        why = self._refusal(send)
        if why is not None:
            self.refused += 1
            if send is None:
                raise SendsStopped(why)
            send.stopped = True  # its other requests (a batch's chunks) are not written either
            raise (SendsStopped if send.wired else NeverSent)(why)  # wired: an earlier try may be on the exchange
        if send is not None:
            send.wired = True
        self.sent += 1

    def _refusal(self, send: _Send | None) -> str | None:
        """Why this request must not be written (None: it may)."""
        if self.closed:
            return "the desk is stopping"
        if send is None:  # a create outside any send (tests): only the desk's stop applies
            return None
        if not self.holds(send.bot):
            return f"this desk no longer owns {send.bot}"
        if send.stopped:
            return f"{send.bot}: its send was stopped (the desk or the bot stopped meanwhile)"
        if send.late is not None and send.late():
            return f"{send.bot}: decided too long ago, not sent"
        return None

    async def _confirm(self, bot: str) -> None:
        """Past ``bot``'s window, ask the leases to confirm it with a renewal (``holds`` says the outcome)."""
        if self.confirm is not None and not self.holds(bot):
            await self.confirm(bot)

    async def check_owner(self, bot: str) -> None:
        """Before a bot's database write: raise LeaseLapsed unless this desk owns the bot."""
        await self._confirm(bot)
        if not self.holds(bot):
            raise LeaseLapsed(f"this desk cannot be sure it still owns {bot}: nothing written")

    def queue(self, job: Coroutine[Any, Any, None]) -> None:
        """Run ``job`` (sends through ``send``, then the booking of their answers) beside the tick that
        decided them: it waits for its turn at the budget, the tick goes on."""
        task = asyncio.create_task(job)
        self._queued.add(task)
        task.add_done_callback(self._queued.discard)

    @property
    def queued(self) -> int:
        """Sends handed over by ticks and not booked yet."""
        return len(self._queued)

    async def settled(self) -> None:
        """Until every queued send is answered and booked (tests and ``--ticks``: a tick, then its orders)."""
        while self._queued:
            for result in await asyncio.gather(*self._queued, return_exceptions=True):
                if isinstance(result, BaseException) and not isinstance(result, asyncio.CancelledError):
                    raise result  # a bot's failures are booked as its own: what is left must stop the caller

    def abandon(self, bot: str | None = None) -> None:
        """Stop the sends under way, every one (None: the desk stops) or ``bot``'s entries (the bot stops;
        its exits still go): those still waiting for the rate limiter are cancelled (NeverSent), those
        on the wire finish, and no further request of any of them is written."""
        for send in self._sends.values():
            if send.stopped or (bot is not None and (send.bot != bot or send.urgent)):
                continue
            send.stopped = True
            if not send.wired:
                send.abandoned = True
                send.task.cancel()
                self.refused += 1

    def close(self) -> None:
        """No new send from now on; the sends waiting for the rate limiter are abandoned."""
        if self.closed:
            return
        self.closed = True
        self.abandon()

    def reopen(self) -> None:
        """Sends allowed again (after a stop-all: every bot is STOPPED, an operator's start may follow)."""
        self.closed = False

    async def drain(self, timeout: float) -> int:
        """Wait (at most ``timeout`` s) for the sends already on the wire and the queued ones' bookings;
        returns how many are still unanswered (their rows stay PENDING for the next start)."""
        pending: set[asyncio.Task[Any]] = {*self._sends, *self._queued}
        if not pending:
            return 0
        _, left = await asyncio.wait(pending, timeout=timeout)
        return len(left)
