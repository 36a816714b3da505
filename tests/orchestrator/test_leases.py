"""One owner per bot, on one controllable clock: two desks on one database and one simulator.

Desk A runs the grid; desk B wants the grid and the DCA bot, runs the DCA bot and waits. A freezes
longer than the lease timeout; B's heartbeat takes the grid over and recovers its orders by
orderLinkId. When A thaws, it sends nothing for the grid (before its own heartbeat runs), and its
heartbeat fences the bot and alerts. No order is duplicated."""

from __future__ import annotations

import asyncio
import os
import sys
from collections import Counter
from decimal import Decimal

import pytest

from traderagent.orchestrator.events import EventType
from traderagent.orchestrator.gate import SendGate, SendsStopped
from traderagent.orchestrator.lease import Leases, process_space
from traderagent.orchestrator.state import BotState
from traderagent.strategies.types import OrderIntent

from .helpers import DCA, GRID, SIM_KEY, Clock, assert_db_matches_sim, build_desk, run_ticks


def resting_tags(sim) -> Counter:
    return Counter((o["symbol"], o["side"], o["price"]) for o in sim.orders(SIM_KEY))


async def test_a_frozen_desk_is_fenced_and_the_other_desk_takes_the_bot_over(sim, tmp_path):
    clock = Clock()
    db_path = tmp_path / "desk.db"
    a = await build_desk(sim.base_url, db_path, [GRID], clock=clock, lease_owner="desk-A")
    b = await build_desk(sim.base_url, db_path, [GRID, DCA], clock=clock, lease_owner="desk-B")
    try:
        assert list(a.desk.bots) == ["xrp-grid"]
        assert list(b.desk.bots) == ["sol-dca"] and list(b.desk.standby) == ["xrp-grid"]
        for _ in range(3):
            await run_ticks(a, sim, 1)
            await run_ticks(b, sim, 1)
            clock.advance(seconds=4)
            await a.desk.check_leases()
            await b.desk.check_leases()
        assert list(b.desk.bots) == ["sol-dca"]  # A renews: B waits
        grid_orders = {o["orderLinkId"] for o in sim.orders(SIM_KEY, symbol="XRPUSDT")}
        assert grid_orders, "the grid rests orders"

        clock.advance(seconds=21)  # A is frozen: no heartbeat for longer than the timeout
        await b.desk.check_leases()
        assert sorted(b.desk.bots) == ["sol-dca", "xrp-grid"] and not b.desk.standby
        taken = b.desk.bots["xrp-grid"].bot
        assert {o.client_order_id for o in taken.open_orders} == grid_orders  # recovered by orderLinkId

        # A thaws: its grid neither ticks nor sends before its heartbeat runs
        grid = a.desk.bots["xrp-grid"].bot
        ticks = grid.ticks
        await a.desk._ticker(grid)()
        assert grid.ticks == ticks
        before = len(sim.orders(SIM_KEY, open_only=False))
        assert await grid._place_many([OrderIntent("probe", "buy", "limit", Decimal("10"), Decimal("0.5"))]) == [None]
        assert len(sim.orders(SIM_KEY, open_only=False)) == before
        await grid.tick()  # even run directly, its tick writes nothing: B's state of the bot stands
        assert grid.state is not BotState.ERROR and (await b.db.get_bot("xrp-grid")).state == taken.state.value
        await a.desk.check_leases()
        await a.desk.event_bus.drain(5)
        assert not a.desk.bots and list(a.desk.standby) == ["xrp-grid"]
        [alert] = a.of(EventType.ERROR, "xrp-grid")
        assert "lease lost: desk-B runs xrp-grid" in alert.data.summary()

        await run_ticks(b, sim, 5)
        await assert_db_matches_sim(b, sim)
        assert max(resting_tags(sim).values()) == 1  # no price level rests twice
    finally:
        await a.close()
        await b.close()


async def test_a_lone_desk_slowed_past_its_lease_window_ticks_sends_and_writes_on(sim, tmp_path):
    """No heartbeat ran for longer than the window (a busy machine), nobody else wants the bot: its next
    tick confirms the lease with a renewal instead of leaving the bot unsure (the desk refused to
    recover its own bots under load)."""
    clock = Clock()
    h = await build_desk(sim.base_url, tmp_path / "desk.db", [GRID], clock=clock, lease_owner="desk-A")
    try:
        grid = h.desk.bots["xrp-grid"].bot
        clock.advance(seconds=16)  # past the window (timeout 20 s - fence 5 s), no heartbeat
        assert not h.desk.leases.holds("xrp-grid")
        await h.desk._ticker(grid)()
        await h.desk.gate.settled()
        assert grid.ticks == 1 and h.desk.leases.holds("xrp-grid")
        assert sim.orders(SIM_KEY, symbol="XRPUSDT") and await h.db.list_orders("xrp-grid")
        await assert_db_matches_sim(h, sim)
    finally:
        await h.close()


async def test_a_write_made_before_a_freeze_is_refused_by_the_database_after_a_takeover(sim, tmp_path, caplog):
    """A's grid decides its ladder and makes the write-ahead rows (its local lease check passed);
    the desk freezes before the write is queued; B takes the bot over. Thawed, the write is
    refused inside its transaction (the lease row names B's lease now): none of its rows lands, no
    order is sent, the tick logs one line and the bot is not failed; A's heartbeat then drops it."""
    clock = Clock()
    db_path = tmp_path / "desk.db"
    a = await build_desk(sim.base_url, db_path, [GRID], clock=clock, lease_owner="desk-A")
    b = await build_desk(sim.base_url, db_path, [GRID], clock=clock, lease_owner="desk-B")
    group, real_write = a.db._group, a.db._group.write
    made, thaw = asyncio.Event(), asyncio.Event()

    async def frozen_after_the_write_is_made(*parts):
        if ("fence", ("xrp-grid", a.desk.leases.token("xrp-grid"))) in parts and not thaw.is_set():
            made.set()
            await thaw.wait()
        return await real_write(*parts)

    group.write = frozen_after_the_write_is_made
    try:
        grid = a.desk.bots["xrp-grid"].bot
        tick = asyncio.create_task(grid.tick())
        await made.wait()
        clock.advance(seconds=21)  # A stays frozen past the lease timeout
        await b.desk.check_leases()
        assert list(b.desk.bots) == ["xrp-grid"]
        thaw.set()
        await tick
        assert grid.state is not BotState.ERROR and (await b.db.get_bot("xrp-grid")).state != BotState.ERROR.value
        assert await b.db.list_orders("xrp-grid") == [] and sim.orders(SIM_KEY, symbol="XRPUSDT") == []
        lines = [r.getMessage() for r in caplog.records if "xrp-grid is gone" in r.getMessage()]
        assert len(lines) == 1 and not any(r.exc_info for r in caplog.records), lines
        await a.desk.check_leases()
        assert not a.desk.bots and list(a.desk.standby) == ["xrp-grid"]
        await run_ticks(b, sim, 2)  # the new owner trades from the database as it found it
        await assert_db_matches_sim(b, sim)
    finally:
        group.write = real_write
        await a.close()
        await b.close()


@pytest.mark.parametrize(("unanswered", "kept"), [(True, ["desk-A"]), (False, [])])
async def test_a_stop_releases_the_leases_only_once_no_send_is_left_unanswered(sim, tmp_path, unanswered, kept):
    h = await build_desk(sim.base_url, tmp_path / "desk.db", [GRID], clock=Clock(), lease_owner="desk-A")
    wired, answer = asyncio.Event(), asyncio.Event()

    async def on_the_wire() -> None:
        h.desk.gate.on_wire()
        wired.set()
        await answer.wait()  # the exchange does not answer before the stop gives up on it

    send = asyncio.create_task(h.desk.gate.send(on_the_wire, bot="xrp-grid")) if unanswered else None
    if send is not None:
        await wired.wait()
    await h.desk.stop()
    assert [r.owner for r in await h.db.lease_holders(["xrp-grid"])] == kept
    answer.set()
    if send is not None:
        await send
    await h.client.close()
    await h.db.close()


async def test_the_gate_refuses_a_send_whose_lease_lapsed_while_it_waited_for_the_rate_limiter():
    clock = Clock()
    leases = Leases(_Store(), heartbeat=5, timeout=20, owner="me", clock=clock)
    await leases.acquire(["bot"])
    gate = SendGate()
    gate.holds = leases.holds
    wired: list[str] = []
    waits = [16, 1]  # seconds the rate limiter holds each send: past the fenced window, then not

    async def send_after_waiting() -> str:
        clock.advance(seconds=waits.pop(0))
        gate.on_wire()
        wired.append("sent")
        return "sent"

    assert gate.admits("bot")
    try:
        await gate.send(send_after_waiting, bot="bot")
    except SendsStopped as exc:
        assert "no longer owns bot" in str(exc)
    else:
        raise AssertionError("the send went out")
    assert wired == [] and gate.sent == 0 and not gate.admits("bot")
    await leases.beat()  # renewed (nobody took it): the bot may send again
    assert gate.admits("bot")
    assert await gate.send(send_after_waiting, bot="bot") == "sent"


async def test_a_desk_slowed_past_its_window_confirms_its_lease_and_goes_on_unless_another_desk_took_it():
    """A busy machine stalls the desk past its local window with no heartbeat: before refusing, the gate
    confirms with a renewal; the bot nobody took sends and writes on, the one another desk took does not."""
    from traderagent.orchestrator.gate import LeaseLapsed

    clock, store = Clock(), _Store()
    leases = Leases(store, heartbeat=5, timeout=20, owner="me", clock=clock)
    await leases.acquire(["kept", "taken"])
    gate = SendGate()
    gate.holds, gate.confirm = leases.holds, leases.confirm
    clock.advance(seconds=21)  # stalled past the window and the expiry itself; nobody claimed "kept"
    assert await Leases(store, owner="rival", clock=clock).acquire(["taken"])
    assert not leases.holds("kept") and not leases.holds("taken")

    async def wire() -> str:
        gate.on_wire()
        return "sent"

    await gate.check_owner("kept")  # the write goes on: the renewal found the row still ours
    assert leases.holds("kept") and await gate.send(wire, bot="kept") == "sent"
    with pytest.raises(LeaseLapsed):
        await gate.check_owner("taken")
    with pytest.raises(SendsStopped, match="no longer owns taken"):
        await gate.send(wire, bot="taken")
    assert gate.sent == 1 and store.rows["taken"].owner == "rival"


async def test_a_restarted_desk_takes_at_once_the_bots_of_a_process_gone_from_this_machine():
    clock = Clock()
    store = _Store()
    child = await asyncio.create_subprocess_exec(sys.executable, "-c", "pass")
    await child.wait()  # gone: its pid names no process now
    here, elsewhere = process_space(), "another-host"
    for bot, owner, space in (("crashed", f"host:{child.pid}:aa", here), ("alive", f"host:{os.getppid()}:bb", here),
                              ("remote", f"other:{child.pid}:cc", elsewhere)):
        await Leases(store, owner=owner, space=space, clock=clock).acquire([bot])
    restarted = Leases(store, clock=clock)
    assert list(await restarted.acquire(["crashed", "alive", "remote"])) == ["crashed"]
    assert sorted(restarted.elsewhere) == ["alive", "remote"]  # these wait for their lease to expire
    clock.advance(seconds=26)  # the default timeout
    assert sorted((await restarted.beat()).gained) == ["alive", "remote"]


async def test_a_request_signed_in_time_but_delayed_past_the_exchange_window_is_not_placed(sim, sim_url,
                                                                                         monkeypatch):
    """A desk frozen right after the gate let its signed request through: the exchange finds the
    timestamp stale and refuses it (10002); the client's resend is signed anew and asked again, and
    the gate, past the fence by then, refuses it: the order is never placed."""
    import traderagent.sim.server as sim_server
    from traderagent.api.bybit_direct_client import RECV_WINDOW, ByBitDirectClient

    clock = Clock()
    leases = Leases(_Store(), heartbeat=5, timeout=25, fence=RECV_WINDOW / 1000 + 1, owner="me", clock=clock)
    await leases.acquire(["bot"])
    gate = SendGate()
    gate.holds = leases.holds
    client = ByBitDirectClient(SIM_KEY, "test-secret", base_url=sim_url, backoff_base=0.01, backoff_max=0.05)
    await client.initialize()
    real_now = sim_server.now_ms

    def frozen_after_the_check() -> None:
        gate.on_wire()
        if not leases.holds("bot"):
            raise AssertionError("the gate let a send through past the fence")
        clock.advance(seconds=15)  # the desk sleeps past its fence (14 s after the renewal) ...
        monkeypatch.setattr(sim_server, "now_ms", lambda: real_now() + 15_000)  # ... and the request with it

    client.before_order = frozen_after_the_check
    try:
        try:
            await gate.send(lambda: client.create_limit_order("XRPUSDT", "buy", Decimal("10"), Decimal("0.5"),
                                                              client_order_id="late-1"), bot="bot")
        except SendsStopped as exc:
            assert "no longer owns bot" in str(exc)
        else:
            raise AssertionError("the late request was placed")
        assert "late-1" not in {o["orderLinkId"] for o in sim.orders(SIM_KEY, open_only=False)}
        assert client.get_statistics()["errors"]["InvalidTimestampError"] == 1  # the exchange refused the stale one
    finally:
        await client.close()


class _Store:
    """The lease table in memory, for the gate test (the real one is tested in tests/database)."""

    def __init__(self) -> None:
        self.rows: dict[str, object] = {}

    async def acquire_leases(self, bots, owner, now, expires_at, *, process_space=None, dead=()):
        from types import SimpleNamespace

        for bot in bots:
            row = self.rows.get(bot)
            if row is None or row.owner == owner or row.expires_at < now or row.owner in dead:
                self.rows[bot] = SimpleNamespace(bot_name=bot, owner=owner, expires_at=expires_at,
                                                 process_space=process_space, token=f"{owner}@{now}")
        return [self.rows[b] for b in bots]

    async def renew_leases(self, owner, expires_at):
        mine = [r for r in self.rows.values() if r.owner == owner]
        for row in mine:
            row.expires_at = expires_at
        return [r.bot_name for r in mine]

    async def lease_holders(self, bots):
        return [self.rows[b] for b in bots if b in self.rows]

    async def release_leases(self, owner, bots=None):
        self.rows = {b: r for b, r in self.rows.items() if r.owner != owner or (bots is not None and b not in bots)}



async def test_a_lone_desk_keeps_its_leases_while_it_builds_its_bots(tmp_path):
    """A desk takes its leases before it builds and recovers its bots (claim_bots starts the keeper): a build
    longer than the lease timeout must not let another desk take them before the first heartbeat."""
    from datetime import UTC, datetime

    from tests.handlers.harness import until
    from traderagent.database.manager import DatabaseManager

    db = DatabaseManager(f"sqlite+aiosqlite:///{tmp_path / 'desk.db'}")
    await db.initialize()
    clock = Clock(datetime.now(UTC))
    leases = Leases(db, heartbeat=0.05, timeout=1.0, owner="desk-A", clock=clock)
    rival = Leases(db, heartbeat=0.05, timeout=1.0, owner="desk-B", clock=clock)
    try:
        await leases.acquire(["bot-a", "bot-b"])
        leases.keep()
        for _ in range(3):  # 2.4 timeouts of building, the keeper renewing meanwhile
            clock.advance(seconds=0.8)
            renewed = leases.renewed
            await until(lambda renewed=renewed: leases.renewed > renewed + 1, 30)  # type: ignore[misc]
        assert await rival.acquire(["bot-a", "bot-b"]) == {} and leases.holds("bot-a")
        changes = await leases.beat()  # the desk's heartbeat from here on
        assert not changes.lost and leases._keeper is None
    finally:
        await leases.release()
        await db.close()


async def test_a_fleet_leader_whose_start_outlasted_its_lease_window_still_starts_phase_1(sim, tmp_path):
    """A worker took the desk lease, then its start-up on a busy machine took longer than the window (no
    heartbeat yet): the start confirms the lease with a renewal and, still the leader, starts phase 1 (it
    took itself for a follower and left the fleet's capital NOT_STARTED: no bot ever traded)."""
    from traderagent.orchestrator.lease import DESK_LEASE
    from traderagent.utils.capital_manager import DeploymentPhase

    clock = Clock()
    h = await build_desk(sim.base_url, tmp_path / "desk.db", [GRID], clock=clock, lease_owner="worker-0", start=False)
    try:
        assert h.desk.leases is not None
        h.desk.leases.fleet = True
        await h.desk.leases.acquire([DESK_LEASE])
        clock.advance(seconds=16)  # past the window (timeout 20 s - fence 5 s), no heartbeat
        assert not h.desk.leader
        await h.desk.start(schedule=False)
        assert h.desk.leader and h.desk.capital.phase is DeploymentPhase.PHASE_1
    finally:
        await h.close()
