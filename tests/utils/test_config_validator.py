"""ConfigValidator: every declared bound at, just below and just above its limit; the rules spanning fields;
malformed input; bots files; the README and .env.example generated from / agreeing with the declarations."""

from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path

import pytest

from traderagent.config import Settings
from traderagent.strategies import STRATEGY_TYPES, strategy_class
from traderagent.strategies.params import RISK_DEFAULTS, RISK_RAILS, Param
from traderagent.utils.config_validator import (
    RISK_CHECKS,
    ConfigValidator,
    ValidationReport,
    ValidationResult,
    parse_bots_toml,
    render_bounds_markdown,
)

REPO = Path(__file__).resolve().parents[2]
V = ConfigValidator()
KWARG = {"risk": "risk", "grid": "grid", "dca": "dca", "trend_follower": "trend", "smc": "smc"}
DECLARED: list[tuple[str, Param]] = [("risk", p) for p in RISK_CHECKS] + [
    (name, p) for name in STRATEGY_TYPES for p in strategy_class(name).PARAMS]
BOUNDED = [(owner, p) for owner, p in DECLARED if p.count is None and (p.low is not None or p.high is not None)]


def field_result(owner: str, param: Param, value: object) -> ValidationResult:
    """The result of one field when only it is given (others default)."""
    key = KWARG[owner]
    report = V.run_full_validation(**{key: {param.name: value}})
    matches = [r for r in report.results if r.field == f"{key}.{param.name}" and r.allowed == param.allowed()]
    assert len(matches) == 1, report.results
    return matches[0]


def edge_cases(p: Param) -> list[tuple[Decimal, bool]]:
    eps = Decimal(1) if p.kind is int else Decimal("0.0001")
    cases = []
    if p.low is not None:
        cases += [(p.low, not p.low_open), (p.low - eps, False), (p.low + eps, True)]
    if p.high is not None:
        cases += [(p.high, True), (p.high + eps, False), (p.high - eps, True)]
    return cases


CASES = [(owner, p, v, ok) for owner, p in BOUNDED for v, ok in edge_cases(p)]


@pytest.mark.parametrize(("owner", "param", "value", "ok"), CASES,
                         ids=[f"{o}.{p.name}={v}" for o, p, v, _ in CASES])
def test_each_declared_bound_at_below_and_above(owner: str, param: Param, value: Decimal, ok: bool) -> None:
    result = field_result(owner, param, value)
    assert result.passed is ok, result.message
    if not ok:
        assert result.message == f"{result.field} = {value}: out of range (allowed {param.allowed()})"


def test_spec_example_passes_with_defaults() -> None:
    report = V.run_full_validation(risk={"risk_per_trade": Decimal("0.02")}, grid={"num_levels": 10},
                                   dca={"max_safety_orders": 5})
    assert report.passed and not report.failures
    checks = {r.check_name for r in report.results}
    assert {"risk_per_trade", "max_exposure", "max_daily_loss", "min_risk_reward", "grid_levels",
            "grid_total_investment", "grid_range", "dca_safety_orders", "dca_max_capital", "dca_take_profit"} <= checks
    summary = report.summary()
    assert summary["overall_status"] == "PASS" and summary["failed"] == 0
    assert set(summary["categories"]) == {"risk", "strategy"}


def test_categories_not_given_are_skipped() -> None:
    assert V.run_full_validation().results == []
    assert {r.category for r in V.run_full_validation(trend={}, smc={}).results} == {"trend", "smc"}


@pytest.mark.parametrize("value", [Decimal("0.02"), 0.02, "0.02", " 0.02 ", "2e-2"])
def test_numbers_accepted_in_any_form(value: object) -> None:
    assert field_result("risk", RISK_RAILS[0], value).passed


@pytest.mark.parametrize(("value", "why"), [
    ("abc", "must be a number"),
    ("", "is required"),
    (float("nan"), "finite"),
    (float("inf"), "finite"),
    (Decimal("NaN"), "finite"),
    ("-inf", "finite"),
    (True, "not a boolean"),
    ([0.01], "not list"),
    ({"v": 1}, "not dict"),
    (-0.01, "out of range"),
])
def test_malformed_values_fail_clearly(value: object, why: str) -> None:
    result = V.run_full_validation(risk={"risk_per_trade": value}).failures[0]
    assert result.field == "risk.risk_per_trade" and result.check_name == "risk_per_trade"
    assert result.message.startswith("risk.risk_per_trade = ") and why in result.message


def test_integer_fields_reject_fractions() -> None:
    (failure,) = V.run_full_validation(grid={"num_levels": "10.5"}).failures
    assert failure.message.startswith("grid.num_levels = '10.5': must be a whole number")
    assert not V.run_full_validation(grid={"num_levels": Decimal("10.0")}).failures


def test_non_table_category_fails_without_exception() -> None:
    report = V.run_full_validation(grid=[1, 2], dca="x", risk=None)
    assert [r.check_name for r in report.results] == ["grid_params", "dca_params"]
    assert not report.passed and "must be a table" in report.results[0].message


def test_aliases_resolve_before_defaults_and_names_given_twice_fail() -> None:
    # grid_levels = 500 was reported as "num_levels = 15: ok" (the default hid the alias)
    (failure,) = V.run_full_validation(grid={"grid_levels": 500}).failures
    assert failure.field == "grid.num_levels" and failure.value == "500" and "out of range" in failure.message
    (twice,) = V.run_full_validation(grid={"grid_levels": 10, "num_levels": 12}).failures
    assert twice.message == "grid.grid_levels: given twice (also as 'num_levels')"


def test_undeclared_parameters_fail_naming_them() -> None:
    (failure,) = V.run_full_validation(grid={"profit_per_grid": "0.01"}).failures
    assert failure.message.startswith("grid.profit_per_grid: unknown parameter of grid (known: ")


# -- rules spanning fields -----------------------------------------------------------------------------
def _result(report: ValidationReport, field: str, text: str = "") -> ValidationResult:
    return next(r for r in report.results if r.field == field and text in r.message)


@pytest.mark.parametrize(("amount", "ok"), [("1000", True), ("1000.01", False), ("999.99", True)])
def test_grid_total_investment_cap(amount: str, ok: bool) -> None:
    report = V.run_full_validation(grid={"num_levels": 51, "amount_per_grid": amount})  # 50 slots
    assert _result(report, "grid.total_investment", "the cap").passed is ok


@pytest.mark.parametrize(("amount", "ok"), [("100", True), ("100.1", False)])
def test_grid_total_investment_within_bot_capital(amount: str, ok: bool) -> None:
    report = V.run_full_validation(grid={"num_levels": 11, "amount_per_grid": amount}, capital="1000")
    result = _result(report, "grid.total_investment", "bot's capital")
    assert result.passed is ok and ("exceeds" in result.message) is not ok


@pytest.mark.parametrize(("lower", "upper", "ok"), [("95", "105", True), ("105", "95", False), ("105", None, False)])
def test_grid_prices_are_the_strategys_rule(lower: str, upper: str | None, ok: bool) -> None:
    grid = {"lower_price": lower} if upper is None else {"lower_price": lower, "upper_price": upper}
    report = V.run_full_validation(grid=grid)
    assert report.passed is ok and _result(report, "grid").passed is ok


# The ladder's worst case is the strategy's own sum: base + SO x (1 + v + ... + v^(n-1)), plus the entry fee.
@pytest.mark.parametrize(("capital", "ok"), [("2740.2375", True), ("2740.23", False), ("1100", False)])
def test_dca_worst_case_against_bot_capital(capital: str, ok: bool) -> None:
    # 100 + 200 x (1 + 1.5 + 2.25 + 3.375 + 5.0625) = 2737.5; x 1.001 = 2740.2375 (a linear estimate says 1100)
    dca = {"base_order": 100, "safety_order": 200, "max_safety_orders": 5, "volume_scale": "1.5"}
    report = V.run_full_validation(dca=dca, capital=capital)
    result = _result(report, "dca.worst_case_capital", "bot's capital")
    assert result.passed is ok and "= 2740.2375:" in result.message
    assert report.passed is ok


def test_dca_worst_case_uses_the_strategys_defaults() -> None:
    # defaults base 25, SO 25, volume scale 1.5, 5 SOs: (25 + 25 x 13.1875) x 1.001 = 355.0421875
    report = V.run_full_validation(dca={}, capital="355")
    assert _result(report, "dca.worst_case_capital", "bot's capital").message == (
        "dca.worst_case_capital = 355.0421875: exceeds the bot's capital 355")


def test_dca_worst_case_global_cap() -> None:
    dca = {"base_order": 1000, "safety_order": 5000, "max_safety_orders": 10, "volume_scale": 2}
    result = _result(V.run_full_validation(dca=dca), "dca.worst_case_capital", "the cap")
    assert not result.passed and "50000" in result.message


@pytest.mark.parametrize(("deviation", "scale", "count", "ok"), [
    ("0.3", "1", 3, True),      # 0.9 exactly
    ("0.12", "1.5", 4, False),  # 0.12 x (1 + 1.5 + 2.25 + 3.375) = 0.975: above 0.90
    ("0.19", "2", 3, False),    # 0.19 x 7 = 1.33: below zero, the strategy refuses it
])
def test_dca_ladder_depth(deviation: str, scale: str, count: int, ok: bool) -> None:
    dca = {"price_deviation": deviation, "step_scale": scale, "max_safety_orders": count}
    assert V.run_full_validation(dca=dca).passed is ok


@pytest.mark.parametrize(("params", "needle"), [
    ({"trend": {"ema_fast": 50, "ema_slow": 50}}, "'ema_fast' must be smaller"),
    ({"smc": {"min_risk_reward": "7"}}, "min_risk_reward <= max_risk_reward"),
    ({"smc": {"timeframes": ["15m", "1h", "4h"]}}, "highest to lowest"),
])
def test_the_strategys_own_rules_are_reported(params: dict, needle: str) -> None:
    (failure,) = V.run_full_validation(**params).failures
    assert failure.check_name == "strategy_params" and needle in failure.message


def test_trend_optional_fields_can_be_turned_off() -> None:
    assert V.run_full_validation(trend={"take_profit_r": "none", "trailing_atr_mult": None}).passed
    report = V.run_full_validation(trend={"take_profit_r": "0.5", "sl_atr_mult": 9})
    assert {r.field for r in report.failures} == {"trend.take_profit_r", "trend.stop_atr_mult"}


@pytest.mark.parametrize(("value", "field"), [
    ("5", "smc.swing_lengths"), ([5, 5], "smc.swing_lengths"), ([5, 5, "x"], "smc.swing_lengths[2]"),
    ([5, 0, 3], "smc.swing_lengths[1]"), ([5, 2.5, 3], "smc.swing_lengths[1]"),
])
def test_smc_swing_lengths_malformed(value: object, field: str) -> None:
    (failure,) = V.run_full_validation(smc={"swing_lengths": value}).failures
    assert failure.field == field and failure.check_name == "smc_swing_lengths"


@pytest.mark.parametrize(("timeframes", "ok"), [
    (["4h", "1h", "15m"], True), ("1d,1h,5m", True), (["4h", "1h"], False), (["4h", "2x", "5m"], False),
])
def test_smc_timeframes_are_a_list_of_three(timeframes: object, ok: bool) -> None:
    assert V.run_full_validation(smc={"timeframes": timeframes}).passed is ok


# -- bots file -------------------------------------------------------------------------------------
GOOD_TOML = """
[risk]
risk_per_trade = 0.01
max_exposure = "0.4"

[[bots]]
name = "btc-grid"
strategy = "grid"
symbol = "BTCUSDT"
market_type = "linear"
timeframe = "15m"
capital = "1000"
[bots.params]
num_levels = 11
amount_per_grid = 100
grid_range = 0.05

[[bots]]
name = "eth-dca"
strategy = "dca"
symbol = "ETH/USDT"
market_type = "spot"
timeframes = ["1h"]
allocated_capital = "2000"
[bots.params]
base_order = 100
safety_order = 200
max_safety_orders = 3
volume_scale = 1.5

[[bots]]
name = "sol-trend"
strategy = "trend_follower"
symbol = "SOLUSDT"
timeframe = "1h"
share = "0.5"
[bots.params]
ema_fast = 20
ema_slow = 50

[[bots]]
name = "btc-smc"
strategy = "smc"
symbol = "BTC/USDT:USDT"
timeframes = ["4h", "1h", "15m"]
"""


def test_parse_bots_toml_uses_decimal() -> None:
    doc = parse_bots_toml(GOOD_TOML)
    assert doc["risk"]["risk_per_trade"] == Decimal("0.01") and isinstance(doc["risk"]["risk_per_trade"], Decimal)


def test_good_bots_file_passes() -> None:
    report = V.validate_bots_config(parse_bots_toml(GOOD_TOML), total_capital=Decimal(10000))
    assert report.passed, [r.message for r in report.failures]
    fields = {r.field for r in report.results}
    assert {"bots[btc-grid].params.num_levels", "bots[eth-dca].params.worst_case_capital",
            "bots[sol-trend].params.ema_fast", "bots[btc-smc].params", "risk.max_exposure", "bots[*].share"} <= fields
    assert _result(report, "risk.max_exposure").value == "0.4"
    assert _result(report, "bots[*].share").message == (
        "bots[*].share = 0.8: within 1 (sol-trend 0.5, btc-grid 0.1, eth-dca 0.2)")


def test_bad_risk_section_fails_naming_the_field() -> None:
    report = V.validate_bots_config({"risk": {"max_exposure": "0.9", "risk_per_trade": "0.01"}})
    assert [r.message for r in report.failures] == ["risk.max_exposure = '0.9': out of range (allowed > 0 and <= 0.50)"]


@pytest.mark.parametrize(("bot", "field", "why"), [
    ({"strategy": "grid", "symbol": "BTCUSDT"}, "bots[0].name", "required"),
    ({"name": "a", "symbol": "BTCUSDT"}, "bots[a].strategy", "required"),
    ({"name": "a", "strategy": "martingale", "symbol": "BTCUSDT"}, "bots[a].strategy", "one of"),
    ({"name": "a", "strategy": "grid"}, "bots[a].symbol", "required"),
    ({"name": "a", "strategy": "grid", "symbol": "btc usdt"}, "bots[a].symbol", "BTCUSDT"),
    ({"name": "a", "strategy": "grid", "symbol": "BTCUSDT", "market_type": "inverse"}, "bots[a].market_type", "linear"),
    ({"name": "a", "strategy": "grid", "symbol": "BTCUSDT", "timeframe": "7m"}, "bots[a].timeframe", "unknown"),
    ({"name": "a", "strategy": "grid", "symbol": "BTCUSDT", "capital": "abc"}, "bots[a].capital", "number"),
    ({"name": "a", "strategy": "grid", "symbol": "BTCUSDT", "capital": -5}, "bots[a].capital", "out of range"),
    ({"name": "a", "strategy": "grid", "symbol": "BTCUSDT", "share": "-0.2"}, "bots[a].share", "out of range"),
    ({"name": "a", "strategy": "grid", "symbol": "BTCUSDT", "tick_seconds": 0}, "bots[a].tick_seconds", "out of range"),
    ({"name": "a", "strategy": "grid", "symbol": "BTCUSDT", "tick_secs": 1}, "bots[a].tick_secs", "unknown field"),
    ({"name": "a", "strategy": "grid", "symbol": "BTCUSDT", "params": [1]}, "bots[a].params", "table"),
    ({"name": "a b", "strategy": "grid", "symbol": "BTCUSDT"}, "bots[a b].name", "letters"),
    ({"name": "a", "strategy": "smc", "symbol": "BTCUSDT", "timeframes": ["15m", "1h", "4h"]}, "bots[a].timeframes",
     "highest"),
])
def test_bad_bot_entries_fail_naming_the_field(bot: dict, field: str, why: str) -> None:
    report = V.validate_bots_config({"bots": [bot]})
    assert not report.passed
    result = next(r for r in report.failures if r.field == field)
    assert why in result.message and result.category == "bots" or result.field.endswith(".params")


def test_duplicate_names_non_table_entries_and_unknown_sections() -> None:
    bot = {"name": "a", "strategy": "grid", "symbol": "BTCUSDT"}
    report = V.validate_bots_config({"bots": [bot, dict(bot), "junk"]})
    messages = [r.message for r in report.failures]
    assert any("unique" in m for m in messages) and any(m.startswith("bots[2]") for m in messages)
    assert not V.validate_bots_config({"bots": {"name": "x"}}).passed
    assert V.validate_bots_config({"risks": {}}).failures[0].message.startswith("risks = {}: unknown section")


def test_bot_params_are_checked_with_the_bots_capital() -> None:
    doc = parse_bots_toml(GOOD_TOML.replace("num_levels = 11", "grid_levels = 300"))
    failed = [r.message for r in V.validate_bots_config(doc).failures]
    assert failed == ["bots[btc-grid].params.num_levels = 300: out of range (allowed >= 2 and <= 200 (whole number))"]
    doc = parse_bots_toml(GOOD_TOML.replace('capital = "1000"', 'capital = "999"'))
    assert [r.message for r in V.validate_bots_config(doc).failures] == [
        "bots[btc-grid].params.total_investment = 1000: exceeds the bot's capital 999"]


# -- one declaration: README, .env.example, settings -------------------------------------------------
def _readme_section(begin: str, end: str) -> str:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    return text.split(begin, 1)[1].split(end, 1)[0].strip()


def test_readme_bounds_table_is_the_declarations_defaults_included() -> None:
    table = render_bounds_markdown()
    assert _readme_section("<!-- bounds:begin -->", "<!-- bounds:end -->") == table
    rows = [line.strip("| ").split(" | ") for line in table.split("\n\n")[0].splitlines()[2:]]
    cells = {row[0]: row[3] for row in rows}
    for name in STRATEGY_TYPES:  # every parameter is in the table with its default
        for p in strategy_class(name).PARAMS:
            assert _same(cells[f"`{name}.{p.name}`"], p.default), (name, p.name)


def _same(cell: str, default: object) -> bool:
    if default is None or isinstance(default, bool | str):
        return cell == ("none" if default is None else str(default).lower() if isinstance(default, bool) else default)
    if isinstance(default, tuple):
        return cell == ", ".join(str(v) for v in default)
    return Decimal(cell) == Decimal(str(default))


def test_env_example_readme_and_settings_share_the_risk_defaults() -> None:
    env = dict(re.findall(r"^([A-Z_]+)=(.*)$", (REPO / ".env.example").read_text(encoding="utf-8"), re.M))
    settings = Settings.load(env={})
    for p in RISK_RAILS:
        variable = p.name.upper()
        assert Decimal(env[variable]) == RISK_DEFAULTS[p.name] == getattr(settings, p.name), variable
        row = next(line for line in render_bounds_markdown().splitlines() if f"`{variable}`" in line)
        assert f"| {RISK_DEFAULTS[p.name]} |" in row


@pytest.mark.parametrize(("variable", "value"), [("RISK_PER_TRADE", "0.5"), ("MAX_EXPOSURE", "1"),
                                                 ("MAX_DAILY_LOSS", "0.2"), ("MAX_DAILY_LOSS", "-0.01")])
def test_an_out_of_range_risk_variable_stops_the_start_naming_it(
        variable: str, value: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    from traderagent.cli import main

    monkeypatch.chdir(tmp_path)  # no .env
    monkeypatch.setenv(variable, value)
    assert main(["run", "--ticks", "1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"traderagent: {variable}='{value}': out of range (allowed > 0 and <= ") and "Traceback" not in err


def test_a_bad_capital_is_reported_not_raised() -> None:
    report = V.run_full_validation(dca={}, capital="abc")
    assert [r.message for r in report.failures] == ["capital = 'abc': must be a number (> 0; or none)"]
