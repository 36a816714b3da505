"""Plain forms of values: JSON-safe data for storage and decimal text for people.

Layer 0 (no I/O): the strategies' state, the bots file's config and the event payloads are all
stored through `json_safe`; the console and the chat show numbers through `decimal_text`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import fields, is_dataclass
from datetime import date, timedelta
from decimal import Decimal
from enum import Enum
from typing import Any

import numpy as np


def json_safe(value: Any) -> Any:
    """``value`` with Decimals as strings, enums as their values, dates and datetimes ISO 8601, durations
    in seconds, dataclasses as dicts, tuples as lists; a non-finite float becomes None (JSON has no NaN)."""
    kind = type(value)
    convert = _CONVERTERS.get(kind)
    if convert is None:
        convert = _CONVERTERS[kind] = _converter(kind)
    return convert(value)


def _converter(kind: type) -> Callable[[Any], Any]:
    """How ``json_safe`` converts a value of type ``kind`` (decided once per type: a runtime snapshot
    converts thousands of values of a handful of types)."""
    if issubclass(kind, Decimal):
        return str
    if issubclass(kind, Enum):
        return lambda value: value.value
    if issubclass(kind, date):  # a datetime too
        return lambda value: value.isoformat()
    if issubclass(kind, timedelta):
        return lambda value: value.total_seconds()
    if issubclass(kind, float):
        return lambda value: value if math.isfinite(value) else None
    if issubclass(kind, np.generic):
        return lambda value: json_safe(value.item())
    if is_dataclass(kind) and not issubclass(kind, type):
        names = tuple(f.name for f in fields(kind))
        return lambda value: {name: json_safe(getattr(value, name)) for name in names}
    if issubclass(kind, Mapping):
        return lambda value: {str(k): json_safe(v) for k, v in value.items()}
    if issubclass(kind, list | tuple):
        return lambda value: [json_safe(v) for v in value]
    return _same


def _same(value: Any) -> Any:
    return value


_CONVERTERS: dict[type, Callable[[Any], Any]] = {}


def decimal_text(number: Decimal, places: int | None = None, *, signed: bool = False, grouped: bool = False) -> str:
    """``number`` without exponent; rounded to ``places``, or else without trailing zeros.
    Never a negative zero (-0.001 to 2 places is "0.00"); ``signed``: "+" before a positive text;
    ``grouped``: thousands separated by commas ("2,500.00")."""
    number = number.normalize() if places is None else number.quantize(Decimal(1).scaleb(-places))
    if number.is_zero():
        number = number.copy_abs()
    return ("+" if signed and number > 0 else "") + format(number, ",f" if grouped else "f")
