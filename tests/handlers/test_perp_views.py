"""ByBit's mark, liquidation price and margin on the operator's screens; the liquidation alert in the chat."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from handlers.views import position_line
from tests.handlers.harness import Operator
from tests.sim.helpers import SignedClient
from traderagent.results import PositionRisk, PositionView


async def test_status_shows_the_perpetual_position_and_the_alert_reaches_the_chat(op: Operator, desk_h, sim) -> None:
    sim.set_price("BTCUSDT", Decimal("50000"))
    async with SignedClient(sim.base_url) as raw:  # a 10x BTCUSDT long on the desk's account
        await raw.ok("POST", "/v5/order/create", {"category": "linear", "symbol": "BTCUSDT", "side": "Buy",
                                                  "orderType": "Market", "qty": "0.1"})
    call = await op.command("/status", match="Desk")
    assert "⚡" not in call.params["text"]  # /status asks no exchange: it shows what the last check read
    since = len(op.fake.calls)
    await desk_h.desk.check_perp()  # liquidation near 45260: under 10 % away at 50000
    alert = await op.next("sendMessage", since, match="from liquidation")
    assert "BTCUSDT" in alert.params["text"] and "mark 50000" in alert.params["text"]
    call = await op.command("/status", match="Desk")
    text = call.params["text"]
    assert "⚡ BTCUSDT long 0.1 @ " in text and "mark 50000 · liq 45" in text and "margin 500." in text
    assert "10x" in text and "% away)" in text

def test_position_line_shows_bybit_view_under_the_strategy_view() -> None:
    risk = PositionRisk(symbol="BTCUSDT", side="long", size=Decimal("0.1"), entry_price=Decimal("50000"),
                        mark_price=Decimal("47000"), liq_price=Decimal("45262.5"), liq_distance=Decimal("0.0370"),
                        margin=Decimal("500"), leverage=Decimal("10"), unrealized_pnl=Decimal("-300"))
    p = PositionView(bot="trend-btc", position_id="p1", side="long", size=Decimal("0.1"),
                     entry_price=Decimal("50000"), stop_loss=None, take_profit=None, current_price=Decimal("47000"),
                     unrealized_pnl=Decimal("-300"), opened_at=datetime(2026, 3, 1, tzinfo=UTC), exchange=risk)
    line = position_line(p)
    assert line.endswith("\n    ⚡ ByBit mark 47000 · liq 45262.5 (3.7% away) · margin 500.00 · 10x")
    no_liq = PositionView(**{**vars(p), "exchange": PositionRisk(**{**vars(risk), "liq_price": None,
                                                                     "liq_distance": None})})
    assert "liq – · margin" in position_line(no_liq)
