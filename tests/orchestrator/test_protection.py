"""Exchange-held protection: a trend bot's stop and target live on the simulator, follow the trailing
stop, are restored when missing, and a stop the exchange executed is booked once."""

from __future__ import annotations

from decimal import Decimal

import pytest

from tests.handlers.harness import until
from tests.sim.helpers import SignedClient
from traderagent.orchestrator import protection
from traderagent.orchestrator.events import EventType, ProtectionRestored
from traderagent.orchestrator.state import BotState

from .helpers import SIM_KEY, TREND, build_desk

TICK = Decimal("0.10")  # BTCUSDT's tickSize on the simulator


def held(sim) -> tuple[Decimal | None, Decimal | None]:
    (pos,) = sim.positions(SIM_KEY)
    return tuple(Decimal(pos[k]) or None for k in ("stopLoss", "takeProfit"))  # type: ignore[return-value]


async def open_trend(h, sim, limit: int = 80):
    bot = h.desk.bots["btc-trend"].bot
    for _ in range(limit):
        await h.desk.tick_all()
        if bot.strategy.get_active_positions():
            return bot
        sim.step_all(1)
    raise AssertionError("the trend bot opened nothing")


def untriggered(sim) -> list[dict]:
    return [o for o in sim.orders(SIM_KEY, open_only=False) if o["orderStatus"] == "Untriggered"]


def through_stop(pos) -> Decimal:
    return pos.stop_loss - 50 if pos.is_long else pos.stop_loss + 50


def stop_after_the_look(bot, sim, pos, monkeypatch) -> tuple[list[int], dict]:
    """The desk's first look at the exchange finds ``pos`` open; right after it, the exchange's stop closes it.
    Returns the looks made (the later ones see the exchange as it is) and the stop's order."""
    looks: list[int] = []
    really_open = bot._exchange_position_open

    async def looked_just_before_the_stop() -> bool:
        looks.append(1)
        return True if len(looks) == 1 else await really_open()

    monkeypatch.setattr(bot, "_exchange_position_open", looked_just_before_the_stop)
    assert sim.set_price("BTCUSDT", through_stop(pos)) == 1  # the exchange closes the position
    (fill,) = [o for o in sim.orders(SIM_KEY, open_only=False) if o["orderStatus"] == "Filled"][:1]
    return looks, fill


async def test_the_stop_and_target_are_held_by_the_exchange_and_follow_the_trailing_stop(sim, tmp_path):
    h = await build_desk(sim.base_url, tmp_path / "p.db", [TREND])
    try:
        bot = await open_trend(h, sim)
        (pos,) = bot.strategy.get_active_positions()
        stop, target = held(sim)
        assert abs(stop - pos.stop_loss) < TICK and abs(target - pos.take_profit) < TICK
        moved = 0
        for _ in range(60):
            sim.step_all(1)
            await h.desk.tick_all()
            positions = bot.strategy.get_active_positions()
            if not positions:
                assert sim.positions(SIM_KEY) == []
                continue
            now = held(sim)
            assert now == bot._wanted()  # whatever the strategy wants, the exchange holds
            moved += now[0] != stop
            stop = now[0]
        assert moved  # the trailing stop moved on the exchange
        await h.desk.event_bus.drain(5)
        assert not h.of(EventType.ORDER_FAILED) and not h.of(EventType.ERROR)
    finally:
        await h.close()


async def test_a_missing_stop_is_restored_with_an_alert(sim, tmp_path, monkeypatch):
    h = await build_desk(sim.base_url, tmp_path / "r.db", [TREND])
    try:
        bot = await open_trend(h, sim)
        wanted = held(sim)
        async with SignedClient(sim.base_url) as c:  # someone removes them on the exchange
            await c.ok("POST", "/v5/position/trading-stop", {"category": "linear", "symbol": "BTCUSDT",
                                                             "tpslMode": "Full", "positionIdx": 0,
                                                             "stopLoss": "0", "takeProfit": "0"})
        assert held(sim) == (None, None)
        await h.desk.tick_all()  # before the reconcile is due: the desk trusts what it set
        assert held(sim) == (None, None)
        monkeypatch.setattr(protection, "RECONCILE_S", 0.0)
        await h.desk.tick_all()
        assert held(sim) == wanted == bot._wanted()
        await h.desk.event_bus.drain(5)
        (alert,) = h.of(EventType.PROTECTION_RESTORED, "btc-trend")
        assert alert.data == ProtectionRestored("BTCUSDT", wanted[0], wanted[1], None, None)
        await h.desk.tick_all()  # in place now: nothing more to say
        await h.desk.event_bus.drain(5)
        assert len(h.of(EventType.PROTECTION_RESTORED)) == 1
    finally:
        await h.close()


@pytest.mark.parametrize("restart", [False, True], ids=["running", "restarted"])
async def test_a_stop_the_exchange_executed_is_booked_once(sim, tmp_path, monkeypatch, restart):
    monkeypatch.setattr(protection, "RECONCILE_S", 0.0)  # every tick compares with the exchange
    db_path = tmp_path / "x.db"
    h = await build_desk(sim.base_url, db_path, [TREND])
    try:
        bot = await open_trend(h, sim)
        (pos,) = bot.strategy.get_active_positions()
        reason = pos.metadata.get("stop_reason", "stop_loss")
        if restart:
            await h.close()
        assert sim.set_price("BTCUSDT", through_stop(pos)) == 1  # the exchange closes the position
        assert sim.positions(SIM_KEY) == []
        (fill,) = [o for o in sim.orders(SIM_KEY, open_only=False) if o["orderStatus"] == "Filled"][:1]
        assert fill["stopOrderType"] == "StopLoss"
        if restart:
            h = await build_desk(sim.base_url, db_path, [TREND])
            bot = h.desk.bots["btc-trend"].bot
        for _ in range(3):
            await h.desk.tick_all()
        await h.desk.event_bus.drain(5)
        closes = [e for e in h.of(EventType.TRADE_CLOSED, "btc-trend") if e.data.position_id == pos.position_id]
        assert len(closes) == 1
        close = closes[0].data
        assert (close.exit_price, close.reason) == (Decimal(fill["avgPrice"]), reason)
        assert pos.position_id not in {p.position_id for p in bot.strategy.get_active_positions()}
        assert not h.of(EventType.ORDER_FAILED) and not h.of(EventType.ERROR)
        trades = [t for t in await h.db.list_trades("btc-trend", limit=100) if t.tag == pos.position_id]
        assert len(trades) == 1 and trades[0].exit_price == Decimal(fill["avgPrice"])
    finally:
        await h.close()


async def test_spot_stops_are_conditional_sells_the_exchange_executes_and_the_desk_books_once(sim, tmp_path):
    import dataclasses

    from .helpers import build_spot_desk

    h = await build_spot_desk(sim.base_url, tmp_path / "spot.db")
    desk = h.desk
    await desk.add_bot(dataclasses.replace(TREND, market_type="spot", share=None, capital=Decimal("2000")))
    try:
        await desk.start(schedule=False)
        bot = desk.bots["btc-trend"].bot
        for _ in range(150):
            await desk.tick_all()
            if bot.strategy.get_active_positions():
                break
            sim.step_all(1)
        (pos,) = bot.strategy.get_active_positions()
        held = {o["orderLinkId"][-9]: o for o in untriggered(sim)}
        assert set(held) == {"s", "t"} and all(o["orderLinkId"].startswith("p" + bot.prefix) for o in held.values())
        assert abs(Decimal(held["s"]["triggerPrice"]) - pos.stop_loss) < Decimal("0.01")
        assert held["s"]["stopOrderType"] == "Stop" and held["s"]["side"] == "Sell"
        bot._spot_held.clear()  # as after a restart: the desk finds its conditionals again, not replaces them
        await bot._reconcile_protection()
        assert {o["orderLinkId"] for o in untriggered(sim)} == {o["orderLinkId"] for o in held.values()}

        assert sim.set_price("BTCUSDT", pos.stop_loss - 50) == 1  # the exchange sells
        (fill,) = [o for o in sim.orders(SIM_KEY, open_only=False) if o["orderStatus"] == "Filled"
                   and o["orderLinkId"].startswith("p")]
        for _ in range(3):
            await desk.tick_all()
        await desk.event_bus.drain(5)
        (close,) = [e.data for e in h.of(EventType.TRADE_CLOSED) if e.data.position_id == pos.position_id]
        assert close.exit_price == Decimal(fill["avgPrice"])
        assert untriggered(sim) == []  # the target went too
    finally:
        await h.close()


async def test_a_position_closed_by_hand_on_the_exchange_is_told_once_not_booked_as_a_stop(sim, tmp_path,
                                                                                           monkeypatch):
    monkeypatch.setattr(protection, "RECONCILE_S", 0.0)
    h = await build_desk(sim.base_url, tmp_path / "m.db", [TREND])
    try:
        bot = await open_trend(h, sim)
        (pos,) = bot.strategy.get_active_positions()
        async with SignedClient(sim.base_url) as c:  # the operator closes it on ByBit's site
            await c.ok("POST", "/v5/order/create", {"category": "linear", "symbol": "BTCUSDT", "orderType": "Market",
                                                    "side": "Sell" if pos.is_long else "Buy", "qty": "0",
                                                    "reduceOnly": True, "closeOnTrigger": True, "positionIdx": 0})
        for _ in range(3):
            await h.desk.tick_all()
        await h.desk.event_bus.drain(5)
        told = [e for e in h.of(EventType.ERROR, "btc-trend") if "holds no BTCUSDT position" in e.data.error]
        assert len(told) == 1
        assert [p.position_id for p in bot.strategy.get_active_positions()] == [pos.position_id]
        assert not h.of(EventType.TRADE_CLOSED)
    finally:
        await h.close()


async def test_an_exit_the_exchange_stop_beat_to_the_position_is_booked_not_an_error(sim, tmp_path, monkeypatch):
    """The desk looked and saw the position open, then the exchange's stop closed it before the desk's
    market exit arrived (the account's queue may hold a send for seconds): the refusal (110017, nothing
    to reduce) is the stop's execution, booked once; the bot trades on."""
    h = await build_desk(sim.base_url, tmp_path / "beat.db", [TREND])
    try:
        bot = await open_trend(h, sim)
        (pos,) = bot.strategy.get_active_positions()
        _, fill = stop_after_the_look(bot, sim, pos, monkeypatch)
        await h.desk.tick_all()
        await h.desk.event_bus.drain(5)
        assert bot.state is BotState.RUNNING and not h.of(EventType.ERROR)
        rejected = [r for r in await h.db.list_orders(limit=100) if r.status == "REJECTED"]
        assert [r.tag for r in rejected] == [f"exit-{pos.position_id}"]  # the exit went out, and was refused
        closes = [e for e in h.of(EventType.TRADE_CLOSED, "btc-trend") if e.data.position_id == pos.position_id]
        assert [c.data.exit_price for c in closes] == [Decimal(fill["avgPrice"])]
        assert not bot.strategy.get_active_positions()
    finally:
        await h.close()


async def test_the_desks_own_exit_filled_but_not_booked_yet_is_not_taken_for_a_close_by_hand(sim, tmp_path,
                                                                                             monkeypatch):
    """The desk's market exit filled on the exchange; before its fill is booked (the stream or the next sync
    brings it) the reconcile finds the exchange flat: that is the desk's own exit, not a close by hand, so
    no alert; the exit's fill then closes the trade, and no second exit goes out."""
    monkeypatch.setattr(protection, "RECONCILE_S", 0.0)  # every look compares with the exchange
    h = await build_desk(sim.base_url, tmp_path / "own.db", [TREND])
    try:
        bot = await open_trend(h, sim)
        (pos,) = bot.strategy.get_active_positions()
        pos.exit_reason = None
        async with bot._lock:
            await bot._exit_position(pos)  # the strategy decided to exit: a reduce-only market order
            await until(lambda: not sim.positions(SIM_KEY))  # the queue sends it; its answer waits for the lock
            await bot._reconcile_protection()  # the look comes before the fill is booked
        for _ in range(3):
            await h.desk.tick_all()
        await h.desk.event_bus.drain(5)
        assert not h.of(EventType.ERROR), [e.data for e in h.of(EventType.ERROR)]
        closes = [e for e in h.of(EventType.TRADE_CLOSED, "btc-trend") if e.data.position_id == pos.position_id]
        assert len(closes) == 1
        assert not bot.strategy.get_active_positions() or pos.position_id not in {
            p.position_id for p in bot.strategy.get_active_positions()}
        exits = [r for r in await h.db.list_orders(limit=100) if r.tag == f"exit-{pos.position_id}"]
        assert [r.status for r in exits] == ["FILLED"]
    finally:
        await h.close()


async def test_an_exit_the_stop_beat_is_booked_though_the_exchange_holds_an_opposite_position_by_then(
        sim, tmp_path, monkeypatch):
    """A reversal: the desk looked and saw its position open, then sent its exit and its opposite entry; the
    exchange's stop closed the position before the exit arrived (110017) and the entry filled before the
    refusal was booked. The exchange holds a position again, on the other side: not the bot's, so the refusal
    is still the stop's execution, booked once, and the bot trades on (it went to ERROR)."""
    h = await build_desk(sim.base_url, tmp_path / "flip.db", [TREND])
    try:
        bot = await open_trend(h, sim)
        (pos,) = bot.strategy.get_active_positions()
        looks, fill = stop_after_the_look(bot, sim, pos, monkeypatch)
        async with SignedClient(sim.base_url) as c:  # the reversal's entry: filled, its answer not booked yet
            await c.ok("POST", "/v5/order/create", {"category": "linear", "symbol": "BTCUSDT", "orderType": "Market",
                                                    "side": "Sell" if pos.is_long else "Buy", "qty": str(pos.size),
                                                    "positionIdx": 0})
        await h.desk.tick_all()
        await h.desk.event_bus.drain(5)
        assert len(looks) == 2  # the exit went out after the first look; the refusal looked again
        assert bot.state is BotState.RUNNING and not h.of(EventType.ERROR), [e.data for e in h.of(EventType.ERROR)]
        closes = [e for e in h.of(EventType.TRADE_CLOSED, "btc-trend") if e.data.position_id == pos.position_id]
        assert [c.data.exit_price for c in closes] == [Decimal(fill["avgPrice"])]
    finally:
        await h.close()


async def test_a_stop_executed_before_the_exchange_holds_an_opposite_position_is_booked_at_the_reconcile(
        sim, tmp_path, monkeypatch):
    """The exchange's stop closed the bot's position, then a position on the other side opened on the account
    (a reversal's entry, or the operator's) before the desk looked: the reconcile books the stop's execution
    once as the close, instead of putting the closed position's stop and target on the other side's position."""
    monkeypatch.setattr(protection, "RECONCILE_S", 0.0)
    h = await build_desk(sim.base_url, tmp_path / "opp.db", [TREND])
    try:
        bot = await open_trend(h, sim)
        (pos,) = bot.strategy.get_active_positions()
        assert sim.set_price("BTCUSDT", through_stop(pos)) == 1  # the exchange's stop closes the position
        (fill,) = [o for o in sim.orders(SIM_KEY, open_only=False) if o["stopOrderType"] == "StopLoss"
                   and o["orderStatus"] == "Filled"]
        async with SignedClient(sim.base_url) as c:  # a position on the other side opens on the account
            await c.ok("POST", "/v5/order/create", {"category": "linear", "symbol": "BTCUSDT", "orderType": "Market",
                                                    "side": "Sell" if pos.is_long else "Buy", "qty": str(pos.size),
                                                    "positionIdx": 0})
        async with bot._lock:
            await bot._reconcile_protection()
        await h.desk.event_bus.drain(5)
        closes = [e for e in h.of(EventType.TRADE_CLOSED, "btc-trend") if e.data.position_id == pos.position_id]
        assert [c.data.exit_price for c in closes] == [Decimal(fill["avgPrice"])]
        assert not bot.strategy.get_active_positions()
        assert not h.of(EventType.ERROR), [e.data for e in h.of(EventType.ERROR)]
        (other,) = sim.positions(SIM_KEY)  # the other side's position keeps no stop of the closed one
        assert (Decimal(other["stopLoss"] or 0), Decimal(other["takeProfit"] or 0)) == (0, 0)
    finally:
        await h.close()
