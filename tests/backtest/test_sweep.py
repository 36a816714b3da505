"""`traderagent backtest --sweep`: ranges, a process pool whose rows equal in-process runs, the ranked table."""

from __future__ import annotations

import json
from decimal import Decimal as D

import pytest

from traderagent.backtest.ema_cross import EmaCross
from traderagent.backtest.engine import BacktestConfig
from traderagent.backtest.sweep import (
    BacktestJob,
    combinations,
    parse_axis,
    run_combo,
    run_sweep,
    sweep_table,
)
from traderagent.cli import main
from traderagent.strategies.indicators import load_candles_csv


def test_ranges_are_inclusive_and_checked():
    assert parse_axis("fast=5:20:5") == ("fast", ["5", "10", "15", "20"])
    assert parse_axis(" k =0.1:0.3:0.1") == ("k", ["0.1", "0.2", "0.3"])
    assert parse_axis("slow=30:30:1") == ("slow", ["30"])
    for bad in ("fast", "fast=1:2", "fast=a:2:1", "fast=1:5:0", "fast=5:1:1"):
        with pytest.raises(ValueError, match="--sweep"):
            parse_axis(bad)
    assert combinations([("a", ["1", "2"]), ("b", ["x"])]) == [{"a": "1", "b": "x"}, {"a": "2", "b": "x"}]


def test_pool_rows_equal_in_process_runs_ranked_by_net_pnl(candles_dir):
    df = load_candles_csv(str(candles_dir / "ETH_BTC-5m.csv"))
    job = BacktestJob(EmaCross, {"timeframe": "5m", "qty": "1"}, D("0.001"), D("0.00000001"), D(10), "spot", df,
                      300_000, BacktestConfig(balance=D(10)))
    combos = combinations([parse_axis("fast=10:30:10"), parse_axis("slow=20:40:10")])
    rows, refused = run_sweep(job, combos, workers=2)
    assert refused == 3  # fast >= slow: (20, 20), (30, 20), (30, 30)
    assert len(rows) == 6
    nets = [r.metrics.net_pnl for r in rows]
    assert nets == sorted(nets, reverse=True)
    for row in rows:
        same = run_combo(job, row.params)
        assert same is not None and same.metrics == row.metrics
    table = sweep_table(rows).splitlines()
    assert table[0].split()[:3] == ["rank", "fast", "slow"] and table[1].split()[0] == "1" and len(table) == 7


def test_cli_sweep_prints_a_ranked_table_and_json(candles_dir, capsys):
    argv = ["backtest", "--strategy", "trend_follower", "--data", str(candles_dir / "ETH_BTC-5m.csv"),
            "--qty-step", "0.001", "--tick", "0.000001", "--timeframe", "15m",
            "--sweep", "ema_fast=10:20:10", "--sweep", "ema_slow=30:40:10", "--workers", "2"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "4 combinations" in out and "0 refused" in out
    lines = out.splitlines()
    head = next(k for k, line in enumerate(lines) if line.lstrip().startswith("rank"))
    assert [line.split()[0] for line in lines[head + 1:]] == ["1", "2", "3", "4"]
    assert main([*argv, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert len(data["rows"]) == 4 and {r["params"]["ema_fast"] for r in data["rows"]} == {"10", "20"}
    pnls = [D(r["metrics"]["net_pnl"]) for r in data["rows"]]
    assert pnls == sorted(pnls, reverse=True)
    assert main([*argv, "--plot", "x.png"]) == 2 and "--sweep" in capsys.readouterr().err
    assert main([*argv[:-2], "--sweep", "ema_fast=1:2"]) == 2 and "START:STOP:STEP" in capsys.readouterr().err
    assert main([*argv, "--sweep", "emafast=1:3:1"]) == 2 and "emafast: not a parameter" in capsys.readouterr().err
