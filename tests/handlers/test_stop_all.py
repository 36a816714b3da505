"""/stop without a bot, confirmed: every bot stops through the desk's bounded stop-all."""

from __future__ import annotations

from tests.handlers.harness import Operator, button
from traderagent.orchestrator.state import BotState


async def test_stop_all_from_chat_stops_every_bot_and_leaves_the_desk_able_to_start(op: Operator, desk_h) -> None:
    call = await op.command("/stop", match="Stop all 3 bots")
    assert all(h.bot.state is BotState.RUNNING for h in desk_h.desk.bots.values())  # nothing yet
    _, edit = await op.press(call, button(call, "⏹ Stop all"))
    assert "Stopped" in edit.params["text"]
    assert all(name in edit.params["text"] for name in ("grid-xrp", "grid-eth", "trend-btc"))
    assert all(h.bot.state is BotState.STOPPED for h in desk_h.desk.bots.values())
    assert not desk_h.desk.gate.closed  # closed while stopping, open again for an operator's start
    await op.command("/stop", match="already stopped")
