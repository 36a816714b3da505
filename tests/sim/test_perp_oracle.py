"""Oracle: pybit's HTTP client (not ours) drives the simulator's position endpoints unmodified."""

from __future__ import annotations

import asyncio
from decimal import Decimal as D

import pytest
from pybit.exceptions import InvalidRequestError

from tests.sim.helpers import pybit_session


async def test_pybit_set_leverage_switch_mode_and_position_list(sim_url, sim):
    s = pybit_session(sim_url)
    sim.set_price("BTCUSDT", D("50000"))
    ok = await asyncio.to_thread(s.set_leverage, category="linear", symbol="BTCUSDT", buyLeverage="4",
                                 sellLeverage="4")
    assert ok["retCode"] == 0 and ok["result"] == {}
    with pytest.raises(InvalidRequestError) as info:  # pybit raises on 110043 unless told to ignore it
        await asyncio.to_thread(s.set_leverage, category="linear", symbol="BTCUSDT", buyLeverage="4",
                                sellLeverage="4")
    assert info.value.status_code == 110043
    ok = await asyncio.to_thread(s.switch_position_mode, category="linear", symbol="BTCUSDT", mode=3)
    assert ok["retCode"] == 0
    with pytest.raises(InvalidRequestError) as info:
        await asyncio.to_thread(s.place_order, category="linear", symbol="BTCUSDT", side="Buy",
                                orderType="Market", qty="0.01", positionIdx=0)
    assert info.value.status_code == 10001 and "position idx not match position mode" in info.value.message
    await asyncio.to_thread(s.place_order, category="linear", symbol="BTCUSDT", side="Buy", orderType="Market",
                            qty="0.01", positionIdx=1)
    rows = (await asyncio.to_thread(s.get_positions, category="linear", symbol="BTCUSDT"))["result"]["list"]
    assert [(r["positionIdx"], r["side"]) for r in rows] == [(1, "Buy"), (2, "")]
    long = rows[0]
    assert long["leverage"] == "4" and D(long["positionIM"]) == D(long["positionValue"]) / 4
    assert D(long["liqPrice"]) < D(long["avgPrice"]) and D(long["markPrice"]) == sim.price("BTCUSDT")
    with pytest.raises(InvalidRequestError) as info:  # a position blocks the switch back
        await asyncio.to_thread(s.switch_position_mode, category="linear", symbol="BTCUSDT", mode=0)
    assert info.value.status_code == 110024
