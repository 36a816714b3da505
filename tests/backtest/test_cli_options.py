"""`traderagent backtest` options on the committed real candles: market, own timeframes, list parameters,
limit fill mode, instrument steps from the simulator's table, the honest metric set and the chart."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from traderagent.backtest.cli import instrument_steps, symbol_of
from traderagent.cli import main
from traderagent.sim.market import DEFAULT_SYMBOLS

from .test_cli import ETH_BTC


def backtest(capsys, *argv: str) -> dict:
    rc = main(["backtest", *argv, "--json"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    return json.loads(out)


def refused(capsys, *argv: str) -> str:
    rc = main(["backtest", *argv])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err
    return err


def test_spot_never_shorts_where_linear_does(candles_dir, capsys):
    xrp = ["--strategy", "trend_follower", "--data", str(candles_dir / "XRPUSDT-perp-5m.csv"), "--timeframe", "5m"]
    linear = backtest(capsys, *xrp)
    spot = backtest(capsys, *xrp, "--market", "spot")
    assert {t["side"] for t in linear["trades"]} == {"long", "short"}
    assert {t["side"] for t in spot["trades"]} == {"long"} and spot["data"]["market"] == "spot"
    smc = backtest(capsys, "--strategy", "smc", "--data", str(candles_dir / "ETH_BTC-5m.csv"), *ETH_BTC,
                   "--param", "timeframes=1h,15m,5m")
    assert smc["trades"] and {t["side"] for t in smc["trades"]} == {"long"}


def test_a_spot_sell_of_coins_not_held_is_refused_by_the_ledger():
    from traderagent.backtest.ledger import Ledger, SpotShortError
    from traderagent.backtest.metrics import Fill

    led = Ledger(Decimal(100), shorts=False)
    led.fill(Fill(0, 0, "buy", Decimal(1), Decimal(10), Decimal(0), "taker", "b"))
    led.fill(Fill(1, 0, "sell", Decimal(1), Decimal(11), Decimal(0), "taker", "s"))
    with pytest.raises(SpotShortError, match="spot cannot short"):
        led.fill(Fill(2, 0, "sell", Decimal("0.1"), Decimal(11), Decimal(0), "taker", "s2"))


def test_each_strategy_decides_on_its_own_timeframe_resampled_from_finer_data(candles_dir, capsys):
    five = str(candles_dir / "XRPUSDT-perp-5m.csv")
    trend = backtest(capsys, "--strategy", "trend_follower", "--data", five)
    assert trend["timeframe"] == "1h" and trend["data"]["source_timeframe"] == "5m"
    assert trend["candles"] == 1999 // 12  # complete hours only
    assert backtest(capsys, "--strategy", "trend_follower", "--data", five, "--param", "timeframe=15m")["timeframe"] == "15m"
    assert backtest(capsys, "--strategy", "grid", "--data", five)["timeframe"] == "5m"
    err = refused(capsys, "--strategy", "grid", "--data", str(candles_dir / "XRPUSDT-perp-1h.csv"))
    assert "needs 5m candles; the data is 1h, which is coarser: give 5m or finer data" in err
    err = refused(capsys, "--strategy", "trend_follower", "--data", five, "--param", "timeframe=3m")
    assert "needs 3m candles; the data is 5m" in err


@pytest.mark.parametrize("swing,frames", [
    ("3,3,2", "1h,15m,5m"),
    ("[3, 3, 2]", '["1h", "15m", "5m"]'),
    ("[3,3,2]", "[1h,15m,5m]"),
])
def test_list_parameters_are_accepted_plain_or_json_ish(candles_dir, capsys, swing, frames):
    out = backtest(capsys, "--strategy", "smc", "--data", str(candles_dir / "ETH_BTC-5m.csv"), *ETH_BTC,
                   "--param", f"swing_lengths={swing}", "--param", f"timeframes={frames}")
    assert out["params"]["swing_lengths"] == [3, 3, 2] and out["params"]["timeframes"] == ["1h", "15m", "5m"]
    assert out["timeframe"] == "5m"


def test_fill_mode_through_demands_a_trade_beyond_the_limit(candles_dir, capsys):
    args = ["--strategy", "grid", "--data", str(candles_dir / "LTC_BTC-5m.csv"), *ETH_BTC,
            "--param", "num_levels=60", "--param", "range_pct=0.1"]
    touch = backtest(capsys, *args)
    through = backtest(capsys, *args, "--fill", "through")
    assert (touch["data"]["fill"], through["data"]["fill"]) == ("touch", "through")
    # on 5m candles many lows sit exactly on a level: touching fills them, trading through does not
    assert through["fills"] < touch["fills"]


def test_instrument_steps_come_from_the_simulators_table_or_the_flags_never_from_the_data(candles_dir, tmp_path,
                                                                                          capsys):
    xrp = next(s for s in DEFAULT_SYMBOLS if s.symbol == "XRPUSDT")
    assert symbol_of(candles_dir / "XRPUSDT-perp-5m.csv") == "XRPUSDT" and symbol_of("ETH_BTC-5m.csv") == "ETHBTC"
    assert instrument_steps("XRPUSDT", "linear", None, None) == (xrp.qty_step, xrp.tick_size)
    assert instrument_steps("XRPUSDT", "spot", None, None) == (xrp.base_precision, xrp.tick_size)
    # later prices rescaled (x 7) must not change the first trades' sizes
    lines = (candles_dir / "XRPUSDT-perp-5m.csv").read_text().splitlines()
    scaled = [lines[0], *lines[1:701]]
    for line in lines[701:]:
        ts, *values = line.split(",")
        scaled.append(",".join([ts, *(str(float(v) * 7) for v in values)]))
    rescaled = tmp_path / "XRPUSDT-rescaled-5m.csv"
    rescaled.write_text("\n".join(scaled) + "\n")
    runs = [backtest(capsys, "--strategy", "trend_follower", "--data", str(path), "--timeframe", "5m")
            for path in (candles_dir / "XRPUSDT-perp-5m.csv", rescaled)]
    early = [[(t["entry_time"], t["qty"]) for t in run["trades"] if t["entry_index"] < 690] for run in runs]
    assert early[0] and early[0] == early[1]
    assert runs[1]["data"]["qty_step"] == "1" and runs[1]["data"]["tick_size"] == "0.0001"
    err = refused(capsys, "--strategy", "grid", "--data", str(candles_dir / "LTC_BTC-5m.csv"))
    assert "LTCBTC is not in the instrument table" in err and "--qty-step and --tick" in err
    err = refused(capsys, "--strategy", "grid", "--data", str(candles_dir / "LTC_BTC-5m.csv"), "--tick", "0.01")
    assert "give --qty-step and --tick together" in err


def test_ladder_metrics_are_closed_round_trips_with_the_open_inventory_beside_them(candles_dir, capsys):
    """Grid on XRPUSDT 5m: every closed pair wins, yet the run loses - the held lots say why."""
    out = backtest(capsys, "--strategy", "grid", "--data", str(candles_dir / "XRPUSDT-perp-5m.csv"))
    m = out["metrics"]
    closed = [t for t in out["trades"] if t["exit_time"]]
    held = [t for t in out["trades"] if not t["exit_time"]]
    assert m["trades"] == len(closed) > 0 and m["win_rate"] == 1.0 and m["profit_factor"] is None
    assert m["open_trades"] == len(held) > 0 and Decimal(m["open_qty"]) == sum(Decimal(t["qty"]) for t in held)
    realized, unrealized = Decimal(m["realized_pnl"]), Decimal(m["unrealized_pnl"])
    assert realized == sum(Decimal(t["pnl"]) for t in closed) > 0
    assert unrealized == sum(Decimal(t["pnl"]) for t in held) < -realized  # the held lots' mark-to-market
    assert realized + unrealized == Decimal(m["net_pnl"]) < 0
    assert Decimal(m["final_balance"]) - Decimal(out["initial_balance"]) == Decimal(m["net_pnl"])


def test_the_table_shows_realised_apart_from_unrealised_and_each_trades_exit_time_and_quantity(candles_dir, capsys):
    assert main(["backtest", "--strategy", "grid", "--data", str(candles_dir / "XRPUSDT-perp-5m.csv")]) == 0
    table = capsys.readouterr().out
    assert "realised PnL" in table and "unrealised PnL" in table and "closed round trips" in table
    header = next(line for line in table.splitlines() if "entry time" in line)
    assert "qty" in header and "exit time" in header
    rows = table.split(header)[1].strip().splitlines()
    assert any(" open " in row for row in rows) and any("grid_pair" in row for row in rows)
