"""ConfigValidator: risk rails, strategy parameters and the bots file, checked one way for every caller.

Pure core (layer 0, no I/O). Per-field names, types, defaults, bounds and aliases are not here: they
are the strategies' ``PARAMS`` and the risk rails' declarations (``traderagent/strategies/params.py``),
checked by the same ``check_params`` the strategies run at construction. This module keeps only the
rules that span several fields or a whole file (ladder worst-case capital, grid investment, shares
of capital) and the bots file's own fields.

Entry points
------------
    ConfigValidator().run_full_validation(risk=None, grid=None, dca=None, trend=None, smc=None,
                                          *, capital=None) -> ValidationReport
    ConfigValidator().check_bots_file(doc, *, total_capital=None) -> BotsCheck
        # what `traderagent run` (traderagent/bots.py) and `traderagent validate` both use
    ConfigValidator().validate_bots_config(doc, *, total_capital=None) -> ValidationReport
    parse_bots_toml(text) -> dict        # tomllib with parse_float=Decimal (exact money)
    render_bounds_markdown() -> str      # the README tables, generated from the declarations

Each category argument is a dict (None: category not checked); a missing key takes the declared
default. Every failure names the field path (``grid.num_levels``), the value and the allowed range.
Fractions are fractions: 0.02 means 2 %.

Bots file format (TOML; floats are read as Decimal):

    [risk]                        # optional; overrides RISK_PER_TRADE / MAX_EXPOSURE / MAX_DAILY_LOSS
    max_daily_loss = "0.05"

    [[bots]]
    name = "btc-grid"             # required; unique; 1-32 of A-Z a-z 0-9 _ -
    strategy = "grid"             # required; smc | trend_follower | grid | dca
    symbol = "BTCUSDT"            # required; "BTCUSDT", "BTC/USDT" or "BTC/USDT:USDT"
    market_type = "linear"        # linear | spot (default "linear")
    timeframe = "15m"             # or timeframes = ["4h", "1h", "15m"]: highest first, entry LAST
    share = "0.25"                # fraction of the deployed capital; or capital = "1000"
    tick_seconds = 5
    [bots.params]                 # the strategy's PARAMS (or their aliases)
    num_levels = 10
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from typing import Any

from traderagent.strategies import STRATEGY_TYPES, create_strategy, strategy_class, with_bot_timeframes
from traderagent.strategies.dca_adapter import DCAAdapter
from traderagent.strategies.grid_adapter import GridAdapter
from traderagent.strategies.params import (
    RISK_RAILS,
    TIMEFRAME_MINUTES,
    Param,
    check_params,
    show,
)
from traderagent.utils.checks import CRITICAL, all_critical_passed, summarise

# Hard cap for any single strategy's capital (the origin's MAX_POSITION_SIZE_USD).
MAX_POSITION_SIZE_USD = Decimal("50000")
MAX_DEVIATION = Decimal("0.90")  # the deepest DCA safety order stays above 10 % of the base price
MARKET_TYPES = ("linear", "spot")
_NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
_SYMBOL_RE = re.compile(r"^[A-Z0-9]{2,20}(/[A-Z0-9]{2,10}(:[A-Z0-9]{2,10})?)?$")
# The strategy is built with steps fine enough that only its own rules, not an instrument's, can refuse it.
_FINE_STEP = Decimal("0.00000001")
_UNLIMITED = Decimal("1e15")

# min_risk_reward is the spec's fourth risk check (run_full_validation); the desk has no such rail,
# so a bots file's [risk] takes only RISK_RAILS.
MIN_RISK_REWARD = Param("min_risk_reward", Decimal, Decimal("2.5"), "smallest reward:risk a signal may have",
                        low=Decimal("1.5"))
RISK_CHECKS = (*RISK_RAILS, MIN_RISK_REWARD)

# The bot table's own numbers (the rest of a bot: name, strategy, symbol, market_type, timeframe(s), params).
BOT_FIELDS = (
    Param("capital", Decimal, None, "the bot's capital at full deployment", low=Decimal(0), low_open=True,
          optional=True, aliases=("allocated_capital",)),
    Param("share", Decimal, None, "fraction of the deployed capital", low=Decimal(0), low_open=True,
          high=Decimal(1), optional=True),
    Param("tick_seconds", float, 5.0, "seconds between the bot's ticks", low=Decimal(0), low_open=True),
    Param("leverage", Decimal, None, "linear only: the leverage set on ByBit at start", low=Decimal(1),
          high=Decimal(100), optional=True),
)
_BOT_NUMBER_KEYS = {n for p in BOT_FIELDS for n in (p.name, *p.aliases)}
_BOT_KEYS = {"name", "strategy", "symbol", "market_type", "timeframe", "timeframes", "params"} | _BOT_NUMBER_KEYS

# run_full_validation's keyword (the short name in field paths and check names) -> strategy
STRATEGY_OF = {"grid": "grid", "dca": "dca", "trend": "trend_follower", "smc": "smc"}
_SHORT = {strategy: key for key, strategy in STRATEGY_OF.items()}
# report category; the spec names grid and dca "strategy"
_CATEGORY_OF = {"grid": "strategy", "dca": "strategy", "trend_follower": "trend", "smc": "smc", "risk": "risk"}
# The spec's check names; any other field's check is "<strategy>_<param>".
SPEC_CHECKS = {
    "grid.num_levels": "grid_levels", "grid.total_investment": "grid_total_investment",
    "grid.amount_per_grid": "grid_total_investment", "grid.range_pct": "grid_range",
    "grid.lower_price": "grid_range", "grid.upper_price": "grid_range",
    "dca.max_safety_orders": "dca_safety_orders", "dca.price_deviation": "dca_safety_orders",
    "dca.step_scale": "dca_safety_orders", "dca.volume_scale": "dca_safety_orders",
    "dca.base_order": "dca_max_capital", "dca.safety_order": "dca_max_capital", "dca.take_profit": "dca_take_profit",
}

# Rules that span several fields or the whole file: (field, check, rule). Rendered under the table.
RULES: list[tuple[str, str, str]] = [
    ("grid.total_investment", "grid_total_investment",
     f"total_investment, or amount_per_grid x (num_levels - 1), <= min(bot capital, {MAX_POSITION_SIZE_USD})"),
    ("dca.worst_case_capital", "dca_max_capital",
     "(base_order + sum_(k=1..n) safety_order x volume_scale^(k-1)) x (1 + fee_rate) "
     f"<= min(bot capital, {MAX_POSITION_SIZE_USD})"),
    ("dca.max_deviation", "dca_safety_orders",
     f"price_deviation x (1 + s + ... + s^(n-1)) <= {MAX_DEVIATION} (s = step_scale, n = max_safety_orders)"),
    ("<strategy>.params", "strategy_params", "the strategy's own rules, e.g. trend ema_fast < ema_slow, grid "
     "lower_price < upper_price, smc min_risk_reward <= max_risk_reward and timeframes highest first"),
    ("bots[*]", "bot_fields", "name (unique), strategy (" + " | ".join(STRATEGY_TYPES) + "), symbol, market_type "
     "(" + " | ".join(MARKET_TYPES) + "), timeframes (1-4 of " + ", ".join(TIMEFRAME_MINUTES) + ") highest first"),
    ("bots[*].share", "bots_capital", "sum of shares, with capital / TRADERAGENT_TOTAL_CAPITAL for bots "
     "given a capital, <= 1; share and capital not both"),
]


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
        return all_critical_passed(self.results)

    @property
    def failures(self) -> list[ValidationResult]:
        return [r for r in self.results if not r.passed]

    def summary(self) -> dict[str, Any]:
        categories: dict[str, dict[str, int]] = {}
        for r in self.results:
            cat = categories.setdefault(r.category, {"passed": 0, "failed": 0})
            cat["passed" if r.passed else "failed"] += 1
        return summarise(self.results, categories=categories)

    def to_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "summary": self.summary(), "results": [asdict(r) for r in self.results]}

    def fail(self, check: str, category: str, path: str, value: Any, why: str, allowed: str = "") -> None:
        self.results.append(ValidationResult(check, False, f"{path} = {show(value)}: {why}", category, path,
                                             show(value), allowed or why))

    def rule(self, check: str, category: str, path: str, passed: bool, message: str, value: Any, rule: str) -> None:
        self.results.append(ValidationResult(check, passed, message, category, path, show(value), rule))


@dataclass
class BotsCheck:
    """A checked bots file: the report, and what `traderagent run` takes from it."""

    report: ValidationReport
    risk: dict[str, Decimal] = field(default_factory=dict)  # the file's [risk], typed
    bots: list[dict[str, Any]] = field(default_factory=list)  # accepted bots, fields typed (BotSpec's fields)
    refused: list[tuple[str, str]] = field(default_factory=list)  # (bot, reasons)
    file_errors: list[str] = field(default_factory=list)  # [risk], shares: the file as a whole is unusable


def _rule_text(check_field: str) -> str:
    return next(text for path, _, text in RULES if path == check_field)


class ConfigValidator:
    """Validates risk rails, strategy parameters and bots files (pure; no I/O)."""

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
            self.validate_fields(report, RISK_CHECKS, risk, "risk", "risk")
        given, errors = check_params(BOT_FIELDS[:1], {} if capital is None else {"capital": capital})
        for err in errors:  # a bad capital is reported; the capital rules are then skipped
            report.fail("bots_capital", "bots", "capital", capital, err.reason)
        cap = given.get("capital")
        for key, raw in (("grid", grid), ("dca", dca), ("trend", trend), ("smc", smc)):
            if raw is not None:
                self.validate_strategy(report, STRATEGY_OF[key], raw, capital=cap, prefix=key)
        return report

    # -- fields ------------------------------------------------------------------------------------
    def validate_fields(self, report: ValidationReport, params: Sequence[Param], raw: Any, prefix: str,
                        owner: str) -> dict[str, Any] | None:
        """Check `raw` against the declarations; a result per bad field and per bounded good one.
        Returns every declared value (defaults filled), or None when a field failed."""
        category = _CATEGORY_OF.get(owner, owner)
        if not isinstance(raw, Mapping):
            report.fail(f"{prefix.rsplit('.', 1)[-1]}_params", category, prefix, raw, "must be a table of parameters",
                        "a table / dict")
            return None
        given, errors = check_params(params, raw, owner)
        check_of = {p.name: self._check_name(owner, p.name) for p in params}
        for err in errors:
            name = err.field.split("[")[0]
            report.results.append(ValidationResult(
                check_of.get(name) or self._check_name(owner, "params"), False, err.describe(prefix), category,
                f"{prefix}.{err.field}", show(err.value) if err.shown else None, err.allowed or err.reason))
        values = {**{p.name: p.default for p in params}, **given}
        bad = {e.field.split("[")[0] for e in errors}
        for p in params:
            value = values[p.name]
            if p.name not in bad and value is not None and (p.low is not None or p.high is not None):
                report.results.append(ValidationResult(
                    check_of[p.name], True, f"{prefix}.{p.name} = {show(value)}: ok (allowed {p.allowed()})",
                    category, f"{prefix}.{p.name}", show(value), p.allowed()))
        return None if errors else values

    @staticmethod
    def _check_name(owner: str, name: str) -> str:
        """The spec's name for a field's check: the risk rail itself, or <strategy>_<param>."""
        if owner == "risk" and name != "params":
            return name
        short = _SHORT.get(owner, owner)
        return SPEC_CHECKS.get(f"{short}.{name}", f"{short}_{name}")

    # -- strategies --------------------------------------------------------------------------------
    def validate_strategy(self, report: ValidationReport, strategy: str, raw: Any, *, capital: Decimal | None,
                          prefix: str, market_type: str = "linear") -> dict[str, Any] | None:
        """The strategy's fields, the strategy's own rules (it is built), then the rules spanning the bot,
        with the strategy's own sums. Returns the typed values when all passed, else None."""
        values = self.validate_fields(report, strategy_class(strategy).PARAMS, raw, prefix, strategy)
        if values is None:
            return None
        category = _CATEGORY_OF[strategy]
        try:  # capital unlimited here: the rules below hold the sums against the bot's capital
            built = create_strategy(strategy, values, qty_step=_FINE_STEP, tick_size=_FINE_STEP,
                                    allocated_capital=_UNLIMITED, market_type=market_type)
        except (ValueError, TypeError) as exc:
            report.results.append(ValidationResult("strategy_params", False, f"{prefix}: {exc}", category, prefix,
                                                   None, _rule_text("<strategy>.params")))
            return None
        report.results.append(ValidationResult("strategy_params", True, f"{prefix}: accepted by the {strategy} strategy",
                                               category, prefix, None, _rule_text("<strategy>.params")))
        before = len(report.failures)
        if isinstance(built, GridAdapter):
            self._grid_rules(report, built, capital, prefix, category)
        elif isinstance(built, DCAAdapter):
            self._dca_rules(report, built, capital, prefix, category)
        return values if len(report.failures) == before else None

    def _within_capital(self, report: ValidationReport, check: str, category: str, path: str, amount: Decimal,
                        capital: Decimal | None, rule: str) -> None:
        for limit, what in ((MAX_POSITION_SIZE_USD, "the cap"), (capital, "the bot's capital")):
            if limit is not None:
                ok = amount <= limit
                report.rule(check, category, path, ok,
                            f"{path} = {show(amount)}: {'within' if ok else 'exceeds'} {what} {show(limit)}", amount, rule)

    def _grid_rules(self, report: ValidationReport, grid: GridAdapter, capital: Decimal | None, prefix: str,
                    category: str) -> None:
        total = capital if grid.investment is None else grid.investment
        path, rule = f"{prefix}.total_investment", _rule_text("grid.total_investment")
        if total is None:
            report.rule("grid_total_investment", category, path, True, f"{path}: none, the grid invests the bot's capital",
                        None, rule)
        else:
            self._within_capital(report, "grid_total_investment", category, path, total, capital, rule)

    def _dca_rules(self, report: ValidationReport, dca: DCAAdapter, capital: Decimal | None, prefix: str,
                   category: str) -> None:
        deviations = dca.deviations()
        if deviations:
            depth, path = deviations[-1], f"{prefix}.max_deviation"
            ok = depth <= MAX_DEVIATION
            report.rule("dca_safety_orders", category, path, ok,
                        f"{path} = {show(depth)}: {'ok' if ok else 'too deep'} (allowed <= {MAX_DEVIATION})",
                        depth, _rule_text("dca.max_deviation"))
        self._within_capital(report, "dca_max_capital", category, f"{prefix}.worst_case_capital",
                             dca.worst_case_capital(), capital, _rule_text("dca.worst_case_capital"))

    # -- bots file ---------------------------------------------------------------------------------
    def validate_bots_config(self, doc: Mapping[str, Any], *, total_capital: Decimal | None = None) -> ValidationReport:
        """Validate a parsed bots file: its [risk] and each [[bots]] entry, and the shares they sum to."""
        return self.check_bots_file(doc, total_capital=total_capital).report

    def check_bots_file(self, doc: Mapping[str, Any], *, total_capital: Decimal | None = None) -> BotsCheck:
        """Validate a parsed bots file; each bot on its own (a bad bot is refused, the others kept), while a
        bad [risk] or shares summing above 1 make the whole file unusable (`file_errors`)."""
        out = BotsCheck(ValidationReport())
        if "risk" in doc:
            risk = self.validate_fields(out.report, RISK_RAILS, doc["risk"], "risk", "risk")
            if risk is None:
                out.file_errors += [r.message for r in out.report.failures]
            else:
                out.risk = {k: v for k, v in risk.items() if k in doc["risk"]}
        unknown = sorted(set(doc) - {"risk", "bots"})
        if unknown:
            out.report.fail("bot_fields", "bots", unknown[0], doc[unknown[0]], "unknown section (known: risk, bots)")
            out.file_errors.append(out.report.failures[-1].message)
        bots = doc.get("bots", [])
        if not isinstance(bots, list):
            out.report.fail("bot_fields", "bots", "bots", bots, "must be an array of tables ([[bots]])")
            out.file_errors.append(out.report.failures[-1].message)
            return out
        seen: set[str] = set()
        for index, raw in enumerate(bots):
            before = len(out.report.failures)
            bot, label = self._check_bot(out.report, raw, index, seen, total_capital)
            if bot is None:
                out.refused.append((label, "; ".join(r.message for r in out.report.failures[before:])))
            else:
                out.bots.append(bot)
        self._shares(out, total_capital)
        return out

    def _check_bot(self, report: ValidationReport, raw: Any, index: int, seen: set[str],
                   total_capital: Decimal | None) -> tuple[dict[str, Any] | None, str]:
        """One [[bots]] table -> (its typed fields or None when refused, its label)."""
        if not isinstance(raw, Mapping):
            report.fail("bot_fields", "bots", f"bots[{index}]", raw, "must be a table")
            return None, f"bots[{index}]"
        name = raw.get("name")
        label = f"bots[{name}]" if isinstance(name, str) and name else f"bots[{index}]"
        before = len(report.failures)

        def fail(key: str, why: str, check: str = "bot_fields") -> None:  # one failure of this bot
            report.fail(check, "bots", f"{label}.{key}", raw.get(key), why)

        timeframes = self._bot_fields(raw, seen, fail)
        strategy, symbol, market = raw.get("strategy"), raw.get("symbol"), raw.get("market_type", "linear")
        numbers = self.validate_fields(report, BOT_FIELDS, {k: v for k, v in raw.items() if k in _BOT_NUMBER_KEYS},
                                       label, "bots") or {}
        if numbers.get("share") is not None and numbers.get("capital") is not None:
            fail("share", "give either share or capital, not both", "bots_capital")
        if numbers.get("leverage") is not None and market != "linear":
            fail("leverage", "applies to linear (perpetual) bots only")
        params = raw.get("params", {})
        if strategy in STRATEGY_TYPES and market in MARKET_TYPES:
            capital = numbers.get("capital")
            if capital is None and numbers.get("share") is not None and total_capital is not None:
                capital = numbers["share"] * total_capital
            full = with_bot_timeframes(strategy, params, timeframes) if isinstance(params, Mapping) else params
            self.validate_strategy(report, strategy, full, capital=capital, prefix=f"{label}.params", market_type=market)
        if len(report.failures) > before:
            return None, label
        given, _ = check_params(strategy_class(str(strategy)).PARAMS, params)
        return {"name": name, "strategy": strategy, "symbol": str(symbol).replace("/", "").split(":")[0],
                "market_type": market, "timeframes": timeframes, "capital": numbers["capital"],
                "share": numbers["share"], "params": given, "tick_seconds": numbers["tick_seconds"],
                "leverage": numbers["leverage"]}, label

    @staticmethod
    def _bot_fields(raw: Mapping[str, Any], seen: set[str], fail: Callable[[str, str], None]) -> tuple[str, ...] | None:
        """Checks a bot's own fields other than its numbers and params; returns its timeframes when valid."""
        for key in sorted(set(raw) - _BOT_KEYS):
            fail(key, "unknown field (known: " + ", ".join(sorted(_BOT_KEYS)) + ")")
        name = raw.get("name")
        if not isinstance(name, str) or not _NAME_RE.match(name):
            fail("name", "is required: 1-32 letters, digits, _ or -")
        elif name in seen:
            fail("name", "is used by another bot; names must be unique")
        else:
            seen.add(name)
        if raw.get("strategy") not in STRATEGY_TYPES:
            fail("strategy", "is required: one of " + ", ".join(STRATEGY_TYPES))
        symbol = raw.get("symbol")
        if not isinstance(symbol, str) or not _SYMBOL_RE.match(symbol):
            fail("symbol", 'is required: like "BTCUSDT" or "BTC/USDT"')
        if raw.get("market_type", "linear") not in MARKET_TYPES:
            fail("market_type", "must be one of " + ", ".join(MARKET_TYPES))
        if "timeframes" not in raw and "timeframe" not in raw:
            return None
        key = "timeframes" if "timeframes" in raw else "timeframe"
        timeframes = raw[key] if key == "timeframes" else [raw[key]]
        ok, why = check_timeframes(timeframes, min_count=1, max_count=4)
        if not ok:
            fail(key, why)
        return tuple(timeframes) if ok else None

    @staticmethod
    def _shares(out: BotsCheck, total_capital: Decimal | None) -> None:
        """The accepted bots' fractions of the deployed capital may not sum above 1."""
        parts = [(b["name"], b["share"]) for b in out.bots if b["share"] is not None]
        if total_capital:
            parts += [(b["name"], b["capital"] / total_capital) for b in out.bots if b["capital"] is not None]
        total = sum((p for _, p in parts), Decimal(0))
        if not parts:
            return
        ok = total <= 1
        listed = ", ".join(f"{n} {show(p)}" for n, p in parts)
        message = f"bots[*].share = {show(total)}: {'within' if ok else 'shares of capital sum above'} 1 ({listed})"
        out.report.rule("bots_capital", "bots", "bots[*].share", ok, message, total, _rule_text("bots[*].share"))
        if not ok:
            out.file_errors.append(message)


def check_timeframes(raw: Any, *, min_count: int, max_count: int) -> tuple[bool, str]:
    """(ok, reason): a list of known timeframes, strictly from highest to lowest."""
    if isinstance(raw, str) or not isinstance(raw, list | tuple):
        return False, "must be a list of timeframes such as [\"4h\", \"1h\", \"15m\"]"
    if not min_count <= len(raw) <= max_count:
        return False, f"needs {min_count}-{max_count} timeframes, got {len(raw)}"
    unknown = [t for t in raw if not isinstance(t, str) or t not in TIMEFRAME_MINUTES]
    if unknown:
        return False, f"unknown timeframe {show(unknown[0])}; use one of " + ", ".join(TIMEFRAME_MINUTES)
    minutes = [TIMEFRAME_MINUTES[t] for t in raw]
    if any(a <= b for a, b in zip(minutes, minutes[1:], strict=False)):
        return False, "must go from highest to lowest timeframe (entry timeframe last), without repeats"
    return True, "ok"


def parse_bots_toml(text: str) -> dict[str, Any]:
    """Parse a bots file; floats become Decimal exactly. Raises tomllib.TOMLDecodeError on bad syntax."""
    return tomllib.loads(text, parse_float=Decimal)


def render_bounds_markdown() -> str:
    """The README tables: every declared parameter (risk rails, then each strategy), then the rules."""
    lines = ["| field | type | allowed | default | aliases | meaning |", "|---|---|---|---|---|---|"]
    sections: list[tuple[str, Sequence[Param]]] = [("risk", RISK_CHECKS)]
    sections += [(name, strategy_class(name).PARAMS) for name in STRATEGY_TYPES]
    for prefix, params in sections:
        for p in params:
            path = f"`{prefix}.{p.name}`"
            if prefix == "risk" and p in RISK_RAILS:
                path += f" / `{p.name.upper()}`"
            kind = p.kind.__name__ + (f" x {p.count}" if p.count else "")
            default = _plain(p.default)
            aliases = ", ".join(f"`{a}`" for a in p.aliases)
            lines.append(f"| {path} | {kind} | {_cell(p.allowed())} | {_cell(default)} | {aliases} | {_cell(p.meaning)} |")
    lines += ["", "| field | check | rule |", "|---|---|---|"]
    lines += [f"| `{path}` | {check} | {_cell(rule)} |" for path, check, rule in RULES]
    return "\n".join(lines)


def _plain(value: Any) -> str:
    if isinstance(value, list | tuple):
        return ", ".join(_plain(v) for v in value)
    return "none" if value is None else str(value).lower() if isinstance(value, bool) else show(value).strip("'")


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


__all__ = ["BotsCheck", "ConfigValidator", "ValidationReport", "ValidationResult", "parse_bots_toml",
           "render_bounds_markdown"]
