"""The fleet's desk-wide risk in the database (revision 0011_fleet), on SQLite and PostgreSQL: the bots'
figures the workers write, and the desk rail the leader trips once."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from traderagent.database.manager import DatabaseManager


async def test_figures_add_up_and_the_last_write_of_a_bot_counts(db: DatabaseManager) -> None:
    assert await db.fleet_unrealized() == Decimal("0")
    await db.save_bot_risk({"a": (Decimal("-12.5"), Decimal("300")), "b": (Decimal("2.25"), Decimal("0"))})
    await db.save_bot_risk({"a": (Decimal("-10.1"), Decimal("250"))})
    assert await db.fleet_unrealized() == Decimal("-7.85")


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
