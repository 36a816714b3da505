"""The fleet's desk-wide risk in the database (revisions 0011_fleet, 0015_tidy), on SQLite and PostgreSQL:
the bots' marks the workers write, and the desk rail the leader trips once."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from traderagent.database.manager import DatabaseManager
from traderagent.results import BotMark

AT = dt.datetime(2026, 3, 2, 12, 0, tzinfo=dt.UTC)


def _mark(unrealized: str, exposure: str, avg: str | None = "100") -> BotMark:
    return BotMark(Decimal("101.5"), Decimal("-0.25"), None if avg is None else Decimal(avg), Decimal(unrealized),
                   Decimal(exposure), AT)


async def test_marks_add_up_the_last_write_of_a_bot_counts_and_they_read_back_exact(db: DatabaseManager) -> None:
    assert await db.fleet_unrealized() == Decimal("0") and await db.bot_marks() == {}
    await db.save_marks({"a": _mark("-12.5", "300"), "b": _mark("2.25", "0", avg=None)})
    await db.save_marks({"a": _mark("-10.1", "250")})
    assert await db.fleet_unrealized() == Decimal("-7.85")
    assert await db.bot_marks() == {"a": _mark("-10.1", "250"), "b": _mark("2.25", "0", avg=None)}


async def test_the_marks_of_bots_no_longer_configured_are_pruned(db: DatabaseManager) -> None:
    await db.save_marks({"a": _mark("-1", "1"), "gone": _mark("-500", "9"), "also-gone": _mark("3", "1")})
    assert await db.prune_marks(["a", "b"]) == 2
    assert await db.prune_marks(["a", "b"]) == 0
    assert list(await db.bot_marks()) == ["a"] and await db.fleet_unrealized() == Decimal("-1")


async def test_a_rail_trips_once_a_day_and_clears(db: DatabaseManager) -> None:
    today = dt.date(2026, 3, 2)
    assert await db.rail_day("max_daily_loss") is None
    assert await db.trip_rail("max_daily_loss", today)
    assert not await db.trip_rail("max_daily_loss", today)  # a second leader's write changes nothing
    assert await db.rail_day("max_daily_loss") == today
    assert await db.trip_rail("max_daily_loss", today + dt.timedelta(days=1))  # another day: a new trip
    await db.clear_rail("max_daily_loss")
    assert await db.rail_day("max_daily_loss") is None
    assert await db.trip_rail("max_daily_loss", today)



async def test_running_bots_are_counted_from_their_stored_states(db: DatabaseManager, bot: str) -> None:
    assert await db.running_bots() == 0
    await db.set_bot_state(bot, "RUNNING")
    assert await db.running_bots() == 1
