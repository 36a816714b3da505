"""The one decimal conversion rule of the code base (layer 0: no I/O, imported by every layer).

``to_decimal(value)`` accepts a ``Decimal``, an ``int``, a numeric ``str`` (surrounding blanks ignored) or a
``float``. A float goes through ``str()``, its shortest repr, so ``0.1`` becomes ``Decimal('0.1')`` and not
the binary expansion ``0.1000000000000000055...``. Booleans (``True`` is an ``int`` to Python, never a
quantity here), NaN, ±Infinity and anything else raise ``NumberError``: a ``ValueError`` whose message names
the field and the value at fault.

``decimal_or(value, default)`` is the same rule for wire fields where ``None`` or ``""`` mean "not set"
(ByBit sends ``""`` for an absent price).
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import TypeVar

ZERO = Decimal(0)
D = TypeVar("D", Decimal, None)


class NumberError(ValueError):
    """A value that is not an acceptable number; ``str()`` is a one-line message naming field and value."""

    def __init__(self, value: object, field: str = "", why: str = "must be a number") -> None:
        super().__init__(f"{field} {why}, got {value!r}".lstrip())
        self.value = value
        self.field = field
        self.reason = why  # without field and value, for messages that name them already


def to_decimal(value: object, *, field: str = "") -> Decimal:
    """Exact, finite Decimal from a Decimal/int/str/float (see the module docstring for the rule)."""
    if isinstance(value, bool):
        raise NumberError(value, field, "must be a number, not a boolean")
    if isinstance(value, Decimal):
        result = value
    elif isinstance(value, int | float | str):
        try:
            result = Decimal(str(value).strip())
        except InvalidOperation:
            raise NumberError(value, field) from None
    else:
        raise NumberError(value, field, f"must be a number, not {type(value).__name__}")
    if not result.is_finite():
        raise NumberError(value, field, "must be a finite number")
    return result


def decimal_or(value: object, default: D, *, field: str = "") -> Decimal | D:
    """``default`` for None or ""; otherwise ``to_decimal(value)``."""
    if value is None or value == "":
        return default
    return to_decimal(value, field=field)


def positive_decimal(value: object, *, field: str = "") -> Decimal:
    """``to_decimal(value)``, which must also be greater than zero."""
    number = to_decimal(value, field=field)
    if number <= 0:
        raise NumberError(value, field, "must be positive")
    return number
