"""A fleet's reports reach the chat once, from its console: the daily digest of every worker's bots, the
scaling offer judged on the whole fleet's record (its Approve executed by the leader, which judges the
gates again on the same record), each neither repeated nor lost by a console that restarts; a stalled
worker names itself; /status shows each bot's price and uPnL as its worker saved them.

Two desks run in this process as two workers (tests/fleet/conftest.py), the console is the real Telegram
frontend on the fake Bot API. The console's clock is the test's: a report is due when the test says.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from tests.handlers.harness import CHAT, Operator, button
from tests.orchestrator.helpers import Clock
from traderagent.fleet.console import Console
from traderagent.orchestrator.capital_wiring import ScalingOffers
from traderagent.reports import DIGEST, DigestTime, FleetWatch
from traderagent.results import BotMark
from traderagent.utils.capital_manager import DeploymentPhase

from .conftest import FleetWorker, MakeDb, running_fleet

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(300)]
WAIT = 30.0
DIGEST_AT = dt.time(9, 0)
TODAY_NOON = datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0)  # past the digest time


@pytest.fixture
async def fleet(sim, fake, make_db: MakeDb, tmp_path) -> AsyncIterator[tuple[Console, dict[str, FleetWorker]]]:
    async with running_fleet(sim, fake, make_db, tmp_path, settings={"digest_time": DIGEST_AT},
                             clock=Clock(TODAY_NOON)) as started:
        yield started


def _sent(fake, since: int, match: str) -> list:
    return [c for c in fake.calls[since:] if c.method == "sendMessage" and c.status == 200
            and c.params.get("chat_id") == CHAT and match in str(c.params.get("text", ""))]


async def _delivered(console: Console) -> None:
    await console.events.drain(WAIT)
    await asyncio.wait_for(console.frontend.outbox.flush(), WAIT)


def _restarted(console: Console) -> FleetWatch:
    """The watch of a console started again now (nothing of the first one's memory)."""
    return FleetWatch(console.desk, console.events, ScalingOffers(console.db),
                      DigestTime(DIGEST_AT, "UTC", console.desk.clock()))


async def _trade(console: Console, bot: str, pnl: str, closed_at: datetime) -> None:
    await console.db.record_trade(bot, "XRPUSDT", "buy", "10", "1", "1.1", pnl, opened_at=closed_at - timedelta(hours=1),
                                  closed_at=closed_at)


async def test_the_digest_covers_every_workers_bots_once_and_a_console_down_at_its_time_sends_it_after(fleet, fake):
    console, _ = fleet
    yesterday = (TODAY_NOON - timedelta(days=1)).date()
    await console.db.claim_report(DIGEST, yesterday.isoformat())  # yesterday's went out; today's 09:00 passed
    await _trade(console, "grid-xrp", "2", TODAY_NOON.replace(hour=8))  # worker-1's bot
    await _trade(console, "trend-btc", "3", TODAY_NOON.replace(hour=7))  # worker-2's bot
    since = len(fake.calls)
    watch = _restarted(console)  # started at noon: alone it would wait for tomorrow's
    await watch.load()
    assert await watch.send_digest()
    await _delivered(console)
    [digest] = _sent(fake, since, "Daily digest")
    text = digest.params["text"]
    assert f"{TODAY_NOON:%Y-%m-%d}" in text and "2 trades" in text
    assert "grid-xrp" in text and "trend-btc" in text and "1 bot closed no trade" in text  # grid-eth: worker-2's
    assert not await watch.send_digest()
    again = _restarted(console)  # restarted once more the same day: it went out already
    await again.load()
    assert not await again.send_digest() and not await console.watch.send_digest()
    assert await console.db.last_report(DIGEST) == TODAY_NOON.date().isoformat()


async def _phase_ready(workers: dict[str, FleetWorker]) -> None:
    """Phase 1 began four days ago on every worker (the saved state too): only the trades gate is left."""
    for worker in workers.values():
        metrics = worker.desk.capital.metrics
        metrics.started_at = datetime.now(UTC) - timedelta(days=4)
    await workers["worker-1"].harness.db.save_capital_state(workers["worker-1"].desk.capital.to_state())


async def test_the_offer_counts_every_workers_trades_goes_out_once_and_approve_runs_on_the_leader(fleet, fake):
    console, workers = fleet
    await _phase_ready(workers)
    now = datetime.now(UTC)
    for i in range(3):  # 3 + 3 trades: each worker alone is short of phase 1's 5
        await _trade(console, "grid-xrp", "1", now - timedelta(minutes=10 + i))
        await _trade(console, "trend-btc", "1", now - timedelta(minutes=20 + i))
    leader = workers["worker-1"].desk
    assert leader.capital.metrics.total_trades == 0  # its own record knows none of them
    since = len(fake.calls)
    assert await console.watch.offer_scaling()
    await _delivered(console)
    [offer] = _sent(fake, since, "Ready to scale")
    assert "6 trades" in offer.params["text"]
    assert not await console.watch.offer_scaling()  # once per phase (again daily until answered)
    assert not await _restarted(console).offer_scaling()  # a restarted console remembers it

    _, edit = await Operator(fake).press(offer, button(offer, "Approve"), match="Scaling")
    assert "Scaling approved" in edit.params["text"]
    assert leader.capital.phase is DeploymentPhase.PHASE_2  # the leader judged the fleet's record and stepped
    assert workers["worker-2"].desk.capital.phase is DeploymentPhase.PHASE_1  # (fleetrisk makes the others follow)


async def test_an_answered_offer_is_not_repeated_by_a_restarted_console(fleet, fake):
    console, workers = fleet
    await _phase_ready(workers)
    now = datetime.now(UTC)
    for i in range(6):
        await _trade(console, "grid-eth", "1", now - timedelta(minutes=i + 1))
    assert await console.watch.offer_scaling()
    await _delivered(console)
    await console.desk.reject_scaling("admin")  # as the offer's Reject button does: recorded by the leader
    console.desk.clock.advance(days=2)  # a reminder would be due by now, were it not answered
    assert not await _restarted(console).offer_scaling()
    assert not await console.watch.offer_scaling()


async def test_a_stalled_worker_names_itself_in_the_chat(fleet, fake):
    console, workers = fleet
    desk = workers["worker-2"].desk
    desk.leases.fleet = True
    desk.started_at = desk.clock() - timedelta(hours=1)  # no tick since: every limit passed
    since = len(fake.calls)
    assert desk.check_stall()
    await desk.event_bus.drain(WAIT)
    await console.frontend.outbox.pick_up()
    await asyncio.wait_for(console.frontend.outbox.flush(), WAIT)
    [alert] = _sent(fake, since, "no tick completed")
    assert "on worker worker-2" in alert.params["text"]


async def test_status_shows_every_bots_saved_price_and_upnl_with_its_age_once_stale(fleet, fake):
    console, workers = fleet
    bot = workers["worker-2"].desk.bots["trend-btc"].bot
    await bot.tick()
    await workers["worker-2"].desk.check_desk_risk()  # the worker's risk check writes its bots' marks
    mark = (await console.db.bot_marks())["trend-btc"]
    assert mark.last_price == bot.last_price and mark.priced_at == bot.priced_at
    stale = BotMark(Decimal("100"), Decimal("0.5"), Decimal("90"), Decimal("5.25"), Decimal("50"),
                    datetime.now(UTC) - timedelta(minutes=7))
    await _save_mark(console, "grid-xrp", stale)
    status = await Operator(fake).command("/status", match="📋 <b>Desk</b>")
    text = status.params["text"]
    xrp = text[text.index("grid-xrp"):]
    assert "uPnL +5.25" in xrp.split("\n", 2)[1] and "priced 7 min" in xrp.split("\n", 2)[1]
    btc = text[text.index("trend-btc"):]
    assert "priced" not in btc.split("\n", 2)[1]  # fresh: no age
    assert "Exposure 50" in text  # the fleet's, from the saved marks


async def _save_mark(console: Console, bot: str, mark: BotMark) -> None:
    """What the bot's worker writes at its risk check (here written as that worker would have)."""
    await console.db.save_marks({bot: mark})


async def test_positions_of_a_worker_that_does_not_answer_come_from_what_it_saved(fleet, fake):
    console, workers = fleet
    worker = workers["worker-2"]
    worker.beat.cancel()
    await worker.link.stop()
    await worker.harness.desk.stop()  # gone: nobody answers for grid-eth and trend-btc now
    await _save_mark(console, "grid-eth", BotMark(Decimal("2100"), Decimal("-0.2"), Decimal("2000"), Decimal("-20"),
                                                  Decimal("420"), datetime.now(UTC) - timedelta(minutes=5)))
    reply = await Operator(fake).command("/positions", match="Open positions")
    text = reply.params["text"]
    assert "(1)" in text  # worker-1's grid-xrp holds none (it answered), trend-btc saved none
    line = text[text.index("grid-eth"):]
    assert "short 0.2 @ 2000 → 2100" in line and "uPnL -20" in line and "priced 5 min" in line
