"""A worker takes its leases before it builds its bots; building hundreds can outlast the lease timeout.
Its leases are renewed meanwhile (WorkerLeases' keeper) until the desk's own heartbeat runs. The slow
build is the test's: it moves the leases' clock past the timeout and waits for the keeper's renewals."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tests.handlers.harness import until
from tests.orchestrator.helpers import Clock
from traderagent.database.manager import DatabaseManager
from traderagent.fleet.workers import WorkerLeases, slot_name
from traderagent.orchestrator.lease import DESK_LEASE

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(120)]
BOTS = ["bot-a", "bot-b", "bot-c"]
TIMEOUT = 1.0  # seconds of the leases' (settable) clock


def _worker(db: DatabaseManager, clock: Clock, slot: int) -> WorkerLeases:
    return WorkerLeases(db, bots=BOTS, slot=slot_name(slot), heartbeat=0.05, timeout=TIMEOUT, owner=f"w{slot}",
                        clock=clock)


async def _slow_build(leases: WorkerLeases, clock: Clock, steps: int) -> None:
    """Building the bots: each step takes most of a lease timeout, and the keeper renews meanwhile (twice: the
    first renewal counted may have read the clock before the step)."""
    for _ in range(steps):
        clock.advance(seconds=0.8 * TIMEOUT)
        renewed = leases.renewed
        await until(lambda renewed=renewed: leases.renewed > renewed + 1, 30)  # type: ignore[misc]


async def test_leases_outlive_a_build_longer_than_their_timeout_until_the_desks_heartbeat(db):
    clock = Clock(datetime.now(UTC))
    leases = _worker(db, clock, 0)
    await leases.join()
    assert sorted(leases.held) == BOTS and leases.is_leader
    await _slow_build(leases, clock, 3)  # 2.4 timeouts after the leases were taken
    rival = _worker(db, clock, 1)
    assert await rival.acquire([*BOTS, DESK_LEASE, slot_name(0)]) == {}  # nothing expired: nothing to take
    assert all(leases.holds(b) for b in BOTS)
    changes = await leases.beat()  # the desk's heartbeat takes over from here
    assert not changes.lost and leases._keeper is None
    await leases.release()


async def test_without_the_keeper_a_slow_build_loses_every_lease(db):
    """The check above can fail: a worker that stops renewing during its build loses its bots."""
    clock = Clock(datetime.now(UTC))
    leases = _worker(db, clock, 0)
    await leases.join()
    await leases.stop_keeping()
    clock.advance(seconds=2.4 * TIMEOUT)
    rival = _worker(db, clock, 1)
    assert set(await rival.acquire([*BOTS, DESK_LEASE])) == {*BOTS, DESK_LEASE}
    changes = await leases.beat()
    assert set(changes.lost) == set(BOTS)
    await rival.release()
