"""The command bus on PostgreSQL: one claimant per command, the deadline (never run once the console
gave up), and every result type through the codec and the database unchanged."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import types
import typing
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from traderagent import results
from traderagent.control import ControlError
from traderagent.database.manager import DatabaseManager
from traderagent.fleet.bus import (
    DESK_LEASE,
    RESULT_TYPES,
    CommandBus,
    CommandServer,
    Listener,
    channel,
    decode,
    decode_as,
    encode,
)

from .conftest import MakeDb

pytestmark = pytest.mark.postgres
WAIT = 30.0  # generous bound on a loaded machine; every wait returns as soon as its condition holds


def sample(kind: Any, seed: int = 1) -> Any:
    """A value of type ``kind`` with every field filled (nested results, None-able fields given a value)."""
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        return sample(next(a for a in typing.get_args(kind) if a is not type(None)), seed)
    if origin is tuple:
        return (sample(typing.get_args(kind)[0], seed), sample(typing.get_args(kind)[0], seed + 1))
    if origin in (Mapping, dict):
        value_type = typing.get_args(kind)[1]
        return {"a": sample(Decimal if value_type is Any else value_type, seed)}
    if dataclasses.is_dataclass(kind):
        hints = typing.get_type_hints(kind, vars(results) | {"dt": dt})
        return kind(**{f.name: sample(hints[f.name], seed + i) for i, f in enumerate(dataclasses.fields(kind))})
    simple = {str: f"text {seed} ✓", int: seed, float: seed / 8, bool: True, Decimal: Decimal(f"{seed}.0100"),
              dt.datetime: datetime(2026, 12, 7, 9, seed % 60, tzinfo=UTC), dt.date: dt.date(2026, 12, seed % 28 + 1)}
    return simple[kind]


@pytest.mark.parametrize("name", sorted(RESULT_TYPES))
def test_every_result_type_round_trips(name):
    value = sample(RESULT_TYPES[name])
    assert decode_as(encode(value), RESULT_TYPES[name]) == value
    assert decode(encode([value, value])) == [value, value]


def test_the_codec_refuses_what_is_not_a_result():
    @dataclasses.dataclass
    class Stranger:
        x: int

    with pytest.raises(TypeError):
        encode(Stranger(1))
    with pytest.raises(TypeError):
        decode_as(encode(sample(results.Wallet)), results.BotStatus)


async def _lease(db: DatabaseManager, names: list[str], owner: str) -> None:
    now = datetime.now(UTC)
    rows = await db.acquire_leases(names, owner, now, now + timedelta(minutes=10))
    assert {r.bot_name for r in rows if r.owner == owner} == set(names)


async def test_a_result_crosses_the_database_unchanged(db):
    status = sample(results.DeskStatus)
    deadline = datetime.now(UTC) + timedelta(seconds=WAIT)
    command_id = await db.add_command(DESK_LEASE, "desk_status", {}, "op", deadline, notify="x")
    await db.finish_command(command_id, "done", {"value": encode(status)}, notify="x")
    row = await db.get_command(command_id)
    assert row is not None and row.status == "done"
    assert decode_as(row.result["value"], results.DeskStatus) == status


async def test_two_claimants_racing_claim_each_command_once(make_db: MakeDb, db):
    """Two connections of the lease's owner claim 40 commands concurrently: every command is claimed
    exactly once (the conditional UPDATE's row lock decides); a worker without the lease gets none."""
    other = make_db()
    await _lease(db, ["bot-a"], "worker-1")
    deadline = datetime.now(UTC) + timedelta(minutes=1)
    ids = {await db.add_command("bot-a", "bot_status", {}, "op", deadline, notify="x") for _ in range(40)}
    claims = await asyncio.gather(*(m.claim_commands(owner, datetime.now(UTC))
                                    for _ in range(5) for m, owner in ((db, "worker-1"), (other, "worker-1"),
                                                                       (other, "worker-2"))))
    claimed = [c.id for batch in claims for c in batch]
    assert sorted(claimed) == sorted(ids)  # each once, none twice
    assert all(c.claimed_by == "worker-1" for batch in claims for c in batch)


class FakeDesk:
    """A desk whose use-cases answer from memory (the bus is under test, not the desk)."""

    def __init__(self, bots: list[str]) -> None:
        self.bots = dict.fromkeys(bots)
        self.calls: list[tuple[str, str]] = []
        self.hold = asyncio.Event()
        self.hold.set()

    async def pause_bot(self, name: str, by: str) -> results.BotStatus:
        self.calls.append(("pause_bot", name))
        await self.hold.wait()
        return dataclasses.replace(sample(results.BotStatus), name=name, state="PAUSED")

    async def start_bot(self, name: str, by: str) -> results.BotStatus:
        self.calls.append(("start_bot", name))
        return dataclasses.replace(sample(results.BotStatus), name=name, state="RUNNING")

    async def halt(self, reason: str, by: str) -> results.HaltOutcome:
        raise ControlError("Capital deployment is not configured on this desk.")

    async def balances(self) -> list[results.Wallet]:
        return [sample(results.Wallet)]


async def test_a_command_reaches_its_owner_and_its_answer_comes_back(make_db: MakeDb, db):
    worker_db = make_db()
    await _lease(db, ["bot-a", DESK_LEASE], "worker-1")
    desk = FakeDesk(["bot-a"])
    bus = CommandBus(db, Listener(db), timeout=WAIT)
    assert await bus.listener.ensure()
    async with CommandServer(desk, worker_db, owner="worker-1"):  # type: ignore[arg-type]
        status = decode_as(await bus.call("bot-a", "pause_bot", {"by": "@op"}, by="@op"), results.BotStatus)
        assert (status.name, status.state) == ("bot-a", "PAUSED")
        assert await bus.call(DESK_LEASE, "balances") == [sample(results.Wallet)]
        with pytest.raises(ControlError, match="not configured"):  # the worker's refusal, as is
            await bus.call(DESK_LEASE, "halt", {"reason": "x", "by": "@op"})
        with pytest.raises(ControlError, match="Unknown command"):
            await bus.call("bot-a", "drop_tables")
    assert desk.calls == [("pause_bot", "bot-a")]
    await bus.listener.close()


async def test_no_owner_no_answer_and_never_run_late(make_db: MakeDb, db):
    """No lease: refused at once. A lease whose worker does not serve: after the timeout the command is
    expired, and a worker that starts serving afterwards never runs it."""
    bus = CommandBus(db, Listener(db), timeout=1.0, poll=0.2)
    with pytest.raises(ControlError, match="No desk worker runs bot-a"):
        await bus.call("bot-a", "pause_bot", {"by": "@op"})
    await _lease(db, ["bot-a"], "worker-1")
    with pytest.raises(ControlError, match="No worker took the command for bot-a in 1 s"):
        await bus.call("bot-a", "pause_bot", {"by": "@op"})
    desk = FakeDesk(["bot-a"])
    async with CommandServer(desk, make_db(), owner="worker-1") as server:  # type: ignore[arg-type]
        assert await server.db.claim_commands("worker-1", datetime.now(UTC)) == []
    assert desk.calls == []
    await bus.listener.close()


async def test_a_claimed_command_that_outlives_the_timeout_is_said_so(make_db: MakeDb, db):
    await _lease(db, ["bot-a"], "worker-1")
    desk = FakeDesk(["bot-a"])
    desk.hold.clear()  # the worker is busy with it
    bus = CommandBus(db, Listener(db), timeout=2.0, poll=0.2)
    assert await bus.listener.ensure()
    async with CommandServer(desk, make_db(), owner="worker-1", poll=0.2):  # type: ignore[arg-type]
        with pytest.raises(ControlError, match="has not answered in 2 s; it may still apply"):
            await bus.call("bot-a", "pause_bot", {"by": "@op"})
        desk.hold.set()
    assert desk.calls == [("pause_bot", "bot-a")]
    await bus.listener.close()


def test_channels_are_per_schema():
    assert channel(DatabaseManager("postgresql+asyncpg://u@h/d", schema="s1"), "commands") == "ta_commands_s1"
    assert channel(DatabaseManager("postgresql+asyncpg://u@h/d"), "outbox") == "ta_outbox_public"


async def test_commands_for_one_bot_run_in_order(make_db: MakeDb, db):
    """A pause still running when a start for the same bot is claimed: the start waits for it."""
    await _lease(db, ["bot-a"], "worker-1")
    desk = FakeDesk(["bot-a"])
    desk.hold.clear()
    bus = CommandBus(db, Listener(db), timeout=WAIT, poll=0.2)
    assert await bus.listener.ensure()
    async with CommandServer(desk, make_db(), owner="worker-1", poll=0.2):  # type: ignore[arg-type]
        pause = asyncio.create_task(bus.call("bot-a", "pause_bot", {"by": "@op"}))
        await _until(lambda: desk.calls == [("pause_bot", "bot-a")])
        start = asyncio.create_task(bus.call("bot-a", "start_bot", {"by": "@op"}))

        async def both_claimed() -> bool:
            rows = [await db.get_command(i) for i in (1, 2)]
            return all(r is not None and r.status == "running" for r in rows)

        await _until_async(both_claimed)
        assert desk.calls == [("pause_bot", "bot-a")]  # claimed, but waiting its turn
        desk.hold.set()
        assert [r.state for r in await asyncio.gather(pause, start)] == ["PAUSED", "RUNNING"]
    assert desk.calls == [("pause_bot", "bot-a"), ("start_bot", "bot-a")]
    await bus.listener.close()


async def test_finished_commands_are_pruned(db):
    now = datetime.now(UTC)
    old = [await db.add_command("bot-a", "bot_status", {}, "op", now, notify="x") for _ in range(3)]
    await db.finish_command(old[0], "done", {"value": None}, notify="x")
    await db.expire_command(old[1])  # old[2] stays pending: never pruned
    assert await db.prune_commands(datetime.now(UTC) + timedelta(seconds=1)) == 2
    assert [await db.get_command(i) is not None for i in old] == [False, False, True]


async def _until(check, limit: float = WAIT) -> None:
    async def wrapped() -> bool:
        return bool(check())

    await _until_async(wrapped, limit)


async def _until_async(check, limit: float = WAIT) -> None:
    deadline = asyncio.get_running_loop().time() + limit
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached"
        await asyncio.sleep(0.02)
