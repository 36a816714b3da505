"""The client's batch and amend methods over HTTP against the simulator: per-item outcomes in order,
chunking by the category's cap, the batch bucket charged per order, errors mapped per item."""

from __future__ import annotations

from decimal import Decimal as D

import pytest

from tests.conftest import SIM_KEY, SIM_SECRET
from traderagent.api import exceptions as ex
from traderagent.api.bybit_direct_client import ByBitDirectClient
from traderagent.ports import LimitOrder, OrderKey


def ladder(n: int, prefix: str, start: int = 49000) -> list[LimitOrder]:
    return [LimitOrder("buy", D("0.01"), D(start - 100 * i), f"{prefix}{i}") for i in range(n)]


async def test_place_batch_books_each_item_and_maps_each_failure(linear, sim):
    sim.set_price("BTCUSDT", D("50000"))
    orders = [*ladder(2, "ok"), LimitOrder("buy", D("0.01"), D("49000"), "ok0"),  # duplicate link
              LimitOrder("buy", D("0.0001"), D("49000"), "tiny")]  # refused locally, never sent
    out = await linear.place_orders_batch("BTCUSDT", orders)
    assert [o["client_order_id"] for o in out[:2]] == ["ok0", "ok1"]  # type: ignore[index]
    assert all(o["status"] == "open" and o["id"] for o in out[:2])  # type: ignore[index]
    assert isinstance(out[2], ex.DuplicateOrderError) and isinstance(out[3], ex.InvalidOrderError)
    assert sim.request_counts["/v5/order/create-batch"] == 1
    assert sorted(o["orderLinkId"] for o in sim.orders(SIM_KEY)) == ["ok0", "ok1"]


async def test_a_spot_ladder_goes_in_chunks_of_the_category_cap(spot, sim):
    sim.set_price("BTCUSDT", D("50000"))
    out = await spot.place_orders_batch("BTCUSDT", ladder(15, "s"))
    assert all(isinstance(o, dict) for o in out) and spot.batch_size == 10
    assert sim.request_counts["/v5/order/create-batch"] == 2 and len(sim.orders(SIM_KEY)) == 15


async def test_linear_batches_stay_inside_the_per_order_bucket(linear, sim):
    """10 orders/s per UID on the linear batch bucket: 25 orders go as chunks of 9, none answers 10006."""
    sim.set_price("BTCUSDT", D("50000"))
    out = await linear.place_orders_batch("BTCUSDT", ladder(25, "l", 49900))
    assert all(isinstance(o, dict) for o in out), [o for o in out if not isinstance(o, dict)]
    # three chunks; a chunk delayed on a busy machine may arrive right behind the previous one and
    # have items refused, which go again (counted as retries)
    retries = linear.get_statistics()["retries"]
    assert linear.batch_size == 9 and sim.request_counts["/v5/order/create-batch"] == 3 + retries


async def test_cancel_batch_and_amend(linear, sim):
    sim.set_price("BTCUSDT", D("50000"))
    placed = await linear.place_orders_batch("BTCUSDT", ladder(3, "c"))
    first = placed[0]
    assert isinstance(first, dict)
    amended = await linear.amend_order("BTCUSDT", OrderKey(first["id"], "c0"), price=D("48555.55"),
                                       amount=D("0.02"))
    assert amended == {"id": first["id"], "client_order_id": "c0"}
    o = next(o for o in sim.orders(SIM_KEY) if o["orderLinkId"] == "c0")
    assert (D(o["price"]), D(o["qty"])) == (D("48555.5"), D("0.02"))  # rounded down to the tick
    sim.fill(SIM_KEY, "c1")
    out = await linear.cancel_orders_batch("BTCUSDT", [OrderKey(None, "c0"), OrderKey(None, "c1"),
                                                       OrderKey(None, "c2")])
    assert out[0]["status"] == "cancelled" and out[2]["client_order_id"] == "c2"  # type: ignore[index]
    assert isinstance(out[1], ex.OrderNotFoundError)  # filled meanwhile: the orchestrator looks it up
    assert sim.orders(SIM_KEY) == []
    with pytest.raises(ex.InvalidOrderError):
        await linear.amend_order("BTCUSDT", OrderKey(None, "c0"), price=D("48000"))


async def test_demo_spot_has_no_batches_so_each_order_goes_alone(sim_url, sim):
    sim.set_price("BTCUSDT", D("50000"))
    client = ByBitDirectClient(SIM_KEY, SIM_SECRET, testnet=True, base_url=sim_url, market_type="spot")
    await client.initialize()
    try:
        out = await client.place_orders_batch("BTCUSDT", ladder(3, "d"))
    finally:
        await client.close()
    assert all(isinstance(o, dict) for o in out)
    assert sim.request_counts["/v5/order/create-batch"] == 0 and sim.request_counts["/v5/order/create"] == 3


async def test_items_the_rate_window_refused_go_again_once_it_moved_on(linear, sim):
    """The exchange grants a batch what its window has left (here 5 of 9) and refuses the rest per item
    (10006, not executed); the client sends just those again a window later: every order placed once."""
    sim.set_price("BTCUSDT", D("50000"))
    sim.config.rate_limits["/v5/order/create-batch"] = 5
    out = await linear.place_orders_batch("BTCUSDT", ladder(9, "w", 49900))
    assert all(isinstance(o, dict) and o["status"] == "open" for o in out), out
    assert sim.request_counts["/v5/order/create-batch"] == 2  # the 9, then the 4 refused
    assert sorted(o["orderLinkId"] for o in sim.orders(SIM_KEY)) == sorted(f"w{i}" for i in range(9))
    assert linear.get_statistics()["retries"] == 1
