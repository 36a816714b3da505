"""Real desk processes as fleet workers (`traderagent run` with TRADERAGENT_CONSOLE=external) on a fresh
PostgreSQL database, the simulator as its own process, and the console (the real Telegram frontend on
the fake Bot API) in this process: the console lists every worker's bots, a /pause reaches the process
that owns the bot, and its status change comes back to the chat once, through the outbox table."""

from __future__ import annotations

import asyncio
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.desk_procs import BOTS_TOML, GITIGNORE, SimProcess, desk_env, fresh_postgres, start_desk
from tests.handlers.harness import CHAT, FAST, SCALE, Operator, settings_for
from traderagent.database.manager import DatabaseManager
from traderagent.fleet.console import Console

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(300), pytest.mark.slow(16)]
WAIT = 60.0  # processes start slowly on a loaded machine; each wait returns as soon as its condition holds
HEAD, *BOTS = BOTS_TOML.split("[[bots]]")  # xrp-grid, sol-dca, btc-trend
WORKER_BOTS = {"a": [BOTS[0]], "b": BOTS[1:]}
WORKER_ENV = {"TRADERAGENT_CONSOLE": "external", "TELEGRAM_CHAT_IDS": str(CHAT),
              "TRADERAGENT_LEASE_HEARTBEAT": "1", "TRADERAGENT_LEASE_TIMEOUT": "60", "TRADERAGENT_DIGEST_TIME": "off"}


@pytest.fixture
def database() -> Iterator[str]:
    yield from fresh_postgres("fleet")


async def _eventually(what: str, check, procs: list[subprocess.Popen], logs: list[Path]):
    deadline = asyncio.get_running_loop().time() + WAIT
    while not (result := await check()):
        for proc, log in zip(procs, logs, strict=True):
            assert proc.poll() is None, f"a worker exited ({proc.returncode}): {log.read_text()[-3000:]}"
        assert asyncio.get_running_loop().time() < deadline, (f"no {what} within {WAIT} s",
                                                              [log.read_text()[-3000:] for log in logs])
        await asyncio.sleep(0.2)  # polling the database, not standing in for an event
    return result


async def test_worker_processes_and_one_console(tmp_path, database, fake):
    (tmp_path / ".gitignore").write_text(GITIGNORE)
    sim = SimProcess("--speed", "20", "--seed", "3")
    procs: list[subprocess.Popen] = []
    logs: list[Path] = []
    db = DatabaseManager(database)
    console: Console | None = None
    try:
        await db.initialize()
        for name, bots in WORKER_BOTS.items():
            bots_file = tmp_path / f"{name}.toml"
            bots_file.write_text((HEAD + "".join("[[bots]]" + b for b in bots)).format(tick=0.5))
            logs.append(tmp_path / f"worker-{name}.log")
            procs.append(start_desk(desk_env(sim.url, database, bots_file, **WORKER_ENV), tmp_path, logs[-1]))

        async def two_owners() -> dict[str, str]:
            rows = await db.lease_holders(["xrp-grid", "sol-dca", "btc-trend"])
            owners = {r.bot_name: r.owner for r in rows}
            started = [b.state for b in await db.list_bots()] == ["RUNNING"] * 3  # both workers' starts done
            return owners if started and len(owners) == 3 and len(set(owners.values())) == 2 else {}

        owners = await _eventually("leases of both workers", two_owners, procs, logs)
        assert owners["sol-dca"] == owners["btc-trend"] != owners["xrp-grid"]

        fake.enforce(SCALE)
        console = Console(settings_for(fake), db, limits=FAST, poll_timeout=1, command_timeout=WAIT)
        await console.start()
        op = Operator(fake)
        status = await op.command("/status", match="📋 <b>Desk</b>")
        assert all(n in status.params["text"] for n in ("xrp-grid", "sol-dca", "btc-trend"))
        assert "2 workers" in status.params["text"]

        since = len(fake.calls)
        reply = await op.command("/pause xrp", match="xrp-grid</b> is")
        assert "paused" in reply.params["text"]

        def changes() -> int:
            return sum(str(c.params.get("text", "")).count("running → paused") for c in fake.calls[since:]
                       if c.method == "sendMessage" and c.status == 200)

        async def heard() -> bool:
            return changes() > 0

        await _eventually("the status change alert", heard, procs, logs)
        assert (await db.get_bot("xrp-grid")).state == "PAUSED"  # the worker that owns it paused it
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc, log in zip(procs, logs, strict=True):
            assert proc.wait(WAIT) == 0, log.read_text()[-3000:]
        await console.frontend.outbox.pick_up()  # what the workers stored up to their stop
        await asyncio.wait_for(console.frontend.outbox.flush(), WAIT)
        assert changes() == 1
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
        if console is not None:
            await console.stop()
        await db.close()
        sim.stop()
    assert fake.violations == []
