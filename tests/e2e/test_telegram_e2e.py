# ruff: noqa: F811  (pytest fixtures imported from tests/handlers/harness.py are parameters here)
"""The operator's Telegram, end to end and offline: fake Bot API server <- real PTB Application
(handlers.app.build_application) -> real Desk with real orchestrators on the exchange simulator,
SQLite database and capital manager."""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from decimal import Decimal

from handlers.callbacks import EXPIRED
from tests.handlers.harness import (  # noqa: F401  (fixtures)
    CHAT,
    STRANGER,
    Operator,
    button,
    buttons,
    clock,
    desk_h,
    frontend,
    op,
)
from traderagent.orchestrator.events import ErrorRaised, OrderPlaced, OrderRef, TradingEvent
from traderagent.orchestrator.state import BotState


async def _until(predicate, timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached"
        await asyncio.sleep(0.02)


def _texts(fake) -> str:
    return "\n".join(fake.sent_texts(CHAT))


async def _fill_top_grid_buy(desk_h, sim) -> None:
    grid = desk_h.desk.bots["grid-xrp"].bot
    top = max((o for o in grid.open_orders if o.side == "buy"), key=lambda o: o.price)
    sim.set_price("XRPUSDT", top.price)
    await desk_h.desk.tick_all()


async def test_unauthorised_chat_gets_nothing_and_changes_nothing(op: Operator, fake, frontend, desk_h) -> None:
    call = await op.command("/scale", match="Scaling")  # a real token, issued to the operator's chat
    fake.push_command(STRANGER, "/pause")
    fake.push_command(STRANGER, "/halt now")
    fake.push_callback(STRANGER, call.result["message_id"], "whatever")
    await _until(lambda: frontend.guard.rejected >= 3)
    await op.command("/help", match="TraderAgent")  # the operator is still served afterwards
    assert not [c for c in fake.calls if c.params.get("chat_id") == STRANGER]
    assert not fake.callback_answers  # the stranger's press was not even answered
    assert all(h.bot.state is BotState.RUNNING for h in desk_h.desk.bots.values())
    assert not desk_h.desk.capital.halted


async def test_pause_then_a_tick_places_no_new_entry(op: Operator, desk_h, sim) -> None:
    await op.command("/pause grid-x", match="no new entries")
    assert desk_h.desk.bots["grid-xrp"].bot.state is BotState.PAUSED
    await desk_h.desk.tick_all()
    assert await desk_h.db.list_orders("grid-xrp", limit=100) == []
    assert await desk_h.db.list_orders("grid-eth", limit=100)  # the running grid did place its ladder
    await op.command("/start grid-x", match="running")
    await desk_h.desk.tick_all()
    assert await desk_h.db.list_orders("grid-xrp", limit=100)


async def test_trade_events_reach_the_chat(op: Operator, fake, desk_h, sim) -> None:
    await desk_h.desk.tick_all()
    await _fill_top_grid_buy(desk_h, sim)
    await desk_h.desk.event_bus.drain(5)
    await _until(lambda: "order filled" in _texts(fake).lower() and "trade opened" in _texts(fake).lower())
    text = _texts(fake)
    assert "grid-xrp" in text and re.search(r"long [\d.]+ XRPUSDT @ [\d.]+ = [\d.]+ USDT", text), text


async def test_flood_of_events_is_merged_and_fully_delivered(fake, desk_h, frontend) -> None:
    n = 300
    for i in range(n):
        order = OrderRef(f"o-{i}", "grid:1:buy", "XRPUSDT", "buy", "limit", Decimal(i + 1), Decimal("0.5"), "USDT")
        desk_h.desk.event_bus.publish(TradingEvent.of(f"bot-{i % 7}", OrderPlaced(order)))
    await desk_h.desk.event_bus.drain(5)
    await asyncio.wait_for(frontend.outbox.flush(), 30)
    texts = fake.sent_texts(CHAT)
    seen = Counter(int(q) for t in texts for q in re.findall(r"buy limit (\d+) XRPUSDT", t))
    assert seen == Counter(range(1, n + 1))  # every event once: nothing lost, nothing twice
    assert len(texts) <= n // 20  # merged
    assert all(len(t) <= 4096 for t in texts)
    assert frontend.outbox.stats.dropped == 0


async def _scalable(desk_h, clock) -> None:
    for _ in range(5):
        desk_h.desk.capital.record_trade(True, Decimal("10"))
    clock.advance(days=4)


async def test_approve_advances_phase_in_database_and_message(op: Operator, desk_h, clock) -> None:
    await _scalable(desk_h, clock)
    call = await op.command("/scale", match="Scaling")
    assert "Can scale" in call.params["text"] and "Phase 1 → Phase 2" in call.params["text"]
    assert set(buttons(call)) == {"✅ Approve", "✖️ Reject"}
    answer, edit = await op.press(call, button(call, "Approve"))
    assert op.fake.callback_answers[answer.params["callback_query_id"]]["text"] == "Approved"
    assert "Scaling approved" in edit.params["text"] and "Phase 1 → <b>Phase 2</b>" in edit.params["text"]
    assert "5000.00" in edit.params["text"] and "by Op\n" in edit.params["text"]  # the user id is the audit's
    assert not edit.params.get("reply_markup")
    db = desk_h.db
    await desk_h.desk.capital_persister.flush()
    assert (await db.load_capital_state())["phase"] == "phase_2_25pct"
    (approval,) = await db.list_approvals()
    assert approval.action == "approve" and approval.phase_to == "phase_2_25pct" and "555" in approval.approved_by
    assert (await db.get_bot("grid-xrp")).allocated_capital == Decimal("1500.00")
    call = await op.command("/phase", match="Capital deployment")
    assert "Capital deployment</b> · Phase 2" in call.params["text"]


async def test_approve_rechecks_the_gates_at_the_press(op: Operator, desk_h, clock) -> None:
    await _scalable(desk_h, clock)
    call = await op.command("/scale", match="Can scale")
    desk_h.desk.capital.record_trade(False, Decimal("-100"))  # the record turns negative meanwhile
    answer, edit = await op.press(call, button(call, "Approve"))
    assert "Scaling not applied" in edit.params["text"] and "net PnL" in edit.params["text"]
    assert desk_h.desk.capital.phase.value == "phase_1_5pct"
    assert await desk_h.db.list_approvals() == []


async def test_reject_is_recorded(op: Operator, desk_h, clock) -> None:
    await _scalable(desk_h, clock)
    call = await op.command("/scale", match="Can scale")
    _, edit = await op.press(call, button(call, "Reject"))
    assert "rejected" in edit.params["text"] and "Phase 1 stays" in edit.params["text"]
    (row,) = await desk_h.db.list_approvals()
    assert row.action == "reject" and desk_h.desk.capital.phase.value == "phase_1_5pct"


async def test_double_tap_approves_once_and_stale_buttons_expire(op: Operator, fake, desk_h, clock,
                                                                 frontend) -> None:
    await _scalable(desk_h, clock)
    call = await op.command("/scale", match="Can scale")
    data = button(call, "Approve")
    since = len(fake.calls)
    fake.push_callback(CHAT, call.result["message_id"], data)
    fake.push_callback(CHAT, call.result["message_id"], data)
    fake.push_callback(CHAT, call.result["message_id"], button(call, "Reject"))  # a voided sibling
    fake.push_callback(CHAT, call.result["message_id"], "tokenFromBefore")  # e.g. issued before a restart
    await _until(lambda: len(fake.callback_answers) == 4)
    answers = [a.get("text") for a in fake.callback_answers.values()]
    assert answers.count("Approved") == 1 and answers.count(EXPIRED) == 3
    await _until(lambda: any(c.method == "editMessageText" for c in fake.calls[since:]))
    await frontend.outbox.flush()  # the edit goes through the chat's outbox: nothing else is coming
    assert len([c for c in fake.calls[since:] if c.method == "editMessageText"]) == 1
    assert len(await desk_h.db.list_approvals()) == 1
    assert desk_h.desk.capital.phase.value == "phase_2_25pct"


async def test_429_from_telegram_is_retried(op: Operator, fake) -> None:
    fake.faults["sendMessage"] = [(429, "Too Many Requests: retry after 1", {"retry_after": 1})]
    since = len(fake.calls)
    call = await op.command("/status", match="Desk")
    statuses = [c.status for c in fake.calls[since:] if c.method == "sendMessage"]
    assert statuses[:2] == [429, 200]
    assert call.at - fake.calls[since:][[c.method for c in fake.calls[since:]].index("sendMessage")].at >= 1.0


async def test_chart_sends_an_equity_png(op: Operator, fake, desk_h, sim) -> None:
    call = await op.command("/chart grid-x", match="nothing to chart")
    await desk_h.desk.tick_all()
    await _fill_top_grid_buy(desk_h, sim)
    grid = desk_h.desk.bots["grid-xrp"].bot
    sell = min((o for o in grid.open_orders if o.side == "sell"), key=lambda o: o.price)
    sim.set_price("XRPUSDT", sell.price)
    await desk_h.desk.tick_all()
    assert await desk_h.db.list_trades("grid-xrp", closed_only=True)
    call = await op.command("/chart grid-x", method="sendPhoto")
    assert call.files["photo"].startswith(b"\x89PNG")
    assert "grid-xrp" in call.params["caption"] and "1 closed trades" in call.params["caption"]
    call = await op.command("/chart", method="sendPhoto")  # the whole desk
    assert "desk" in call.params["caption"]


async def test_telegram_down_at_start_does_not_stop_the_desk(fake, desk_h) -> None:
    from handlers.app import build_application
    from tests.handlers.harness import FAST, settings_for

    fake.faults["getMe"] = [(502, "Bad Gateway", None), (502, "Bad Gateway", None)]
    front = build_application(settings_for(fake), desk_h.desk, desk_h.desk.event_bus, limits=FAST,
                              poll_timeout=1)
    front.retry_delay = 0.1
    await front.start()  # returns: trading goes on without Telegram
    try:
        assert not front.connected
        desk_h.desk.event_bus.publish(TradingEvent.of("grid-xrp", ErrorRaised("queued while offline")))
        await _until(lambda: front.connected)
        await _until(lambda: "queued while offline" in _texts(fake))
        call = await Operator(fake).command("/status trend", match="trend-btc")
        assert "BTCUSDT" in call.params["text"]
    finally:
        await front.stop()
