"""ConfigValidator: bounds on risk rails and strategy parameters, and the bots file format.

Pure core (layer 0): everything above `main_validate` is free of I/O; `main_validate`, the CLI edge,
reads the file and the settings.

Entry points
------------
    ConfigValidator().run_full_validation(risk=None, grid=None, dca=None, trend=None, smc=None,
                                          *, capital=None) -> ValidationReport
    ConfigValidator().validate_bots_config(doc: dict, *, risk_defaults=None, total_capital=None)
        -> ValidationReport          # doc = parse_bots_toml(text); what `traderagent validate` runs
    parse_bots_toml(text: str) -> dict   # tomllib with parse_float=Decimal (exact money)
    render_bounds_markdown() -> str      # the README table, generated from BOUNDS/RULES
    main_validate(args) -> int           # `traderagent validate [BOTS_FILE] [--json]`; 0 ok, 1 a critical failure

Each category argument is a dict (None: category not checked). A missing key takes the default
in BOUNDS; every failure names the field path (`grid.num_levels`), the value and the allowed range.
Numbers may be Decimal, int, float or numeric strings; anything else (bool, NaN, inf, text, lists)
is a failure, never an exception. Fractions are fractions: 0.02 means 2 %.

Bots file format (TOML; the orchestrator loads the same file, with `tomllib.loads(text,
parse_float=Decimal)`):

    [risk]                        # optional; each key overrides the env setting of the same meaning
    risk_per_trade = "0.01"       # RISK_PER_TRADE
    max_exposure = "0.5"          # MAX_EXPOSURE
    max_daily_loss = "0.05"       # MAX_DAILY_LOSS
    min_risk_reward = "2.0"

    [[bots]]
    name = "btc-grid"             # required; unique; 1-32 of A-Z a-z 0-9 _ -
    strategy = "grid"             # required; smc | trend_follower | grid | dca
    symbol = "BTCUSDT"            # required; "BTCUSDT", "BTC/USDT" or "BTC/USDT:USDT"
    market_type = "linear"        # linear | spot (default "linear")
    timeframe = "15m"             # or timeframes = ["4h", "1h", "15m"]: highest first, entry LAST
    capital = "1000"              # optional Decimal string ("allocated_capital" accepted too)
    [bots.params]                 # strategy parameters (see BOUNDS; names below, aliases in ALIASES)
    num_levels = 10

Parameter names (those of traderagent/strategies/*_adapter.py DEFAULTS): grid: num_levels,
total_investment (unset: the bot's capital) or amount_per_grid, range_pct (alias of grid_range) or
upper_price + lower_price, profit_per_grid; dca: base_order, safety_order, max_safety_orders,
price_deviation, step_scale, volume_scale, take_profit, max_capital; trend_follower: ema_fast, ema_slow,
adx_threshold, stop_atr_mult, trailing_atr_mult, take_profit_r; smc: swing_lengths (3 ints),
min_risk_reward, max_risk_reward, timeframes (from the bot's `timeframes`, exactly 3). Other names are
left to the strategy: `main_validate` also builds each bot with `create_strategy` and reports its
ValueError (unknown parameter names, strategy-specific rules) as check `strategy_params`, and merges
each strategy's DEFAULTS under the file's params so the bounds see the values that will really run.
"""

from __future__ import annotations

import json
import re
import sys
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

CRITICAL = "critical"
WARNING = "warning"

# Hard cap for any single strategy's capital (the origin's MAX_POSITION_SIZE_USD).
MAX_POSITION_SIZE_USD = Decimal("50000")
STRATEGIES = ("smc", "trend_follower", "grid", "dca")
MARKET_TYPES = ("linear", "spot")
# Timeframes the exchange client accepts, in minutes (for ordering high -> low).
TIMEFRAME_MINUTES = {"1m": 1, "5m": 5, "15m": 15, "1h": 60, "4h": 240, "1d": 1440}
_NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
_SYMBOL_RE = re.compile(r"^[A-Z0-9]{2,20}(/[A-Z0-9]{2,10}(:[A-Z0-9]{2,10})?)?$")


@dataclass(frozen=True)
class Bound:
    """Allowed range of one field. default None + required False: only checked when present."""

    check: str
    category: str
    low: Decimal | None
    high: Decimal | None
    default: Decimal | None
    meaning: str
    low_open: bool = False  # True: value must be > low (not >=)
    integer: bool = False
    required: bool = False

    def allowed(self) -> str:
        lo = "" if self.low is None else (f"> {self.low}" if self.low_open else f">= {self.low}")
        hi = "" if self.high is None else f"<= {self.high}"
        text = " and ".join(p for p in (lo, hi) if p)
        return f"{text} (whole number)" if self.integer else text

    def contains(self, value: Decimal) -> bool:
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return self.high is None or value <= self.high


def _dec(text: str | None) -> Decimal | None:
    return None if text is None else Decimal(text)


def _b(check: str, category: str, low: str | None, high: str | None, default: str | None, meaning: str,
       **kw: Any) -> Bound:
    return Bound(check, category, _dec(low), _dec(high), _dec(default), meaning, **kw)


# THE bounds table: field path -> Bound. The README table is rendered from it (render_bounds_markdown).
BOUNDS: dict[str, Bound] = {
    "risk.risk_per_trade": _b("risk_per_trade", "risk", "0", "0.05", "0.02", "fraction of equity risked per trade", low_open=True),
    "risk.max_exposure": _b("max_exposure", "risk", "0", "0.50", "0.20", "open position value / equity", low_open=True),
    "risk.max_daily_loss": _b("max_daily_loss", "risk", "0", "0.10", "0.10", "daily loss that halts trading, fraction of equity", low_open=True),
    "risk.min_risk_reward": _b("min_risk_reward", "risk", "1.5", None, "2.5", "smallest reward:risk a signal may have"),
    "grid.num_levels": _b("grid_levels", "strategy", "2", "50", "10", "grid price levels", integer=True),
    "grid.amount_per_grid": _b("grid_total_investment", "strategy", "0", None, "100", "quote currency per level", low_open=True),
    "grid.total_investment": _b("grid_total_investment", "strategy", "0", "50000", None, "num_levels x amount_per_grid; also <= the bot's capital", low_open=True),
    "grid.grid_range": _b("grid_range", "strategy", "0", "0.20", "0.05", "half-width of the grid around its middle, (upper-lower)/(upper+lower)", low_open=True),
    "grid.profit_per_grid": _b("grid_profit_per_grid", "strategy", "0.001", "0.10", None, "profit target of each grid round trip (must beat two fees)"),
    "dca.base_order": _b("dca_max_capital", "strategy", "0", None, "100", "first buy, quote currency", low_open=True),
    "dca.safety_order": _b("dca_max_capital", "strategy", "0", None, "200", "first safety order, quote currency", low_open=True),
    "dca.max_safety_orders": _b("dca_safety_orders", "strategy", "0", "10", "5", "safety orders per deal", integer=True),
    "dca.price_deviation": _b("dca_safety_orders", "strategy", "0", "0.50", "0.015", "drop from the base price to safety order 1", low_open=True),
    "dca.step_scale": _b("dca_safety_orders", "strategy", "0.5", "3", "1", "multiplier of each successive gap"),
    "dca.volume_scale": _b("dca_safety_orders", "strategy", "0.5", "3", "1", "multiplier of each successive safety order"),
    "dca.max_deviation": _b("dca_safety_orders", "strategy", "0", "0.90", None, "drop to the last safety order: d(1+s+...+s^(n-1))", low_open=True),
    "dca.take_profit": _b("dca_take_profit", "strategy", "0.005", "0.50", "0.015", "take profit over the average price"),
    "dca.worst_case_capital": _b("dca_max_capital", "strategy", "0", "50000", None, "base + sum SO*v^(k-1); also <= max_capital and the bot's capital", low_open=True),
    "trend.ema_fast": _b("trend_ema", "trend", "2", "200", "20", "fast EMA period (< ema_slow)", integer=True),
    "trend.ema_slow": _b("trend_ema", "trend", "3", "400", "50", "slow EMA period", integer=True),
    "trend.adx_threshold": _b("trend_adx", "trend", "10", "50", "25", "ADX above which the market trends"),
    "trend.stop_atr_mult": _b("trend_atr", "trend", "0.3", "5", "2.0", "stop distance in ATRs"),
    "trend.trailing_atr_mult": _b("trend_atr", "trend", "0.5", "10", None, "trailing stop distance in ATRs (unset: no trailing)"),
    "trend.take_profit_r": _b("trend_take_profit", "trend", "1", "10", None, "fixed target in multiples of the risk (unset: no target)"),
    "smc.swing_length": _b("smc_swing_length", "smc", "1", "100", None, "bars each side of a swing point, each of swing_lengths", integer=True),
    "smc.min_risk_reward": _b("smc_min_risk_reward", "smc", "1.5", "10", "2.5", "smallest reward:risk of an SMC entry"),
    "smc.max_risk_reward": _b("smc_min_risk_reward", "smc", "1.5", "20", "6.0", "largest reward:risk (targets beyond are capped)"),
}

# Rules that are not a single range; rendered under the table.
RULES: list[tuple[str, str, str]] = [
    ("grid.total_investment", "grid_total_investment", f"num_levels x amount_per_grid <= min(bot capital, {MAX_POSITION_SIZE_USD})"),
    ("grid.upper_price", "grid_range", "with lower_price: 0 < lower_price < upper_price; range = (upper-lower)/(upper+lower)"),
    ("dca.worst_case_capital", "dca_max_capital", f"base + sum_(k=1..n) safety_order*volume_scale^(k-1) <= min(max_capital, bot capital, {MAX_POSITION_SIZE_USD})"),
    ("dca.max_deviation", "dca_safety_orders", "price_deviation*(1 + s + ... + s^(n-1)) <= 0.90 (the deepest safety order stays above 10 % of the base price)"),
    ("trend.ema_fast", "trend_ema", "ema_fast < ema_slow"),
    ("smc.swing_lengths", "smc_swing_length", "three whole numbers (one per timeframe), each >= 1 and <= 100"),
    ("smc.max_risk_reward", "smc_min_risk_reward", "min_risk_reward <= max_risk_reward"),
    ("smc.timeframes", "smc_timeframes", "exactly 3 timeframes (bias, zones, entry), strictly from highest to lowest, each one of " + ", ".join(TIMEFRAME_MINUTES)),
    ("bots[*]", "bot_fields", "name (unique), strategy (" + " | ".join(STRATEGIES) + "), symbol, market_type (linear | spot), timeframes highest first"),
    ("bots[*].capital", "bots_capital", "> 0 each; sum over bots <= TRADERAGENT_TOTAL_CAPITAL"),
]

# Accepted alternative parameter names -> canonical name (strategy helpers may use either).
ALIASES: dict[str, dict[str, str]] = {
    "grid": {"grid_levels": "num_levels", "levels": "num_levels", "range": "grid_range",
             "range_pct": "grid_range", "order_size": "amount_per_grid", "investment": "total_investment"},
    "dca": {"base_order_size": "base_order", "safety_order_size": "safety_order",
            "safety_orders": "max_safety_orders", "num_safety_orders": "max_safety_orders",
            "safety_step": "price_deviation", "step_pct": "price_deviation", "deviation": "price_deviation",
            "martingale_step_coefficient": "step_scale", "volume_multiplier": "volume_scale",
            "martingale_volume_coefficient": "volume_scale", "take_profit_pct": "take_profit"},
    "trend": {"fast_ema": "ema_fast", "slow_ema": "ema_slow", "atr_sl_multiplier": "stop_atr_mult",
              "sl_atr_mult": "stop_atr_mult"},
    "smc": {"min_rr": "min_risk_reward"},
}
PARAM_CATEGORY = {"grid": "grid", "dca": "dca", "trend_follower": "trend", "smc": "smc"}  # strategy -> ALIASES key
# canonical names above that a strategy spells its own way
STRATEGY_SPELLING = {"grid": {"grid_range": "range_pct"}}


def strategy_params(strategy: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """A bot's parameters as its strategy takes them: every accepted alias under its canonical
    name, in the strategy's own spelling (the first of two names for one parameter wins, as in
    validation)."""
    aliases = ALIASES.get(PARAM_CATEGORY.get(strategy, ""), {})
    spelling = STRATEGY_SPELLING.get(strategy, {})
    out: dict[str, Any] = {}
    for name, value in params.items():
        canonical = aliases.get(str(name), str(name))
        out.setdefault(spelling.get(canonical, canonical), value)
    return out
# (strategy, params, market_type, capital) -> None when the strategy accepts them, else the reason.
StrategyCheck = Callable[[str, Mapping[str, Any], str, "Decimal | None"], "str | None"]


@dataclass
class ValidationResult:
    check_name: str
    passed: bool
    message: str
    category: str
    field: str = ""
    value: str | None = None
    allowed: str = ""
    severity: str = CRITICAL


@dataclass
class ValidationReport:
    results: list[ValidationResult] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """True when no critical check failed (warnings do not block)."""
        return not any(not r.passed and r.severity == CRITICAL for r in self.results)

    @property
    def failures(self) -> list[ValidationResult]:
        return [r for r in self.results if not r.passed]

    def summary(self) -> dict[str, Any]:
        categories: dict[str, dict[str, int]] = {}
        for r in self.results:
            cat = categories.setdefault(r.category, {"passed": 0, "failed": 0})
            cat["passed" if r.passed else "failed"] += 1
        failed = self.failures
        return {
            "total_checks": len(self.results),
            "passed": len(self.results) - len(failed),
            "failed": len(failed),
            "critical_failures": sum(r.severity == CRITICAL for r in failed),
            "warnings": sum(r.severity == WARNING for r in failed),
            "categories": categories,
            "overall_status": "PASS" if self.passed else "FAIL",
        }

    def to_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "summary": self.summary(), "results": [asdict(r) for r in self.results]}


class _Invalid(ValueError):
    """A value that is not a usable number; the message says why."""


def to_decimal(value: Any) -> Decimal:
    """Decimal from Decimal/int/float/numeric str; raises _Invalid (with a reason) otherwise."""
    if isinstance(value, bool):
        raise _Invalid("must be a number, not a boolean")
    if isinstance(value, Decimal):
        result = value
    elif isinstance(value, int):
        result = Decimal(value)
    elif isinstance(value, float):
        result = Decimal(repr(value))
    elif isinstance(value, str):
        try:
            result = Decimal(value.strip())
        except InvalidOperation:
            raise _Invalid("must be a number") from None
    else:
        raise _Invalid(f"must be a number, not {type(value).__name__}")
    if not result.is_finite():
        raise _Invalid("must be a finite number")
    return result


def _show(value: Any) -> str:
    if isinstance(value, Decimal) and value.is_finite():
        value = format(value.normalize(), "f")  # 2737.5000 -> 2737.5, 1E+3 -> 1000
        return value
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= 40 else text[:37] + "..."


class _Checker:
    """Collects results for one category dict, resolving aliases and defaults."""

    def __init__(self, report: ValidationReport, category_key: str, params: Mapping[str, Any] | Any, prefix: str):
        self.report, self.key, self.prefix = report, category_key, prefix
        self.params: dict[str, Any] = {}
        self.ok = isinstance(params, Mapping)
        if not self.ok:
            category = {"grid": "strategy", "dca": "strategy"}.get(category_key, category_key)
            report.results.append(ValidationResult(
                f"{category_key}_params", False, f"{prefix} = {_show(params)}: must be a table of parameters",
                category, prefix, _show(params), "a table / dict"))
            return
        aliases = ALIASES.get(category_key, {})
        for name, value in params.items():
            self.params.setdefault(aliases.get(str(name), str(name)), value)

    def path(self, name: str) -> str:
        return f"{self.prefix}.{name}"

    def add(self, bound: Bound, name: str, passed: bool, message: str, value: Any, allowed: str = "") -> None:
        self.report.results.append(ValidationResult(
            bound.check, passed, message, bound.category, self.path(name),
            None if value is None else _show(value), allowed or bound.allowed()))

    def number(self, name: str, *, value: Any = None, given: bool = False, name_as: str = "") -> Decimal | None:
        """Check one field against BOUNDS; returns its Decimal value when usable, else None."""
        bound = BOUNDS[f"{self.key}.{name}"]
        if name_as:  # a list element checked against the field's bound, reported under its own path
            name = name_as
        if not given:
            if name in self.params and self.params[name] is not None:
                value = self.params[name]
            elif bound.default is not None:
                value = bound.default
            elif bound.required:
                self.add(bound, name, False, f"{self.path(name)} is required ({bound.allowed()})", None)
                return None
            else:
                return None
        try:
            number = to_decimal(value)
        except _Invalid as exc:
            self.add(bound, name, False, f"{self.path(name)} = {_show(value)}: {exc} ({bound.allowed()})", value)
            return None
        if bound.integer and number != number.to_integral_value():
            self.add(bound, name, False, f"{self.path(name)} = {_show(value)}: must be a whole number ({bound.allowed()})", value)
            return None
        ok = bound.contains(number)
        verdict = "ok" if ok else "out of range"
        self.add(bound, name, ok, f"{self.path(name)} = {_show(number)}: {verdict} (allowed {bound.allowed()})", number)
        return number if ok else None

    def rule(self, bound_key: str, name: str, passed: bool, message: str, value: Any) -> None:
        rule = next((text for path, _, text in RULES if path == bound_key), "")
        self.add(BOUNDS[bound_key], name, passed, message, value, rule)


class ConfigValidator:
    """Validates risk rails and strategy parameters against BOUNDS (pure; no I/O)."""

    def run_full_validation(
        self,
        risk: Mapping[str, Any] | None = None,
        grid: Mapping[str, Any] | None = None,
        dca: Mapping[str, Any] | None = None,
        trend: Mapping[str, Any] | None = None,
        smc: Mapping[str, Any] | None = None,
        *,
        capital: Any = None,
    ) -> ValidationReport:
        """Validate each category given (None: skipped). `capital`: the capital allocated to these strategies."""
        report = ValidationReport()
        if risk is not None:
            self.validate_risk(report, risk)
        if grid is not None:
            self.validate_grid(report, grid, capital=capital)
        if dca is not None:
            self.validate_dca(report, dca, capital=capital)
        if trend is not None:
            self.validate_trend(report, trend)
        if smc is not None:
            self.validate_smc(report, smc)
        return report

    # -- categories -------------------------------------------------------------------------------
    def validate_risk(self, report: ValidationReport, risk: Mapping[str, Any], prefix: str = "risk") -> None:
        c = _Checker(report, "risk", risk, prefix)
        if not c.ok:
            return
        for name in ("risk_per_trade", "max_exposure", "max_daily_loss", "min_risk_reward"):
            c.number(name)

    def validate_grid(self, report: ValidationReport, grid: Mapping[str, Any], *, capital: Any = None,
                      prefix: str = "grid") -> None:
        c = _Checker(report, "grid", grid, prefix)
        if not c.ok:
            return
        levels = c.number("num_levels")
        if c.params.get("total_investment") is not None:
            total = c.number("total_investment")
        elif c.params.get("amount_per_grid") is None and capital is not None:
            total = None  # the strategy invests its allocated capital: checked by the bots-level rules
            try:
                total = c.number("total_investment", value=to_decimal(capital), given=True)
            except _Invalid:
                pass
        else:
            amount = c.number("amount_per_grid")
            total = None if levels is None or amount is None else levels * amount
            if total is not None:
                total = c.number("total_investment", value=total, given=True)
        if total is not None:
            self._within_capital(c, "grid.total_investment", "total_investment", total, capital)
        if c.params.get("upper_price") is not None or c.params.get("lower_price") is not None:
            self._grid_prices(c)
        else:
            c.number("grid_range")
        c.number("profit_per_grid")

    def validate_dca(self, report: ValidationReport, dca: Mapping[str, Any], *, capital: Any = None,
                     prefix: str = "dca") -> None:
        c = _Checker(report, "dca", dca, prefix)
        if not c.ok:
            return
        base, so = c.number("base_order"), c.number("safety_order")
        count = c.number("max_safety_orders")
        deviation, step, volume = c.number("price_deviation"), c.number("step_scale"), c.number("volume_scale")
        c.number("take_profit")
        if count is not None and deviation is not None and step is not None and count > 0:
            c.number("max_deviation", value=dca_max_deviation(deviation, step, int(count)), given=True)
        if None in (base, so, count, volume):
            return
        worst = dca_worst_case_capital(base, so, int(count), volume)
        worst_ok = c.number("worst_case_capital", value=worst, given=True)
        if worst_ok is None:
            return
        cap = c.params.get("max_capital")
        if cap is not None:
            try:
                cap_d = to_decimal(cap)
            except _Invalid as exc:
                c.rule("dca.worst_case_capital", "max_capital", False, f"{c.path('max_capital')} = {_show(cap)}: {exc}", cap)
            else:
                ok = worst <= cap_d
                c.rule("dca.worst_case_capital", "worst_case_capital", ok,
                       f"{c.path('worst_case_capital')} = {_show(worst)}: {'<=' if ok else 'exceeds'} max_capital {_show(cap_d)}", worst)
        self._within_capital(c, "dca.worst_case_capital", "worst_case_capital", worst, capital)

    def validate_trend(self, report: ValidationReport, trend: Mapping[str, Any], prefix: str = "trend") -> None:
        c = _Checker(report, "trend", trend, prefix)
        if not c.ok:
            return
        fast, slow = c.number("ema_fast"), c.number("ema_slow")
        if fast is not None and slow is not None:
            c.rule("trend.ema_fast", "ema_fast", fast < slow,
                   f"{c.path('ema_fast')} = {fast} {'<' if fast < slow else 'must be <'} {c.path('ema_slow')} = {slow}", fast)
        c.number("adx_threshold")
        c.number("stop_atr_mult")
        c.number("trailing_atr_mult")
        c.number("take_profit_r")

    def validate_smc(self, report: ValidationReport, smc: Mapping[str, Any], prefix: str = "smc") -> None:
        c = _Checker(report, "smc", smc, prefix)
        if not c.ok:
            return
        self._smc_swing_lengths(c)
        low, high = c.number("min_risk_reward"), c.number("max_risk_reward")
        if low is not None and high is not None:
            c.rule("smc.max_risk_reward", "max_risk_reward", low <= high,
                   f"{c.path('min_risk_reward')} = {_show(low)} {'<=' if low <= high else 'must be <='} "
                   f"{c.path('max_risk_reward')} = {_show(high)}", high)
        if "timeframes" in c.params:
            ok, why = check_timeframes(c.params["timeframes"], min_count=3, max_count=3)
            report.results.append(ValidationResult(
                "smc_timeframes", ok, f"{c.path('timeframes')} = {_show(c.params['timeframes'])}: {why}", "smc",
                c.path("timeframes"), _show(c.params["timeframes"]), "3 of " + ", ".join(TIMEFRAME_MINUTES) + ", highest first"))

    @staticmethod
    def _smc_swing_lengths(c: _Checker) -> None:
        raw = c.params.get("swing_lengths")
        if raw is None:
            return
        if isinstance(raw, str) or not isinstance(raw, list | tuple) or len(raw) != 3:
            rule = next(text for path, _, text in RULES if path == "smc.swing_lengths")
            c.add(BOUNDS["smc.swing_length"], "swing_lengths", False,
                  f"{c.path('swing_lengths')} = {_show(raw)}: must be a list of three whole numbers", raw, rule)
            return
        for index, value in enumerate(raw):
            c.number("swing_length", value=value, given=True, name_as=f"swing_lengths[{index}]")

    @staticmethod
    def _within_capital(c: _Checker, bound_key: str, name: str, amount: Decimal, capital: Any) -> None:
        if capital is None:
            return
        try:
            cap = to_decimal(capital)
        except _Invalid:
            return  # the bot-level check reports the bad capital itself
        ok = amount <= cap
        c.rule(bound_key, name, ok, f"{c.path(name)} = {_show(amount)}: {'within' if ok else 'exceeds'} the bot's capital {_show(cap)}", amount)

    @staticmethod
    def _grid_prices(c: _Checker) -> None:
        raw_up, raw_low = c.params.get("upper_price"), c.params.get("lower_price")
        bound = BOUNDS["grid.grid_range"]
        try:
            if raw_up is None or raw_low is None:
                raise _Invalid("upper_price and lower_price must be given together")
            up, low = to_decimal(raw_up), to_decimal(raw_low)
            if not 0 < low < up:
                raise _Invalid(f"needs 0 < lower_price ({low}) < upper_price ({up})")
        except _Invalid as exc:
            c.add(bound, "upper_price", False, f"{c.path('upper_price')}/{c.path('lower_price')}: {exc}", f"{raw_low}..{raw_up}")
            return
        c.number("grid_range", value=(up - low) / (up + low), given=True)

    # -- bots file --------------------------------------------------------------------------------
    def validate_bots_config(self, doc: Mapping[str, Any], *, risk_defaults: Mapping[str, Any] | None = None,
                             total_capital: Any = None,
                             strategy_defaults: Mapping[str, Mapping[str, Any]] | None = None,
                             strategy_check: StrategyCheck | None = None) -> ValidationReport:
        """Validate a parsed bots file: top-level [risk] (over `risk_defaults`) and each [[bots]] entry.

        strategy_defaults: {strategy: DEFAULTS} merged under each bot's params, so bounds see the values the
        strategy will really use. strategy_check(strategy, params, market_type, capital) -> error text or
        None: lets the caller (main_validate) ask the strategy itself (unknown parameter names etc.).
        """
        self._defaults = strategy_defaults or {}
        self._strategy_check = strategy_check
        report = ValidationReport()
        risk = dict(risk_defaults or {})
        file_risk = doc.get("risk", {})
        if not isinstance(file_risk, Mapping):
            _bot_fail(report, "risk", file_risk, "must be a table")
        else:
            risk.update(file_risk)
        self.validate_risk(report, risk)
        bots = doc.get("bots", [])
        if not isinstance(bots, list):
            _bot_fail(report, "bots", bots, "must be an array of tables ([[bots]])")
            return report
        seen: set[str] = set()
        total = Decimal(0)
        for index, bot in enumerate(bots):
            total += self._validate_bot(report, bot, index, seen)
        if total_capital is not None and total > 0:
            cap = to_decimal(total_capital)
            ok = total <= cap
            report.results.append(ValidationResult(
                "bots_capital", ok, f"sum of bots' capital = {_show(total)}: {'within' if ok else 'exceeds'} total capital {_show(cap)}",
                "bots", "bots[*].capital", _show(total), f"<= {cap} (TRADERAGENT_TOTAL_CAPITAL)"))
        return report

    def _validate_bot(self, report: ValidationReport, bot: Any, index: int, seen: set[str]) -> Decimal:
        """Validates one [[bots]] table; returns its capital (0 when none or invalid)."""
        if not isinstance(bot, Mapping):
            _bot_fail(report, f"bots[{index}]", bot, "must be a table")
            return Decimal(0)
        name = bot.get("name")
        label = f"bots[{name}]" if isinstance(name, str) and name else f"bots[{index}]"
        if not isinstance(name, str) or not _NAME_RE.match(name):
            _bot_fail(report, f"{label}.name", name, "is required: 1-32 letters, digits, _ or -")
        elif name in seen:
            _bot_fail(report, f"{label}.name", name, "is used by another bot; names must be unique")
        else:
            seen.add(name)
        strategy = bot.get("strategy")
        if strategy not in STRATEGIES:
            _bot_fail(report, f"{label}.strategy", strategy, "is required: one of " + ", ".join(STRATEGIES))
        symbol = bot.get("symbol")
        if not isinstance(symbol, str) or not _SYMBOL_RE.match(symbol):
            _bot_fail(report, f"{label}.symbol", symbol, 'is required: like "BTCUSDT" or "BTC/USDT"')
        market = bot.get("market_type", "linear")
        if market not in MARKET_TYPES:
            _bot_fail(report, f"{label}.market_type", market, "must be linear or spot")
        timeframes = self._bot_timeframes(report, bot, label)
        capital = self._bot_capital(report, bot, label)
        params = bot.get("params", {})
        if strategy in STRATEGIES:
            self._validate_params(report, strategy, params, timeframes, capital, f"{label}.params")
            if isinstance(params, Mapping) and market in MARKET_TYPES and self._strategy_check is not None:
                self._ask_strategy(report, strategy, params, timeframes, market, capital, f"{label}.params")
        return capital or Decimal(0)

    def _ask_strategy(self, report: ValidationReport, strategy: str, params: Mapping[str, Any],
                      timeframes: list[str] | None, market: str, capital: Decimal | None, prefix: str) -> None:
        full = strategy_params(strategy, params)
        if timeframes:
            full.setdefault("timeframes" if strategy == "smc" else "timeframe", timeframes if strategy == "smc" else timeframes[0])
        try:
            error = self._strategy_check(strategy, full, market, capital)  # type: ignore[misc]
        except Exception as exc:  # the check is the caller's code; never let it crash validation
            error = f"{type(exc).__name__}: {exc}"
        report.results.append(ValidationResult(
            "strategy_params", error is None, f"{prefix}: {error or 'accepted by the ' + strategy + ' strategy'}",
            "bots", prefix, None, "parameters the strategy accepts"))

    @staticmethod
    def _bot_timeframes(report: ValidationReport, bot: Mapping[str, Any], label: str) -> list[str] | None:
        if "timeframes" in bot:
            raw, key = bot["timeframes"], "timeframes"
        elif "timeframe" in bot:
            raw, key = [bot["timeframe"]], "timeframe"
        else:
            return None
        ok, why = check_timeframes(raw, min_count=1, max_count=4)
        if not ok:
            _bot_fail(report, f"{label}.{key}", bot[key], why)
            return None
        return list(raw)

    @staticmethod
    def _bot_capital(report: ValidationReport, bot: Mapping[str, Any], label: str) -> Decimal | None:
        key = "capital" if "capital" in bot else "allocated_capital" if "allocated_capital" in bot else None
        if key is None:
            return None
        try:
            value = to_decimal(bot[key])
            if value <= 0:
                raise _Invalid("must be greater than 0")
        except _Invalid as exc:
            _bot_fail(report, f"{label}.{key}", bot[key], str(exc), check="bots_capital")
            return None
        return value

    def _validate_params(self, report: ValidationReport, strategy: str, params: Any, timeframes: list[str] | None,
                         capital: Decimal | None, prefix: str) -> None:
        if not isinstance(params, Mapping):
            _bot_fail(report, prefix, params, "must be a table ([bots.params])")
            return
        defaults = {k: v for k, v in getattr(self, "_defaults", {}).get(strategy, {}).items() if v is not None}
        params = {**defaults, **params}
        if strategy == "grid":
            self.validate_grid(report, params, capital=capital, prefix=prefix)
        elif strategy == "dca":
            self.validate_dca(report, params, capital=capital, prefix=prefix)
        elif strategy == "trend_follower":
            self.validate_trend(report, params, prefix=prefix)
        else:
            smc = dict(params)
            if timeframes is not None and "timeframes" not in smc:
                smc["timeframes"] = timeframes
            self.validate_smc(report, smc, prefix=prefix)


def _bot_fail(report: ValidationReport, path: str, value: Any, why: str, check: str = "bot_fields") -> None:
    report.results.append(ValidationResult(check, False, f"{path} = {_show(value)}: {why}", "bots", path, _show(value), why))


def check_timeframes(raw: Any, *, min_count: int, max_count: int) -> tuple[bool, str]:
    """(ok, reason): a list of known timeframes, strictly from highest to lowest."""
    if isinstance(raw, str) or not isinstance(raw, list | tuple):
        return False, "must be a list of timeframes such as [\"4h\", \"1h\", \"15m\"]"
    if not min_count <= len(raw) <= max_count:
        return False, f"needs {min_count}-{max_count} timeframes, got {len(raw)}"
    unknown = [t for t in raw if not isinstance(t, str) or t not in TIMEFRAME_MINUTES]
    if unknown:
        return False, f"unknown timeframe {_show(unknown[0])}; use one of " + ", ".join(TIMEFRAME_MINUTES)
    minutes = [TIMEFRAME_MINUTES[t] for t in raw]
    if any(a <= b for a, b in zip(minutes, minutes[1:], strict=False)):
        return False, "must go from highest to lowest timeframe (entry timeframe last), without repeats"
    return True, "ok"


def dca_worst_case_capital(base: Decimal, safety: Decimal, count: int, volume_scale: Decimal) -> Decimal:
    """Capital a deal needs when every safety order fills: base + sum_(k=1..n) safety * v^(k-1)."""
    return base + sum((safety * volume_scale ** k for k in range(count)), Decimal(0))


def dca_max_deviation(deviation: Decimal, step_scale: Decimal, count: int) -> Decimal:
    """Drop from the base price to the last safety order: d * (1 + s + ... + s^(n-1))."""
    return deviation * sum((step_scale ** k for k in range(count)), Decimal(0))


def parse_bots_toml(text: str) -> dict[str, Any]:
    """Parse a bots file; floats become Decimal exactly. Raises tomllib.TOMLDecodeError on bad syntax."""
    return tomllib.loads(text, parse_float=Decimal)


def render_bounds_markdown() -> str:
    """The README table of every bound and rule, generated from BOUNDS and RULES."""
    lines = ["| field | check | category | allowed | default | meaning |", "|---|---|---|---|---|---|"]
    for path, b in BOUNDS.items():
        default = "-" if b.default is None else str(b.default)
        lines.append(f"| `{path}` | {b.check} | {b.category} | {b.allowed()} | {default} | {b.meaning} |")
    lines += ["", "| field | check | rule |", "|---|---|---|"]
    lines += [f"| `{path}` | {check} | {rule.replace('|', chr(92) + '|')} |" for path, check, rule in RULES]
    return "\n".join(lines)


# -- CLI edge (the only I/O in this module) -------------------------------------------------------
def format_report(report: ValidationReport, title: str) -> str:
    s = report.summary()
    lines = [f"{title}: {s['overall_status']} ({s['total_checks']} checks: {s['passed']} passed, "
             f"{s['failed']} failed, {s['critical_failures']} critical)"]
    for r in report.failures:
        lines.append(f"  [FAIL] {r.severity:8} {r.check_name}: {r.message}")
    return "\n".join(lines)


def main_validate(args: Any) -> int:
    """`traderagent validate [BOTS_FILE] [--json]`: 0 when no critical failure, else 1."""
    from pathlib import Path

    from traderagent.config import Settings, SettingsError

    validator = ConfigValidator()
    try:
        settings = Settings.load()
    except SettingsError as exc:
        report = ValidationReport([ValidationResult("settings", False, str(exc), "risk")])
        return _emit(report, "Settings", args)
    risk_defaults = {"risk_per_trade": settings.risk_per_trade, "max_exposure": settings.max_exposure,
                     "max_daily_loss": settings.max_daily_loss}
    explicit = getattr(args, "bots_file", None)
    path = Path(explicit) if explicit else settings.bots_file
    if not path.is_file():
        if explicit:
            report = ValidationReport([ValidationResult("bots_file", False, f"{path}: no such file", "bots", "bots_file", str(path))])
        else:  # no bots file: paper mode runs its demo set; the risk rails still apply
            report = validator.validate_bots_config({}, risk_defaults=risk_defaults, total_capital=settings.total_capital)
        return _emit(report, f"Validation of {path}", args)
    try:
        doc = parse_bots_toml(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError, OSError) as exc:
        report = ValidationReport([ValidationResult("bots_file", False, f"{path}: {exc}", "bots", "bots_file", str(path))])
        return _emit(report, f"Validation of {path}", args)
    report = validator.validate_bots_config(doc, risk_defaults=risk_defaults, total_capital=settings.total_capital,
                                            strategy_defaults=_strategy_defaults(), strategy_check=_strategy_check)
    return _emit(report, f"Validation of {path}", args)


def _strategy_defaults() -> dict[str, dict[str, Any]]:
    """Each strategy's DEFAULTS (best effort: a strategy that fails to import falls back to BOUNDS)."""
    out: dict[str, dict[str, Any]] = {}
    try:
        from traderagent.strategies import strategy_defaults
    except Exception:
        return out
    for name in STRATEGIES:
        try:
            out[name] = strategy_defaults(name)
        except Exception:
            continue
    return out


def _strategy_check(strategy: str, params: Mapping[str, Any], market_type: str, capital: Decimal | None) -> str | None:
    """Build the strategy as the desk would (generic instrument steps); its ValueError is the answer."""
    from traderagent.strategies import create_strategy

    try:
        create_strategy(strategy, dict(params), qty_step="0.001", tick_size="0.01",
                        allocated_capital=capital or Decimal(1000), market_type=market_type)
    except (ValueError, TypeError, KeyError) as exc:
        return str(exc)
    return None


def _emit(report: ValidationReport, title: str, args: Any) -> int:
    if getattr(args, "json", False):
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print(format_report(report, title))
    return 0 if report.passed else 1


if __name__ == "__main__":  # pragma: no cover - `python -m traderagent.utils.config_validator` prints the table
    sys.stdout.write(render_bounds_markdown() + "\n")
