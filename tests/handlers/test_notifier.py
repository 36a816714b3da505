"""The notifier against the fake Bot API server, through the real PTB Bot."""

from __future__ import annotations

import asyncio
from decimal import Decimal

from telegram import Bot

from handlers.formatting import emoji
from handlers.notifier import Notifier
from handlers.outbox import Limits, Outbox
from tests.fakes.telegram_server import FakeTelegram
from tests.handlers.harness import FAST
from traderagent.orchestrator.events import (
    ErrorRaised,
    EventBus,
    EventType,
    OrderFilled,
    OrderPlaced,
    OrderRef,
    TradeClosed,
    TradeOpened,
    TradingEvent,
)

CHAT = 555
ZERO = Decimal(0)
ORDER = OrderRef("x-1", "grid:5:buy", "XRPUSDT", "buy", "limit", Decimal("1000"), Decimal("1.5"), "USDT")


async def start(bot: Bot, *, limits: Limits = FAST, store=None) -> tuple[Notifier, EventBus]:
    outbox = Outbox(bot, [CHAT], limits=limits, store=store, emoji=emoji)
    notifier = Notifier(outbox, store=store)
    bus = EventBus()
    notifier.attach(bus)
    await bus.start()
    await outbox.start()
    return notifier, bus


async def stop(notifier: Notifier, bus: EventBus) -> None:
    await bus.stop()
    await notifier.outbox.stop()


async def test_single_trade_event_reaches_chat_escaped(fake: FakeTelegram, bot: Bot) -> None:
    notifier, bus = await start(bot)
    bus.publish(TradingEvent.of("btc<grid>", TradeOpened(
        3, "p1", "BTCUSDT", "long", Decimal("0.010"), Decimal("50000.10"), Decimal("49000"), None, "USDT")))
    (call,) = await fake.wait_for("sendMessage")
    assert call.params["text"] == ("🟢 <b>Trade opened</b> · btc&lt;grid&gt;\n"
                                   "long 0.01 BTCUSDT @ 50000.1 = 500.00 USDT · stop 49000 (trade #3)")
    assert call.params["chat_id"] == CHAT
    await stop(notifier, bus)


async def test_flood_is_merged_paced_and_nothing_lost(fake: FakeTelegram, bot: Bot) -> None:
    fake.enforce(0.01)
    notifier, bus = await start(bot)
    fake.faults["sendMessage"] = [(429, "Too Many Requests: retry after 1", {"retry_after": 1})]
    for n in range(300):
        bus.publish(TradingEvent.of(f"bot{n % 7}", OrderFilled(ORDER, Decimal(n), Decimal("1.5"), ZERO, "USDT")))
    await bus.drain()
    await asyncio.wait_for(notifier.outbox.flush(), 15)
    await stop(notifier, bus)
    texts = fake.sent_texts(CHAT)
    merged = "\n".join(texts)
    for n in range(300):
        assert f"buy limit {n} of 1000 XRPUSDT @ 1.5 = {n * 1.5:.2f} USDT" in merged, n
    assert len(texts) < 30  # merged, not 300 messages
    assert all(len(t) <= 4096 for t in texts)
    stats = notifier.outbox.stats
    assert stats.retries >= 1 and stats.delivered == 300 and stats.dropped == 0
    assert fake.violations == []  # Telegram's pace was kept, as the fake server measured it


async def test_muted_types_are_skipped_but_errors_never(fake: FakeTelegram, bot: Bot) -> None:
    notifier, bus = await start(bot)
    assert notifier.set_muted(EventType.ORDER_PLACED, True)
    assert not notifier.set_muted(EventType.ERROR, True)
    bus.publish(TradingEvent.of("b", OrderPlaced(ORDER)))
    bus.publish(TradingEvent.of("b", ErrorRaised("exchange down")))
    await fake.wait_for("sendMessage")
    await stop(notifier, bus)
    assert fake.sent_texts() == ["🚨 <b>Error</b> · b\nexchange down"]
    assert notifier.stats.muted == 1


async def test_a_liquidation_is_told_however_trade_closes_are_muted(fake: FakeTelegram, bot: Bot) -> None:
    notifier, bus = await start(bot)
    assert notifier.set_muted(EventType.TRADE_CLOSED, True)
    for reason in ("stop_loss", "liquidation"):
        bus.publish(TradingEvent.of("b", TradeClosed(4, "p", "BTCUSDT", "long", Decimal("0.1"), Decimal("60000"),
                                                     Decimal("54300"), Decimal("-573.3"), reason, "USDT")))
    (call,) = await fake.wait_for("sendMessage")
    await stop(notifier, bus)
    assert "PnL -573.30 USDT (-9.56 %) · liquidation" in call.params["text"]
    assert fake.sent_texts() == [call.params["text"]] and notifier.stats.muted == 1


async def test_network_errors_are_retried(fake: FakeTelegram, bot: Bot) -> None:
    fake.faults["sendMessage"] = [(502, "Bad Gateway", None)]
    notifier, bus = await start(bot)
    bus.publish(TradingEvent.of("b", TradeClosed(4, "p", "SOLUSDT", "short", Decimal("2"), Decimal("150"),
                                                 Decimal("151.5"), Decimal("-3.456"), "stop_loss", "USDT")))
    (call,) = await fake.wait_for("sendMessage", timeout=10)
    assert "short 2 SOLUSDT 150 → 151.5 · PnL -3.46 USDT (-1.15 %) · stop loss" in call.params["text"]
    await stop(notifier, bus)


async def test_grids_tell_fills_and_closes_only_by_default(fake: FakeTelegram, bot: Bot) -> None:
    notifier, bus = await start(bot)
    notifier.strategy_of = {"xrp-grid": "grid", "btc-trend": "trend_follower"}.get
    for name in ("xrp-grid", "btc-trend"):
        bus.publish(TradingEvent.of(name, OrderPlaced(ORDER)))
        bus.publish(TradingEvent.of(name, OrderFilled(ORDER, Decimal(7), Decimal("1.5"), ZERO, "USDT")))
    await bus.drain()
    await asyncio.wait_for(notifier.outbox.flush(), 10)
    await stop(notifier, bus)
    text = "\n".join(fake.sent_texts(CHAT))
    assert "xrp-grid</b> order filled" in text and "xrp-grid</b> order placed" not in text
    assert "btc-trend</b> order filled" in text and "btc-trend</b> order placed" in text
    assert notifier.stats.muted == 1
