"""Pure pieces: retCode table, signing bytes, Decimal rounding/validation, URLs, frames."""

from __future__ import annotations

from decimal import Decimal as D

import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pybit._http_manager import _V5HTTPManager, generate_signature

from traderagent.api import exceptions as ex
from traderagent.api.bybit_direct_client import DEMO_URL, MAINNET_URL, ByBitDirectClient
from traderagent.api.markets import (
    Market,
    add_candle,
    candle_arrays,
    candles_frame,
    check_order,
    klines_to_frame,
    normalize_symbol,
    parse_linear,
    parse_spot,
    round_down,
)
from traderagent.api.signing import build_query, sign

# docs/exchange.md section 4, row by row, written independently of the implementation's table.
DOC_ROWS: list[tuple[type[ex.ExchangeAPIError], list[int]]] = [
    (ex.InvalidTimestampError, [10002, -1]),
    (ex.AuthenticationError, [10003, 33004, -2015, 10004]),
    (ex.AuthenticationError, [10005, 10010, 10009, 10024, 10027, 10028, 10029, 10007]),
    (ex.RateLimitError, [10006, 170005, 429]),
    (ex.InvalidOrderError, [10001, 170130, 170105, 170115, 170116, 170117, 170201, 170121, 170151, 170157]),
    (ex.InsufficientFundsError, [110007, 110004, 110006, 110012, 110044, 110045, 110014, 170131, 170033]),
    (ex.InvalidOrderError, [110017, 110094, 110090, 110021, 170136, 170137, 170148, 170140, 170124,
                            170381, 170382, 170197, 170198]),
    (ex.InvalidOrderError, [110003, 30208, 30209, 110120, 110121, 170132, 170133, 170134, 170192, 170193,
                            170194, 170371, 170372, 170218]),
    (ex.OrderNotFoundError, [110001, 170213]),
    (ex.InvalidOrderError, [110008, 110010, 170139, 170142, 170143, 170190, 170212]),
    (ex.NetworkError, [110079, 170191]),
    (ex.DuplicateOrderError, [110072, 170141]),
    (ex.InvalidOrderError, [110023, 110042, 110043, 110013, 110036, 110038, 110025, 110024, 110028, 110026, 110020]),
    (ex.NetworkError, [10000, 10016, 170001, 170007, 170146, 170147, 170149, 170150]),
    (ex.ExchangeAPIError, [10017, 10014]),
    (ex.NotSupportedError, [10032]),
]
DOC_CASES = [(code, cls) for cls, codes in DOC_ROWS for code in codes]


@pytest.mark.parametrize(("code", "cls"), DOC_CASES)
def test_every_documented_retcode_maps_to_its_class(code, cls):
    err = ex.exception_for_retcode(code, "some text", "/v5/order/create")
    assert isinstance(err, cls)
    assert (err.ret_code, err.ret_msg, err.endpoint) == (code, "some text", "/v5/order/create")
    assert code in ex.RETCODE_TABLE


def test_table_has_no_code_outside_the_doc():
    assert set(ex.RETCODE_TABLE) == {code for code, _ in DOC_CASES}


def test_unknown_code_is_base_error():
    err = ex.exception_for_retcode(999999, "new", "/x")
    assert type(err) is ex.ExchangeAPIError and err.ret_code == 999999


def test_contract_hierarchy():
    for cls in (ex.AuthenticationError, ex.RateLimitError, ex.InsufficientFundsError, ex.InvalidOrderError,
                ex.OrderNotFoundError, ex.NetworkError):
        assert issubclass(cls, ex.ExchangeAPIError)
    assert issubclass(ex.DuplicateOrderError, ex.InvalidOrderError)
    assert issubclass(ex.IPBannedError, ex.RateLimitError)


def test_messages_never_carry_key_or_secret():
    msg = "error sign! origin_string[1700000000000my-key-123410000{\"a\":1}] secret=shh-secret"
    err = ex.exception_for_retcode(10004, msg, "/v5/order/create", secrets=("my-key-1234", "shh-secret"))
    for text in (str(err), repr(err), err.ret_msg):
        assert "my-key-1234" not in text and "shh-secret" not in text
    assert isinstance(err, ex.AuthenticationError)


def test_rate_limit_error_keeps_reset_time():
    err = ex.exception_for_retcode(10006, "Too many visits!", "/v5/order/create", reset_at_ms=123)
    assert isinstance(err, ex.RateLimitError) and err.reset_at_ms == 123


# ---- signing
@pytest.mark.parametrize(("payload", "expected"), [
    (b"accountType=UNIFIED&coin=USDT", "5e3368dc6513523693e132a7282a050c40c53c95b5ab65bf70a921fdd91b45a6"),
    (b'{"category":"linear","symbol":"BTCUSDT","side":"Buy","orderType":"Limit","qty":"0.001","price":"50000"}',
     "fe172ebf8dc38479ddc8b550c111c0d0824d0255ce49985dd452f0786bb11a55"),
    (b"", "d8d5e71d8f986368aa5c13405f059ab6adb4f41df59d2f11bb056226b63457d6"),
])
def test_doc_signature_vectors(payload, expected):
    assert sign(b"test-secret", 1700000000000, "test-key", 5000, payload) == expected


def test_signature_equals_pybit_for_same_bytes():
    payload = "category=linear&symbol=BTCUSDT"
    ours = sign(b"s3cr3t", 1700000000123, "k3y", 10000, payload.encode())
    assert ours == generate_signature(False, "s3cr3t", "1700000000123k3y10000" + payload)
    mgr = _V5HTTPManager(api_key="k3y", api_secret="s3cr3t")
    assert ours == mgr._auth(payload, 10000, 1700000000123)


def test_query_keeps_order_and_cursor_verbatim():
    q = build_query({"symbol": "BTCUSDT", "category": "linear", "cursor": "page_args%3Dfd43%26symbol%3D6%26",
                     "limit": 50, "skip": None, "qty": D("0.00001")})
    assert q == "symbol=BTCUSDT&category=linear&cursor=page_args%3Dfd43%26symbol%3D6%26&limit=50&qty=0.00001"


# ---- rounding and validation
@pytest.mark.parametrize(("value", "step", "expected"), [
    ("0.0019", "0.001", "0.001"), ("1.9999", "0.001", "1.999"), ("12.7", "1", "12"), ("0.99", "1", "0"),
    ("0.123456", "0.0001", "0.1234"), ("50000.19", "0.10", "50000.10"), ("7.3", "0.5", "7.0"),
    ("0.00009999", "0.00001", "0.00009"), ("100", "0.001", "100.000"),
])
def test_round_down_on_step(value, step, expected):
    out = round_down(D(value), D(step))
    assert out == D(expected) and str(out) == expected
    assert format(out, "f") == expected  # never an exponent on the wire


def _btc() -> Market:
    return parse_linear({
        "symbol": "BTCUSDT", "contractType": "LinearPerpetual", "status": "Trading", "baseCoin": "BTC",
        "quoteCoin": "USDT", "settleCoin": "USDT", "priceFilter": {"tickSize": "0.10"},
        "lotSizeFilter": {"maxOrderQty": "1190.000", "minOrderQty": "0.001", "qtyStep": "0.001",
                          "maxMktOrderQty": "500.000", "minNotionalValue": "5"},
    })


def test_check_order_names_limit_and_values():
    m = _btc()
    with pytest.raises(ex.InvalidOrderError, match=r"0.000 rounds to zero on qty_step 0.001"):
        check_order(m, round_down(D("0.0004"), m.qty_step), D("50000"), is_market=False)
    with pytest.raises(ex.InvalidOrderError, match=r"notional 4.5 .*below min_notional 5"):
        check_order(m, D("0.001"), D("4500"), is_market=False)
    with pytest.raises(ex.InvalidOrderError, match=r"amount 600.000 is above max_market_qty 500.000"):
        check_order(m, D("600.000"), None, is_market=True)
    with pytest.raises(ex.InvalidOrderError, match=r"amount 1200 is above max_qty 1190.000"):
        check_order(m, D("1200"), D("1"), is_market=False)
    check_order(m, D("0.001"), D("5000"), is_market=False)  # exactly the minimum passes


def test_instrument_filters():
    base = {"contractType": "LinearPerpetual", "status": "Trading", "settleCoin": "USDT", "symbol": "X"}
    assert parse_linear(base) is not None
    assert parse_linear({**base, "contractType": "LinearFutures"}) is None
    assert parse_linear({**base, "settleCoin": "USDC"}) is None
    assert parse_linear({**base, "status": "PreLaunch"}) is None
    spot = parse_spot({"symbol": "BTCUSDT", "status": "Trading", "baseCoin": "BTC", "quoteCoin": "USDT",
                       "lotSizeFilter": {"basePrecision": "0.000001", "minOrderQty": "0.000011",
                                         "maxOrderQty": "83", "minOrderAmt": "5", "maxLimitOrderQty": "83",
                                         "maxMarketOrderQty": "41.5"},
                       "priceFilter": {"tickSize": "0.1"}})
    assert (spot.qty_step, spot.min_qty, spot.min_notional, spot.max_market_qty) == (
        D("0.000001"), D("0.000011"), D("5"), D("41.5"))


@pytest.mark.parametrize("sym", ["BTC/USDT", "BTCUSDT", "BTC/USDT:USDT", "btc/usdt"])
def test_symbol_forms(sym):
    assert normalize_symbol(sym) == "BTCUSDT"


# ---- construction
def test_urls_and_repr_hide_secrets():
    assert ByBitDirectClient("k", "s").base_url == MAINNET_URL
    assert ByBitDirectClient("k", "s", testnet=True).base_url == DEMO_URL == "https://api-demo.bybit.com"
    assert ByBitDirectClient("k", "s", testnet=True, base_url="http://127.0.0.1:1/").base_url == "http://127.0.0.1:1"
    c = ByBitDirectClient("the-key-xyz", "the-secret-xyz")
    assert "the-key-xyz" not in repr(c) and "the-secret-xyz" not in repr(c)
    with pytest.raises(ValueError):
        ByBitDirectClient("k", "s", market_type="option")


def test_generated_link_ids_are_unique_and_short():
    c = ByBitDirectClient("k", "s")
    ids = {c.new_client_order_id() for _ in range(2000)}
    assert len(ids) == 2000 and all(len(i) <= 36 for i in ids)


def test_klines_to_frame():
    rows = [[1700000000000, D("1"), D("2"), D("0.5"), D("1.5"), D("10")],
            [1700000060000, D("1.5"), D("2.5"), D("1"), D("2"), D("11")]]
    df = klines_to_frame(rows)
    assert list(df.columns) == ["open", "high", "low", "close", "volume"]
    assert str(df.index.tz) == "UTC" and isinstance(df.index, pd.DatetimeIndex)
    assert df.index[1] == pd.Timestamp("2023-11-14 22:14:20", tz="UTC")
    assert all(dt == "float64" for dt in df.dtypes) and df["close"].iloc[-1] == 2.0
    assert klines_to_frame([]).empty


@pytest.mark.parametrize("keep", [1, 2, 5])
def test_candles_appended_one_at_a_time_make_the_frame_of_the_window(keep):
    """MarketData appends each streamed candle to arrays it keeps (add_candle) instead of converting the
    whole history again: the frame is exactly the one the window's rows give (values, index, dtypes)."""
    rows = [[1700000000000 + 60_000 * i, D(f"{i}.1"), D(f"{i}.25"), D("0.5"), D(f"{i}.123456789"), D(i * 7)]
            for i in range(12)]
    candles = candle_arrays(rows[:keep])
    for i in range(keep, len(rows)):
        candles = add_candle(candles, rows[i], keep)
        want = klines_to_frame(rows[i + 1 - keep:i + 1])
        got = candles_frame(candles)
        pd.testing.assert_frame_equal(got, want, check_exact=True)
        assert got.index.dtype == want.index.dtype == "datetime64[us, UTC]" and got.index.name == "timestamp"
        assert all(got[c].to_numpy().flags.c_contiguous for c in got.columns)


def test_redaction_leaves_text_readable_with_tiny_test_secrets():
    err = ex.exception_for_retcode(10001, "params error: side invalid", "/x", secrets=("s", "k"))
    assert err.ret_msg == "params error: side invalid"


@given(
    units=st.integers(min_value=0, max_value=10**9),
    frac=st.integers(min_value=0, max_value=10**6 - 1),
    step=st.sampled_from(["0.001", "1", "0.0001", "0.10", "0.5", "0.000001", "25"]),
)
def test_round_down_properties(units, frac, step):
    value = D(units) + D(frac) / D(10**6)
    s = D(step)
    out = round_down(value, s)
    assert out <= value and value - out < s and out % s == 0
    assert out.as_tuple().exponent == s.as_tuple().exponent  # formatted on the step, never with an exponent
