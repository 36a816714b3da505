"""The one decimal conversion rule: what it accepts, what it refuses, and that every former copy obeys it."""

from __future__ import annotations

import math
from decimal import Decimal

import pytest

from traderagent.numbers import NumberError, decimal_or, positive_decimal, to_decimal


@pytest.mark.parametrize(("value", "expected"), [
    (Decimal("1.50"), "1.50"), (7, "7"), (" 0.02 ", "0.02"), ("2e-2", "0.02"), (0.1, "0.1"), (1e-8, "1E-8"),
])
def test_accepted_forms(value: object, expected: str) -> None:
    assert to_decimal(value) == Decimal(expected)
    assert str(to_decimal(0.1)) == "0.1"  # the float's shortest repr, not its binary expansion


@pytest.mark.parametrize(("value", "why"), [
    (True, "not a boolean"), (False, "not a boolean"), (math.nan, "finite"), (math.inf, "finite"),
    (-math.inf, "finite"), ("NaN", "finite"), ("-Infinity", "finite"), (Decimal("sNaN"), "finite"),
    ("abc", "must be a number"), ("", "must be a number"), (None, "not NoneType"), ([1], "not list"),
])
def test_refused_with_one_exception_type_naming_field_and_value(value: object, why: str) -> None:
    with pytest.raises(NumberError, match=why) as info:
        to_decimal(value, field="qty")
    assert isinstance(info.value, ValueError)
    assert str(info.value).startswith("qty ") and repr(value) in str(info.value)


def test_decimal_or_and_positive() -> None:
    assert decimal_or("", None) is None and decimal_or(None, Decimal(0)) == 0 and decimal_or("1.5", None) == Decimal("1.5")
    with pytest.raises(NumberError):
        decimal_or("x", None)
    with pytest.raises(NumberError, match="capital must be positive, got '0'"):
        positive_decimal("0", field="capital")


def test_former_copies_share_the_rule() -> None:
    """Each layer used to have its own to_decimal/_dec with different rules on floats, booleans and NaN."""
    from traderagent.backtest.fills import dec
    from traderagent.bots import parse_bots
    from traderagent.database.types import ExactDecimal
    from traderagent.strategies import base
    from traderagent.utils.config_validator import ConfigValidator

    assert base.to_decimal is to_decimal
    assert dec(0.1) == Decimal("0.1")
    # the database refused floats (TypeError), the exchange client raised its own InvalidOrderError...
    assert ExactDecimal().process_bind_param(0.1, _sqlite()) == "0.1"
    with pytest.raises(NumberError):
        ExactDecimal().process_bind_param(True, _sqlite())
    refused = parse_bots({"bots": [{"name": "b", "strategy": "grid", "symbol": "BTCUSDT", "share": True}]}).refused
    assert refused and "share = True: must be a number, not a boolean" in refused[0][1]
    report = ConfigValidator().run_full_validation(risk={"risk_per_trade": True})
    assert not report.passed and "not a boolean" in report.failures[0].message


def _sqlite():  # type: ignore[no-untyped-def]
    from sqlalchemy.dialects import sqlite
    return sqlite.dialect()
