"""`traderagent backtest` end to end on real candles, and every strategy through the backtester."""

from __future__ import annotations

import json
import sys
from decimal import Decimal

import pytest

from tests import forkserver
from traderagent.backtest.cli import split_params
from traderagent.cli import main

# the BTC-quoted spot files are no simulator instrument: their steps are given (never guessed from the data)
ETH_BTC = ["--market", "spot", "--qty-step", "0.001", "--tick", "0.000001"]


def test_params_are_typed_by_the_strategys_declarations_aliases_and_lists_included():
    from traderagent.strategies import create_strategy

    assert split_params(["fast_ema=10", "allow_short=false"]) == {"fast_ema": "10", "allow_short": "false"}
    steps = {"qty_step": "0.001", "tick_size": "0.01", "allocated_capital": "1000"}
    trend = create_strategy("trend_follower", {"fast_ema": "10", "allow_short": "false", "take_profit_r": "none"},
                            **steps)
    assert trend.fast == 10 and trend.allow_short is False and trend.tp_r is None
    smc = create_strategy("smc", {"timeframes": "1h,15m,5m", "swing_lengths": "3,3,2", "min_rr": "3"}, **steps)
    assert smc.timeframes == ("1h", "15m", "5m") and smc.smc_params.swing_lengths == (3, 3, 2)
    assert smc.smc_params.min_risk_reward == 3.0


def test_cli_table_json_and_plot(candles_dir, tmp_path, capsys):
    png = tmp_path / "eq.png"
    rc = main(["backtest", "--strategy", "trend_follower", "--data", str(candles_dir / "ETH_BTC-5m.csv"),
               *ETH_BTC, "--timeframe", "15m", "--params", "ema_fast=10", "ema_slow=30", "--plot", str(png), "--json"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert out["strategy"] == "trend_follower" and out["timeframe"] == "15m"
    assert out["params"]["ema_fast"] == 10
    assert out["candles"] == out["data"]["candles"] > 1000
    m = out["metrics"]
    assert m["trades"] == sum(1 for t in out["trades"] if t["exit_time"]) > 0
    assert Decimal(m["final_balance"]) - Decimal(out["initial_balance"]) == Decimal(m["net_pnl"])
    assert "final_balance" not in out  # one metric set: every figure lives in "metrics" only
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000

    rc = main(["backtest", "--strategy", "grid", "--data", str(candles_dir / "UNITTEST_BTC-1m.csv"), *ETH_BTC])
    table = capsys.readouterr().out
    assert rc == 0
    assert "gap candles filled" in table and "max drawdown" in table and "win rate" in table


@pytest.mark.parametrize("argv,needle", [
    (["--strategy", "nope"], "unknown strategy type 'nope'"),
    (["--strategy", "trend_follower", "--params", "bogus=1"], "bogus: unknown parameter"),
    (["--strategy", "grid", "--params", "grid_levels=500"], "num_levels = '500': out of range (allowed >= 2 and <= 200"),
    (["--strategy", "trend_follower", "--params", "ema_fast"], "expected KEY=VALUE"),
    (["--strategy", "trend_follower", "--params", "ema_fast=x"], "ema_fast = 'x': must be a number"),
    (["--strategy", "trend_follower", "--timeframe", "1m"], "needs 1m candles; the data is 5m"),
    (["--strategy", "trend_follower", "--balance", "abc"], "--balance must be a number"),
])
def test_bad_input_exits_2_with_a_message(candles_dir, capsys, argv, needle):
    rc = main(["backtest", "--data", str(candles_dir / "XRPUSDT-perp-5m.csv"), *argv])
    err = capsys.readouterr().err
    assert rc == 2 and needle in err and "Traceback" not in err


def test_cli_subprocess_no_traceback_on_missing_file(tmp_path):
    proc = forkserver.run([sys.executable, "-m", "traderagent", "backtest", "--strategy", "dca",
                           "--data", str(tmp_path / "missing.csv")], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "data file not found" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize("name,file,extra", [
    ("trend_follower", "XRPUSDT-perp-5m.csv", ["--timeframe", "5m"]),
    ("grid", "ETH_BTC-5m.csv", [*ETH_BTC, "--params", "num_levels=10"]),
    ("dca", "LTC_BTC-5m.csv", ETH_BTC),
    ("smc", "ETH_BTC-5m.csv", ETH_BTC),
])
def test_each_strategy_runs_on_real_candles(candles_dir, capsys, name, file, extra):
    rc = main(["backtest", "--strategy", name, "--data", str(candles_dir / file), "--json", *extra])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0 and out["strategy"] == name
    m = out["metrics"]
    assert out["fills"] >= 2 * m["trades"]
    assert 0.0 <= m["max_drawdown"] < 1.0 and 0.0 <= m["exposure_pct"] <= 1.0
    assert not set(m) & {"sharpe", "max_drawdown_pct", "extra"}  # one metric set, no second definitions
    if name != "smc":  # the others must trade on three weeks of real 5m candles
        assert m["trades"] > 0


@pytest.mark.parametrize("name", ["out.txt2", "out"])
def test_unsupported_plot_extension_is_refused_before_the_run(candles_dir, tmp_path, capsys, name):
    rc = main(["backtest", "--strategy", "trend_follower", "--data", str(candles_dir / "XRPUSDT-perp-5m.csv"),
               "--plot", str(tmp_path / name)])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.startswith(f"traderagent backtest: error: --plot {tmp_path / name}: unsupported extension")
    assert ".png, " in err and ".svg" in err and ".pdf" in err and "\n" not in err
    assert not list(tmp_path.iterdir())


def test_repairs_are_printed_as_warnings_and_kept_in_the_json(candles_dir, tmp_path, capsys):
    lines = (candles_dir / "XRPUSDT-perp-5m.csv").read_text().splitlines()
    header, rows = lines[0], lines[1:]
    rows[10], rows[11] = rows[11], rows[10]
    shuffled = tmp_path / "xrp.csv"
    shuffled.write_text("\n".join([header, *rows, rows[-1]]) + "\n")
    rc = main(["backtest", "--strategy", "trend_follower", "--data", str(shuffled), "--symbol", "XRPUSDT", "--json"])
    out, err = capsys.readouterr()
    assert rc == 0
    assert err.splitlines() == ["traderagent backtest: warning: xrp.csv: 1 row out of time order (sorted)",
                                "traderagent backtest: warning: xrp.csv: 1 duplicated timestamp (kept the last row of each)"]
    assert json.loads(out)["data"]["warnings"] == [line.split("warning: ")[1] for line in err.splitlines()]


def test_a_directory_as_data_is_named_as_such(tmp_path, capsys):
    rc = main(["backtest", "--strategy", "dca", "--data", str(tmp_path)])
    assert rc == 2 and capsys.readouterr().err == f"traderagent backtest: error: {tmp_path} is a directory, not a candle file\n"
