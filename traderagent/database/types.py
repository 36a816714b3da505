"""Column types and SQL expressions that behave identically on SQLite and PostgreSQL.

Money and quantities:
- PostgreSQL stores them as unconstrained ``NUMERIC`` (arbitrary precision, keeps the scale it
  was given), so values, ``SUM`` and products are exact in the server.
- SQLite has no decimal type (a NUMERIC column would turn "0.00000001" into a float), so the
  column is TEXT holding the canonical plain-notation string. SQL arithmetic on that text would
  go through floats, so every aggregate the manager needs runs through small exact functions
  registered on each SQLite connection (``ta_dsum`` aggregate, ``ta_dmul``, ``ta_dsub``,
  ``ta_dsign``) that compute with ``decimal.Decimal`` at 200 digits and trap inexact results.
  The expressions below (``exact_sum`` ...) compile to those functions on SQLite and to plain
  SQL on PostgreSQL, so the same query text is exact on both.

Timestamps: aware UTC in and out. PostgreSQL uses ``timestamptz``; SQLite stores naive UTC text
(fixed width, so string comparison is time order) and the type re-attaches UTC on the way out.
"""

from __future__ import annotations

import datetime as dt
import json
from decimal import Context, Decimal, Inexact, InvalidOperation
from typing import Any

from sqlalchemy import JSON, DateTime, String, Text
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.expression import FunctionElement
from sqlalchemy.types import Integer, TypeDecorator, TypeEngine

from traderagent.numbers import decimal_or, to_decimal

UTC = dt.UTC

# Enough digits for any money we handle; Inexact is trapped so a rounding can never pass silently.
EXACT = Context(prec=200, traps=[InvalidOperation, Inexact])


def canonical(value: Decimal) -> str:
    """Plain notation, scale preserved: Decimal('1E-8') -> '0.00000001', '100.50' stays '100.50'."""
    return format(value, "f")


class ExactDecimal(TypeDecorator[Decimal]):
    """Decimal that round-trips exactly: NUMERIC on PostgreSQL, canonical TEXT on SQLite."""

    impl = String
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(postgresql.NUMERIC(asdecimal=True))
        return dialect.type_descriptor(Text())

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if value is None:
            return None
        number = to_decimal(value)
        return number if dialect.name == "postgresql" else canonical(number)

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        if value is None:
            return None
        return to_decimal(value)


class UTCDateTime(TypeDecorator[dt.datetime]):
    """Aware UTC datetimes on both backends (naive input is taken as UTC)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if value is None:
            return None
        if not isinstance(value, dt.datetime):
            raise TypeError(f"expected a datetime, got {type(value).__name__}")
        value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        # SQLite cannot store an offset; keep naive UTC there.
        return value if dialect.name == "postgresql" else value.replace(tzinfo=None)

    def process_result_value(self, value: Any, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def json_type() -> TypeEngine[Any]:
    """JSON everywhere, JSONB on PostgreSQL."""
    return JSON().with_variant(postgresql.JSONB(), "postgresql")


def _json_default(obj: Any) -> Any:
    # Decimals become strings (exact); the reader parses them back where it expects money.
    if isinstance(obj, Decimal):
        return canonical(obj)
    if isinstance(obj, dt.datetime | dt.date):
        return obj.isoformat()
    if isinstance(obj, set | frozenset | tuple):
        return list(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def json_dumps(obj: Any) -> str:
    return json.dumps(obj, default=_json_default, separators=(",", ":"))


def utcnow() -> dt.datetime:
    return dt.datetime.now(UTC)


# --- exact SQL expressions ---------------------------------------------------------------------


class exact_sum(FunctionElement[Decimal]):
    """SUM of an ExactDecimal expression (NULL when no rows)."""

    type = ExactDecimal()
    inherit_cache = True
    name = "exact_sum"


class exact_mul(FunctionElement[Decimal]):
    type = ExactDecimal()
    inherit_cache = True
    name = "exact_mul"


class exact_sub(FunctionElement[Decimal]):
    type = ExactDecimal()
    inherit_cache = True
    name = "exact_sub"


class exact_sign(FunctionElement[int]):
    """-1, 0 or 1."""

    type = Integer()
    inherit_cache = True
    name = "exact_sign"


class utc_day(FunctionElement[str]):
    """'YYYY-MM-DD' of a UTCDateTime column, in UTC."""

    type = String()
    inherit_cache = True
    name = "utc_day"


def _args(element: FunctionElement[Any], compiler: Any, **kw: Any) -> list[str]:
    return [compiler.process(arg, **kw) for arg in element.clauses]


@compiles(exact_sum)
def _sum_pg(element: exact_sum, compiler: Any, **kw: Any) -> str:
    return f"sum({_args(element, compiler, **kw)[0]})"


@compiles(exact_sum, "sqlite")
def _sum_sqlite(element: exact_sum, compiler: Any, **kw: Any) -> str:
    return f"ta_dsum({_args(element, compiler, **kw)[0]})"


@compiles(exact_mul)
def _mul_pg(element: exact_mul, compiler: Any, **kw: Any) -> str:
    a, b = _args(element, compiler, **kw)
    return f"({a} * {b})"


@compiles(exact_mul, "sqlite")
def _mul_sqlite(element: exact_mul, compiler: Any, **kw: Any) -> str:
    a, b = _args(element, compiler, **kw)
    return f"ta_dmul({a}, {b})"


@compiles(exact_sub)
def _sub_pg(element: exact_sub, compiler: Any, **kw: Any) -> str:
    a, b = _args(element, compiler, **kw)
    return f"({a} - {b})"


@compiles(exact_sub, "sqlite")
def _sub_sqlite(element: exact_sub, compiler: Any, **kw: Any) -> str:
    a, b = _args(element, compiler, **kw)
    return f"ta_dsub({a}, {b})"


@compiles(exact_sign)
def _sign_pg(element: exact_sign, compiler: Any, **kw: Any) -> str:
    return f"CAST(sign({_args(element, compiler, **kw)[0]}) AS INTEGER)"


@compiles(exact_sign, "sqlite")
def _sign_sqlite(element: exact_sign, compiler: Any, **kw: Any) -> str:
    return f"ta_dsign({_args(element, compiler, **kw)[0]})"


@compiles(utc_day)
def _day_pg(element: utc_day, compiler: Any, **kw: Any) -> str:
    return f"to_char(({_args(element, compiler, **kw)[0]}) AT TIME ZONE 'UTC', 'YYYY-MM-DD')"


@compiles(utc_day, "sqlite")
def _day_sqlite(element: utc_day, compiler: Any, **kw: Any) -> str:
    # stored as 'YYYY-MM-DD HH:MM:SS[.ffffff]' in UTC
    return f"substr({_args(element, compiler, **kw)[0]}, 1, 10)"


# --- the SQLite side of those expressions ------------------------------------------------------


class DecimalSum:
    """sqlite3 aggregate: exact sum of canonical decimal strings; NULL for no non-NULL input."""

    def __init__(self) -> None:
        self.total: Decimal | None = None

    def step(self, value: Any) -> None:
        number = decimal_or(value, None)
        if number is not None:
            self.total = number if self.total is None else EXACT.add(self.total, number)

    def finalize(self) -> str | None:
        return None if self.total is None else canonical(self.total)


def _dmul(a: Any, b: Any) -> str | None:
    x, y = decimal_or(a, None), decimal_or(b, None)
    return None if x is None or y is None else canonical(EXACT.multiply(x, y))


def _dsub(a: Any, b: Any) -> str | None:
    x, y = decimal_or(a, None), decimal_or(b, None)
    return None if x is None or y is None else canonical(EXACT.subtract(x, y))


def _dsign(a: Any) -> int | None:
    x = decimal_or(a, None)
    return None if x is None else (x > 0) - (x < 0)


def register_sqlite_functions(conn: Any) -> None:
    """Install the exact decimal functions on a plain sqlite3 connection."""
    conn.create_aggregate("ta_dsum", 1, DecimalSum)
    conn.create_function("ta_dmul", 2, _dmul, deterministic=True)
    conn.create_function("ta_dsub", 2, _dsub, deterministic=True)
    conn.create_function("ta_dsign", 1, _dsign, deterministic=True)


__all__ = [
    "EXACT",
    "ExactDecimal",
    "UTCDateTime",
    "canonical",
    "exact_mul",
    "exact_sign",
    "exact_sub",
    "exact_sum",
    "json_dumps",
    "json_type",
    "register_sqlite_functions",
    "utc_day",
    "utcnow",
]
