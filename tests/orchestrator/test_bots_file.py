"""bots.toml loading: each bot validated on its own, by the validator's own check; the example file is valid."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from traderagent.bots import demo_bots, load_bots_file, parse_bots
from traderagent.commands.validate import check
from traderagent.utils.config_validator import ConfigValidator

REPO = Path(__file__).resolve().parents[2]


def test_example_file_loads_every_bot():
    out = load_bots_file(REPO / "bots.example.toml", total_capital=Decimal(10000))
    assert out.refused == []
    assert [b.strategy for b in out.bots] == ["grid", "dca", "trend_follower", "smc"]
    smc = out.bots[3]
    assert smc.timeframes == ("4h", "1h", "15m") and smc.tick_seconds == 10
    assert out.bots[0].share == Decimal("0.25") and out.bots[0].params["range_pct"] == Decimal("0.03")
    assert out.risk["max_daily_loss"] == Decimal("0.05")


def test_bad_bot_is_refused_with_reason_others_kept():
    doc = {"bots": [
        {"name": "ok", "strategy": "grid", "symbol": "XRPUSDT", "timeframe": "5m"},
        {"name": "bad strategy", "strategy": "martingale", "symbol": "XRPUSDT"},
        {"name": "neg", "strategy": "dca", "symbol": "SOLUSDT", "capital": "-5"},
        {"name": "ok", "strategy": "dca", "symbol": "SOLUSDT"},
        {"name": "typo", "strategy": "dca", "symbol": "SOLUSDT", "tick_secs": 3},
        {"name": "share", "strategy": "dca", "symbol": "SOLUSDT", "share": "1.5"},
        {"name": "negshare", "strategy": "dca", "symbol": "SOLUSDT", "share": "-0.2"},
        {"name": "range", "strategy": "grid", "symbol": "XRPUSDT", "params": {"grid_range": "0.9"}},
        {"name": "both", "strategy": "grid", "symbol": "XRPUSDT", "share": "0.1", "capital": "10"},
    ]}
    out = parse_bots(doc)
    assert [b.name for b in out.bots] == ["ok"]
    reasons = dict(out.refused)
    assert "strategy" in reasons["bots[bad strategy]"]
    assert "bots[neg].capital = '-5': out of range" in reasons["bots[neg]"]
    assert "used by another bot" in reasons["bots[ok]"]
    assert "tick_secs" in reasons["bots[typo]"]
    assert "bots[share].share = '1.5': out of range" in reasons["bots[share]"]
    assert "bots[negshare].share = '-0.2': out of range" in reasons["bots[negshare]"]
    assert "bots[range].params.range_pct = '0.9': out of range (allowed > 0 and <= 0.5)" in reasons["bots[range]"]
    assert "either share or capital" in reasons["bots[both]"]


def test_leverage_is_a_linear_bots_field_checked_in_one_place():
    doc = {"bots": [
        {"name": "lev", "strategy": "grid", "symbol": "XRPUSDT", "leverage": "3"},
        {"name": "none", "strategy": "grid", "symbol": "XRPUSDT"},
        {"name": "spot", "strategy": "grid", "symbol": "XRPUSDT", "market_type": "spot", "leverage": "2"},
        {"name": "low", "strategy": "grid", "symbol": "XRPUSDT", "leverage": "0.5"},
        {"name": "high", "strategy": "grid", "symbol": "XRPUSDT", "leverage": 101},
    ]}
    out = parse_bots(doc)
    assert [(b.name, b.leverage) for b in out.bots] == [("lev", Decimal("3")), ("none", None)]
    assert out.bots[0].to_config()["leverage"] == "3"
    reasons = dict(out.refused)
    assert "bots[spot].leverage = '2': applies to linear (perpetual) bots only" in reasons["bots[spot]"]
    assert "bots[low].leverage = '0.5': out of range (allowed >= 1 and <= 100; or none)" in reasons["bots[low]"]
    assert "bots[high].leverage = 101: out of range" in reasons["bots[high]"]


def test_run_and_validate_refuse_a_bot_with_the_same_message():
    bot = {"name": "g", "strategy": "grid", "symbol": "XRPUSDT", "params": {"grid_levels": 500}}
    (reason,) = [r for _, r in parse_bots({"bots": [bot]}).refused]
    report = ConfigValidator().validate_bots_config({"bots": [bot]})
    assert reason == "bots[g].params.num_levels = 500: out of range (allowed >= 2 and <= 200 (whole number))"
    assert [r.message for r in report.failures] == [reason]


def test_bad_risk_section_stops_the_start_naming_the_field():
    with pytest.raises(ValueError, match=r"risk.max_daily_loss = '7': out of range \(allowed > 0 and <= 0.10\)"):
        parse_bots({"risk": {"max_daily_loss": "7"}, "bots": []})
    with pytest.raises(ValueError, match="min_risk_reward: unknown parameter"):
        parse_bots({"risk": {"min_risk_reward": "2"}, "bots": []})
    assert parse_bots({"risk": {"max_exposure": "0.3"}}).risk == {"max_exposure": Decimal("0.3")}


@pytest.mark.parametrize(("bots", "total", "ok"), [
    ([("a", "share", "0.7"), ("b", "share", "0.7")], None, False),
    ([("a", "share", "0.5"), ("b", "share", "0.5")], None, True),
    ([("a", "share", "0.5"), ("b", "capital", "6000")], Decimal(10000), False),  # 0.5 + 0.6
    ([("a", "share", "0.5"), ("b", "capital", "5000")], Decimal(10000), True),
])
def test_shares_of_capital_summing_above_one_are_refused(bots, total, ok):
    doc = {"bots": [{"name": n, "strategy": "dca", "symbol": "SOLUSDT", key: v} for n, key, v in bots]}
    report = ConfigValidator().validate_bots_config(doc, total_capital=total)
    assert report.passed is ok
    if ok:
        assert len(parse_bots(doc, total_capital=total).bots) == 2
    else:
        with pytest.raises(ValueError, match="shares of capital sum above 1"):
            parse_bots(doc, total_capital=total)


def test_symbol_is_normalised_and_params_are_typed_under_their_declared_names():
    doc = {"bots": [
        {"name": "g", "strategy": "grid", "symbol": "XRP/USDT:USDT", "timeframe": "5m", "capital": "1000",
         "params": {"grid_levels": 10, "amount_per_grid": 50, "grid_range": "0.05"}},
        {"name": "d", "strategy": "dca", "symbol": "SOLUSDT", "timeframes": ["1h", "5m"],
         "params": {"base_order_size": "20", "safety_orders": 2, "take_profit_pct": "0.01"}},
        {"name": "t", "strategy": "trend_follower", "symbol": "BTCUSDT", "timeframe": "1h",
         "params": {"fast_ema": 9, "slow_ema": 21}},
    ]}
    out = parse_bots(doc)
    assert out.refused == []
    grid, dca, trend = out.bots
    assert grid.symbol == "XRPUSDT" and dca.timeframes == ("1h", "5m")
    assert grid.params == {"num_levels": 10, "amount_per_grid": Decimal(50), "range_pct": Decimal("0.05")}
    assert dca.params == {"base_order": Decimal(20), "max_safety_orders": 2, "take_profit": Decimal("0.01")}
    assert trend.params == {"ema_fast": 9, "ema_slow": 21}


def test_bad_toml_is_an_error(tmp_path):
    f = tmp_path / "bots.toml"
    f.write_text("[[bots]\nname=")
    with pytest.raises(ValueError, match="bots.toml"):
        load_bots_file(f)


def test_demo_set_has_one_bot_per_strategy_and_passes_the_check(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no .env
    assert sorted(b.strategy for b in demo_bots()) == ["dca", "grid", "smc", "trend_follower"]
    report, _ = check(None, demo=True)
    assert report.passed, [r.message for r in report.failures]
