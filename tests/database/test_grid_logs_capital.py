"""Grid levels, logs with retention, capital-manager state and approvals."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

import pytest

from traderagent.database.manager import DatabaseManager


async def test_grid_levels_replace(db: DatabaseManager, bot: str) -> None:
    levels = [{"index": i, "price": Decimal("49000") + 500 * i, "side": "buy" if i < 2 else "sell",
               "qty": Decimal("0.001")} for i in range(4)]
    levels[1] |= {"status": "OPEN", "client_order_id": "ta-g1"}
    await db.save_bot_progress(bot, grid=levels)
    saved = await db.get_grid_levels(bot)
    assert [(g.index, g.price, g.side, g.status) for g in saved] == [
        (0, Decimal("49000"), "buy", "EMPTY"), (1, Decimal("49500"), "buy", "OPEN"),
        (2, Decimal("50000"), "sell", "EMPTY"), (3, Decimal("50500"), "sell", "EMPTY")]
    assert saved[1].bot_name == bot
    assert [(g.index, g.client_order_id) for g in saved] == [(0, None), (1, "ta-g1"), (2, None), (3, None)]
    # re-centering the grid replaces every level
    await db.save_bot_progress(bot, grid=[{"index": 0, "price": "60000", "side": "sell", "status": "OPEN"}])
    assert [(g.index, g.price, g.status) for g in await db.get_grid_levels(bot)] == [(0, Decimal("60000"), "OPEN")]
    with pytest.raises(TypeError, match="colour"):
        await db.save_bot_progress(bot, grid=[{"index": 0, "price": "1", "side": "buy", "colour": "red"}])
    assert await db.get_grid_levels("nobody") == []


async def test_logs_and_retention(make_db: Callable[..., DatabaseManager], bot: str) -> None:
    db = make_db(log_retention=5)
    for i in range(8):
        await db.add_log(bot, "info", f"tick {i}", {"i": i, "px": Decimal("1.5")})
    for i in range(3):
        await db.add_log(None, "WARNING", f"system {i}")
    await db.add_log("other", "error", "boom")
    mine = await db.get_logs(bot, limit=50)
    assert [line.message for line in mine] == [f"tick {i}" for i in range(7, 2, -1)]  # newest 5 kept
    assert mine[0].context == {"i": 7, "px": "1.5"} and mine[0].level == "INFO"
    assert mine[0].created_at.tzinfo is not None
    every = await db.get_logs(limit=3)
    assert [line.message for line in every] == ["boom", "system 2", "system 1"]
    assert (await db.counts())["bot_logs"] == 5 + 3 + 1
    with pytest.raises(ValueError, match="level"):
        await db.add_log(bot, "LOUD", "x")


async def test_capital_state_and_approvals(db: DatabaseManager) -> None:
    assert await db.load_capital_state() is None
    state = {"phase": "phase_1_5pct", "total_capital": Decimal("10000"), "halted": False, "trades": [1, 2]}
    await db.save_capital_state(state)
    state["phase"] = "phase_2_25pct"
    await db.save_capital_state(state)
    assert await db.load_capital_state() == {"phase": "phase_2_25pct", "total_capital": "10000", "halted": False,
                                             "trades": [1, 2]}
    assert (await db.counts())["capital_state"] == 1

    first = await db.record_approval("approve", "phase_1_5pct", "phase_2_25pct", 123456789,
                                     {"can_scale": True, "reasons": ["win rate 61%"]})
    await db.record_approval("reject", "phase_2_25pct", "phase_3_100pct", "alice", {"can_scale": True})
    approvals = await db.list_approvals()
    assert [(a.action, a.approved_by, a.phase_to) for a in approvals] == [
        ("reject", "alice", "phase_3_100pct"), ("approve", "123456789", "phase_2_25pct")]
    assert approvals[1].decision == {"can_scale": True, "reasons": ["win rate 61%"]}
    assert approvals[1].created_at == first.created_at and first.created_at.tzinfo is not None


async def test_workers_saving_the_first_capital_state_together_both_succeed(
        make_db: Callable[..., DatabaseManager]) -> None:
    """Several workers start on one database and each saves the capital state: the first row is upserted."""
    import asyncio

    desks = [make_db() for _ in range(3)]
    for desk in desks:
        await desk.initialize()
    await asyncio.gather(*(desk.save_capital_state({"phase": f"p{i}"}) for i, desk in enumerate(desks)))
    assert (await desks[0].load_capital_state())["phase"] in {"p0", "p1", "p2"}
    await desks[1].save_capital_state({"phase": "later"})
    assert await desks[0].load_capital_state() == {"phase": "later"}
