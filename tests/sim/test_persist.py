"""The simulator's exchange state survives a restart (and a kill: it is on disk before the answer)."""

from __future__ import annotations

from decimal import Decimal as D

import pytest

from tests.sim.helpers import SignedClient
from traderagent.sim import ExchangeSimulator, SimConfig
from traderagent.sim.persist import StateFileError

KEY, SECRET = "test-key", "test-secret"
CREATE = "/v5/order/create"


def _sim() -> ExchangeSimulator:
    sim = ExchangeSimulator(SimConfig(seed=1, speed=0.0))
    sim.add_account(KEY, SECRET, balances={"USDT": D("100000")})
    return sim


def _view(sim: ExchangeSimulator) -> dict:
    """Everything the desk can learn about the account and the market."""
    return {"orders": sim.orders(KEY, open_only=False), "positions": sim.positions(KEY),
            "wallet": sim.balance(KEY), "executions": sim.executions(KEY),
            "prices": {s: sim.price(s) for s in sim.series},
            "klines": sim.series["BTCUSDT"].klines(1, None, None, 5)}


async def test_a_restarted_simulator_resumes_the_same_exchange(tmp_path):
    path = tmp_path / "desk.sim.json"
    first = _sim()
    assert first.keep_state(path) is None  # nothing saved yet
    url = await first.start()
    async with SignedClient(url) as c:
        await c.ok("POST", CREATE, {"category": "linear", "symbol": "BTCUSDT", "side": "Buy",
                                    "orderType": "Market", "qty": "0.01"})
        last = first.price("BTCUSDT")
        for i, price in enumerate((last, last * D("0.9"))):  # l0 fills on the next dip, l1 keeps resting
            await c.ok("POST", CREATE, {"category": "linear", "symbol": "BTCUSDT", "side": "Buy", "orderType": "Limit",
                                        "qty": "0.01", "price": str(price.quantize(D("0.1"))), "orderLinkId": f"l{i}"})
        await c.ok("POST", CREATE, {"category": "spot", "symbol": "XRPUSDT", "side": "Buy",
                                    "orderType": "Limit", "qty": "10", "price": "1.1", "orderLinkId": "s0"})
    first.step_all(30)  # the replay moves on; the final save is stop()'s
    first.advance_all(0.4)
    before = _view(first)
    assert [o["orderLinkId"] for o in first.orders(KEY)] == ["s0", "l1"]
    port = int(url.rsplit(":", 1)[1])
    await first.stop()

    second = _sim()
    assert second.keep_state(path) == port
    assert _view(second) == before
    url2 = await second.start()
    try:
        async with SignedClient(url2) as c:  # the book still matches, ids and link ids stay unique
            second.set_price("BTCUSDT", last * D("0.85"))
            low = str((last * D("0.8")).quantize(D("0.1")))
            assert second.orders(KEY, symbol="BTCUSDT") == []  # l1 was in the restored book
            code, _ = await c.code("POST", CREATE, {"category": "linear", "symbol": "BTCUSDT", "side": "Buy",
                                                    "orderType": "Limit", "qty": "0.01", "price": low,
                                                    "orderLinkId": "l1"})
            assert code == 110072  # duplicate orderLinkId, as before the restart
            res = await c.ok("POST", CREATE, {"category": "linear", "symbol": "BTCUSDT", "side": "Buy",
                                              "orderType": "Limit", "qty": "0.01", "price": low})
            assert res["orderId"] not in {o["orderId"] for o in before["orders"]}
    finally:
        await second.stop()


async def test_an_accepted_order_is_on_disk_before_the_answer(tmp_path):
    """What kill -9 leaves: no stop(), no final save; the order the desk heard about is in the file."""
    path = tmp_path / "s.json"
    sim = _sim()
    sim.keep_state(path)
    url = await sim.start()
    try:
        async with SignedClient(url) as c:
            await c.ok("POST", CREATE, {"category": "linear", "symbol": "BTCUSDT", "side": "Buy",
                                        "orderType": "Limit", "qty": "0.01", "price": "59000", "orderLinkId": "k1"})
        reborn = _sim()
        reborn.keep_state(path)
        assert [o["orderLinkId"] for o in reborn.orders(KEY)] == ["k1"]
    finally:
        sim.state_path = None
        await sim.stop()


def test_a_broken_state_file_is_named(tmp_path):
    path = tmp_path / "s.json"
    path.write_text("{not json")
    with pytest.raises(StateFileError, match="s.json is unreadable .*fresh paper account"):
        _sim().keep_state(path)


def test_a_state_folder_it_cannot_write_is_named_at_once(tmp_path):
    with pytest.raises(StateFileError, match="cannot write simulator state .*nowhere"):
        _sim().keep_state(tmp_path / "nowhere" / "s.json")


async def test_only_the_recent_closed_orders_are_kept(tmp_path, monkeypatch):
    from traderagent.sim import persist

    monkeypatch.setattr(persist, "KEEP_CLOSED", 2)
    sim = _sim()
    acct = sim.engine.accounts[KEY]
    for i in range(4):  # filled at once: closed
        sim.engine.create_order(acct, {"category": "linear", "symbol": "XRPUSDT", "side": "Buy",
                                       "orderType": "Market", "qty": "10", "orderLinkId": f"m{i}"})
    sim.engine.create_order(acct, {"category": "linear", "symbol": "XRPUSDT", "side": "Buy", "orderType": "Limit",
                                   "qty": "10", "price": "1", "orderLinkId": "open"})
    persist.save(sim, tmp_path / "s.json")
    reborn = _sim()
    reborn.keep_state(tmp_path / "s.json")
    assert [o["orderLinkId"] for o in reborn.orders(KEY, open_only=False)] == ["open", "m3", "m2"]
    assert {e["orderLinkId"] for e in reborn.executions(KEY)} == {"m3", "m2"}
    assert reborn.positions(KEY) == sim.positions(KEY) and reborn.balance(KEY) == sim.balance(KEY)


async def test_modes_funding_and_the_funding_clock_survive_a_restart(tmp_path):
    path = tmp_path / "perp.json"
    first = _sim()
    first.keep_state(path)
    url = await first.start()
    async with SignedClient(url) as c:
        await c.ok("POST", "/v5/position/switch-mode", {"category": "linear", "symbol": "ETHUSDT", "mode": 3})
        await c.ok("POST", CREATE, {"category": "linear", "symbol": "ETHUSDT", "side": "Sell",
                                    "orderType": "Market", "qty": "0.1", "positionIdx": 2})
    first.charge_funding("ETHUSDT")
    due = first.next_funding["ETHUSDT"]
    while first.series["ETHUSDT"].live.ts < due:  # the replay passes a funding time: settled once
        first.step("ETHUSDT")
    before = _view(first)
    assert len([e for e in before["executions"] if e["execType"] == "Funding"]) == 2
    await first.stop()

    second = _sim()
    second.keep_state(path)
    assert _view(second) == before
    assert second.next_funding["ETHUSDT"] == due + 8 * 3_600_000
    second.step("ETHUSDT")  # the settled funding time is not charged again
    assert second.executions(KEY)[:2] == before["executions"][:2]
    (short,) = second.positions(KEY)
    assert short["positionIdx"] == 2 and short["side"] == "Sell"
