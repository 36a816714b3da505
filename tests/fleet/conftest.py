"""Fleet tests run on PostgreSQL (LISTEN/NOTIFY is the transport): each test gets its own schema, dropped
afterwards. Skipped, saying why, only when the server cannot be reached."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.database.conftest import drop_schema, postgres_url  # noqa: F401 - the fixture
from tests.handlers.harness import BTC_TREND, ETH_GRID, FAST, SCALE, XRP_GRID, settings_for
from tests.orchestrator.helpers import Harness, build_desk
from traderagent.app import worker_notifier
from traderagent.control import Desk
from traderagent.database.manager import DatabaseManager
from traderagent.fleet.bus import DESK_LEASE
from traderagent.fleet.console import Console
from traderagent.fleet.link import ConsoleLink

MakeDb = Callable[[], DatabaseManager]


@pytest.fixture
async def make_db(request: pytest.FixtureRequest) -> AsyncIterator[MakeDb]:
    """Managers on one fresh schema, as separate processes would open them (each its own pool)."""
    url = request.getfixturevalue("postgres_url")
    schema = f"f_{uuid.uuid4().hex[:16]}"
    made: list[DatabaseManager] = []

    def factory() -> DatabaseManager:
        manager = DatabaseManager(url, schema=schema)
        made.append(manager)
        return manager

    yield factory
    for manager in made:
        await manager.close()
    await drop_schema(url, schema)


@pytest.fixture
async def db(make_db: MakeDb) -> DatabaseManager:
    manager = make_db()
    await manager.initialize()
    return manager


WORKERS = {"worker-1": [XRP_GRID], "worker-2": [ETH_GRID, BTC_TREND]}  # worker-1 leads (holds @desk)


@dataclass
class FleetWorker:
    harness: Harness
    link: ConsoleLink
    beat: asyncio.Task[None]

    @property
    def desk(self) -> Desk:
        return self.harness.desk


async def _heartbeat(worker_desk: Desk) -> None:
    """What the desk's scheduler does: renew the leases (a console counts a worker live by them)."""
    while True:
        await worker_desk.check_leases()
        await asyncio.sleep(1.0)


@contextlib.asynccontextmanager
async def running_fleet(sim: Any, fake: Any, make_db: MakeDb, tmp_path: Path, *, settings: dict[str, Any] | None = None,
                        **console: Any) -> AsyncIterator[tuple[Console, dict[str, FleetWorker]]]:
    """Two desks as two workers (in this process, on one schema) and the real console on the fake Bot API."""
    config = settings_for(fake, **(settings or {}))
    workers: dict[str, FleetWorker] = {}
    for owner, specs in WORKERS.items():
        harness = await build_desk(sim.base_url, tmp_path / f"{owner}.db", specs, start=False, lease_owner=owner,
                                   db=make_db())
        assert harness.desk.leases is not None
        if owner == "worker-1":
            await harness.desk.leases.acquire([DESK_LEASE])  # the leader
        harness.desk.standby.update({spec.name: spec for other, others in WORKERS.items() if other != owner
                                     for spec in others})  # the bots file's other bots run elsewhere
        link = ConsoleLink(harness.desk, harness.db, worker_notifier(config, harness.desk, harness.db))
        await link.attach()  # before the start: its start-up events reach the chat too
        await harness.desk.start(schedule=False)
        await link.serve()
        workers[owner] = FleetWorker(harness, link, asyncio.create_task(_heartbeat(harness.desk)))
    console_db = make_db()
    await console_db.initialize()
    fake.enforce(SCALE)
    started = Console(config, console_db, limits=FAST, poll_timeout=1, **console)
    await started.start()
    yield started, workers
    await started.stop()
    for worker in workers.values():
        worker.beat.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await worker.beat
        await worker.link.stop()
        await worker.harness.close()
    assert fake.violations == [], "the console exceeded Telegram's limits"
