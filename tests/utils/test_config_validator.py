"""ConfigValidator: every bound at, just below and just above its limit; rules; malformed input; bots files."""

from __future__ import annotations

from decimal import Decimal

import pytest

from traderagent.utils.config_validator import (
    BOUNDS,
    ConfigValidator,
    ValidationReport,
    ValidationResult,
    dca_max_deviation,
    dca_worst_case_capital,
    parse_bots_toml,
    render_bounds_markdown,
)

V = ConfigValidator()
KWARG = {"risk": "risk", "grid": "grid", "dca": "dca", "trend": "trend", "smc": "smc"}
DERIVED = {"grid.total_investment", "dca.max_deviation", "dca.worst_case_capital"}
DIRECT = [k for k in BOUNDS if k not in DERIVED]


def validate_field(path: str, value: object) -> ValidationResult:
    """The range result of one field when only it is given (others default)."""
    category, name = path.split(".")
    params = {name: value}
    field = path
    if path == "smc.swing_length":  # a per-element bound of the swing_lengths list
        params, field = {"swing_lengths": [value, 5, 3]}, "smc.swing_lengths[0]"
    report = V.run_full_validation(**{KWARG[category]: params})
    matches = [r for r in report.results if r.field == field and r.allowed == BOUNDS[path].allowed()]
    assert len(matches) == 1, report.results
    return matches[0]


def step(path: str) -> Decimal:
    return Decimal(1) if BOUNDS[path].integer else Decimal("0.0001")


def edge_cases(path: str) -> list[tuple[Decimal, bool]]:
    b, eps = BOUNDS[path], step(path)
    cases = []
    if b.low is not None:
        cases += [(b.low, not b.low_open), (b.low - eps, False), (b.low + eps, True)]
    if b.high is not None:
        cases += [(b.high, True), (b.high + eps, False), (b.high - eps, True)]
    return cases


@pytest.mark.parametrize(("path", "value", "ok"), [(p, v, ok) for p in DIRECT for v, ok in edge_cases(p)],
                         ids=[f"{p}={v}" for p in DIRECT for v, _ in edge_cases(p)])
def test_each_bound_at_below_and_above(path: str, value: Decimal, ok: bool) -> None:
    result = validate_field(path, value)
    assert result.passed is ok, result.message
    assert result.check_name == BOUNDS[path].check
    if not ok:
        assert result.field in result.message and str(value) in result.message and "allowed" in result.message
        assert result.value == str(value) and result.allowed


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
    assert validate_field("risk.risk_per_trade", value).passed


@pytest.mark.parametrize(("value", "why"), [
    ("abc", "must be a number"),
    ("", "must be a number"),
    (float("nan"), "finite"),
    (float("inf"), "finite"),
    (Decimal("NaN"), "finite"),
    ("-inf", "finite"),
    (True, "boolean"),
    ([0.01], "not list"),
    ({"v": 1}, "not dict"),
    (-0.01, "out of range"),
])
def test_malformed_values_fail_clearly(value: object, why: str) -> None:
    result = validate_field("risk.risk_per_trade", value)
    assert not result.passed
    assert result.message.startswith("risk.risk_per_trade = ") and why in result.message


def test_integer_fields_reject_fractions() -> None:
    result = validate_field("grid.num_levels", "10.5")
    assert not result.passed and "whole number" in result.message
    assert validate_field("grid.num_levels", Decimal("10.0")).passed


def test_non_table_category_fails_without_exception() -> None:
    report = V.run_full_validation(grid=[1, 2], dca="x", risk=None)
    assert [r.check_name for r in report.results] == ["grid_params", "dca_params"]
    assert not report.passed and "must be a table" in report.results[0].message


def test_aliases_are_resolved() -> None:
    result = validate_field("grid.num_levels", 10)
    assert result.passed
    report = V.run_full_validation(grid={"grid_levels": 60})
    assert any(r.field == "grid.num_levels" and not r.passed for r in report.results)


# -- derived rules -------------------------------------------------------------------------------------
def _result(report: ValidationReport, field: str, text: str = "") -> ValidationResult:
    return next(r for r in report.results if r.field == field and text in r.message)


@pytest.mark.parametrize(("amount", "ok"), [("1000", True), ("1000.01", False), ("999.99", True)])
def test_grid_total_investment_cap(amount: str, ok: bool) -> None:
    report = V.run_full_validation(grid={"num_levels": 50, "amount_per_grid": amount})
    assert _result(report, "grid.total_investment").passed is ok


@pytest.mark.parametrize(("amount", "ok"), [("100", True), ("100.1", False)])
def test_grid_total_investment_within_bot_capital(amount: str, ok: bool) -> None:
    report = V.run_full_validation(grid={"num_levels": 10, "amount_per_grid": amount}, capital="1000")
    result = _result(report, "grid.total_investment", "bot's capital")
    assert result.passed is ok and ("exceeds" in result.message) is not ok


@pytest.mark.parametrize(("lower", "upper", "ok"), [
    ("95", "105", True),          # +-5 %
    ("100", "150", True),         # 50/250 = 0.20 exactly
    ("100", "150.1", False),
    ("105", "95", False),         # inverted
    ("0", "10", False),
    ("abc", "10", False),
])
def test_grid_range_from_prices(lower: str, upper: str, ok: bool) -> None:
    report = V.run_full_validation(grid={"lower_price": lower, "upper_price": upper})
    results = [r for r in report.results if r.check_name == "grid_range"]
    assert len(results) == 1 and results[0].passed is ok, results


def test_grid_half_given_prices_fail() -> None:
    report = V.run_full_validation(grid={"upper_price": "105"})
    result = next(r for r in report.results if r.check_name == "grid_range")
    assert not result.passed and "together" in result.message


def test_dca_worst_case_capital_hand_computed() -> None:
    # 3Commas example: base 10, SO 20, volume scale 2, 5 SOs -> 10 + 20+40+80+160+320 = 630
    assert dca_worst_case_capital(Decimal(10), Decimal(20), 5, Decimal(2)) == Decimal(630)
    # base 100, SO 200, v 1.5, 5 SOs -> 100 + 200*(1+1.5+2.25+3.375+5.0625) = 2737.5 (a linear estimate says 1100)
    assert dca_worst_case_capital(Decimal(100), Decimal(200), 5, Decimal("1.5")) == Decimal("2737.5")
    assert dca_worst_case_capital(Decimal(100), Decimal(200), 0, Decimal(2)) == Decimal(100)
    # gaps d=1 %, s=1.5: 1 + 1.5 + 2.25 + 3.375 + 5.0625 = 13.1875 %
    assert dca_max_deviation(Decimal("0.01"), Decimal("1.5"), 5) == Decimal("0.131875")


@pytest.mark.parametrize(("capital", "ok"), [("2737.5", True), ("2737.49", False), ("1100", False)])
def test_dca_worst_case_against_bot_capital(capital: str, ok: bool) -> None:
    dca = {"base_order": 100, "safety_order": 200, "max_safety_orders": 5, "volume_scale": "1.5"}
    report = V.run_full_validation(dca=dca, capital=capital)
    result = _result(report, "dca.worst_case_capital", "bot's capital")
    assert result.passed is ok and "= 2737.5:" in result.message
    assert report.passed is ok


@pytest.mark.parametrize(("max_capital", "ok"), [("630", True), ("629.99", False)])
def test_dca_worst_case_against_max_capital(max_capital: str, ok: bool) -> None:
    dca = {"base_order": 10, "safety_order": 20, "max_safety_orders": 5, "volume_scale": 2, "max_capital": max_capital}
    assert _result(V.run_full_validation(dca=dca), "dca.worst_case_capital", "max_capital").passed is ok


def test_dca_worst_case_global_cap() -> None:
    dca = {"base_order": 1000, "safety_order": 5000, "max_safety_orders": 10, "volume_scale": 2}
    result = _result(V.run_full_validation(dca=dca), "dca.worst_case_capital")
    assert not result.passed and "50000" in result.allowed


@pytest.mark.parametrize(("deviation", "scale", "count", "ok"), [
    ("0.3", "1", 3, True),     # 0.9 exactly
    ("0.2", "2", 3, False),    # 0.2 * 7 = 1.4: below zero
    ("0.1", "2", 4, False),    # 1.5
])
def test_dca_ladder_depth(deviation: str, scale: str, count: int, ok: bool) -> None:
    dca = {"price_deviation": deviation, "step_scale": scale, "max_safety_orders": count}
    assert _result(V.run_full_validation(dca=dca), "dca.max_deviation").passed is ok


@pytest.mark.parametrize(("fast", "slow", "ok"), [(20, 50, True), (49, 50, True), (50, 50, False), (60, 50, False)])
def test_trend_ema_fast_below_slow(fast: int, slow: int, ok: bool) -> None:
    report = V.run_full_validation(trend={"ema_fast": fast, "ema_slow": slow})
    assert _result(report, "trend.ema_fast", "ema_slow").passed is ok


def test_trend_optional_fields_only_checked_when_set() -> None:
    report = V.run_full_validation(trend={})
    assert not any(r.field in ("trend.take_profit_r", "trend.trailing_atr_mult") for r in report.results)
    report = V.run_full_validation(trend={"take_profit_r": "0.5", "sl_atr_mult": 9})
    assert {r.field for r in report.failures} == {"trend.take_profit_r", "trend.stop_atr_mult"}


@pytest.mark.parametrize(("low", "high", "ok"), [("2", "6", True), ("3", "3", True), ("4", "3", False)])
def test_smc_min_risk_reward_not_above_max(low: str, high: str, ok: bool) -> None:
    report = V.run_full_validation(smc={"min_risk_reward": low, "max_risk_reward": high})
    assert _result(report, "smc.max_risk_reward", "must be <=" if not ok else "<=").passed is ok


@pytest.mark.parametrize("value", ["5", [5, 5], [5, 5, "x"], [5, 0, 3], [5, 2.5, 3]])
def test_smc_swing_lengths_malformed(value: object) -> None:
    report = V.run_full_validation(smc={"swing_lengths": value})
    failed = [r for r in report.failures if r.check_name == "smc_swing_length"]
    assert len(failed) == 1 and failed[0].field.startswith("smc.swing_lengths")


@pytest.mark.parametrize(("timeframes", "ok"), [
    (["4h", "1h", "15m"], True),
    (["1d", "1h", "5m"], True),
    (["1d", "4h", "1h", "15m"], False),     # the SMC strategy uses exactly three
    (["4h", "1h"], False),
    (["15m", "1h", "4h"], False),
    (["4h"], False),
    (["4h", "4h"], False),
    (["4h", "2h"], False),
    ("4h", False),
    ([{"x": 1}, "1h"], False),
])
def test_smc_timeframes_high_to_low(timeframes: object, ok: bool) -> None:
    report = V.run_full_validation(smc={"timeframes": timeframes})
    result = next(r for r in report.results if r.check_name == "smc_timeframes")
    assert result.passed is ok and result.field == "smc.timeframes"


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
num_levels = 10
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
            "bots[sol-trend].params.ema_fast", "bots[btc-smc].params.timeframes", "risk.max_exposure"} <= fields
    assert _result(report, "risk.max_exposure").value == "0.4"


def test_file_risk_overrides_settings_defaults() -> None:
    report = V.validate_bots_config({"risk": {"max_exposure": "0.9"}}, risk_defaults={"risk_per_trade": Decimal("0.5")})
    failed = {r.field for r in report.failures}
    assert failed == {"risk.max_exposure", "risk.risk_per_trade"}


def test_bots_capital_sum_against_total() -> None:
    doc = parse_bots_toml(GOOD_TOML)
    report = V.validate_bots_config(doc, total_capital=Decimal(2999))
    result = next(r for r in report.results if r.check_name == "bots_capital")
    assert not result.passed and "3000" in result.message and "2999" in result.message


@pytest.mark.parametrize(("bot", "field", "why"), [
    ({"strategy": "grid", "symbol": "BTCUSDT"}, "bots[0].name", "required"),
    ({"name": "a", "symbol": "BTCUSDT"}, "bots[a].strategy", "required"),
    ({"name": "a", "strategy": "martingale", "symbol": "BTCUSDT"}, "bots[a].strategy", "one of"),
    ({"name": "a", "strategy": "grid"}, "bots[a].symbol", "required"),
    ({"name": "a", "strategy": "grid", "symbol": "btc usdt"}, "bots[a].symbol", "BTCUSDT"),
    ({"name": "a", "strategy": "grid", "symbol": "BTCUSDT", "market_type": "inverse"}, "bots[a].market_type", "linear"),
    ({"name": "a", "strategy": "grid", "symbol": "BTCUSDT", "timeframe": "7m"}, "bots[a].timeframe", "unknown"),
    ({"name": "a", "strategy": "grid", "symbol": "BTCUSDT", "capital": "abc"}, "bots[a].capital", "number"),
    ({"name": "a", "strategy": "grid", "symbol": "BTCUSDT", "capital": -5}, "bots[a].capital", "greater than 0"),
    ({"name": "a", "strategy": "grid", "symbol": "BTCUSDT", "params": [1]}, "bots[a].params", "table"),
    ({"name": "a b", "strategy": "grid", "symbol": "BTCUSDT"}, "bots[a b].name", "letters"),
    ({"name": "a", "strategy": "smc", "symbol": "BTCUSDT", "timeframes": ["15m", "1h", "4h"]}, "bots[a].timeframes", "highest"),
])
def test_bad_bot_entries_fail_naming_the_field(bot: dict, field: str, why: str) -> None:
    report = V.validate_bots_config({"bots": [bot]})
    assert not report.passed
    result = next(r for r in report.failures if r.field == field)
    assert why in result.message and result.category == "bots"


def test_duplicate_names_and_non_table_entries() -> None:
    bot = {"name": "a", "strategy": "grid", "symbol": "BTCUSDT"}
    report = V.validate_bots_config({"bots": [bot, dict(bot), "junk"]})
    messages = [r.message for r in report.failures]
    assert any("unique" in m for m in messages) and any(m.startswith("bots[2]") for m in messages)
    assert not V.validate_bots_config({"bots": {"name": "x"}}).passed


def test_bot_params_errors_are_prefixed_with_the_bot() -> None:
    doc = parse_bots_toml(GOOD_TOML.replace("num_levels = 10", "num_levels = 80"))
    failed = [r.field for r in V.validate_bots_config(doc).failures]
    assert "bots[btc-grid].params.num_levels" in failed


def test_render_bounds_markdown_lists_every_bound() -> None:
    table = render_bounds_markdown()
    assert table.startswith("| field | check | category | allowed | default | meaning |")
    for path, bound in BOUNDS.items():
        assert f"| `{path}` | {bound.check} |" in table
    assert "smc.timeframes" in table and "ema_fast < ema_slow" in table


def test_strategy_defaults_are_merged_under_params() -> None:
    bot = {"name": "d", "strategy": "dca", "symbol": "BTCUSDT", "capital": "500", "params": {"max_safety_orders": 3}}
    # with the strategy's defaults 25/25/v=2: 25 + 25 + 50 + 100 = 200
    report = V.validate_bots_config({"bots": [bot]}, strategy_defaults={
        "dca": {"base_order": "25", "safety_order": "25", "volume_scale": "2", "stop_loss": None}})
    assert _result(report, "bots[d].params.worst_case_capital", "bot's capital").message.startswith(
        "bots[d].params.worst_case_capital = 200:")


def test_strategy_check_result_is_reported() -> None:
    calls = []

    def check(strategy, params, market, capital):
        calls.append((strategy, dict(params), market, capital))
        return "unknown parameter 'levelz'" if "levelz" in params else None

    bots = [{"name": "g", "strategy": "grid", "symbol": "BTCUSDT", "timeframe": "5m", "params": {"levelz": 3}},
            {"name": "s", "strategy": "smc", "symbol": "BTCUSDT", "timeframes": ["4h", "1h", "15m"]}]
    report = V.validate_bots_config({"bots": bots}, strategy_check=check)
    results = [r for r in report.results if r.check_name == "strategy_params"]
    assert [r.passed for r in results] == [False, True] and "levelz" in results[0].message
    assert calls[0][1]["timeframe"] == "5m" and calls[1][1]["timeframes"] == ["4h", "1h", "15m"]
    broken = V.validate_bots_config({"bots": bots[1:]}, strategy_check=lambda *a: 1 / 0)
    assert not broken.passed and "ZeroDivisionError" in broken.failures[0].message
