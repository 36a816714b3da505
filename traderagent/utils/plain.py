"""Plain forms of values: JSON-safe data for storage and decimal text for people.

Layer 0 (no I/O): the strategies' state, the bots file's config and the event payloads are all
stored through `json_safe`; the console and the chat show numbers through `decimal_text`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import fields, is_dataclass
from datetime import date, timedelta
from decimal import Decimal
from enum import Enum
from typing import Any

import numpy as np


def json_safe(value: Any) -> Any:
    """``value`` with Decimals as strings, enums as their values, dates and datetimes ISO 8601, durations
    in seconds, dataclasses as dicts, tuples as lists; a non-finite float becomes None (JSON has no NaN)."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, date):  # a datetime too
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, np.generic):
        return json_safe(value.item())
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: json_safe(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


def decimal_text(number: Decimal, places: int | None = None, *, signed: bool = False, grouped: bool = False) -> str:
    """``number`` without exponent; rounded to ``places``, or else without trailing zeros.
    Never a negative zero (-0.001 to 2 places is "0.00"); ``signed``: "+" before a positive text;
    ``grouped``: thousands separated by commas ("2,500.00")."""
    number = number.normalize() if places is None else number.quantize(Decimal(1).scaleb(-places))
    if number.is_zero():
        number = number.copy_abs()
    return ("+" if signed and number > 0 else "") + format(number, ",f" if grouped else "f")
