"""Public market endpoints of the simulator: envelopes, field shapes, pagination, klines."""

from __future__ import annotations

from decimal import Decimal

import aiohttp
import pytest

from traderagent.sim import ExchangeSimulator, SimConfig


def _assert_envelope(body: dict) -> None:
    assert set(body) == {"retCode", "retMsg", "result", "retExtInfo", "time"}
    assert isinstance(body["retCode"], int) and isinstance(body["time"], int)
    assert body["retExtInfo"] == {}


async def test_market_time(client):
    status, body, _ = await client.get("/v5/market/time", signed=False)
    assert status == 200
    _assert_envelope(body)
    res = body["result"]
    assert isinstance(res["timeSecond"], str) and isinstance(res["timeNano"], str)
    assert abs(int(res["timeNano"]) // 10**6 - body["time"]) < 1000


async def test_linear_ticker_fields_are_strings(client, sim):
    status, body, headers = await client.get("/v5/market/tickers", {"category": "linear", "symbol": "BTCUSDT"},
                                             signed=False)
    _assert_envelope(body)
    assert "X-Bapi-Limit" not in headers  # public calls carry no rate-limit headers
    (row,) = body["result"]["list"]
    assert body["result"]["category"] == "linear"
    for k in ("symbol", "lastPrice", "indexPrice", "markPrice", "prevPrice24h", "price24hPcnt", "highPrice24h",
              "lowPrice24h", "prevPrice1h", "openInterest", "turnover24h", "volume24h", "fundingRate",
              "nextFundingTime", "deliveryTime", "bid1Price", "ask1Price", "bid1Size", "ask1Size"):
        assert isinstance(row[k], str), k
    assert Decimal(row["lastPrice"]) == sim.price("BTCUSDT") == Decimal("60000")
    assert Decimal(row["bid1Price"]) < Decimal(row["ask1Price"])
    assert Decimal(row["lowPrice24h"]) <= Decimal(row["lastPrice"]) <= Decimal(row["highPrice24h"])


async def test_spot_tickers_all_symbols(client):
    _, body, _ = await client.get("/v5/market/tickers", {"category": "spot"}, signed=False)
    rows = body["result"]["list"]
    assert {r["symbol"] for r in rows} == {"BTCUSDT", "ETHUSDT", "XRPUSDT", "SOLUSDT"}
    assert "markPrice" not in rows[0] and "usdIndexPrice" in rows[0]


async def test_ticker_unknown_symbol_and_bad_category(client):
    _, body, _ = await client.get("/v5/market/tickers", {"category": "linear", "symbol": "NOPEUSDT"}, signed=False)
    assert body["retCode"] == 10001 and body["result"] == {}
    _, body, _ = await client.get("/v5/market/tickers", {"category": "futures"}, signed=False)
    assert body["retCode"] == 10001


async def test_set_price_moves_ticker(client, sim):
    sim.set_price("ETHUSDT", Decimal("3100.55"))
    _, body, _ = await client.get("/v5/market/tickers", {"category": "linear", "symbol": "ETHUSDT"}, signed=False)
    assert body["result"]["list"][0]["lastPrice"] == "3100.55"


async def test_instruments_linear_pagination_and_rows_to_skip(client):
    seen, cursor, pages = [], None, 0
    while True:
        query = "category=linear&limit=2" + (f"&cursor={cursor}" if cursor else "")  # cursor verbatim
        _, body, _ = await client.get("/v5/market/instruments-info", query, signed=False)
        assert body["retCode"] == 0
        res = body["result"]
        assert len(res["list"]) <= 2
        seen += res["list"]
        pages += 1
        cursor = res["nextPageCursor"]
        if not cursor:
            break
        assert "%3D" in cursor  # opaque and already percent-encoded, passed back verbatim
    assert pages == 4
    names = [r["symbol"] for r in seen]
    assert len(names) == len(set(names)) == 7
    tradable = [r["symbol"] for r in seen if r["contractType"] == "LinearPerpetual" and r["settleCoin"] == "USDT"
                and r["status"] == "Trading"]
    assert sorted(tradable) == ["BTCUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT"]
    futures = [r for r in seen if r["contractType"] == "LinearFutures"]
    assert {"BTCUSDT-26DEC25", "BTCUSDT-26SEP25"} <= {r["symbol"] for r in futures}
    assert all(r["deliveryTime"] != "0" for r in futures)
    assert any(r["status"] != "Trading" for r in seen)
    btc = next(r for r in seen if r["symbol"] == "BTCUSDT")
    assert btc["lotSizeFilter"]["qtyStep"] == "0.001" and btc["priceFilter"]["tickSize"] == "0.10"
    assert btc["lotSizeFilter"]["minNotionalValue"] == "5" and btc["lotSizeFilter"]["minOrderQty"] == "0.001"
    assert isinstance(btc["symbolId"], int) and btc["unifiedMarginTrade"] is True
    assert isinstance(btc["fundingInterval"], int)


async def test_instruments_spot_no_cursor_prelaunch_empty(client):
    _, body, _ = await client.get("/v5/market/instruments-info", {"category": "spot"}, signed=False)
    res = body["result"]
    assert "nextPageCursor" not in res
    xrp = next(r for r in res["list"] if r["symbol"] == "XRPUSDT")
    assert "qtyStep" not in xrp["lotSizeFilter"] and xrp["lotSizeFilter"]["basePrecision"] == "0.01"
    assert xrp["lotSizeFilter"]["minOrderAmt"] == "5"
    _, body, _ = await client.get("/v5/market/instruments-info",
                                  {"category": "linear", "limit": "1000", "status": "PreLaunch"}, signed=False)
    assert body["result"]["list"] == []
    _, body, _ = await client.get("/v5/market/instruments-info", {"category": "option", "baseCoin": "BTC"},
                                  signed=False)
    assert body["retCode"] == 0 and body["result"]["list"] == []


async def test_kline_shape_newest_first_and_limits(client):
    _, body, _ = await client.get("/v5/market/kline", {"symbol": "BTCUSDT", "interval": "15"}, signed=False)
    res = body["result"]
    assert res["category"] == "linear" and res["symbol"] == "BTCUSDT"
    rows = res["list"]
    assert len(rows) == 200  # default limit
    assert all(len(r) == 7 and all(isinstance(x, str) for x in r) for r in rows)
    starts = [int(r[0]) for r in rows]
    assert starts == sorted(starts, reverse=True)
    assert all(a - b == 15 * 60_000 for a, b in zip(starts, starts[1:], strict=False))
    for r in rows:
        o, h, lo, c = (Decimal(x) for x in r[1:5])
        assert lo <= min(o, c) and h >= max(o, c)
    _, body, _ = await client.get("/v5/market/kline", {"symbol": "BTCUSDT", "interval": "240", "limit": "1000"},
                                  signed=False)
    assert len(body["result"]["list"]) == 1000  # warm-up history for slow timeframes


async def test_kline_first_row_is_forming_candle(client, sim):
    sim.set_price("BTCUSDT", Decimal("61234.5"))
    _, body, _ = await client.get("/v5/market/kline", {"symbol": "BTCUSDT", "interval": "60", "limit": "2"},
                                  signed=False)
    assert body["result"]["list"][0][4] == "61234.50"


@pytest.mark.parametrize("interval", ["1", "3", "5", "15", "30", "60", "120", "240", "360", "720", "D", "W"])
async def test_kline_every_interval(client, interval):
    _, body, _ = await client.get("/v5/market/kline", {"symbol": "XRPUSDT", "interval": interval, "limit": "5",
                                                       "category": "spot"}, signed=False)
    assert body["retCode"] == 0
    assert len(body["result"]["list"]) == 5


async def test_kline_resample_matches_base_candles(client):
    _, b5, _ = await client.get("/v5/market/kline", {"symbol": "ETHUSDT", "interval": "5", "limit": "30"},
                                signed=False)
    _, b1, _ = await client.get("/v5/market/kline", {"symbol": "ETHUSDT", "interval": "1", "limit": "150"},
                                signed=False)
    by_bucket: dict[int, list] = {}
    for r in b1["result"]["list"]:
        by_bucket.setdefault(int(r[0]) // 300_000 * 300_000, []).append(r)
    checked = 0
    for r in b5["result"]["list"][1:]:  # completed 5m candles
        minutes = sorted(by_bucket.get(int(r[0]), []), key=lambda x: int(x[0]))
        if len(minutes) != 5:
            continue
        assert Decimal(r[1]) == Decimal(minutes[0][1])
        assert Decimal(r[2]) == max(Decimal(m[2]) for m in minutes)
        assert Decimal(r[3]) == min(Decimal(m[3]) for m in minutes)
        assert Decimal(r[4]) == Decimal(minutes[-1][4])
        checked += 1
    assert checked >= 20


async def test_kline_start_end_window(client):
    _, body, _ = await client.get("/v5/market/kline", {"symbol": "BTCUSDT", "interval": "60", "limit": "10"},
                                  signed=False)
    rows = body["result"]["list"]
    end, start = int(rows[2][0]), int(rows[6][0])
    _, body, _ = await client.get("/v5/market/kline", {"symbol": "BTCUSDT", "interval": "60", "start": str(start + 5),
                                                       "end": str(end)}, signed=False)
    got = body["result"]["list"]
    assert [int(r[0]) for r in got] == [int(r[0]) for r in rows[2:7]]  # the candle containing start is included
    assert got == rows[2:7]


async def test_kline_step_appends_history(client, sim):
    _, before, _ = await client.get("/v5/market/kline", {"symbol": "SOLUSDT", "interval": "1", "limit": "3"},
                                    signed=False)
    sim.step("SOLUSDT", 2)
    _, after, _ = await client.get("/v5/market/kline", {"symbol": "SOLUSDT", "interval": "1", "limit": "3"},
                                   signed=False)
    assert int(after["result"]["list"][0][0]) == int(before["result"]["list"][0][0]) + 120_000
    assert after["result"]["list"][0][1] == sim.series["SOLUSDT"].klines(1, None, None, 1)[0][1]


async def test_kline_bad_params(client):
    _, body, _ = await client.get("/v5/market/kline", {"symbol": "BTCUSDT", "interval": "7"}, signed=False)
    assert body["retCode"] == 10001
    _, body, _ = await client.get("/v5/market/kline", {"symbol": "FOO", "interval": "5"}, signed=False)
    assert body["retCode"] == 10001


async def test_unknown_path_is_404(sim_url):
    async with aiohttp.ClientSession() as s, s.get(f"{sim_url}/v5/market/nothing") as r:
        assert r.status == 404


async def test_random_walk_source_is_seeded():
    t0 = 1_700_000_000_000  # same timeline for all three
    a = ExchangeSimulator(SimConfig(seed=7, price_source="random", history_candles=5000, start_time_ms=t0))
    b = ExchangeSimulator(SimConfig(seed=7, price_source="random", history_candles=5000, start_time_ms=t0))
    c = ExchangeSimulator(SimConfig(seed=8, price_source="random", history_candles=5000, start_time_ms=t0))
    for s in (a, b, c):
        s.step_all(50)
    ka = a.series["BTCUSDT"].klines(5, None, None, 100)
    assert ka == b.series["BTCUSDT"].klines(5, None, None, 100)
    assert ka != c.series["BTCUSDT"].klines(5, None, None, 100)


async def test_real_replay_follows_shipped_candles():
    """The replayed 5m path has the returns of the shipped real candles (rescaled to price_level)."""
    from traderagent.sim.market import load_source

    sim = ExchangeSimulator(SimConfig(history_candles=3000))
    series = sim.series["XRPUSDT"]
    src = load_source("XRPUSDT-5m.csv")
    real_in_history = len(src) * 5 // 4 // 5 * 5  # a quarter of the real minutes sit in the history
    start_row = real_in_history // 5
    factor = Decimal("1.2") / Decimal(str(src[start_row, 0]))
    sim.step("XRPUSDT", 10)
    rows = series.klines(5, None, None, 3)[1:]  # two completed 5m candles
    for k, r in enumerate(reversed(rows)):
        expect = Decimal(str(src[start_row + k, 3])) * factor
        assert abs(Decimal(r[4]) - expect) <= Decimal("0.0001")
