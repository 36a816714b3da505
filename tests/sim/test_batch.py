"""Amend and the batch endpoints: per-item results in request order, category limits, per-order rate charge;
pybit's HTTP client (not ours) is the oracle for the wire shapes."""

from __future__ import annotations

import asyncio
from decimal import Decimal as D

from tests.sim.helpers import pybit_session

BATCH, AMEND = "/v5/order/create-batch", "/v5/order/amend"


def item(link: str, price: str = "49000", **kw) -> dict:
    return {"symbol": "BTCUSDT", "side": "Buy", "orderType": "Limit", "qty": "0.01", "price": price,
            "orderLinkId": link} | kw


async def test_create_batch_books_each_item_and_reports_failures_in_place(client, sim):
    sim.set_price("BTCUSDT", D("50000"))
    _, body, _ = await client.post(BATCH, {"category": "linear", "request": [
        item("a1"), item("a2", price="1"), item("a1"), item("a3", "48000")]})
    assert body["retCode"] == 0
    rows, ext = body["result"]["list"], body["retExtInfo"]["list"]
    assert [r["orderLinkId"] for r in rows] == ["a1", "a2", "a1", "a3"]
    assert [e["code"] for e in ext] == [0, 110094, 110072, 0]  # below min notional; duplicate link
    assert rows[1]["orderId"] == rows[2]["orderId"] == "" and rows[0]["orderId"] and rows[3]["createAt"]
    assert sorted(o["orderLinkId"] for o in sim.orders("test-key")) == ["a1", "a3"]


async def test_batch_size_is_capped_per_category(client, sim):
    sim.set_price("BTCUSDT", D("50000"))
    assert await client.code("POST", BATCH, {"category": "spot", "request": [item(f"s{i}") for i in range(11)]}) \
        == (10001, "params error: at most 10 orders per batch on spot")
    assert (await client.code("POST", BATCH, {"category": "linear", "request": []}))[0] == 10001


async def test_batch_is_charged_per_order_and_the_overflow_items_fail(client, sim):
    sim.set_price("BTCUSDT", D("50000"))
    _, body, headers = await client.post(BATCH, {"category": "linear", "request": [item(f"r{i}") for i in range(8)]})
    assert headers["X-Bapi-Limit-Status"] == "2"
    _, body, _ = await client.post(BATCH, {"category": "linear", "request": [item(f"q{i}") for i in range(4)]})
    assert [e["code"] for e in body["retExtInfo"]["list"]] == [0, 0, 10006, 10006]
    assert len(sim.orders("test-key")) == 10
    assert (await client.code("POST", BATCH, {"category": "linear", "request": [item("z")]}))[0] == 10006


async def test_amend_reprices_resizes_and_fills_when_it_crosses(client, sim):
    sim.set_price("BTCUSDT", D("50000"))
    await client.ok("POST", BATCH, {"category": "linear", "request": [item("m1")]})
    await client.ok("POST", AMEND, {"category": "linear", "symbol": "BTCUSDT", "orderLinkId": "m1",
                                    "price": "49500", "qty": "0.02"})
    (o,) = sim.orders("test-key")
    assert (D(o["price"]), D(o["qty"])) == (D("49500"), D("0.02"))
    sim.set_price("BTCUSDT", D("49600"))
    await client.ok("POST", AMEND, {"category": "linear", "symbol": "BTCUSDT", "orderLinkId": "m1",
                                    "price": "49700"})  # through the market: a taker fill at once
    assert sim.orders("test-key") == [] and sim.orders("test-key", open_only=False)[0]["orderStatus"] == "Filled"
    assert await client.code("POST", AMEND, {"category": "linear", "symbol": "BTCUSDT", "orderLinkId": "m1",
                                             "price": "49000"}) \
        == (110008, "The order has been finished or cancelled")
    assert (await client.code("POST", AMEND, {"category": "linear", "symbol": "BTCUSDT",
                                              "orderLinkId": "nope", "price": "49000"}))[0] == 110001


async def test_amend_refuses_a_qty_at_or_below_the_filled_qty(client, sim):
    sim.set_price("BTCUSDT", D("50000"))
    await client.ok("POST", BATCH, {"category": "linear", "request": [item("p1", qty="0.03")]})
    sim.fill("test-key", "p1", D("0.02"))
    assert (await client.code("POST", AMEND, {"category": "linear", "symbol": "BTCUSDT", "orderLinkId": "p1",
                                              "qty": "0.02"}))[0] == 110064


async def test_pybit_places_amends_and_cancels_in_batches(sim_url, sim):
    s = pybit_session(sim_url)
    sim.set_price("BTCUSDT", D("50000"))
    placed = await asyncio.to_thread(s.place_batch_order, category="spot", request=[
        item("b1"), item("b2", "48000"), item("b3", "1")])
    codes = [e["code"] for e in placed["retExtInfo"]["list"]]
    assert codes[:2] == [0, 0] and codes[2] != 0 and placed["result"]["list"][2]["orderId"] == ""
    amended = await asyncio.to_thread(s.amend_batch_order, category="spot", request=[
        {"symbol": "BTCUSDT", "orderLinkId": "b1", "price": "48500"},
        {"symbol": "BTCUSDT", "orderLinkId": "b9", "price": "48500"}])
    assert [e["code"] for e in amended["retExtInfo"]["list"]] == [0, 110001]
    one = await asyncio.to_thread(s.amend_order, category="spot", symbol="BTCUSDT", orderLinkId="b2",
                                  qty="0.02")
    assert one["result"]["orderLinkId"] == "b2"
    cancelled = await asyncio.to_thread(s.cancel_batch_order, category="spot", request=[
        {"symbol": "BTCUSDT", "orderLinkId": "b1"}, {"symbol": "BTCUSDT", "orderLinkId": "b3"}])
    assert [e["code"] for e in cancelled["retExtInfo"]["list"]] == [0, 170213]
    assert [(o["orderLinkId"], D(o["price"]), D(o["qty"])) for o in sim.orders("test-key")] == [("b2", D("48000"), D("0.02"))]
