"""Parameters declared once: each strategy's ``PARAMS`` and the desk-wide risk rails.

A ``Param`` is one parameter's name, type, default, bounds, meaning and accepted aliases. Everything
that reads parameters derives from these declarations: ``BaseStrategy`` (``parse_params`` at
construction), the bots file, ``traderagent backtest --params``, ``traderagent validate`` and the
README table. Cross-field rules stay with their owner: the strategy for its own rules (ema_fast <
ema_slow), the validator for rules that span a bot (ladder capital within the bot's capital).

Entry points
------------
    check_params(params, raw, owner="") -> (given, errors)   # every error, for reports
    parse_params(params, raw, owner="") -> values            # defaults filled; first error raised
    RISK_RAILS                          # risk_per_trade, max_exposure, max_daily_loss, liquidation_alert

Values may be typed (TOML: Decimal, int, bool, lists) or text (command line: ``"20"``, ``"true"``,
``"1h,15m,5m"`` or ``"[3, 3, 2]"``, ``"none"`` for an optional parameter); the result is always typed. Money and fractions
are ``Decimal``; a ``ParamError`` names the parameter, the value and the allowed range.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from traderagent import timeframes
from traderagent.numbers import NumberError, to_decimal

# Timeframes a bot may trade on (those ByBit serves), in minutes (for ordering high -> low).
TIMEFRAME_MINUTES = {name: timeframes.timeframe_minutes(name) for name in timeframes.TIMEFRAMES}
TIMEFRAMES = tuple(TIMEFRAME_MINUTES)
_TRUE, _FALSE = ("true", "yes", "on", "1"), ("false", "no", "off", "0")
_UNSET = ("none", "null", "")


def show(value: Any) -> str:
    """A value as it appears in a message: Decimals plainly (1E+3 -> 1000), long text cut."""
    if isinstance(value, Decimal) and value.is_finite():
        return format(value.normalize(), "f")
    if isinstance(value, list | tuple):
        return "[" + ", ".join(show(v) for v in value) + "]"
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= 40 else text[:37] + "..."


class ParamError(ValueError):
    """A parameter that cannot be used; ``str()`` is ``"field = value: reason"``."""

    def __init__(self, field: str, reason: str, value: Any = None, *, shown: bool = True, allowed: str = "") -> None:
        self.field, self.reason, self.value, self.shown, self.allowed = field, reason, value, shown, allowed
        super().__init__(self.describe())

    def describe(self, prefix: str = "") -> str:
        """The message with the field's full path (``prefix.field``)."""
        path = f"{prefix}.{self.field}" if prefix else self.field
        return f"{path} = {show(self.value)}: {self.reason}" if self.shown else f"{path}: {self.reason}"


@dataclass(frozen=True)
class Param:
    """One parameter. ``count``: a list of exactly that many values of ``kind`` (each within the bounds)."""

    name: str
    kind: type  # int | Decimal | float | bool | str; object: taken as given
    default: Any
    meaning: str
    low: Decimal | None = None
    high: Decimal | None = None
    low_open: bool = False  # True: value must be > low
    choices: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()
    count: int | None = None
    optional: bool = False  # None ("none" on the command line) is allowed: the feature is off

    def allowed(self) -> str:
        """The allowed values in words (the README's 'allowed' column)."""
        if self.choices:
            text = " | ".join(self.choices)
        else:
            lo = "" if self.low is None else (f"> {self.low}" if self.low_open else f">= {self.low}")
            hi = "" if self.high is None else f"<= {self.high}"
            text = " and ".join(p for p in (lo, hi) if p)
            if self.kind is int:
                text = f"{text} (whole number)".strip()
            elif self.kind is bool:
                text = "true | false"
        if self.count is not None:
            text = f"{self.count} values, each {text}" if text else f"{self.count} values"
        return f"{text}; or none" if self.optional else text

    def parse(self, value: Any) -> Any:
        """The typed value; ParamError (field = this name) when it is not allowed."""
        if value is None or (isinstance(value, str) and value.strip().lower() in _UNSET and self.kind is not str):
            if self.optional:
                return None
            raise ParamError(self.name, f"is required ({self.allowed()})", value, allowed=self.allowed())
        if self.count is None:
            return self._one(value, self.name)
        items = list_items(value) if isinstance(value, str) else value
        if not isinstance(items, list | tuple) or len(items) != self.count:
            raise ParamError(self.name, f"must be a list of {self.count} values ({self.allowed()})", value,
                             allowed=self.allowed())
        return tuple(self._one(item, f"{self.name}[{i}]") for i, item in enumerate(items))

    def _one(self, value: Any, field: str) -> Any:
        try:
            out = self._convert(value.strip() if isinstance(value, str) and self.kind is not object else value)
        except ValueError as exc:
            raise ParamError(field, f"{exc} ({self.allowed()})", value, allowed=self.allowed()) from None
        if self.choices and out not in self.choices:
            raise ParamError(field, f"must be one of {self.allowed()}", value, allowed=self.allowed())
        number = to_decimal(out) if isinstance(out, int | float | Decimal) and not isinstance(out, bool) else None
        if number is not None and not self._within(number):
            raise ParamError(field, f"out of range (allowed {self.allowed()})", value, allowed=self.allowed())
        return out

    def _convert(self, value: Any) -> Any:
        kind = self.kind
        if kind is object:
            return value
        if kind is bool:
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.lower() in _TRUE + _FALSE:
                return value.lower() in _TRUE
            raise ValueError("must be true or false")
        if kind is str:
            if not isinstance(value, str):
                raise ValueError("must be text")
            return value
        try:
            number = to_decimal(value)
        except NumberError as exc:
            raise ValueError(exc.reason) from None
        if kind is int:
            if number != number.to_integral_value():
                raise ValueError("must be a whole number")
            return int(number)
        return float(number) if kind is float else number

    def _within(self, number: Decimal) -> bool:
        if self.low is not None and (number <= self.low if self.low_open else number < self.low):
            return False
        return self.high is None or number <= self.high


def list_items(text: str) -> list[str]:
    """A list written on a command line: ``1h,15m,5m`` or JSON-ish ``[3, 3, 2]`` / ``["1h", "15m", "5m"]``."""
    text = text.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    return [item.strip().strip("'\"") for item in text.split(",")]


def _d(text: str) -> Decimal:
    return Decimal(text)


def timeframe_param(default: str, meaning: str) -> Param:
    return Param("timeframe", str, default, meaning, choices=TIMEFRAMES)


def check_params(params: Sequence[Param], raw: Mapping[str, Any], owner: str = "") -> tuple[dict[str, Any], list[ParamError]]:
    """The parameters given in ``raw`` under their declared names, typed, and an error for each bad one.

    Aliases resolve to the declared name; a name given twice (itself and an alias) and a name not
    declared are errors."""
    by_name = {p.name: p for p in params}
    alias_of = {a: p.name for p in params for a in p.aliases}
    given: dict[str, Any] = {}
    errors: list[ParamError] = []
    for key, value in raw.items():
        name = alias_of.get(str(key), str(key))
        if name not in by_name:
            takes = ", ".join(sorted(by_name))
            errors.append(ParamError(str(key), f"unknown parameter{' of ' + owner if owner else ''} (known: {takes})",
                                     shown=False))
        elif name in given or name != key and name in raw:
            errors.append(ParamError(str(key), f"given twice (also as {name!r})", shown=False))
        else:
            try:
                given[name] = by_name[name].parse(value)
            except ParamError as exc:
                errors.append(exc)
    return given, errors


def parse_params(params: Sequence[Param], raw: Mapping[str, Any], owner: str = "") -> dict[str, Any]:
    """Every declared parameter, typed: the given ones over the defaults. Raises the first ParamError."""
    given, errors = check_params(params, raw, owner)
    if errors:
        raise errors[0]
    return {**{p.name: p.default for p in params}, **given}


# Desk-wide risk rails: RISK_PER_TRADE, MAX_EXPOSURE, MAX_DAILY_LOSS in the environment (the names
# upper-cased), [risk] in the bots file. risk_per_trade is also the parameter of the strategies that
# size by risk; the desk hands them its rail.
RISK_PER_TRADE = Param("risk_per_trade", Decimal, _d("0.01"), "fraction of equity risked per trade",
                       low=_d("0"), low_open=True, high=_d("0.05"))
RISK_RAILS: tuple[Param, ...] = (
    RISK_PER_TRADE,
    Param("max_exposure", Decimal, _d("0.5"), "open positions + resting entries of all bots / deployed capital",
          low=_d("0"), low_open=True, high=_d("0.50")),
    Param("max_daily_loss", Decimal, _d("0.05"), "loss today (UTC) that pauses a bot or the desk, fraction of capital",
          low=_d("0"), low_open=True, high=_d("0.10")),
    Param("liquidation_alert", Decimal, _d("0.1"), "alert when a perpetual position's mark price is this close to "
          "its liquidation price, fraction of the mark price", low=_d("0"), low_open=True, high=_d("0.50")),
)
RISK_DEFAULTS: dict[str, Decimal] = {p.name: p.default for p in RISK_RAILS}
