"""Spreading bots over workers (traderagent/fleet/workers.py): the rendezvous assignment, and the
workers' leases on one database with a controllable clock: a dead slot's bots spread over the
survivors, a returning slot gets exactly its bots back, one worker leads."""

from __future__ import annotations

from collections import Counter

from traderagent.database.manager import DatabaseManager
from traderagent.fleet.workers import WorkerLeases, assign, owner, slot_name

from .helpers import Clock

BOTS = [f"bot-{i:04d}" for i in range(3000)]
SLOTS = [slot_name(i) for i in range(4)]


def test_bots_spread_evenly_over_the_slots() -> None:
    share = assign(BOTS, SLOTS)
    assert sorted(b for bots in share.values() for b in bots) == BOTS  # every bot once
    for bots in share.values():
        assert abs(len(bots) - 750) <= 75, {s: len(b) for s, b in share.items()}
    assert assign(BOTS, reversed(SLOTS)) == {s: share[s] for s in reversed(SLOTS)}  # no order dependence


def test_a_dead_slot_loses_only_its_bots_spread_over_the_survivors_and_gets_them_back() -> None:
    before = {b: owner(b, SLOTS) for b in BOTS}
    survivors = [s for s in SLOTS if s != SLOTS[1]]
    after = {b: owner(b, survivors) for b in BOTS}
    moved = [b for b in BOTS if after[b] != before[b]]
    assert moved == [b for b in BOTS if before[b] == SLOTS[1]]  # only the dead slot's bots move
    spread = Counter(after[b] for b in moved)
    assert set(spread) == set(survivors)
    for count in spread.values():
        assert abs(count - len(moved) / 3) <= 0.2 * len(moved) / 3, spread
    assert {b: owner(b, SLOTS) for b in BOTS} == before  # the slot returns: the same bots go back


def test_one_slot_runs_every_bot() -> None:
    assert assign(BOTS[:10], SLOTS[:1]) == {SLOTS[0]: BOTS[:10]}


async def test_workers_take_over_a_dead_slot_and_hand_its_bots_back_when_it_returns(tmp_path) -> None:
    db = DatabaseManager(f"sqlite+aiosqlite:///{tmp_path / 'fleet.db'}")
    await db.initialize()
    clock = Clock()
    bots = BOTS[:40]

    def worker(slot: int, name: str) -> WorkerLeases:  # space None: only the timeout tells a death
        return WorkerLeases(db, bots=bots, slot=slot_name(slot), heartbeat=5, timeout=25, owner=name,
                            clock=clock, space=None)

    try:
        a, b = worker(0, "a"), worker(1, "b")
        await a.join()
        assert a.is_leader and a.held == bots  # alone so far: every bot
        await b.join()
        assert not b.is_leader and b.held == []  # its bots are a's until a hands them back
        changes = await a.beat()
        expected = assign(bots, [slot_name(0), slot_name(1)])
        assert sorted(changes.handed_back) == expected[slot_name(1)] and not changes.gained
        await a.release(changes.handed_back)  # what the desk does once it stopped and saved them
        changes = await b.beat()
        assert sorted(changes.gained) == b.held == expected[slot_name(1)]
        assert (await a.beat()).handed_back == () and a.held == expected[slot_name(0)]

        for _ in range(6):  # a dies: b renews every 5 s, a's leases (slot, @desk, bots) expire at 25 s
            clock.advance(seconds=5)
            await b.beat()
        assert b.held == bots and b.is_leader

        c = worker(0, "c")  # slot 0 comes back (a new process)
        await c.join()
        assert c.held == [] and not c.is_leader
        changes = await b.beat()
        assert sorted(changes.handed_back) == expected[slot_name(0)]
        await b.release(changes.handed_back)
        assert sorted((await c.beat()).gained) == c.held == expected[slot_name(0)]
        assert set(c.held).isdisjoint(b.held) and sorted(c.held + b.held) == bots
    finally:
        await db.close()


async def test_a_worker_stalled_past_its_window_keeps_its_bots_when_nobody_took_its_slot(tmp_path) -> None:
    """A busy machine stalls a worker's heartbeat past its local window (not past the expiry): its next
    beat confirms the slot with a renewal and hands nothing back."""
    db = DatabaseManager(f"sqlite+aiosqlite:///{tmp_path / 'fleet.db'}")
    await db.initialize()
    clock = Clock()
    try:
        a = WorkerLeases(db, bots=BOTS[:10], slot=slot_name(0), heartbeat=5, timeout=25, owner="a", clock=clock,
                         space=None)
        await a.join()
        clock.advance(seconds=22)  # past the window (timeout - fence = 20 s), short of the expiry
        assert not a.holds(slot_name(0))
        changes = await a.beat()
        assert changes.handed_back == () and not changes.lost and a.held == sorted(BOTS[:10])
    finally:
        await db.close()
