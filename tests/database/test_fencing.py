"""Lease fencing in the database (both backends): a bot's write commits only if, inside its own
transaction, the bot's lease row still carries the token of the lease the write was made under.

Two desks on one database, each with its own manager and leases (orchestrator/lease.py) on one
settable clock. Desk A starts a write of its bot; desk B takes the bot over while that write waits
(held at a hook of A's group commit, released by an event); A's write is refused with LeaseLapsed
and nothing of it lands."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import uuid
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import text

from tests.database.conftest import Target
from traderagent.database import engine
from traderagent.database.exceptions import DatabaseUnavailableError, LeaseLapsed
from traderagent.database.manager import DatabaseManager
from traderagent.orchestrator.lease import Leases

BOT, OTHER = "xrp-grid", "sol-dca"
WAIT = 30  # seconds: a bound on waiting for a condition, which returns as soon as it holds


class Clock:
    def __init__(self) -> None:
        self.now = dt.datetime(2026, 12, 7, 8, 0, tzinfo=dt.UTC)

    def __call__(self) -> dt.datetime:
        return self.now


def _order(cid: str) -> dict[str, Any]:
    return {"client_order_id": cid, "symbol": "XRPUSDT", "side": "buy", "order_type": "limit",
            "qty": Decimal("10"), "price": Decimal("0.5"), "status": "PENDING"}


def _trade() -> dict[str, Any]:
    return {"symbol": "XRPUSDT", "side": "long", "qty": Decimal("10"), "entry_price": Decimal("0.5")}


class Desk:
    """One desk's database side: its manager, fenced by its leases."""

    def __init__(self, db: DatabaseManager, name: str, clock: Clock) -> None:
        self.db = db
        self.leases = Leases(db, heartbeat=1, timeout=16, owner=name, clock=clock)
        db.fence_writes(self.leases.token)


@pytest.fixture
async def desks(make_db: Callable[..., DatabaseManager]) -> tuple[Desk, Desk, Clock]:
    return await two_desks(make_db)


async def two_desks(make_db: Callable[..., DatabaseManager]) -> tuple[Desk, Desk, Clock]:
    """Desk A holds the lease of both bots, desk B none."""
    clock = Clock()
    a, b = Desk(make_db(), "desk-A", clock), Desk(make_db(), "desk-B", clock)
    await a.db.initialize()
    await b.db.initialize()
    await a.leases.acquire([BOT, OTHER])
    for name in (BOT, OTHER):
        await a.db.create_bot(name, "grid", "XRPUSDT", "linear", {}, "1000")
    return a, b, clock


async def take_over(b: Desk, clock: Clock) -> None:
    """A misses its renewals past the timeout; B takes the bot over."""
    clock.now += dt.timedelta(seconds=17)
    assert list(await b.leases.acquire([BOT])) == [BOT]


@contextlib.contextmanager
def held_before_its_transaction(db: DatabaseManager) -> Any:
    """Hold ``db``'s next group-commit batch before it opens its transaction: yields (queued, go)."""
    group, real = db._group, db._group._transaction
    queued, go = asyncio.Event(), asyncio.Event()

    @contextlib.asynccontextmanager
    async def transaction(durable: bool) -> AsyncIterator[Any]:
        queued.set()
        await go.wait()
        async with real(durable) as session:
            yield session

    group._transaction = transaction
    try:
        yield queued, go
    finally:
        group._transaction = real


@contextlib.contextmanager
def held_after_the_check(db: DatabaseManager) -> Any:
    """Hold ``db``'s next batch inside its transaction, right after its fence check: yields
    (checked, go, pids: on PostgreSQL the server process of that transaction)."""
    writers, real = db._group._writers, db._group._writers["fence"]
    checked, go, pids = asyncio.Event(), asyncio.Event(), []

    async def fence(session: Any, items: list[Any]) -> None:
        await real(session, items)
        if db.backend == "postgresql":
            pids.append((await session.execute(text("SELECT pg_backend_pid()"))).scalar_one())
        checked.set()
        await go.wait()

    writers["fence"] = fence
    try:
        yield checked, go, pids
    finally:
        writers["fence"] = real


async def wait_until(condition: Callable[[], Any]) -> None:
    """Poll the server (nothing else can tell) until ``condition``, for at least WAIT seconds."""
    for _ in range(WAIT * 100):
        if await condition():
            return
        await asyncio.sleep(0.01)  # a polling interval, not a synchronisation
    raise AssertionError(f"not within {WAIT} s")


async def test_a_write_started_before_a_takeover_is_refused_and_writes_nothing(desks) -> None:
    a, b, clock = desks
    await a.db.save_bot_progress(BOT, new_orders=[_order("before")], runtime={"step": 1})
    with held_before_its_transaction(a.db) as (queued, go):
        write = asyncio.create_task(a.db.save_bot_progress(
            BOT, new_orders=[_order("late")], runtime={"step": 2}, grid=[{"index": 0, "price": "0.5", "side": "buy"}],
            new_trades=[_trade()], order_updates=[("before", {"status": "OPEN"})]))
        other = asyncio.create_task(a.db.save_bot_progress(OTHER, runtime={"step": 9}))  # same batch, lease held
        await queued.wait()
        await take_over(b, clock)
        go.set()
        with pytest.raises(LeaseLapsed, match=f"lease of {BOT} is gone"):
            await write
        assert await other == []
    # nothing of the fenced write landed; the other bot's write in the same batch did
    assert [o.client_order_id for o in await a.db.list_orders(BOT)] == ["before"]
    assert (await a.db.get_order("before")).status == "PENDING"
    assert await a.db.load_bot_runtime(BOT) == {"step": 1}
    assert await a.db.get_grid_levels(BOT) == [] and await a.db.list_trades(BOT) == []
    assert await a.db.load_bot_runtime(OTHER) == {"step": 9}
    # the bot's state is fenced too; its new owner writes on
    with pytest.raises(LeaseLapsed):
        await a.db.set_bot_state(BOT, "ERROR")
    await b.db.set_bot_state(BOT, "RUNNING")
    await b.db.save_bot_progress(BOT, runtime={"step": 3})
    assert (await b.db.get_bot(BOT)).state == "RUNNING" and await b.db.load_bot_runtime(BOT) == {"step": 3}


async def test_a_write_that_checked_its_lease_first_commits_before_the_takeover(desks, target) -> None:
    """A takeover cannot come between a write's check and its commit: on PostgreSQL it waits for the
    lease row A's transaction locked; on SQLite for the write lock."""
    a, b, clock = desks
    with held_after_the_check(a.db) as (checked, go, pids):
        write = asyncio.create_task(a.db.save_bot_progress(BOT, new_orders=[_order("in-time")]))
        await checked.wait()
        clock.now += dt.timedelta(seconds=17)
        takeover = asyncio.create_task(b.leases.acquire([BOT]))
        if target.backend == "postgresql":
            await wait_until(lambda: _blocked_by(b.db, pids[0]))
        assert not takeover.done()
        go.set()
        assert await write == []
        assert list(await takeover) == [BOT]
    assert [o.client_order_id for o in await b.db.list_orders(BOT)] == ["in-time"]
    with pytest.raises(LeaseLapsed):  # A's next write comes after the takeover
        await a.db.save_bot_progress(BOT, new_orders=[_order("after")])
    assert [o.client_order_id for o in await b.db.list_orders(BOT)] == ["in-time"]


async def _blocked_by(db: DatabaseManager, pid: int) -> bool:
    """Does a PostgreSQL session wait for a lock the server process ``pid`` holds?"""
    async with db._read() as session:
        waiting = await session.execute(text("SELECT count(*) FROM pg_stat_activity "
                                             "WHERE CAST(:pid AS integer) = ANY(pg_blocking_pids(pid))"), {"pid": pid})
        return bool(waiting.scalar_one())


async def test_a_lease_lost_and_taken_back_does_not_let_an_older_write_through(desks) -> None:
    """A's lease goes to B and back to A: a write A made under its first lease is still refused
    (the token changed with each owner), one made under its new lease commits."""
    a, b, clock = desks
    with held_before_its_transaction(a.db) as (queued, go):
        stale = asyncio.create_task(a.db.save_bot_progress(BOT, new_orders=[_order("stale")]))
        await queued.wait()
        await take_over(b, clock)
        await b.leases.release()
        changes = await a.leases.beat()
        assert list(changes.lost) == list(changes.gained) == [BOT]  # lost, and taken back with a new token
        go.set()
        with pytest.raises(LeaseLapsed):
            await stale
    await a.db.save_bot_progress(BOT, new_orders=[_order("fresh")])
    assert [o.client_order_id for o in await a.db.list_orders(BOT)] == ["fresh"]


async def test_a_desk_without_the_lease_writes_nothing_at_once(desks) -> None:
    a, b, _ = desks
    with pytest.raises(LeaseLapsed, match=f"no lease of {BOT}"):
        await b.db.save_bot_progress(BOT, runtime={"step": 1})
    with pytest.raises(LeaseLapsed):
        await b.db.update_bot(BOT, allocated_capital="5")
    assert await a.db.load_bot_runtime(BOT) is None


@pytest.fixture
async def pg_make_db(postgres_url: str) -> AsyncIterator[Callable[..., DatabaseManager]]:
    """Managers on a throw-away PostgreSQL schema (dropped afterwards), whatever ``target`` is."""
    target = Target("postgresql", postgres_url, f"t_{uuid.uuid4().hex[:16]}")
    made: list[DatabaseManager] = []

    def factory() -> DatabaseManager:
        made.append(target.manager())
        return made[-1]

    yield factory
    async with made[0]._engine.begin() as conn:
        await conn.execute(text(f'DROP SCHEMA IF EXISTS "{target.schema}" CASCADE'))
    for db in made:
        await db.close()


async def test_a_desk_frozen_inside_a_transaction_loses_it_and_cannot_hold_off_a_takeover(
        pg_make_db, monkeypatch) -> None:
    """PostgreSQL (SQLite has no such bound: a writer frozen inside a transaction holds the file's
    write lock until it thaws): the server ends a transaction left idle, the desk frozen inside it,
    after PG_IDLE_IN_TRANSACTION_MS, and its lock with it: the takeover goes ahead, the write is lost."""
    monkeypatch.setattr(engine, "PG_IDLE_IN_TRANSACTION_MS", 300)  # read when a manager is made
    a, b, clock = await two_desks(pg_make_db)
    with held_after_the_check(a.db) as (checked, go, _):
        write = asyncio.create_task(a.db.save_bot_progress(BOT, new_orders=[_order("frozen")]))
        await checked.wait()  # the lease row is locked; A is "frozen" now
        clock.now += dt.timedelta(seconds=17)
        async with asyncio.timeout(WAIT):
            assert list(await b.leases.acquire([BOT])) == [BOT]
        go.set()
        with pytest.raises(DatabaseUnavailableError):
            await write
    assert await b.db.list_orders(BOT) == []
