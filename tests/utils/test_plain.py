"""json_safe: the one conversion of stored state to JSON-safe data (decided once per type, so it must
follow the type's whole ancestry, not only its exact class)."""

from __future__ import annotations

import math
from collections import OrderedDict, namedtuple
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from enum import Enum, IntEnum

import numpy as np

from traderagent.utils.plain import json_safe


class Side(Enum):
    BUY = "buy"


class Level(IntEnum):
    ONE = 1


class Price(Decimal):
    pass


@dataclass
class Inner:
    at: datetime
    qty: Decimal


@dataclass
class Outer:
    inner: Inner
    tags: tuple[str, ...]
    extra: dict = field(default_factory=dict)


def test_every_kind_of_value_and_subclasses_convert_as_their_ancestors():
    at = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
    pair = namedtuple("pair", "a b")
    value = {
        "decimal": Decimal("1.50"), "price": Price("2"), "enum": Side.BUY, "int_enum": Level.ONE,
        "datetime": at, "date": date(2024, 1, 2), "duration": timedelta(minutes=2), "nan": math.nan,
        "inf": -math.inf, "float": 0.25, "np_float": np.float64(1.5), "np_int": np.int64(7), "np_bool": np.bool_(True),
        "nested": Outer(Inner(at, Decimal("3")), ("a", "b"), {1: [Decimal("4"), (5, None)]}),
        "ordered": OrderedDict(b=1), "pair": pair(Decimal("1"), 2), "bool": True, "none": None, "text": "x",
        "class": Inner,
    }
    for _ in range(2):  # the first call decides each type's conversion, the second reuses it
        assert json_safe(value) == {
            "decimal": "1.50", "price": "2", "enum": "buy", "int_enum": 1, "datetime": "2024-01-02T03:04:05+00:00",
            "date": "2024-01-02", "duration": 120.0, "nan": None, "inf": None, "float": 0.25, "np_float": 1.5,
            "np_int": 7, "np_bool": True,
            "nested": {"inner": {"at": "2024-01-02T03:04:05+00:00", "qty": "3"}, "tags": ["a", "b"],
                       "extra": {"1": ["4", [5, None]]}},
            "ordered": {"b": 1}, "pair": ["1", 2], "bool": True, "none": None, "text": "x", "class": Inner,
        }
