"""Each command through the real Application and fake Bot API, with a real desk on the simulator behind."""

from __future__ import annotations

from decimal import Decimal

import pytest

from handlers.commands import COMMANDS
from handlers.notifier import Notifier
from tests.handlers.harness import CHAT, Operator, button, buttons
from tests.orchestrator.helpers import run_ticks
from traderagent.orchestrator.events import ErrorRaised, EventType, OrderFilled, OrderRef, TradingEvent
from traderagent.orchestrator.state import BotState

ORDER = OrderRef("x-1", "grid:5:buy", "XRPUSDT", "buy", "limit", Decimal("1"), Decimal("1"), "USDT")


async def test_commands_registered_with_telegram(fake, op) -> None:
    """No roles configured: the user of the allowed private chat is admin and sees every command; anyone
    else (the default scope) the viewer's read-only ones."""
    names = fake.menu(CHAT)
    assert names == [name for name, _, _ in COMMANDS]
    assert {"status", "start", "pause", "stop", "halt", "resume_trading", "scale", "chart", "alerts"} <= set(names)
    default = [c["command"] for c in fake.commands]
    assert "status" in default and not {"start", "pause", "halt", "scale", "audit"} & set(default)


async def test_status_summary_lists_every_bot_with_buttons(op: Operator) -> None:
    call = await op.command("/status", match="Desk")
    text = call.params["text"]
    assert call.params["chat_id"] == CHAT and call.params["parse_mode"] == "HTML"
    for name, symbol in (("grid-xrp", "XRPUSDT"), ("grid-eth", "ETHUSDT"), ("trend-btc", "BTCUSDT")):
        assert name in text and symbol in text
    assert "Phase 1 ·" in text and "phase_1" not in text and "cap 300.00" in text and "cap 400.00" in text
    labels = list(buttons(call))
    assert "🔄 Refresh" in labels
    assert {"⏸ Pause grid-xrp", "⏸ Pause grid-eth", "⏸ Pause trend-btc"} <= set(labels)
    assert all(len(d.encode()) <= 64 for d in buttons(call).values())


async def test_status_detail_for_a_prefix(op: Operator) -> None:
    call = await op.command("/status trend", match="trend-btc")
    text = call.params["text"]
    assert "BTCUSDT (linear)" in text and "Capital 400.00" in text and "No open position." in text
    assert "Desk" not in text
    assert set(buttons(call)) == {"🔄 Refresh", "⏸ Pause"}


async def test_ambiguous_and_unknown_bot_list_the_bots(op: Operator) -> None:
    call = await op.command("/status grid", match="⚠️")
    assert "matches several bots" in call.params["text"] and "grid-eth, grid-xrp" in call.params["text"]
    call = await op.command("/pause nosuch", match="⚠️")
    assert "No bot named" in call.params["text"] and "trend-btc" in call.params["text"]
    call = await op.command("/status a b", match="usage")
    assert call.params["text"].startswith("usage: /status [bot]")


async def test_refresh_edits_in_place_and_pause_button_pauses(op: Operator, desk_h) -> None:
    call = await op.command("/status", match="Desk")
    answer, edit = await op.press(call, button(call, "Refresh"))
    assert edit.params["message_id"] == call.result["message_id"]
    assert "grid-xrp" in edit.params["text"]
    answer2, edit2 = await op.press(edit, button(edit, "Pause grid-xrp"))
    assert desk_h.desk.bots["grid-xrp"].bot.state is BotState.PAUSED
    assert "▶️ Resume grid-xrp" in buttons(edit2)
    assert op.fake.callback_answers[answer2.params["callback_query_id"]]["text"] == "grid-xrp paused"
    _, edit3 = await op.press(edit2, button(edit2, "Resume grid-xrp"))
    assert desk_h.desk.bots["grid-xrp"].bot.state is BotState.RUNNING
    assert "⏸ Pause grid-xrp" in buttons(edit3)


async def test_refresh_not_modified_is_tolerated(op: Operator, fake) -> None:
    call = await op.command("/status trend", match="trend-btc")
    fake.faults["editMessageText"] = [(400, "Bad Request: message is not modified: specified new message "
                                            "content and reply markup are exactly the same", None)]
    answer, _ = await op.press(call, button(call, "Refresh"), method=None)
    assert fake.callback_answers[answer.params["callback_query_id"]]["text"] == "Updated"
    assert "Internal error" not in " ".join(fake.sent_texts())


async def test_pause_all_acts_and_start_all_asks_first(op: Operator, desk_h) -> None:
    call = await op.command("/pause", match="Paused")
    assert all(name in call.params["text"] for name in ("grid-xrp", "grid-eth", "trend-btc"))
    assert all(h.bot.state is BotState.PAUSED for h in desk_h.desk.bots.values())
    call = await op.command("/pause", match="No running bot")
    call = await op.command("/start grid-x", match="grid-xrp")
    assert desk_h.desk.bots["grid-xrp"].bot.state is BotState.RUNNING
    # a bare /start (what Telegram sends when a chat is opened) only asks
    call = await op.command("/start", match="Start all 2 bots")
    assert desk_h.desk.bots["grid-eth"].bot.state is BotState.PAUSED
    _, edit = await op.press(call, button(call, "▶️ Start all"))
    assert "Started" in edit.params["text"] and "grid-eth" in edit.params["text"]
    assert "grid-xrp" not in edit.params["text"]
    assert all(h.bot.state is BotState.RUNNING for h in desk_h.desk.bots.values())
    await op.command("/start", match="already running")


async def test_stop_needs_confirmation(op: Operator, desk_h) -> None:
    call = await op.command("/stop grid-e", match="Stop")
    assert desk_h.desk.bots["grid-eth"].bot.state is BotState.RUNNING  # nothing yet
    _, edit = await op.press(call, button(call, "Cancel"))
    assert "cancelled" in edit.params["text"] and desk_h.desk.bots["grid-eth"].bot.state is BotState.RUNNING
    call = await op.command("/stop grid-e", match="Stop")
    _, edit = await op.press(call, button(call, "Stop grid-eth"))
    assert "Stopped" in edit.params["text"] and "grid-eth" in edit.params["text"]
    assert desk_h.desk.bots["grid-eth"].bot.state is BotState.STOPPED
    assert desk_h.desk.bots["grid-xrp"].bot.state is BotState.RUNNING


async def test_balance_positions_orders(op: Operator, desk_h, sim) -> None:
    call = await op.command("/balance", match="Balance")
    assert "USDT" in call.params["text"] and "100000" in call.params["text"]
    await run_ticks(desk_h, sim, 1)
    call = await op.command("/orders grid-x", match="Open orders")
    text = call.params["text"]
    assert "grid-xrp" in text and "XRPUSDT" in text and "grid:" in text and "grid-eth" not in text
    call = await op.command("/orders", match="Open orders")
    assert "grid-eth" in call.params["text"]
    call = await op.command("/positions", match="Open positions")
    assert "(0)" in call.params["text"] or "•" in call.params["text"]
    call = await op.command("/balance now", match="usage")
    assert call.params["text"] == "usage: /balance"


@pytest.mark.parametrize("text,usage", [
    ("/trades abc", "usage: /trades [n], n between 1 and 50"),
    ("/trades 0", "usage: /trades [n], n between 1 and 50"),
    ("/trades 51", "usage: /trades [n], n between 1 and 50"),
    ("/pnl -3", "usage: /pnl [days], days between 1 and 90"),
    ("/logs 1.5", "usage: /logs [n], n between 1 and 50"),
    ("/alerts shout ERROR", "usage: /alerts [mute|unmute TYPE]"),
])
async def test_numeric_and_bad_args_get_usage(op: Operator, text: str, usage: str) -> None:
    call = await op.command(text, match="usage")
    assert call.params["text"].startswith(usage)


async def test_trades_pnl_logs_from_the_database(op: Operator, desk_h) -> None:
    db = desk_h.db
    await db.record_trade("grid-xrp", "XRPUSDT", "long", Decimal("10"), Decimal("0.5"), Decimal("0.52"),
                          Decimal("0.2"))
    await db.add_log("grid-xrp", "ERROR", "boom <tag> & co", {"x": 1})
    call = await op.command("/trades 5", match="Last 5 trades")
    assert "grid-xrp" in call.params["text"] and "+0.20" in call.params["text"]
    call = await op.command("/pnl 3", match="Daily PnL")
    assert "(3 days)" in call.params["text"] and "+0.20" in call.params["text"]
    call = await op.command("/logs 5", match="log lines")
    assert "boom &lt;tag&gt; &amp; co" in call.params["text"]


async def test_phase_and_scale_blocked_without_buttons(op: Operator) -> None:
    call = await op.command("/phase", match="Capital deployment")
    assert "· Phase 1\n" in call.params["text"] and "deployed <b>1000.00</b>" in call.params["text"]
    call = await op.command("/scale", match="Scaling")
    assert "Cannot scale yet" in call.params["text"] and "❌" in call.params["text"]
    assert not buttons(call)


async def test_halt_and_resume_are_confirmed(op: Operator, desk_h) -> None:
    call = await op.command("/halt flash crash", match="Halt all trading")
    assert not desk_h.desk.capital.halted
    _, edit = await op.press(call, button(call, "Halt trading"))
    assert desk_h.desk.capital.halted and "flash crash" in desk_h.desk.capital.halt_reason
    assert all(h.bot.state is BotState.PAUSED for h in desk_h.desk.bots.values())
    assert "Trading halted" in edit.params["text"] and "grid-xrp" in edit.params["text"]
    call = await op.command("/start grid-x", match="⚠️")
    assert "halted" in call.params["text"]
    await op.command("/halt again", match="already halted")
    call = await op.command("/resume_trading", match="Lift the halt")
    _, edit = await op.press(call, button(call, "Resume trading"))
    assert not desk_h.desk.capital.halted
    assert all(h.bot.state is BotState.RUNNING for h in desk_h.desk.bots.values())
    await op.command("/resume_trading", match="not halted")


async def test_alerts_mute_toggle_and_unmutable(op: Operator, frontend) -> None:
    call = await op.command("/alerts mute order_placed", match="Alerts")
    assert EventType.ORDER_PLACED in frontend.notifier.muted
    assert "ORDER_PLACED" in call.params["text"]
    call = await op.command("/alerts mute ERROR", match="never be muted")
    assert EventType.ERROR not in frontend.notifier.muted
    assert not any("error" in label.lower() for label in buttons(call))
    call = await op.command("/alerts", match="Alerts")
    _, edit = await op.press(call, button(call, "order_placed"))
    assert EventType.ORDER_PLACED not in frontend.notifier.muted
    assert "🔔 order_placed" in buttons(edit)
    call = await op.command("/alerts mute NOPE", match="usage")
    assert "TRADE_OPENED" in call.params["text"]


async def test_help_lists_every_command(op: Operator) -> None:
    call = await op.command("/help", match="TraderAgent")
    for name, _, _ in COMMANDS:
        assert f"/{name}" in call.params["text"]


async def test_unexpected_exception_is_a_generic_reply(op: Operator, desk_h, monkeypatch) -> None:
    async def broken() -> dict:
        raise RuntimeError("db password hunter2 leaked?")

    monkeypatch.setattr(desk_h.desk, "balances", broken)
    call = await op.command("/balance", match="Internal error")
    assert call.params["text"] == "⚠️ Internal error, see logs."
    assert "hunter2" not in " ".join(op.fake.sent_texts())


async def test_desk_messages_are_masked_and_escaped(op: Operator, desk_h, monkeypatch) -> None:
    from traderagent.control import ControlError
    from traderagent.utils import secrets_filter

    secrets_filter.register_secret("Sup3rSecretValue")

    async def refuse(name: str, by: str) -> dict:
        raise ControlError(f"exchange said <no> for key Sup3rSecretValue ({name})")

    monkeypatch.setattr(desk_h.desk, "start_bot", refuse)
    try:
        call = await op.command("/start trend", match="⚠️")
    finally:
        secrets_filter.clear_secrets()
    assert call.params["text"] == "⚠️ exchange said &lt;no&gt; for key *** (trend-btc)"


async def test_command_addressed_to_the_bot_by_username(op: Operator) -> None:
    call = await op.command("/status@test_bot trend", match="trend-btc")
    assert "BTCUSDT" in call.params["text"]


async def test_verbosity_is_set_from_the_chat_and_kept(op: Operator, frontend, desk_h) -> None:
    text = (await op.command("/verbosity", match="Verbosity")).params["text"]
    assert "grid-xrp</b>: trades" in text and "trend-btc</b>: all" in text  # grids: no order chatter
    text = (await op.command("/verbosity grid errors", match="Verbosity")).params["text"]  # a strategy
    assert "grid-xrp</b>: errors" in text and "grid-eth</b>: errors" in text
    text = (await op.command("/verbosity grid-e all", match="Verbosity")).params["text"]  # a bot wins
    assert "grid-eth</b>: all" in text and "grid-xrp</b>: errors" in text
    assert "usage" in (await op.command("/verbosity trend loud")).params["text"]
    assert await desk_h.db.load_verbosity() == {"strategy:grid": "errors", "bot:grid-eth": "all"}
    restarted = Notifier(frontend.outbox, store=desk_h.db)
    await restarted.load()
    assert restarted.levels == frontend.notifier.levels
    filled = TradingEvent.of("grid-xrp", OrderFilled(ORDER, Decimal(1), Decimal(1), Decimal(0), "USDT"))
    frontend.notifier.strategy_of = {"grid-xrp": "grid"}.get
    assert not frontend.notifier.wants(filled)
    assert frontend.notifier.wants(TradingEvent.of("grid-xrp", ErrorRaised("boom")))
