"""The desk reporting in by itself, on a real desk (simulator, SQLite, capital manager) with a settable
clock: scaling offers (once per phase, daily until answered, remembered across a restart), the
digest's content at a local time, the stall alert."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from traderagent.config import Settings, SettingsError
from traderagent.orchestrator.events import DailyDigest, EventType
from traderagent.reports import DeskWatch, DigestTime

from .helpers import GRID, TREND, Clock, Harness, build_desk


def pass_the_gates(h: Harness, clock: Clock) -> None:
    """Phase 1's gates: 3 days, 5 trades, win rate 40 %, drawdown, PnL >= 0, errors."""
    for _ in range(5):
        h.desk.capital.record_trade(True, Decimal("2"))
    clock.advance(days=3, hours=1)


async def offers(h: Harness) -> list:
    await h.desk.event_bus.drain(5)
    return [e.data for e in h.of(EventType.SCALING_OFFERED)]


async def test_no_offer_while_a_gate_blocks(sim, tmp_path) -> None:
    clock = Clock()
    h = await build_desk(sim.base_url, tmp_path / "d.db", [GRID], clock=clock)
    try:
        clock.advance(days=10)
        await DeskWatch(h.desk, None).check()
        assert await offers(h) == []  # no trade yet
    finally:
        await h.close()


async def test_offer_once_per_phase_then_daily_until_answered(sim, tmp_path) -> None:
    clock = Clock()
    h = await build_desk(sim.base_url, tmp_path / "d.db", [GRID], clock=clock)
    watch = DeskWatch(h.desk, None)
    try:
        pass_the_gates(h, clock)
        await watch.check()
        await watch.check()
        clock.advance(hours=23)
        await watch.check()
        [first] = await offers(h)
        assert (first.current_phase.value, first.next_phase.value, first.times) == ("phase_1_5pct", "phase_2_25pct", 1)
        assert first.expires_at == clock.now - dt.timedelta(hours=23) + dt.timedelta(hours=24)
        assert "5 trades (minimum 5)" in first.passed
        clock.advance(hours=1)
        await watch.check()
        assert [o.times for o in await offers(h)] == [1, 2]  # a day later, unanswered: again
        await h.desk.reject_scaling("@op (1)")
        clock.advance(days=3)
        await watch.check()
        assert len(await offers(h)) == 2  # answered: not again in this phase
    finally:
        await h.close()


async def test_a_restart_neither_re_offers_at_once_nor_forgets(sim, tmp_path) -> None:
    clock = Clock()
    db = tmp_path / "d.db"
    h = await build_desk(sim.base_url, db, [GRID], clock=clock)
    pass_the_gates(h, clock)
    assert await h.desk.offer_scaling()
    await h.close()

    clock.advance(hours=2)
    h = await build_desk(sim.base_url, db, [GRID], clock=clock)
    try:
        assert not await h.desk.offer_scaling()  # offered two hours ago, before the restart
        clock.advance(hours=22)
        assert await h.desk.offer_scaling()  # still unanswered a day after the offer
        assert [o.times for o in await offers(h)] == [2]
        await h.desk.approve_scaling("@op (1)")  # the gates are checked again, and pass
        assert h.desk.capital.phase.value == "phase_2_25pct"
    finally:
        await h.close()

    h = await build_desk(sim.base_url, db, [GRID], clock=clock)
    try:
        clock.advance(days=30)
        assert not await h.desk.offer_scaling()  # phase 2 has its own gates, far from met
    finally:
        await h.close()


async def test_a_partial_approval_keeps_the_offer_open_across_a_restart(sim, tmp_path) -> None:
    clock = Clock()
    db = tmp_path / "d.db"
    h = await build_desk(sim.base_url, db, [GRID], clock=clock)
    h.desk.scaling_approvals_required = 2
    pass_the_gates(h, clock)
    assert await h.desk.offer_scaling()
    await h.desk.approve_scaling("@a (1)")  # "approve 1/2": its count lives in memory
    await h.close()

    h = await build_desk(sim.base_url, db, [GRID], clock=clock)
    try:
        assert not await h.desk.offer_scaling()  # the offer is not a day old
        clock.advance(days=1)
        assert await h.desk.offer_scaling()  # the step was never taken: asked again
    finally:
        await h.close()


def test_digest_time_is_due_once_a_local_day_when_crossed() -> None:
    berlin = "Europe/Berlin"  # UTC+1 in March
    at = dt.time(8, 0)
    clock = Clock(dt.datetime(2026, 3, 2, 12, 0, tzinfo=dt.UTC))  # 13:00 in Berlin: today's is past
    digest = DigestTime(at, berlin, clock())
    assert digest.due(clock()) is None
    clock.now = dt.datetime(2026, 3, 3, 6, 59, tzinfo=dt.UTC)  # 07:59 in Berlin
    assert digest.due(clock()) is None
    clock.advance(minutes=1)
    end = digest.due(clock())
    assert end is not None and end.isoformat() == "2026-03-03T08:00:00+01:00"
    assert digest.due(clock()) is None
    clock.advance(hours=12)
    assert digest.due(clock()) is None
    clock.advance(hours=12)
    assert digest.due(clock()).date() == dt.date(2026, 3, 4)


async def test_digest_of_the_day_at_a_local_time(sim, tmp_path) -> None:
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)  # the log lines' times are the database's
    h = await build_desk(sim.base_url, tmp_path / "d.db", [GRID, TREND], clock=Clock(now))
    try:
        hour_ago, days_ago = now - dt.timedelta(hours=1), now - dt.timedelta(days=2)
        for closed, bot, pnl, fees in ((hour_ago, "xrp-grid", "3.5", "0.1"), (hour_ago, "xrp-grid", "-1.25", "0.05"),
                                       (hour_ago, "btc-trend", "10", "0.4"),
                                       (days_ago, "btc-trend", "99", "1")):  # before the window
            await h.db.record_trade(bot, "XRPUSDT", "long", "1", "1", "1", pnl, fees=fees, opened_at=closed,
                                    closed_at=closed)
        await h.db.record_trade("btc-trend", "BTCUSDT", "long", "1", "1", "1", "-0.5", opened_at=hour_ago,
                                closed_at=hour_ago, tag="funding:exec-1")  # a funding settlement: PnL, not a trade
        await h.db.add_log("xrp-grid", "ERROR", "boom", None)
        end = (now + dt.timedelta(minutes=1)).astimezone(ZoneInfo("America/New_York"))
        d = await h.desk.digest(end)
        assert (d.day, d.timezone, d.until, d.since) == (end.date(), "America/New_York", end, end - dt.timedelta(days=1))
        assert (d.pnl, d.trades, d.fees, d.funding) == (Decimal("11.75"), 3, Decimal("0.55"), Decimal("-0.5"))
        bots = {b.name: (b.pnl, b.trades, b.fees) for b in d.bots}
        assert bots == {"xrp-grid": (Decimal("2.25"), 2, Decimal("0.15")), "btc-trend": (Decimal("9.5"), 1, Decimal("0.4"))}
        assert d.errors == 1
        assert d.scaling is not None and not d.scaling.can_scale and "0 days in phase (minimum 3)" in d.scaling.blockers
        assert (d.exposure, d.exposure_limit) == (0, Decimal("5000.00"))
        assert "PnL +11.75 USDT · 3 trade(s) · fees 0.55 USDT" in DailyDigest(d).summary()
    finally:
        await h.close()


async def test_stalled_ticks_alert_once_per_stall(sim, tmp_path) -> None:
    clock = Clock()
    h = await build_desk(sim.base_url, tmp_path / "d.db", [GRID], clock=clock)
    desk = h.desk
    try:
        assert not desk.check_stall()  # nothing scheduled: nothing to stall
        desk.started_at = clock()  # as start(schedule=True) does; the grid ticks every second
        clock.advance(seconds=3)
        assert not desk.check_stall()  # 3 s = 3 intervals: the limit itself
        clock.advance(seconds=1)
        assert desk.check_stall()
        assert not desk.check_stall()
        desk.last_tick_at = clock()  # a tick completed
        assert not desk.check_stall()
        clock.advance(seconds=10)
        assert desk.check_stall()  # a new stall, a new alert
        await desk.event_bus.drain(5)
        stalls = [e.data for e in h.of(EventType.TICKS_STALLED)]
        assert [(s.silent_seconds, s.limit_seconds) for s in stalls] == [(4.0, 3.0), (10.0, 3.0)]
    finally:
        await h.close()


def test_report_settings_parse_and_name_the_variable_at_fault() -> None:
    default = Settings.load(env={})
    assert (default.digest_time, default.timezone, default.health_port, default.offer_ttl_hours,
            default.stall_ticks) == (dt.time(8, 0), "UTC", 0, 24.0, 3)
    chosen = Settings.load(env={"TRADERAGENT_DIGEST_TIME": "off", "TRADERAGENT_TIMEZONE": "Asia/Tokyo",
                                "TRADERAGENT_HEALTH_PORT": "8080", "TRADERAGENT_STALL_TICKS": "5"})
    assert (chosen.digest_time, chosen.timezone, chosen.health_port, chosen.stall_ticks) == (None, "Asia/Tokyo", 8080, 5)
    for variable, value in (("TRADERAGENT_DIGEST_TIME", "8am"), ("TRADERAGENT_TIMEZONE", "Mars/Olympus"),
                            ("TRADERAGENT_HEALTH_PORT", "70000"), ("TRADERAGENT_STALL_TICKS", "0"),
                            ("TRADERAGENT_OFFER_TTL_HOURS", "0")):
        with pytest.raises(SettingsError, match=variable):
            Settings.load(env={variable: value})
