"""Backtester benchmark: a year of 1m candles through every strategy, our engine vs backtrader, live-tick cost.

Run: .venv/bin/python bench/bench_backtest.py [--rows N] [--bt-rows N]
Data: a seeded geometric random walk (seed 42), 525,600 one-minute candles (printed again below).
"""

from __future__ import annotations

import argparse
import sys
import time
from decimal import Decimal
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bt_reference import MINUTES_PER_YEAR, random_walk, run_backtrader  # noqa: E402

from traderagent.backtest.data import resample  # noqa: E402
from traderagent.backtest.ema_cross import EmaCross  # noqa: E402
from traderagent.backtest.engine import BacktestConfig, Backtester, build_frames, run_backtest  # noqa: E402
from traderagent.numbers import to_decimal  # noqa: E402
from traderagent.strategies import create_strategy  # noqa: E402
from traderagent.strategies.base import BaseStrategy  # noqa: E402
from traderagent.timeframes import timeframe_ms  # noqa: E402

FEE = Decimal("0.001")


def _strategy(name: str, params: dict, balance: Decimal) -> BaseStrategy:
    return create_strategy(name, params, qty_step="0.00001", tick_size="0.1", allocated_capital=balance)


def bench_crossover(frame: pd.DataFrame, bt_rows: int) -> None:
    print("\n== EMA 20/50 crossover, long only, 0.1% fee, market orders at the next open ==")
    cfg = BacktestConfig(balance=Decimal("1000000000"), taker_fee=FEE, maker_fee=FEE, slippage=Decimal(0))
    n = len(frame)
    t0 = time.perf_counter()
    res = run_backtest(EmaCross({}, qty_step="0.00001", tick_size="0.1", allocated_capital="1000000000"),
                       frame, 60_000, cfg)
    ours = time.perf_counter() - t0
    ours_rate = n / ours
    entries = [t.entry_index for t in res.trades]
    exits = [t.exit_index for t in res.trades if t.closed]
    print(f"ours       : {n:,} candles in {ours:.3f}s = {ours_rate:,.0f} candles/s "
          f"({len(entries)} entries, {len(exits)} exits)")
    sub = frame.iloc[:bt_rows]
    bt_s, bt_in, bt_out = run_backtrader(sub)
    bt_rate = len(sub) / bt_s
    label = "all rows" if len(sub) == n else f"first {len(sub):,} rows (documented subset)"
    print(f"backtrader : {len(sub):,} candles ({label}) in {bt_s:.2f}s = {bt_rate:,.0f} candles/s "
          f"({len(bt_in)} entries, {len(bt_out)} exits)")
    print(f"speed-up   : {ours_rate / bt_rate:,.1f}x backtrader's per-candle throughput (target >= 50x)")
    # compare on the rows both ran
    m = len(sub)
    our_in = [x for x in entries if x < m]
    our_out = [x for x in exits if x < m]
    # a position our engine opened before m whose exit falls after m is still open for backtrader
    same_in, same_out = our_in == bt_in, our_out == bt_out
    print(f"trades     : entries identical: {same_in} ({len(our_in)} vs {len(bt_in)}); "
          f"exits identical: {same_out} ({len(our_out)} vs {len(bt_out)})")
    if not (same_in and same_out):
        diff = next((k for k, (a, b) in enumerate(zip(our_in, bt_in, strict=False)) if a != b), None)
        print(f"MISMATCH   : first differing entry #{diff}")
    return same_in and same_out


def bench_strategies(frame: pd.DataFrame) -> None:
    print("\n== Every strategy through the backtester on the same year of 1m candles ==")
    balance = Decimal("10000")
    cfg = BacktestConfig(balance=balance)
    runs = [
        ("trend_follower", {"timeframe": "1m"}),
        ("grid", {"timeframe": "1m", "range_pct": "0.3", "num_levels": 30}),
        ("dca", {"timeframe": "1m"}),
        ("smc", {}),  # decides on 15m with 1h/4h context: built from the 1m year by resampling
    ]
    for name, params in runs:
        try:
            strat = _strategy(name, params, balance)
        except ImportError as exc:
            print(f"{name:<15} skipped: {exc}")
            continue
        entry_tf = timeframe_ms(strat.timeframes[-1])
        entry = resample(frame, entry_tf, 60_000)
        frames = build_frames(strat, entry, entry_tf)
        t0 = time.perf_counter()
        res = Backtester(strat, cfg).run(frames, entry_tf)
        dt = time.perf_counter() - t0
        m = res.metrics
        extra = "" if entry_tf == 60_000 else f" ({len(frame) / dt:,.0f} source 1m candles/s)"
        print(f"{name:<15} {strat.timeframes[-1]:>4} {len(entry):>8,} candles {dt:7.2f}s "
              f"{len(entry) / dt:>11,.0f} candles/s{extra}; trades {m.trades}, fills {len(res.fills)}, "
              f"net {m.net_pnl:,.2f}, max drawdown {m.max_drawdown:.2%}, Sharpe {_ratio(m.sharpe_ratio)}")


def _ratio(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def bench_live_tick(frame: pd.DataFrame, reps: int = 30) -> None:
    print("\n== Live tick: analysis + signal on the last 500 candles (mean of "
          f"{reps} runs after a warm-up) ==")
    balance = Decimal("10000")
    cases = [
        ("trend_follower", {"timeframe": "1m"}, 5.0),
        ("grid", {"timeframe": "1m"}, 5.0),
        ("dca", {"timeframe": "1m", "start_condition": "rsi"}, 5.0),
        ("smc", {}, 20.0),
    ]
    for name, params, target in cases:
        try:
            strat = _strategy(name, params, balance)
        except (ImportError, ValueError) as exc:
            print(f"{name:<15} skipped: {exc}")
            continue
        tfs = strat.timeframes
        frames = [resample(frame, timeframe_ms(tf), 60_000).iloc[-500:] for tf in tfs]
        price = to_decimal(float(frames[-1]["close"].iloc[-1]))

        def tick(strat: BaseStrategy = strat, frames: list = frames, price: Decimal = price) -> None:
            strat.analyze_market(*frames)
            if strat.is_ladder:
                strat.on_candle_close(strat.prepare(*frames), -1)
                strat.desired_orders(price, balance)
            else:
                strat.generate_signal(frames[-1], balance)

        tick()
        t0 = time.perf_counter()
        for _ in range(reps):
            tick()
        ms = (time.perf_counter() - t0) / reps * 1000
        ok = "OK" if ms <= target else "OVER TARGET"
        print(f"{name:<15} frames {'/'.join(tfs):<12} {ms:7.2f} ms per tick (target <= {target:g} ms) {ok}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=MINUTES_PER_YEAR)
    ap.add_argument("--bt-rows", type=int, default=None, help="rows for backtrader (default: all)")
    args = ap.parse_args()
    t0 = time.perf_counter()
    frame = random_walk(args.rows, seed=42)
    print(f"data: seeded geometric random walk (seed 42, sigma 0.08%/min, 0.1 tick), {len(frame):,} one-minute "
          f"candles {frame.index[0]:%Y-%m-%d} .. {frame.index[-1]:%Y-%m-%d}, generated in {time.perf_counter() - t0:.2f}s")
    same = bench_crossover(frame, args.bt_rows or len(frame))
    bench_strategies(frame)
    bench_live_tick(frame)
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
