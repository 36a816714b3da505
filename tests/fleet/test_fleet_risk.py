"""Risk and capital across a fleet: two real desk workers (orchestrators on the simulator, each with its
leases, its command server and its fleet signals) on one PostgreSQL schema, run in this process as two
workers would run in two. The desk-wide daily-loss rail counts every worker's losses and pauses every
bot once with one alert; the capital state is the leader's row, and an approval re-sizes every worker."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from functools import partial

import pytest

from tests.handlers.harness import BTC_TREND, ETH_GRID, XRP_GRID, until
from tests.orchestrator.helpers import DCA, Clock, Harness, build_desk
from traderagent.bots import BotSpec
from traderagent.fleet.bus import DESK_LEASE, CommandBus, CommandServer, FleetSignals, Listener
from traderagent.fleet.console import ConsoleDesk
from traderagent.fleet.record import judge_fleet_wide
from traderagent.orchestrator.events import EventType
from traderagent.orchestrator.risk import DESK_LOSS, RiskRails
from traderagent.orchestrator.state import BotState
from traderagent.results import BotMark, ScalingApproved
from traderagent.utils.capital_manager import DeploymentPhase

from .conftest import MakeDb

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(300)]
WAIT = 30.0  # generous on a loaded machine; each wait returns as soon as its condition holds
RAILS = RiskRails(Decimal("0.01"), Decimal("5"), Decimal("0.05"))  # the desk stops at 5% of the deployed capital
TOTAL = Decimal("20000")  # phase 1 deploys 1000: the desk rail is at a loss of 50
WORKERS = {"worker-1": [XRP_GRID], "worker-2": [ETH_GRID, BTC_TREND]}  # worker-1 leads


@dataclass
class Worker:
    harness: Harness
    commands: CommandServer
    signals: FleetSignals
    beat: asyncio.Task[None]

    @property
    def desk(self):
        return self.harness.desk

    def events(self, event_type: EventType) -> list:
        return self.harness.of(event_type)

    async def close(self) -> None:
        self.beat.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.beat
        await self.signals.stop()
        await self.commands.stop()
        await self.harness.close()


async def _renew(leases) -> None:
    """The lease renewal of the desk's heartbeat, without its re-read of the capital state: what a
    worker hears here, it heard by NOTIFY."""
    while True:
        await leases.beat()
        await asyncio.sleep(1.0)


async def _worker(sim, make_db: MakeDb, tmp_path, owner: str, specs: list[BotSpec], others: list[BotSpec],
                  clock: Clock) -> Worker:
    harness = await build_desk(sim.base_url, tmp_path / f"{owner}.db", specs, rails=RAILS, total_capital=TOTAL,
                               start=False, lease_owner=owner, db=make_db(), clock=clock)
    desk = harness.desk
    desk.leases.fleet = True  # one worker of several: it leads only while it holds @desk
    if owner == "worker-1":
        await desk.leases.acquire([DESK_LEASE])
    desk.standby.update({spec.name: spec for spec in others})  # the bots file's other bots run elsewhere
    desk.capital_record = partial(judge_fleet_wide, harness.db)  # as the worker's console link sets it
    commands = CommandServer(desk, harness.db)
    signals = FleetSignals(desk, harness.db, commands.listener)
    await desk.start(schedule=False)
    await commands.start()
    signals.start()
    return Worker(harness, commands, signals, asyncio.create_task(_renew(desk.leases)))


@pytest.fixture
def clock() -> Clock:
    return Clock(datetime.now(UTC))  # the workers' clock (UTC day, leases): the trades are written at now


@pytest.fixture
async def fleet(sim, make_db: MakeDb, tmp_path, clock: Clock) -> AsyncIterator[dict[str, Worker]]:
    workers: dict[str, Worker] = {}
    every = [spec for specs in WORKERS.values() for spec in specs]
    try:
        for owner, specs in WORKERS.items():
            workers[owner] = await _worker(sim, make_db, tmp_path, owner, specs,
                                           [s for s in every if s not in specs], clock)
        yield workers
    finally:
        for worker in workers.values():
            await worker.close()


def _states(workers: dict[str, Worker]) -> dict[str, BotState]:
    return {name: h.bot.state for w in workers.values() for name, h in w.desk.bots.items()}


async def _drained(workers: dict[str, Worker]) -> None:
    for worker in workers.values():
        await worker.desk.event_bus.drain(5)


async def test_losses_under_the_rail_on_each_worker_cross_it_together_and_pause_every_bot_once(fleet, clock):
    leader, other = fleet["worker-1"], fleet["worker-2"]
    # each worker keeps its bots' part of the exposure limit: the fleet's total is never exceeded
    assert leader.desk.risk.exposure_share == Decimal("0.3") and other.desk.risk.exposure_share == Decimal("0.7")
    assert leader.desk.capital.allocated_capital == Decimal("1000")
    for worker in fleet.values():  # the bots trade (each sees today's date)
        await worker.desk.tick_all()

    # worker-1 lost 30 today (a closed trade), under the desk rail of 50
    await leader.harness.db.record_trade("grid-xrp", "XRPUSDT", "long", "10", "1", "1", "-30")
    await other.desk.check_desk_risk()
    await leader.desk.check_desk_risk()
    assert set(_states(fleet).values()) == {BotState.RUNNING}
    # worker-2 loses 30 too (unrealised, as its tick computed it), also under the rail on its own
    other.desk.risk.set_unrealized("grid-eth", Decimal("-30"))
    await other.desk.check_desk_risk()  # it writes its bots' figures; the desk rail is the leader's
    assert set(_states(fleet).values()) == {BotState.RUNNING}

    await leader.desk.check_desk_risk()  # 60 together: the leader trips the rail and wakes every worker
    await until(lambda: other.signals.handled["risk"] >= 1, WAIT)  # worker-2 heard the leader's NOTIFY
    assert set(_states(fleet).values()) == {BotState.PAUSED}
    for worker in fleet.values():  # later checks find nothing to do
        await worker.desk.check_desk_risk()
        await worker.desk.check_desk_risk()
    await _drained(fleet)
    alerts = [e for w in fleet.values() for e in w.events(EventType.RISK_LIMIT)]
    assert len(alerts) == 1 and alerts[0].bot_name == "desk"
    assert alerts[0].data.rail == "max_daily_loss (desk)"
    assert alerts[0].data.value == Decimal("60") and alerts[0].data.limit == Decimal("50")
    paused = [e.bot_name for w in fleet.values() for e in w.events(EventType.STATUS_CHANGE)
              if e.data.new is BotState.PAUSED]
    assert sorted(paused) == ["grid-eth", "grid-xrp", "trend-btc"]  # each bot once
    assert {h.bot.paused_by for w in fleet.values() for h in w.desk.bots.values()} == {"risk"}  # resumes next day

    # the next UTC day: every bot resumes at its first tick, once; yesterday's realised loss no longer counts
    clock.advance(days=1)
    for worker in (other, leader):  # the leader's risk check last
        await worker.desk.leases.beat()
        await worker.desk.tick_all()
    assert set(_states(fleet).values()) == {BotState.RUNNING}
    assert await leader.harness.db.rail_day(DESK_LOSS) is None  # under the limit today: the rail holds again
    await _drained(fleet)
    assert len([e for w in fleet.values() for e in w.events(EventType.RISK_LIMIT)]) == 1
    resumed = [e.bot_name for w in fleet.values() for e in w.events(EventType.STATUS_CHANGE)
               if e.data.old is BotState.PAUSED and e.data.new is BotState.RUNNING]
    assert sorted(resumed) == ["grid-eth", "grid-xrp", "trend-btc"]


async def test_the_mark_of_a_bot_removed_from_the_bots_file_does_not_count(fleet):
    leader, other = fleet["worker-1"], fleet["worker-2"]
    for worker in fleet.values():
        await worker.desk.tick_all()  # every bot's mark written
    # a bot of an older bots file: its last mark says it lost 900, far past the desk rail of 50
    await other.harness.db.save_marks({"retired": BotMark(Decimal("1"), Decimal("1"), Decimal("1"), Decimal("-900"),
                                                          Decimal("1"), datetime.now(UTC))})
    await leader.desk.check_desk_risk()
    assert set(_states(fleet).values()) == {BotState.RUNNING}
    assert await leader.harness.db.rail_day(DESK_LOSS) is None
    assert sorted(await leader.harness.db.bot_marks()) == ["grid-eth", "grid-xrp", "trend-btc"]  # deleted


async def test_an_approval_on_the_console_resizes_every_worker_and_a_later_worker_reads_the_phase(
        fleet, sim, make_db: MakeDb, tmp_path, clock):
    leader, other = fleet["worker-1"], fleet["worker-2"]
    assert other.desk.capital.phase is DeploymentPhase.PHASE_1  # the leader's, read at start
    # the gates count every worker's trades: 2 of worker-1's bot, 3 of worker-2's
    for worker, bot, symbol in [(leader, "grid-xrp", "XRPUSDT")] * 2 + [(other, "grid-eth", "ETHUSDT")] * 3:
        await worker.harness.db.record_trade(bot, symbol, "long", "1", "1", "1.1", "2")
    gates = leader.desk.capital.phases[DeploymentPhase.PHASE_1]
    leader.desk.capital.phases[DeploymentPhase.PHASE_1] = dataclasses.replace(gates, min_days=0)

    console_db = make_db()
    await console_db.initialize()
    listener = Listener(console_db)
    console = ConsoleDesk(console_db, CommandBus(console_db, listener, timeout=WAIT))
    try:
        assert await listener.ensure()
        approved = await console.approve_scaling("alice")
    finally:
        await listener.close()
    assert isinstance(approved, ScalingApproved) and approved.phase == DeploymentPhase.PHASE_2.value

    def allocations(worker: Worker) -> dict[str, Decimal]:
        return {name: h.bot.allocated_capital for name, h in worker.desk.bots.items()}

    phase_2 = {"grid-xrp": Decimal("1500.00"), "grid-eth": Decimal("1500.00"), "trend-btc": Decimal("2000.00")}
    assert allocations(leader) == {"grid-xrp": phase_2["grid-xrp"]}
    await until(lambda: other.signals.handled["capital"] >= 1, WAIT)  # it heard the leader's NOTIFY and re-read
    assert allocations(other) == {n: phase_2[n] for n in ("grid-eth", "trend-btc")}
    assert other.desk.capital.phase is DeploymentPhase.PHASE_2
    assert other.desk.risk.exposure_limit(other.desk.capital.allocated_capital) == Decimal("5") * 5000 * Decimal("0.7")
    for name, amount in phase_2.items():
        assert (await console_db.get_bot(name)).allocated_capital == amount
    await _drained(fleet)
    changes = [e.data.phase for w in fleet.values() for e in w.events(EventType.PHASE_CHANGED)]
    assert changes == [DeploymentPhase.PHASE_1, DeploymentPhase.PHASE_2]  # both from the leader, once each

    # a worker that does not lead never writes the capital state (its trades count through the trades table)
    other.desk.capital.record_trade(False, Decimal("-1"))
    await other.desk.capital_persister.flush()
    row = await console_db.load_capital_state()
    assert row["phase"] == DeploymentPhase.PHASE_2.value and row["metrics"]["total_trades"] == 0

    later = await _worker(sim, make_db, tmp_path, "worker-3", [DCA], [*WORKERS["worker-1"], *WORKERS["worker-2"]],
                          clock)
    try:
        assert later.desk.capital.phase is DeploymentPhase.PHASE_2
        assert later.desk.bots["sol-dca"].bot.allocated_capital == Decimal("1500.00")
        await later.desk.event_bus.drain(5)
        assert later.events(EventType.PHASE_CHANGED) == []
    finally:
        await later.close()


async def test_a_worker_that_missed_the_notify_rereads_at_its_heartbeat_and_a_new_leader_before_it_writes(fleet):
    leader, other = fleet["worker-1"], fleet["worker-2"]
    await other.signals.stop()  # worker-2 hears no NOTIFY any more (a dropped listener)
    for _ in range(5):
        await leader.harness.db.record_trade("grid-xrp", "XRPUSDT", "long", "1", "1", "1.1", "2")
    gates = leader.desk.capital.phases[DeploymentPhase.PHASE_1]
    leader.desk.capital.phases[DeploymentPhase.PHASE_1] = dataclasses.replace(gates, min_days=0)
    await leader.desk.check_desk_risk()
    await leader.desk.approve_scaling("alice")
    assert other.desk.capital.phase is DeploymentPhase.PHASE_1
    await other.desk.check_leases()  # the heartbeat re-reads the leader's record
    assert other.desk.capital.phase is DeploymentPhase.PHASE_2
    assert other.desk.bots["trend-btc"].bot.allocated_capital == Decimal("2000.00")

    leader.desk.capital.halt("news")  # written by the leader; worker-2 has not re-read it yet
    await leader.desk.capital_persister.flush()
    other.desk.leases.want([DESK_LEASE])  # worker-1 hands the lead over (it stops, say)
    await leader.desk.leases.release([DESK_LEASE])
    await leader.desk.check_leases()
    await other.desk.check_leases()
    assert other.desk.leader and not leader.desk.leader
    leader.desk.capital.record_trade(True, Decimal("1"))  # the former leader's record is not written any more
    await leader.desk.capital_persister.flush()
    assert (await other.harness.db.load_capital_state())["metrics"]["total_trades"] == 0
    other.desk.capital.record_trade(True, Decimal("3"))  # the new leader's is, on the record it re-read
    await other.desk.capital_persister.flush()
    row = await other.harness.db.load_capital_state()
    assert row["phase"] == DeploymentPhase.PHASE_2.value and row["metrics"]["total_trades"] == 1
    assert row["halt"]["reason"] == "news"  # it re-read the record before it wrote it


async def test_a_bot_the_rail_paused_resumes_when_recovered_on_a_later_day(sim, make_db: MakeDb, tmp_path, clock):
    """A worker that takes a bot over (or restarts) after the UTC date change resumes it at its first tick,
    as the worker that paused it would have."""
    owner = await build_desk(sim.base_url, tmp_path / "a.db", [XRP_GRID], rails=RAILS, total_capital=TOTAL,
                             db=make_db(), clock=clock)
    try:
        await owner.desk.tick_all()
        await owner.desk.bots["grid-xrp"].bot.pause("risk", by="risk rail")  # as the fleet's rail does
    finally:
        await owner.close()
    for days, state in [(0, BotState.PAUSED), (1, BotState.RUNNING)]:  # the same day it stays paused
        clock.advance(days=days)
        heir = await build_desk(sim.base_url, tmp_path / "b.db", [XRP_GRID], rails=RAILS, total_capital=TOTAL,
                                db=make_db(), clock=clock)
        try:
            await heir.desk.tick_all()
            assert heir.desk.bots["grid-xrp"].bot.state is state
        finally:
            await heir.close()


async def test_a_worker_that_read_the_leaders_resume_first_still_resumes_its_bots(fleet):
    leader, other = fleet["worker-1"], fleet["worker-2"]
    for worker in (leader, other):  # the console's halt reaches every worker
        await worker.desk.halt("news", "ops")
    await leader.desk.resume_trading("ops")  # the leader answers the resume first
    await other.desk.check_leases()  # worker-2's heartbeat re-reads the record: not halted any more
    assert not other.desk.capital.halted
    outcome = await other.desk.resume_trading("ops")  # then the resume reaches it
    assert sorted(outcome.resumed) == ["grid-eth", "trend-btc"]
    assert set(_states(fleet).values()) == {BotState.RUNNING}
