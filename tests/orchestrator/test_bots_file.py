"""bots.toml loading: each bot validated on its own; the example file is valid."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from traderagent.bots import demo_bots, load_bots_file, parse_bots, spec_from_table

REPO = Path(__file__).resolve().parents[2]


def test_example_file_loads_every_bot():
    out = load_bots_file(REPO / "bots.example.toml")
    assert out.refused == []
    assert [b.strategy for b in out.bots] == ["grid", "dca", "trend_follower", "smc"]
    smc = out.bots[3]
    assert smc.timeframes == ("4h", "1h", "15m") and smc.tick_seconds == 10
    assert out.bots[0].share == Decimal("0.25") and out.bots[0].params["range_pct"] == "0.03"
    assert out.risk["max_daily_loss"] == "0.05"


def test_bad_bot_is_refused_with_reason_others_kept(tmp_path):
    doc = {"bots": [
        {"name": "ok", "strategy": "grid", "symbol": "XRPUSDT", "timeframe": "5m"},
        {"name": "bad strategy", "strategy": "martingale", "symbol": "XRPUSDT"},
        {"name": "neg", "strategy": "dca", "symbol": "SOLUSDT", "capital": "-5"},
        {"name": "ok", "strategy": "dca", "symbol": "SOLUSDT"},
        {"name": "typo", "strategy": "dca", "symbol": "SOLUSDT", "tick_secs": 3},
        {"name": "share", "strategy": "dca", "symbol": "SOLUSDT", "share": "1.5"},
    ]}
    out = parse_bots(doc)
    assert [b.name for b in out.bots] == ["ok"]
    reasons = dict(out.refused)
    assert "strategy" in reasons["bad strategy"]
    assert "capital" in reasons["neg"]
    assert "used by another bot" in reasons["ok"]
    assert "tick_secs" in reasons["typo"]
    assert "share" in reasons["share"]


def test_bad_risk_section_falls_back_to_environment():
    out = parse_bots({"risk": {"max_daily_loss": "7"}, "bots": []})
    assert out.risk == {}
    assert out.refused and out.refused[0][0] == "[risk]"


def test_spec_normalises_symbol_and_rejects_both_share_and_capital():
    spec = spec_from_table({"name": "a", "strategy": "grid", "symbol": "BTC/USDT:USDT", "timeframes": ["1h", "5m"]})
    assert spec.symbol == "BTCUSDT" and spec.timeframes == ("1h", "5m")
    with pytest.raises(ValueError, match="either share or capital"):
        spec_from_table({"name": "a", "strategy": "grid", "symbol": "BTCUSDT", "share": "0.1", "capital": "10"})


def test_the_validators_names_and_aliases_reach_the_strategy_in_its_own_spelling():
    from traderagent.strategies import create_strategy

    doc = {"bots": [
        {"name": "g", "strategy": "grid", "symbol": "XRPUSDT", "timeframe": "5m", "capital": "1000",
         "params": {"grid_levels": 10, "amount_per_grid": 50, "grid_range": "0.05"}},
        {"name": "d", "strategy": "dca", "symbol": "SOLUSDT", "timeframe": "5m",
         "params": {"base_order_size": "20", "safety_orders": 2, "take_profit_pct": "0.01"}},
        {"name": "t", "strategy": "trend_follower", "symbol": "BTCUSDT", "timeframe": "1h",
         "params": {"fast_ema": 9, "slow_ema": 21}},
    ]}
    out = parse_bots(doc)
    assert out.refused == []
    grid, dca, trend = out.bots
    assert grid.params == {"num_levels": 10, "amount_per_grid": 50, "range_pct": "0.05"}
    assert dca.params == {"base_order": "20", "max_safety_orders": 2, "take_profit": "0.01"}
    assert trend.params == {"ema_fast": 9, "ema_slow": 21}
    for spec in out.bots:  # the strategies take them as they are
        create_strategy(spec.strategy, dict(spec.params), qty_step="0.001", tick_size="0.01",
                        allocated_capital="1000")


def test_bad_toml_is_an_error(tmp_path):
    f = tmp_path / "bots.toml"
    f.write_text("[[bots]\nname=")
    with pytest.raises(ValueError, match="bots.toml"):
        load_bots_file(f)


def test_demo_set_has_one_bot_per_strategy():
    assert sorted(b.strategy for b in demo_bots()) == ["dca", "grid", "smc", "trend_follower"]
