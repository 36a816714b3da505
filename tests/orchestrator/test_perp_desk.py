"""Perpetual-futures risk through the desk, against the in-process simulator: leverage and position mode at
start, funding booked once into every PnL, the liquidation-distance alert, ByBit's view in the results."""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal as D

from tests.sim.helpers import SignedClient
from traderagent.api.bybit_direct_client import ByBitDirectClient
from traderagent.database.manager import DatabaseManager
from traderagent.orchestrator.events import EventType
from traderagent.orchestrator.perp import FundingWatch, share_funding
from traderagent.orchestrator.state import BotState
from traderagent.sim.perp import FUNDING_INTERVAL_MS

from .helpers import SIM_KEY, SIM_SECRET, TREND, Clock, build_desk

LOG = "/v5/account/transaction-log"


async def _manual(sim_url: str, path: str, body: dict) -> None:
    """What the operator does by hand on ByBit (the desk never sends these)."""
    async with SignedClient(sim_url) as raw:
        await raw.ok("POST", path, body)


async def _open_by_hand(sim_url: str, side: str = "Buy", qty: str = "0.1") -> None:
    await _manual(sim_url, "/v5/order/create", {"category": "linear", "symbol": "BTCUSDT", "side": side,
                                                "orderType": "Market", "qty": qty})


def _settle(sim, symbol: str = "BTCUSDT") -> None:
    """A scheduled settlement: charged, and the ticker announces the next one (sim.charge_funding alone is a
    charge off ByBit's schedule, which a desk only reads at its first check)."""
    sim.charge_funding(symbol)
    sim.next_funding[symbol] += FUNDING_INTERVAL_MS


async def test_leverage_from_the_bots_file_is_set_at_start(sim, tmp_path):
    h = await build_desk(sim.base_url, tmp_path / "lev.db", [replace(TREND, leverage=D("3"))])
    try:
        assert sim.engine.leverage(sim.engine.accounts[SIM_KEY], "BTCUSDT") == D("3")
        assert h.desk.bots["btc-trend"].bot.state is BotState.RUNNING
        assert (await h.db.get_bot("btc-trend")).config["leverage"] == "3"
    finally:
        await h.close()
    h = await build_desk(sim.base_url, tmp_path / "lev.db", [replace(TREND, leverage=D("3"))])  # 110043: fine
    try:
        assert h.desk.bots["btc-trend"].bot.state is BotState.RUNNING
    finally:
        await h.close()


async def test_one_check_per_symbol_and_bots_sharing_a_position_need_one_leverage(sim, tmp_path):
    twin = replace(TREND, name="btc-trend-2", share=D("0.1"))
    h = await build_desk(sim.base_url, tmp_path / "twins.db", [TREND, twin])
    try:
        # one mode check for the two bots of BTCUSDT, and the start-up's one listing per account (what the
        # database does not account for: control.py _refuse_unknown)
        assert sim.request_counts["/v5/position/list"] == 2
        assert all(x.bot.state is BotState.RUNNING for x in h.desk.bots.values())
    finally:
        await h.close()
    h = await build_desk(sim.base_url, tmp_path / "clash.db", [replace(TREND, leverage=D("3")),
                                                                 replace(twin, leverage=D("5"))])
    try:
        for name in ("btc-trend", "btc-trend-2"):
            bot = h.desk.bots[name].bot
            assert bot.state is BotState.ERROR
            assert "btc-trend 3x, btc-trend-2 5x" in bot.last_error and "same leverage" in bot.last_error
        assert sim.engine.leverage(sim.engine.accounts[SIM_KEY], "BTCUSDT") == D("10")  # left as it was
    finally:
        await h.close()


async def test_hedge_mode_is_refused_naming_the_bybit_setting(sim, tmp_path):
    await _manual(sim.base_url, "/v5/position/switch-mode", {"category": "linear", "symbol": "BTCUSDT", "mode": 3})
    h = await build_desk(sim.base_url, tmp_path / "hedge.db", [replace(TREND, leverage=D("3"))])
    try:
        bot = h.desk.bots["btc-trend"].bot
        assert bot.state is BotState.ERROR
        assert "Position Mode" in bot.last_error and "One-Way" in bot.last_error and "BTCUSDT" in bot.last_error
        assert "\n" not in bot.last_error
        await h.desk.tick_all()
        assert sim.orders(SIM_KEY, open_only=False) == []  # nothing was sent
        assert sim.engine.leverage(sim.engine.accounts[SIM_KEY], "BTCUSDT") == D("10")  # nor the leverage
    finally:
        await h.close()


async def test_funding_is_booked_once_into_every_pnl(sim, tmp_path):
    sim.set_price("BTCUSDT", D("50000"))
    h = await build_desk(sim.base_url, tmp_path / "fund.db", [TREND])
    try:
        await _open_by_hand(sim.base_url)  # the account's BTCUSDT position pays funding (rate 0.0001)
        sim.charge_funding("BTCUSDT")
        await h.desk.check_perp()
        await h.desk.check_perp()  # seen: not booked twice
        await h.desk.event_bus.drain(5)
        paid = D("-0.5")  # 0.1 x 50000 x 0.0001, paid by a long
        bot = h.desk.bots["btc-trend"].bot
        assert bot._realized == paid
        (row,) = [t for t in await h.db.list_trades("btc-trend", limit=50) if (t.tag or "").startswith("funding:")]
        assert row.pnl == paid and row.closed_at is not None
        assert (await h.desk.daily_pnl(1))[-1].pnl == paid
        assert (await h.desk.equity_curve("btc-trend"))[-1].pnl == paid
        assert (await h.desk.bot_status("btc-trend")).realized_pnl == paid
        assert h.desk.risk.bot_day_pnl("btc-trend") == paid
        assert h.desk.capital.metrics.realized_pnl == paid and h.desk.capital.metrics.total_trades == 0
        (event,) = h.of(EventType.FUNDING, "btc-trend")
        assert event.data.pnl == paid and "funding BTCUSDT" in event.data.summary()
    finally:
        await h.close()
    h = await build_desk(sim.base_url, tmp_path / "fund.db", [TREND])  # a restart remembers what it booked
    try:
        await h.desk.check_perp()
        trades = await h.db.list_trades("btc-trend", limit=50)
        assert len([t for t in trades if (t.tag or "").startswith("funding:")]) == 1
        assert h.desk.bots["btc-trend"].bot._realized == D("-0.5")
    finally:
        await h.close()


async def test_funding_charged_while_the_desk_was_down_is_booked_after_restart(sim, tmp_path):
    sim.set_price("BTCUSDT", D("50000"))
    h = await build_desk(sim.base_url, tmp_path / "down.db", [TREND])
    await h.close()  # the desk is down from here
    await _open_by_hand(sim.base_url)
    sim.charge_funding("BTCUSDT")
    sim.charge_funding("BTCUSDT")
    h = await build_desk(sim.base_url, tmp_path / "down.db", [TREND])
    try:
        await h.desk.check_perp()
        await h.desk.check_perp()
        bot = h.desk.bots["btc-trend"].bot
        rows = [t for t in await h.db.list_trades("btc-trend", limit=50) if (t.tag or "").startswith("funding:")]
        assert len(rows) == 2 and bot._realized == D("-1.0")
        log = {x["execTime"] for x in sim.executions(SIM_KEY) if x["execType"] == "Funding"}
        assert bot.funding_since == max(int(t) for t in log)  # the next look starts at the last one booked
    finally:
        await h.close()


async def test_the_funding_lookup_moves_on_to_the_last_hour_once_nothing_older_is_due(sim, tmp_path):
    months_ago = Clock(datetime.now(UTC) - timedelta(days=90))  # a bot that first ran 90 days ago
    h = await build_desk(sim.base_url, tmp_path / "since.db", [TREND], clock=months_ago)
    try:
        bot = h.desk.bots["btc-trend"].bot
        asked = sim.request_counts["/v5/account/transaction-log"]
        await h.desk.check_perp()  # the 90 days, window by window (ByBit answers at most 7 days a request)
        assert sim.request_counts["/v5/account/transaction-log"] - asked == 13
        hour_ago = time.time() * 1000 - 3_600_000
        assert hour_ago - 60_000 < bot.funding_since <= hour_ago
        asked = sim.request_counts["/v5/account/transaction-log"]
        await _open_by_hand(sim.base_url)
        _settle(sim)
        await h.desk.check_perp()  # from an hour ago: one request, and the new settlement is booked
        assert sim.request_counts["/v5/account/transaction-log"] - asked == 1
        assert bot._realized < 0
    finally:
        await h.close()


async def test_funding_before_the_bot_first_ran_is_not_its_own(sim, tmp_path):
    await _open_by_hand(sim.base_url)
    sim.charge_funding("BTCUSDT")
    h = await build_desk(sim.base_url, tmp_path / "old.db", [TREND])
    try:
        await h.desk.check_perp()
        assert h.desk.bots["btc-trend"].bot._realized == 0
    finally:
        await h.close()


async def test_liquidation_alert_once_per_approach_and_bybit_view_in_results(sim, tmp_path):
    sim.set_price("BTCUSDT", D("50000"))
    h = await build_desk(sim.base_url, tmp_path / "liq.db", [replace(TREND, leverage=D("5"))])
    try:
        await _open_by_hand(sim.base_url)  # liq at 50000 x (1 - 1/5 + 0.005) ~ 40260: 19.5% away
        await h.desk.check_perp()
        status = await h.desk.desk_status()
        (risk,) = status.exchange_positions
        assert (risk.symbol, risk.side, risk.size, risk.leverage) == ("BTCUSDT", "long", D("0.1"), D("5"))
        assert risk.mark_price == D("50000") and D("40000") < risk.liq_price < D("40500")
        assert risk.margin == risk.entry_price * D("0.1") / 5
        assert not h.of(EventType.LIQUIDATION_RISK)
        sim.set_price("BTCUSDT", D("44000"))  # within 10% of liquidation
        await h.desk.check_perp()
        await h.desk.check_perp()
        await h.desk.event_bus.drain(5)
        (alert,) = h.of(EventType.LIQUIDATION_RISK)
        assert alert.data.mark_price == D("44000") and alert.data.distance < D("0.1")
        assert "from liquidation" in alert.data.summary()
        sim.set_price("BTCUSDT", D("50000"))  # away again: re-armed
        await h.desk.check_perp()
        sim.set_price("BTCUSDT", D("44500"))
        await h.desk.check_perp()
        await h.desk.event_bus.drain(5)
        assert len(h.of(EventType.LIQUIDATION_RISK)) == 2
    finally:
        await h.close()


async def test_funding_booked_by_execution_id_before_an_upgrade_is_not_booked_again(sim, tmp_path):
    """A desk before the transaction log booked each settlement under its execution id and kept its lookup
    start at the bot's first run; upgraded, its next look finds the same settlements under log row ids."""
    sim.set_price("BTCUSDT", D("50000"))
    db_path = tmp_path / "upgrade.db"
    h = await build_desk(sim.base_url, db_path, [TREND])
    try:
        bot = h.desk.bots["btc-trend"].bot
        first_run = bot.funding_since
        await _open_by_hand(sim.base_url)
        sim.charge_funding("BTCUSDT")
        sim.charge_funding("BTCUSDT")
        # the old desk: funding from /v5/execution/list, keyed by execId
        old = [x for x in sim.executions(SIM_KEY) if x["execType"] == "Funding"]
        rows = [{"id": x["execId"], "symbol": x["symbol"], "side": x["side"], "size": D(x["execQty"]),
                 "mark": D(x["execPrice"]), "fee": D(x["execFee"]), "rate": D(x["feeRate"]),
                 "timestamp": int(x["execTime"])} for x in old]
        (charges,) = share_funding(rows, [D(0)])
        assert await bot.book_funding(charges) == 2
        booked = bot._realized
    finally:
        await h.close()
    snap = await _saved_runtime(db_path)
    snap.pop("funding_keys")  # what the old desk saved: no such key, the lookup start at the first run
    snap["funding_since"] = first_run
    await _save_runtime(db_path, snap)
    async with ByBitDirectClient(SIM_KEY, SIM_SECRET, base_url=sim.base_url) as client:
        again = await client.fetch_funding("BTCUSDT", first_run)
    assert len(again) == 2 and not {r["id"] for r in again} & {c.exec_id for c in charges}  # the hazard

    h = await build_desk(sim.base_url, db_path, [TREND])  # upgraded
    try:
        bot = h.desk.bots["btc-trend"].bot
        await h.desk.check_perp()
        assert bot._realized == booked and bot.funding_since > max(int(x["execTime"]) for x in old)
        _settle(sim)  # a settlement after the upgrade is booked, once
        await h.desk.check_perp()
        await h.desk.check_perp()
        funding = [t for t in await h.db.list_trades("btc-trend", limit=50) if (t.tag or "").startswith("funding:")]
        assert len(funding) == 3 and bot._realized == booked + D("-0.5")
    finally:
        await h.close()


async def _saved_runtime(db_path) -> dict:
    db = DatabaseManager(f"sqlite+aiosqlite:///{db_path}")
    await db.initialize()
    try:
        snap = await db.load_bot_runtime("btc-trend")
        assert snap is not None
        return snap
    finally:
        await db.close()


async def _save_runtime(db_path, snap: dict) -> None:
    db = DatabaseManager(f"sqlite+aiosqlite:///{db_path}")
    await db.initialize()
    try:
        await db.save_bot_progress("btc-trend", runtime=snap)
    finally:
        await db.close()


async def test_funding_is_read_once_per_account_and_only_when_a_settlement_passed(sim, tmp_path):
    sim.set_price("BTCUSDT", D("50000"))
    eth = replace(TREND, name="eth-trend", symbol="ETHUSDT", share=D("0.1"))
    h = await build_desk(sim.base_url, tmp_path / "once.db", [TREND, eth])
    try:
        await _open_by_hand(sim.base_url)
        await _manual(sim.base_url, "/v5/order/create", {"category": "linear", "symbol": "ETHUSDT", "side": "Sell",
                                                         "orderType": "Market", "qty": "1"})
        asked = sim.request_counts[LOG]
        await h.desk.check_perp()  # the first check: both symbols in one request
        assert sim.request_counts[LOG] - asked == 1
        await h.desk.check_perp()  # no settlement since: nothing asked
        assert sim.request_counts[LOG] - asked == 1
        _settle(sim, "BTCUSDT")
        _settle(sim, "ETHUSDT")
        await h.desk.check_perp()  # both settlements, one request, each booked to its symbol's bot
        await h.desk.check_perp()
        assert sim.request_counts[LOG] - asked == 2
        bots = {name: h.desk.bots[name].bot for name in ("btc-trend", "eth-trend")}
        assert bots["btc-trend"]._realized == D("-0.5")  # 0.1 x 50000 x 0.0001, a long pays
        assert bots["eth-trend"]._realized > 0  # the short receives
        for name in bots:
            funding = [t for t in await h.db.list_trades(name, limit=50) if (t.tag or "").startswith("funding:")]
            assert len(funding) == 1
    finally:
        await h.close()


def test_funding_watch_reads_again_once_the_log_certainly_holds_a_settlement():
    watch = FundingWatch(lag_ms=3_600_000)
    now, at = 1_000_000_000, {"BTCUSDT": 2_000_000_000}
    assert watch.due(1, at, now)  # never read
    watch.read(1, at, now)  # a first read is looked at again after the lag too
    assert not watch.due(1, at, now + 30_000) and not watch.due(1, at, now + 3_599_999)
    assert watch.due(1, at, now + 3_600_000)
    watch.read(1, at, now + 3_600_000)
    assert not watch.due(1, at, now + 100 * 3_600_000)  # nothing settled: never again
    settled = {"BTCUSDT": 2_000_000_000 + 28_800_000}
    assert watch.due(1, settled, now + 100 * 3_600_000)  # the ticker announces the next one: it passed
    watch.read(1, settled, now + 100 * 3_600_000)
    assert not watch.due(1, settled, now + 100 * 3_600_000 + 30_000)
    assert watch.due(1, settled, now + 101 * 3_600_000)  # the follow-up
    assert watch.due(1, {"BTCUSDT": None}, now)  # no announcement (not in the ticker): every check
