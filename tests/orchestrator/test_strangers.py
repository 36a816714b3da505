"""Orders under our id prefix that the database does not know (an empty or foreign database): the
bot refuses to trade their symbol and says what it found; an operator's start takes them over,
cancelling the resting ones and recording every one, including one that fills during its cancel."""

from __future__ import annotations

from typing import Any

from traderagent.orchestrator.events import EventType
from traderagent.orchestrator.state import BotState

from .helpers import GRID, SIM_KEY, build_desk, run_ticks


def _resting(sim: Any, prefix: str) -> set[str]:
    return {o["orderLinkId"] for o in sim.orders(SIM_KEY, symbol="XRPUSDT") if o["orderLinkId"].startswith(prefix)}


async def test_unknown_orders_refuse_the_symbol_until_the_operator_takes_them_over(sim, tmp_path):
    h = await build_desk(sim.base_url, tmp_path / "first.db", [GRID])
    await run_ticks(h, sim, 2)
    bot = h.desk.bots["xrp-grid"].bot
    prefix = bot.prefix
    buys = sorted((o for o in bot.open_orders if o.side == "buy"), key=lambda o: o.price)
    racer = buys[-1]  # the buy nearest the price: it will fill while we cancel it
    await h.close()
    resting = _resting(sim, prefix)
    assert racer.client_order_id in resting and len(resting) > 3

    h2 = await build_desk(sim.base_url, tmp_path / "empty.db", [GRID], start=False)
    try:
        report = await h2.desk.start(schedule=False)
        bot2 = h2.desk.bots["xrp-grid"].bot
        assert report["xrp-grid"]["strangers"] >= len(resting)
        assert bot2.state is BotState.ERROR
        await h2.desk.event_bus.drain(5)
        [refusal] = [e for e in h2.of(EventType.ERROR, "desk") if "refusing to trade XRPUSDT" in e.data.error]
        assert racer.client_order_id in refusal.data.error or "..." in refusal.data.error
        creates = sim.request_counts["/v5/order/create"]
        await h2.desk.tick_all()
        assert _resting(sim, prefix) == resting  # nothing cancelled behind the operator's back
        assert sim.request_counts["/v5/order/create"] == creates  # and nothing traded over them

        real_cancel = h2.client.cancel_order

        async def cancel_after_fill(order_id: Any, symbol: str, **kw: Any) -> Any:
            if kw.get("client_order_id") == racer.client_order_id:
                sim.set_price("XRPUSDT", racer.price)  # the race: it fills between the look and the cancel
            return await real_cancel(order_id, symbol, **kw)

        h2.client.cancel_order = cancel_after_fill  # type: ignore[method-assign]
        await h2.desk.start_bot("xrp-grid")
        assert bot2.state is BotState.RUNNING
        adopted = await h2.db.get_order(racer.client_order_id)
        assert adopted.status == "FILLED" and adopted.filled_qty == racer.qty and adopted.tag == "adopted"
        for cid in resting - {racer.client_order_id}:
            assert (await h2.db.get_order(cid)).status == "CANCELLED"
        assert not _resting(sim, prefix) & resting
        await h2.desk.event_bus.drain(5)
        assert any("adopted 1 filled order(s)" in e.data.error for e in h2.of(EventType.ERROR, "xrp-grid"))
    finally:
        await h2.close()

    h3 = await build_desk(sim.base_url, tmp_path / "empty.db", [GRID], start=False)
    try:
        report = await h3.desk.start(schedule=False)
        assert "strangers" not in report["xrp-grid"]  # everything under our prefix is known now
        assert h3.desk.bots["xrp-grid"].bot.state is BotState.RUNNING
    finally:
        await h3.close()
