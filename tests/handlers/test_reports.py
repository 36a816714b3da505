"""What the desk sends without being asked, through the real Application and the fake Bot API, with a
real desk on the simulator and a settable clock: the scaling offer and its buttons, the digest, the
stall alert; and the health endpoint over HTTP."""

from __future__ import annotations

import asyncio
import datetime as dt
from decimal import Decimal

import aiohttp

from handlers.callbacks import EXPIRED, LATE
from tests.handlers.harness import Operator, button, buttons, start_desk, start_frontend
from tests.orchestrator.test_reports import pass_the_gates
from traderagent.health import HealthServer
from traderagent.orchestrator.events import ErrorRaised, EventType, TradingEvent
from traderagent.reports import DeskWatch, DigestTime


def texts_with(fake, needle: str) -> list[str]:
    return [t for t in fake.sent_texts() if needle in t]


async def test_offer_is_pushed_once_with_buttons_then_daily(op: Operator, fake, desk_h, clock) -> None:
    watch = DeskWatch(desk_h.desk, None)
    pass_the_gates(desk_h, clock)
    since = len(fake.calls)
    await watch.check()
    await watch.check()
    offer = await op.next("sendMessage", since, "Ready to scale")
    assert set(buttons(offer)) == {"✅ Approve", "✖️ Reject"}
    text = offer.params["text"]
    assert "Phase 1 → <b>Phase 2</b>" in text and "✔️ 5 trades (minimum 5)" in text
    await desk_h.desk.event_bus.drain(5)
    assert len(texts_with(fake, "Ready to scale")) == 1
    assert not texts_with(fake, "Scaling offered")  # the notifier leaves it to the offer with buttons

    clock.advance(hours=23)
    await watch.check()
    clock.advance(hours=1)
    await watch.check()
    again = await op.next("sendMessage", since, "reminder 1")
    assert set(buttons(again)) == {"✅ Approve", "✖️ Reject"}
    await desk_h.desk.event_bus.drain(5)
    assert len(texts_with(fake, "Ready to scale")) == 2


async def test_approve_on_the_offer_scales_after_checking_the_gates_again(op: Operator, fake, desk_h, clock) -> None:
    pass_the_gates(desk_h, clock)
    since = len(fake.calls)
    await DeskWatch(desk_h.desk, None).check()
    offer = await op.next("sendMessage", since, "Ready to scale")
    desk_h.desk.capital.record_trade(False, Decimal("-50"))  # the record turned since the offer went out
    answer, edit = await op.press(offer, button(offer, "Approve"), match="Scaling not applied")
    assert "net PnL -40.00 (must not be negative)" in edit.params["text"]
    assert fake.callback_answers[answer.params["callback_query_id"]]["text"] == "Blocked by the gates"
    assert desk_h.desk.capital.phase.value == "phase_1_5pct"

    desk_h.desk.capital.record_trade(True, Decimal("50"))
    clock.advance(days=1)
    await DeskWatch(desk_h.desk, None).check()
    offer = await op.next("sendMessage", since, "reminder 1")
    _, edit = await op.press(offer, button(offer, "Approve"), match="Scaling approved")
    assert "Phase 1 → <b>Phase 2</b>" in edit.params["text"] and desk_h.desk.capital.phase.value == "phase_2_25pct"


async def test_an_offer_pressed_after_it_expired_says_so(op: Operator, fake, desk_h, frontend, clock) -> None:
    pass_the_gates(desk_h, clock)
    since = len(fake.calls)
    await DeskWatch(desk_h.desk, None).check()
    offer = await op.next("sendMessage", since, "Ready to scale")
    assert "These buttons expire" in offer.params["text"]
    clock.advance(hours=23, minutes=59)  # still valid a minute before the day is out
    assert frontend.tokens.lapsed(button(offer, "Approve"), op.chat_id) is None
    clock.advance(minutes=2)
    answer, _ = await op.press(offer, button(offer, "Approve"), method=None)
    reply = fake.callback_answers[answer.params["callback_query_id"]]
    assert reply["text"] == LATE["approve"] and reply["show_alert"]
    assert desk_h.desk.capital.phase.value == "phase_1_5pct"


async def offer_then_restart(fake, sim, tmp_path, clock, hours: float) -> tuple[Operator, object, object, object]:
    """A desk and its frontend push an offer, stop, and start again ``hours`` later on the same database:
    (operator, the offer message, the new desk harness, the new frontend)."""
    h = await start_desk(sim, tmp_path, clock=clock)
    front = await start_frontend(fake, h.desk)
    op = Operator(fake)
    pass_the_gates(h, clock)
    since = len(fake.calls)
    await DeskWatch(h.desk, None).check()
    offer = await op.next("sendMessage", since, "Ready to scale")
    await front.stop()
    await h.close()
    clock.advance(hours=hours)
    h = await start_desk(sim, tmp_path, clock=clock)
    return op, offer, h, await start_frontend(fake, h.desk)


async def test_an_offer_s_buttons_act_after_a_restart_once(fake, sim, tmp_path, clock) -> None:
    op, offer, h, front = await offer_then_restart(fake, sim, tmp_path, clock, hours=2)
    try:
        answer, edit = await op.press(offer, button(offer, "Approve"), match="Scaling approved")
        assert "Phase 1 → <b>Phase 2</b>" in edit.params["text"] and h.desk.capital.phase.value == "phase_2_25pct"
        answer, _ = await op.press(offer, button(offer, "Reject"), method=None)  # its sibling went with it
        assert fake.callback_answers[answer.params["callback_query_id"]]["text"] == EXPIRED
        since = len(fake.calls)
        clock.advance(days=1)
        await DeskWatch(h.desk, None).check()  # answered: the daily re-offer does not come
        await h.desk.event_bus.drain(5)
        assert not [c for c in fake.calls[since:] if "Ready to scale" in c.params.get("text", "")]
    finally:
        await front.stop()
        await h.close()


async def test_an_offer_pressed_after_a_restart_and_its_expiry_says_so(fake, sim, tmp_path, clock) -> None:
    op, offer, h, front = await offer_then_restart(fake, sim, tmp_path, clock, hours=25)
    try:
        answer, _ = await op.press(offer, button(offer, "Approve"), method=None)
        reply = fake.callback_answers[answer.params["callback_query_id"]]
        assert reply["text"] == LATE["approve"] and reply["show_alert"]
        assert h.desk.capital.phase.value == "phase_1_5pct"
    finally:
        await front.stop()
        await h.close()


async def test_digest_arrives_at_the_local_time_and_on_demand(op: Operator, fake, desk_h, clock) -> None:
    clock.now = dt.datetime(2026, 3, 2, 6, 59, tzinfo=dt.UTC)  # 07:59 in Berlin
    watch = DeskWatch(desk_h.desk, DigestTime(dt.time(8, 0), "Europe/Berlin", clock.now))
    since = len(fake.calls)
    await watch.check()
    clock.advance(minutes=1)
    await watch.check()
    call = await op.next("sendMessage", since, "Daily digest")
    text = call.params["text"]
    assert "2026-03-02 (Europe/Berlin, 24 h to 07:00 UTC)" in text
    assert "PnL <b>0.00</b> · 0 trades · fees 0.00 · funding 0.00" in text
    assert "Scaling Phase 1 → Phase 2: not yet" in text and "❌ 0 trades (minimum 5)" in text
    assert "3 bots closed no trade." in text
    await watch.check()
    await desk_h.desk.event_bus.drain(5)
    assert len(texts_with(fake, "Daily digest")) == 1  # once a day

    call = await op.command("/digest", match="Daily digest")
    assert "(UTC, 24 h to 07:00 UTC)" in call.params["text"]


async def test_stalled_ticks_reach_the_chat(op: Operator, fake, desk_h, clock) -> None:
    desk_h.desk.started_at = clock()
    clock.advance(seconds=10)
    since = len(fake.calls)
    await DeskWatch(desk_h.desk, None).check()
    call = await op.next("sendMessage", since, "no tick completed for 10 s")
    assert "Ticks stalled" in call.params["text"] and "limit 3 s" in call.params["text"]


async def _get(port: int) -> tuple[int, dict]:
    async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{port}/health") as resp:
        return resp.status, await resp.json()


async def test_health_endpoint_says_what_fails(fake, desk_h, frontend, sim, clock) -> None:
    desk = desk_h.desk
    server = HealthServer(desk, frontend.health, port=0, exchange_timeout=0.5)
    port = await server.start()
    try:
        status, body = await _get(port)
        assert status == 503 and body["checks"]["scheduler"] == {"ok": False, "detail": "no tick scheduled"}

        desk.started_at = desk.last_tick_at = clock()
        status, body = await _get(port)
        assert status == 200 and body["ok"], body
        assert set(body["checks"]) == {"scheduler", "exchange", "telegram"}

        clock.advance(seconds=4)  # three 1-second intervals without a tick
        status, body = await _get(port)
        assert status == 503 and body["checks"]["scheduler"]["detail"] == "last tick 4 s ago (limit 3 s)"
        desk.last_tick_at = clock()

        sim.faults.error_rate = 1.0  # every exchange request answers 502/503
        status, body = await _get(port)
        assert status == 503 and not body["checks"]["exchange"]["ok"] and body["checks"]["scheduler"]["ok"]
        sim.faults.error_rate = 0.0

        fake.faults["sendMessage"] = [(502, "Bad Gateway", None)] * 1000  # Telegram takes nothing
        old = TradingEvent(EventType.ERROR, "grid-xrp", ErrorRaised("boom"),
                           timestamp=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5))
        desk.event_bus.publish(old)
        await desk.event_bus.drain(5)
        status, body = await _get(port)
        assert status == 503 and body["checks"]["telegram"]["detail"].startswith("1 alert(s) waiting, the oldest")
        fake.faults.clear()
        await asyncio.wait_for(frontend.outbox.flush(), 30)  # delivered on the outbox's next retry
        assert (await _get(port))[0] == 200
    finally:
        await server.stop()
