"""One console for two desk workers on one PostgreSQL schema, end to end: the real Telegram frontend
(handlers/) on the fake Bot API in front of a `ConsoleDesk`; two real desks (orchestrators on the
simulator, each with its leases, its command server and its alerts stored for the console) trading the
bots each holds. The desks run in this process, as two workers would in two."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator
from decimal import Decimal

import pytest

from tests.handlers.harness import CHAT, Operator, button, until
from traderagent.fleet.console import Console
from traderagent.orchestrator.events import ErrorRaised, TradeClosed, TradingEvent

from .conftest import FleetWorker, MakeDb, running_fleet

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(300)]
WAIT = 30.0  # generous on a loaded machine; each wait returns as soon as its condition holds


@pytest.fixture
async def fleet(sim, fake, make_db: MakeDb, tmp_path) -> AsyncIterator[tuple[Console, dict[str, FleetWorker]]]:
    async with running_fleet(sim, fake, make_db, tmp_path) as started:
        yield started


def _alert_texts(fake, since: int = 0) -> list[str]:
    return [str(c.params.get("text", "")) for c in fake.calls[since:]
            if c.method == "sendMessage" and c.status == 200 and c.params.get("chat_id") == CHAT]


async def test_status_lists_every_workers_bots_and_pause_reaches_the_owner_once(fleet, fake):
    console, workers = fleet
    op = Operator(fake)
    status = await op.command("/status", match="📋 <b>Desk</b>")
    text = status.params["text"]
    for name in ("grid-xrp", "grid-eth", "trend-btc"):
        assert name in text
    assert "2 workers" in text and "refused" not in text

    since = len(fake.calls)
    reply = await op.command("/pause grid-xrp", match="grid-xrp</b> is")
    assert "paused" in reply.params["text"]
    assert workers["worker-1"].desk.bots["grid-xrp"].bot.state.value == "PAUSED"  # its owner paused it
    assert workers["worker-2"].desk.bots.keys() == {"grid-eth", "trend-btc"}
    change = re.compile(r"grid-xrp.*running → paused", re.S)
    await until(lambda: any(change.search(t) for t in _alert_texts(fake, since)), WAIT)
    # the worker stored it once; the console delivered it once, whatever its polls and wake-ups
    await console.frontend.outbox.pick_up()
    await asyncio.wait_for(console.frontend.outbox.flush(), WAIT)
    assert sum(len(change.findall(t)) for t in _alert_texts(fake, since)) == 1
    assert await console.db.pending_outbox([CHAT]) == []

    bot = await op.command("/status trend", match="trend-btc")  # the detail comes from worker-2
    assert "trend-btc" in bot.params["text"]


async def test_a_bot_no_worker_runs_is_refused_in_one_line(fleet, fake):
    console, workers = fleet
    op = Operator(fake)
    worker = workers["worker-2"]
    worker.beat.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await worker.beat
    await worker.link.stop()
    await worker.harness.desk.stop()  # releases its leases: nobody runs grid-eth now
    reply = await op.command("/pause grid-eth", match="grid-eth")
    assert "No desk worker runs grid-eth" in reply.params["text"]
    status = await op.command("/status", match="📋 <b>Desk</b>")
    assert "refused grid-eth: no desk worker runs it" in status.params["text"]


async def test_events_of_both_workers_arrive_once_in_order_per_bot(fleet, fake):
    console, workers = fleet
    since = len(fake.calls)
    bots = {"grid-xrp": workers["worker-1"], "grid-eth": workers["worker-2"], "trend-btc": workers["worker-2"]}
    for i in range(6):  # interleaved across the two workers
        for name, worker in bots.items():
            worker.desk.event_bus.publish(TradingEvent.of(name, ErrorRaised(f"probe {name} #{i}")))
    probe = re.compile(r"probe ([a-z-]+) #(\d)")

    def seen() -> list[tuple[str, int]]:
        return [(m[0], int(m[1])) for t in _alert_texts(fake, since) for m in probe.findall(t)]

    await until(lambda: len(seen()) >= 18, WAIT)
    await console.frontend.outbox.pick_up()
    await asyncio.wait_for(console.frontend.outbox.flush(), WAIT)
    got = seen()
    assert len(got) == 18 and len(set(got)) == 18  # each once
    for name in bots:
        assert [i for n, i in got if n == name] == list(range(6))  # in order per bot


def test_the_console_needs_postgresql_in_one_line(monkeypatch, tmp_path, capsys):
    from traderagent.cli import main
    from traderagent.config import Settings, SettingsError

    monkeypatch.chdir(tmp_path)  # no .env of the checkout
    monkeypatch.setenv("DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path / 'desk.db'}")
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", "1:token")
    assert main(["console"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "PostgreSQL" in err and "DATABASE_URL" in err
    monkeypatch.setenv("TRADERAGENT_CONSOLE", "external")  # a worker too
    with pytest.raises(SettingsError, match="TRADERAGENT_CONSOLE=external: .*PostgreSQL"):
        Settings.load(env_file=None)


async def test_a_type_muted_on_the_console_is_not_heard_from_the_workers(fleet, fake):
    console, workers = fleet
    op = Operator(fake)
    await op.command("/alerts mute status_change", match="Alerts")
    since, stored = len(fake.calls), workers["worker-2"].link.notifier.outbox.stored
    await op.command("/pause trend", match="trend-btc</b> is")
    workers["worker-2"].desk.event_bus.publish(TradingEvent.of("trend-btc", ErrorRaised("probe after the pause")))
    await until(lambda: any("probe after the pause" in t for t in _alert_texts(fake, since)), WAIT)
    await console.frontend.outbox.pick_up()
    await asyncio.wait_for(console.frontend.outbox.flush(), WAIT)
    assert workers["worker-2"].link.notifier.outbox.stored == stored + 2  # the worker stored the change and the probe
    assert not any("running → paused" in t for t in _alert_texts(fake, since))  # the console dropped the change
    assert await console.db.pending_outbox([CHAT]) == []

    await op.command("/alerts mute trade_closed", match="Alerts")
    since = len(fake.calls)
    for reason in ("take_profit", "liquidation"):  # a liquidation is heard whatever is muted
        workers["worker-2"].desk.event_bus.publish(TradingEvent.of("grid-eth", TradeClosed(
            7, "p", "ETHUSDT", "long", Decimal("0.1"), Decimal("2000"), Decimal("1900"), Decimal("-10"), reason,
            "USDT")))
    workers["worker-2"].desk.event_bus.publish(TradingEvent.of("grid-eth", ErrorRaised("probe after the closes")))
    await until(lambda: any("probe after the closes" in t for t in _alert_texts(fake, since)), WAIT)
    await console.frontend.outbox.pick_up()
    await asyncio.wait_for(console.frontend.outbox.flush(), WAIT)
    texts = " ".join(_alert_texts(fake, since))
    assert "liquidation" in texts and "take profit" not in texts


async def test_halt_and_resume_reach_every_worker(fleet, fake):
    console, workers = fleet
    op = Operator(fake)
    call = await op.command("/halt flash crash", match="Halt all trading")  # asked of the leader
    _, edit = await op.press(call, button(call, "Halt trading"))
    assert "Trading halted" in edit.params["text"]
    for name in ("grid-xrp", "grid-eth", "trend-btc"):  # every worker paused its own bots
        assert name in edit.params["text"]
    for worker in workers.values():
        assert worker.desk.capital.halted and "flash crash" in worker.desk.capital.halt_reason
        assert {h.bot.state.value for h in worker.desk.bots.values()} == {"PAUSED"}
    call = await op.command("/start grid-eth", match="⚠️")  # worker-2 refuses: it is halted too
    assert "halted" in call.params["text"]
    call = await op.command("/resume_trading", match="Lift the halt")
    _, edit = await op.press(call, button(call, "Resume trading"))
    assert "grid-eth" in edit.params["text"] and "grid-xrp" in edit.params["text"]
    for worker in workers.values():
        assert not worker.desk.capital.halted
        assert {h.bot.state.value for h in worker.desk.bots.values()} == {"RUNNING"}
