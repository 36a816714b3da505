"""A permanent exchange refusal stops that intent, told once; only transient errors are retried."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

from traderagent.orchestrator.events import EventType
from traderagent.orchestrator.state import BotState

from .helpers import DCA, GRID, build_desk, creates, run_ticks

CREATE = "/v5/order/create"


async def test_a_refused_exit_moves_the_bot_to_error_once(sim, tmp_path):
    """The exchange has no position for the take-profit to reduce (110017): the bot says so once and
    stops, instead of sending the same reduce-only order every tick."""
    h = await build_desk(sim.base_url, tmp_path / "desk.db", [DCA])
    bot = h.desk.bots["sol-dca"].bot
    try:
        await run_ticks(h, sim, 2, step=0)
        tp = next(o for o in bot.open_orders if o.tag == "dca:tp")
        # behind the bot's back: the position is closed and the take-profit cancelled on the exchange
        await h.client.cancel_order(None, "SOLUSDT", client_order_id=tp.client_order_id)
        await h.client.create_market_order("SOLUSDT", "sell", tp.qty, reduce_only=True)
        await run_ticks(h, sim, 3, step=0)
        sent = sim.request_counts[CREATE]
        await run_ticks(h, sim, 5, step=0)

        assert bot.state is BotState.ERROR
        assert sim.request_counts[CREATE] == sent  # not retried
        (alert,) = h.of(EventType.ERROR, "sol-dca")
        text = alert.data.error
        assert "110017" in text and "dca:tp" in text and "/start sol-dca" in text
        assert f"its book holds {tp.qty} SOLUSDT" in text
        refused = [r for r in await h.db.list_orders(limit=100) if r.status == "REJECTED"]
        assert [r.tag for r in refused] == ["dca:tp"]
    finally:
        await h.close()


async def test_refused_entries_are_paused_until_the_operator_starts_the_bot(sim, tmp_path):
    """The exchange raised XRPUSDT's minimum order value (110094): one alert, the same orders are not sent
    again, the bot keeps running; the operator's start lets them be tried again."""
    h = await build_desk(sim.base_url, tmp_path / "desk.db", [GRID])
    sim.specs["XRPUSDT"] = replace(sim.specs["XRPUSDT"], min_notional=Decimal("1000"))
    bot = h.desk.bots["xrp-grid"].bot
    try:
        await run_ticks(h, sim, 1, step=0)
        sent = creates(sim)
        assert sent > 0
        await run_ticks(h, sim, 4, step=0)
        assert creates(sim) == sent
        assert bot.state is BotState.RUNNING
        (alert,) = h.of(EventType.ERROR, "xrp-grid")
        assert "110094" in alert.data.error and "grid:0:buy" in alert.data.error

        await bot.start("operator")
        await run_ticks(h, sim, 1, step=0)
        assert creates(sim) == 2 * sent
        assert len(h.of(EventType.ERROR, "xrp-grid")) == 2
    finally:
        await h.close()
