"""Storage faults (orchestrator/storage.py): the database full, or its file deleted, mid-run. Entries
stop at once and the operator is told; positions stay protected (exits still sent, their rows kept
in memory); when the database takes writes again every bot writes what it kept, fills that happened
meanwhile are booked once, no filled order stays OPEN, and a restart finds everything known."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import event

from tests import forkserver
from tests.e2e.desk_procs import (
    BOTS_TOML,
    PY,
    SimProcess,
    age_pending_rows,
    consistency_report,
    desk_env,
    run_desk,
)
from tests.orchestrator.helpers import (
    DCA,
    GRID,
    SIM_KEY,
    Harness,
    assert_db_matches_sim,
    build_desk,
    run_ticks,
)
from traderagent.control import ControlError
from traderagent.database.manager import DatabaseManager
from traderagent.orchestrator.events import EventType
from traderagent.orchestrator.orders import intent_of, is_entry
from traderagent.orchestrator.state import BotState
from traderagent.strategies.types import OrderIntent

WRITES = ("INSERT", "UPDATE", "DELETE")


@contextmanager
def disk_full(h: Harness) -> Iterator[None]:
    """Every write statement fails as SQLite does when its disk is full (reads still work)."""
    engine = h.db._engine.sync_engine

    def refuse(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip().upper().startswith(WRITES):
            raise sqlite3.OperationalError("database or disk is full")

    event.listen(engine, "before_cursor_execute", refuse)
    try:
        yield
    finally:
        event.remove(engine, "before_cursor_execute", refuse)


def record_sends(h: Harness) -> list[tuple[OrderIntent, Decimal]]:
    """Every order the bot sends, with its net position at that moment."""
    bot = h.desk.bots["xrp-grid"].bot
    sends: list[tuple[OrderIntent, Decimal]] = []
    real = bot._send_all

    async def send_all(orders: list[Any]) -> list[Any]:
        sends.extend((intent_of(order), bot._net_position()) for order in orders)
        return await real(orders)

    bot._send_all = send_all  # type: ignore[method-assign]
    return sends


def resting_buys(h: Harness) -> list[Any]:
    bot = h.desk.bots["xrp-grid"].bot
    return sorted((o for o in bot.open_orders if o.side == "buy"), key=lambda o: -o.price)


async def settle_and_compare(h: Harness, sim: Any) -> None:
    """The database and the exchange agree, and a restart on this database finds nothing unknown."""
    await h.desk.event_bus.drain(5)
    await assert_db_matches_sim(h, sim)
    filled = [e.data.order.client_order_id for e in h.of(EventType.ORDER_FILLED)]
    assert len(filled) == len(set(filled))  # every fill booked once
    for cid in filled:
        assert (await h.db.get_order(cid)).status == "FILLED"


async def restart_finds_everything(sim: Any, db_path: Any) -> None:
    h = await build_desk(sim.base_url, db_path, [GRID], start=False)
    try:
        report = await h.desk.start(schedule=False)
        assert "strangers" not in report["xrp-grid"], report
        assert h.desk.bots["xrp-grid"].bot.state is BotState.RUNNING
    finally:
        await h.close()


async def test_disk_full_stops_entries_protects_positions_and_resumes(sim, tmp_path):
    h = await build_desk(sim.base_url, tmp_path / "full.db", [GRID])
    try:
        await run_ticks(h, sim, 2)
        bot = h.desk.bots["xrp-grid"].bot
        sends = record_sends(h)
        with disk_full(h):
            first, second = resting_buys(h)[:2]
            sim.fill(SIM_KEY, first.client_order_id)
            await h.desk.tick_all()  # the fill's write fails: storage lost, the fill booked in memory
            assert h.desk.storage.lost and "is full" in h.desk.storage.lost
            assert not bot.entries_allowed and bot.state is BotState.RUNNING
            assert "is full" in (await h.desk.desk_status()).storage_lost  # /status says so
            sim.fill(SIM_KEY, second.client_order_id)
            for _ in range(3):
                await h.desk.tick_all()  # still full: the desk keeps trying, quietly
            await h.desk.event_bus.drain(5)
            assert len(h.of(EventType.STORAGE_LOST)) == 1 and not h.of(EventType.STORAGE_RESTORED)
            assert (await h.db.get_order(first.client_order_id)).status == "OPEN"  # not written yet
            assert bot._unsaved
        # the fills' counter orders (sells against the long position) went out; no entry did
        assert sends and not [i for i, net in sends if is_entry(i, net)]
        exits = {i.tag for i, _ in sends}
        await h.desk.check_storage()  # space is back
        assert h.desk.storage.lost is None and bot.entries_allowed and not bot._unsaved
        await h.desk.event_bus.drain(5)
        [back] = h.of(EventType.STORAGE_RESTORED)
        assert back.data.file_restored is None and back.data.bots == 1
        for order in (first, second):
            assert (await h.db.get_order(order.client_order_id)).status == "FILLED"
        rows = await h.db.list_orders(limit=10_000)
        assert exits <= {r.tag for r in rows}  # the exits sent meanwhile are recorded
        assert (await h.db.get_bot("xrp-grid")).state == "RUNNING"
        await run_ticks(h, sim, 2)  # entries again
        assert any(is_entry(i, net) for i, net in sends)
        await settle_and_compare(h, sim)
    finally:
        await h.close()
    await restart_finds_everything(sim, tmp_path / "full.db")


async def test_deleted_database_is_noticed_at_once_and_written_back(sim, tmp_path):
    path = tmp_path / "gone.db"
    h = await build_desk(sim.base_url, path, [GRID])
    try:
        await run_ticks(h, sim, 2)
        bot = h.desk.bots["xrp-grid"].bot
        trades_before = len(await h.db.list_trades(limit=1000))
        orders_before = len(await h.db.list_orders(limit=10_000))
        sends = record_sends(h)
        path.unlink()  # open connections would go on writing to the deleted file without an error
        await h.desk.check_storage()  # the desk's one-second job
        assert h.desk.storage.lost and "deleted" in h.desk.storage.lost
        first = resting_buys(h)[0]
        sim.fill(SIM_KEY, first.client_order_id)
        await h.desk.tick_all()  # booked in memory; the check in it writes the file back
        await h.desk.event_bus.drain(5)
        assert not [i for i, net in sends if is_entry(i, net)]
        [lost] = h.of(EventType.STORAGE_LOST)
        assert "gone.db" in lost.data.error
        [back] = h.of(EventType.STORAGE_RESTORED)
        assert back.data.file_restored == str(path)
        assert path.exists() and bot.entries_allowed
        assert (await h.db.get_order(first.client_order_id)).status == "FILLED"
        assert len(await h.db.list_orders(limit=10_000)) > orders_before  # history kept, and what came after
        assert len(await h.db.list_trades(limit=1000)) >= trades_before
        await run_ticks(h, sim, 2)
        await settle_and_compare(h, sim)
    finally:
        await h.close()
    await restart_finds_everything(sim, path)


async def test_a_stop_while_the_file_is_deleted_writes_it_back_first(sim, tmp_path):
    path = tmp_path / "stop.db"
    h = await build_desk(sim.base_url, path, [GRID])
    try:
        await run_ticks(h, sim, 2)
        path.unlink()
        await h.desk.check_storage()
        filled = resting_buys(h)[0].client_order_id
        sim.fill(SIM_KEY, filled)
        await h.desk.bots["xrp-grid"].bot.tick()  # the fill, booked in memory only
        assert h.desk.storage.lost and h.desk.bots["xrp-grid"].bot._unsaved
    finally:
        await h.close()  # the stop tries once more: the file is written back, the bot saved
    db = DatabaseManager(f"sqlite+aiosqlite:///{path}")
    await db.initialize()
    try:
        assert (await db.get_order(filled)).status == "FILLED"
    finally:
        await db.close()
    await restart_finds_everything(sim, path)


async def test_empty_database_facing_our_orders_and_position_refuses_that_symbol(sim, tmp_path):
    h = await build_desk(sim.base_url, tmp_path / "lost.db", [GRID])
    try:
        await run_ticks(h, sim, 2)
        sim.set_price("XRPUSDT", resting_buys(h)[0].price)  # the market comes down to the nearest buy
        await h.desk.tick_all()  # booked; its counter sell rests above
        assert h.desk.bots["xrp-grid"].bot._net_position() > 0
    finally:
        await h.close()
    [position] = [p for p in sim.positions(SIM_KEY) if p["symbol"] == "XRPUSDT"]

    h2 = await build_desk(sim.base_url, tmp_path / "empty.db", [GRID, DCA], start=False)
    try:
        report = await h2.desk.start(schedule=False)
        grid, dca = h2.desk.bots["xrp-grid"].bot, h2.desk.bots["sol-dca"].bot
        assert report["xrp-grid"]["strangers"] > 0
        assert grid.state is BotState.ERROR and dca.state is BotState.RUNNING  # the symbol, not the desk
        await h2.desk.event_bus.drain(5)
        [message] = [e.data.error for e in h2.of(EventType.ERROR) if "refusing" in e.data.error]  # one message
        assert "refusing to trade XRPUSDT" in message and "SOLUSDT" not in message
        assert f"long position of {Decimal(position['size'])}" in message and "books of xrp-grid hold 0" in message
        xrp_before = {o["orderLinkId"] for o in sim.orders(SIM_KEY, symbol="XRPUSDT", open_only=False)}
        await h2.desk.tick_all()
        assert {o["orderLinkId"] for o in sim.orders(SIM_KEY, symbol="XRPUSDT", open_only=False)} == xrp_before
        assert sim.orders(SIM_KEY, symbol="SOLUSDT", open_only=False)  # the other symbol trades
    finally:
        await h2.close()


async def test_operator_acts_while_the_disk_is_full_and_it_is_all_saved_after(sim, tmp_path):
    h = await build_desk(sim.base_url, tmp_path / "halt.db", [GRID, DCA])
    try:
        await run_ticks(h, sim, 1)
        with disk_full(h):
            await h.desk.tick_all()
            await h.desk.stop_bot("sol-dca", "@op")  # its entry orders are cancelled, its rows kept
            outcome = await h.desk.halt("database trouble", "@op")  # returns: nothing waits for the disk
            assert outcome.paused == ("xrp-grid",)
            await h.desk.check_storage()
            assert h.desk.storage.lost
            assert (await h.db.get_bot("xrp-grid")).state == "RUNNING"  # not written yet
        await h.desk.check_storage()
        assert h.desk.storage.lost is None
        assert (await h.db.get_bot("xrp-grid")).state == "PAUSED"
        assert (await h.db.get_bot("sol-dca")).state == "STOPPED"
        assert (await h.db.load_capital_state())["halt"]["reason"].startswith("database trouble")
        await h.desk.event_bus.drain(5)
        logged = [line.message for line in await h.db.get_logs(None, limit=1000)]
        assert "STORAGE_LOST" in logged and logged.count("HALTED") == 1  # kept while the disk was full, once
        await settle_and_compare(h, sim)
    finally:
        await h.close()


async def test_restart_on_a_full_disk_waits_then_recovers_by_itself(sim, tmp_path):
    h = await build_desk(sim.base_url, tmp_path / "restart.db", [GRID])
    try:
        await run_ticks(h, sim, 2)
        resting = {o.client_order_id for o in h.desk.bots["xrp-grid"].bot.open_orders}
    finally:
        await h.close()
    h2 = await build_desk(sim.base_url, tmp_path / "restart.db", [GRID, DCA], start=False)  # the DCA bot is new
    try:
        grid, dca = h2.desk.bots["xrp-grid"].bot, h2.desk.bots["sol-dca"].bot
        with disk_full(h2):
            report = await h2.desk.start(schedule=False)
            assert report["xrp-grid"]["open"] == len(resting)  # read back; its writes wait in memory
            assert grid.state is BotState.RUNNING and not grid.entries_allowed
            assert "waiting for the database" in report["sol-dca"]["error"]  # its row cannot even be created
            assert dca.state is BotState.INITIALIZING  # waits, not in ERROR
            with pytest.raises(ControlError, match="waits for the database"):
                await h2.desk.start_bot("sol-dca")
            creates = sim.request_counts["/v5/order/create"]
            await h2.desk.tick_all()
            assert sim.request_counts["/v5/order/create"] == creates
        await h2.desk.check_storage()
        assert h2.desk.storage.lost is None
        assert grid.state is BotState.RUNNING and dca.state is BotState.RUNNING
        assert {o.client_order_id for o in grid.open_orders} == resting
        assert (await h2.db.get_bot("sol-dca")).state == "RUNNING"
        await run_ticks(h2, sim, 2)
        assert dca.open_orders or dca.strategy.get_active_positions()  # trading
        await settle_and_compare(h2, sim)
    finally:
        await h2.close()


@pytest.mark.timeout(300)  # a safety net only: the desk process has its own hang limit
@pytest.mark.slow(13)
def test_database_deleted_under_a_running_desk_process(tmp_path):
    """`traderagent run` against the simulator's own process: the database file is deleted while it
    trades; its one-second check notices, the file is written back, trading goes on, and after a
    last clean run the database and the exchange agree."""
    bots = tmp_path / "bots.toml"
    bots.write_text(BOTS_TOML.format(tick=0.2))
    db_path, log = tmp_path / "desk.db", tmp_path / "desk.log"
    sim = SimProcess("--speed", "20", "--seed", "5")
    try:
        env = desk_env(sim.url, db_path, bots)
        proc = forkserver.popen([PY, "-m", "traderagent", "run"], env=env, cwd=tmp_path, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        watchdog = threading.Timer(120, proc.kill)
        watchdog.start()
        try:
            seen = _read_until(proc, log, "ORDER_FILLED")  # trading
            db_path.unlink()
            seen += _read_until(proc, log, "STORAGE_RESTORED")
            seen += _read_until(proc, log, "ORDER_")  # and trading on
            proc.terminate()
            assert proc.wait() == 0
        finally:
            watchdog.cancel()
        assert "STORAGE_LOST" in seen and "deleted" in seen and "history intact" in seen, seen[-3000:]
        sim.freeze()
        asyncio.run(age_pending_rows(db_path))  # the last run comes after the window of the stop's unsent creates
        assert run_desk(desk_env(sim.url, db_path, bots), tmp_path, 4, log) == 0, log.read_text()[-3000:]
        asyncio.run(consistency_report(sim.url, db_path))
        assert "Traceback" not in log.read_text(errors="replace")
    finally:
        sim.stop()


def _read_until(proc: subprocess.Popen[str], log: Any, text: str) -> str:
    """The desk's output up to the first line containing ``text`` (also appended to ``log``)."""
    assert proc.stdout is not None
    seen = []
    with open(log, "a") as out:
        for line in proc.stdout:
            out.write(line)
            seen.append(line)
            if text in line:
                return "".join(seen)
    raise AssertionError(f"the desk ended before printing {text!r}: {''.join(seen)[-3000:]}")
