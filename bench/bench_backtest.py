"""Backtester benchmark: the EMA crossover against vectorbt and backtrader, a 100-combination sweep, every strategy.

Run: .venv/bin/python bench/bench_backtest.py [--rows N] [--bt-rows N] [--rounds N] [--only crossover|sweep|strategies]
(vectorbt and backtrader: pip install -e '.[bench]')
Data: a seeded geometric random walk (seed 42), 525,600 one-minute candles (printed again below).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import sys
import time
from decimal import Decimal
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bt_reference import MINUTES_PER_YEAR, random_walk, run_backtrader, run_vectorbt, vectorbt_grid  # noqa: E402

from traderagent.backtest.data import resample  # noqa: E402
from traderagent.backtest.ema_cross import EmaCross  # noqa: E402
from traderagent.backtest.engine import BacktestConfig, Backtester, build_frames, run_backtest  # noqa: E402
from traderagent.backtest.sweep import BacktestJob, combinations, run_sweep  # noqa: E402
from traderagent.numbers import to_decimal  # noqa: E402
from traderagent.strategies import create_strategy  # noqa: E402
from traderagent.strategies.base import BaseStrategy  # noqa: E402
from traderagent.timeframes import timeframe_ms  # noqa: E402

FEE = Decimal("0.001")


def _strategy(name: str, params: dict, balance: Decimal) -> BaseStrategy:
    return create_strategy(name, params, qty_step="0.00001", tick_size="0.1", allocated_capital=balance)


def _ours(frame: pd.DataFrame, fast: int = 20, slow: int = 50) -> tuple[float, list[int], list[int]]:
    cfg = BacktestConfig(balance=Decimal("1000000000"), taker_fee=FEE, maker_fee=FEE, slippage=Decimal(0))
    strategy = EmaCross({"fast": fast, "slow": slow}, qty_step="0.00001", tick_size="0.1", allocated_capital="1000000000")
    t0 = time.perf_counter()
    res = run_backtest(strategy, frame, 60_000, cfg)
    seconds = time.perf_counter() - t0
    return seconds, [t.entry_index for t in res.trades], [t.exit_index for t in res.trades if t.closed]


def _median_rate(rows: int, seconds: list[float]) -> float:
    return rows / statistics.median(seconds)


def bench_crossover(frame: pd.DataFrame, bt_rows: int, rounds: int, with_vbt: bool) -> bool:
    """One EMA 20/50 backtest per engine per round, the engines alternating within each round (warm: a first
    untimed run each); medians of the rounds; trades compared bar by bar."""
    print(f"\n== EMA 20/50 crossover, long only, 0.1% fee, market orders at the next open: {rounds} rounds, "
          "engines alternating, medians ==")
    n, sub = len(frame), frame.iloc[:bt_rows]
    engines = {"ours": lambda: _ours(frame), "backtrader": lambda: run_backtrader(sub)}
    if with_vbt:
        engines["vectorbt"] = lambda: run_vectorbt(frame)
    rows = {"ours": n, "vectorbt": n, "backtrader": len(sub)}
    trades = {name: run()[1:] for name, run in engines.items()}  # warm-up: numba compiles, caches fill
    times: dict[str, list[float]] = {name: [] for name in engines}
    for _ in range(rounds):
        for name, run in engines.items():
            times[name].append(run()[0])
    rate = {name: _median_rate(rows[name], t) for name, t in times.items()}
    for name, t in times.items():
        label = "" if rows[name] == n else f" (first {rows[name]:,} rows: per-candle throughput)"
        print(f"{name:<11}: {rows[name]:,} candles, median {statistics.median(t):.3f}s "
              f"(rounds {', '.join(f'{x:.3f}' for x in t)}) = {rate[name]:,.0f} candles/s{label}; "
              f"{len(trades[name][0])} entries, {len(trades[name][1])} exits")
    print(f"ratio      : ours / backtrader = {rate['ours'] / rate['backtrader']:,.1f}x (per candle)")
    same = True
    if with_vbt:
        print(f"ratio      : ours / vectorbt = {rate['ours'] / rate['vectorbt']:.2f}x (target >= 1)")
        same = trades["ours"] == trades["vectorbt"]
        print(f"trades     : identical to vectorbt's: {same}")
    m = len(sub)
    mine = ([x for x in trades["ours"][0] if x < m], [x for x in trades["ours"][1] if x < m])
    same_bt = mine == tuple(trades["backtrader"])
    print(f"trades     : identical to backtrader's on its {m:,} rows: {same_bt}")
    return same and same_bt


SWEEP_FAST = range(5, 55, 5)
SWEEP_SLOW = range(60, 160, 10)


def bench_sweep(frame: pd.DataFrame, rounds: int, with_vbt: bool) -> None:
    """100 (fast, slow) combinations: our process pool (one worker per core) beside vectorbt's own grid."""
    combos = [(f, s) for f in SWEEP_FAST for s in SWEEP_SLOW]
    print(f"\n== Sweep: {len(combos)} EMA crossovers over {len(frame):,} candles, {rounds} rounds alternating, "
          f"our pool on {os.cpu_count()} cores vs vectorbt's parameter grid ==")
    job = BacktestJob(EmaCross, {"qty": "1"}, Decimal("0.00001"), Decimal("0.1"), Decimal("1000000000"), "linear",
                      frame, 60_000, BacktestConfig(balance=Decimal("1000000000"), taker_fee=FEE, maker_fee=FEE,
                                                    slippage=Decimal(0)))
    axes = [("fast", [str(f) for f in SWEEP_FAST]), ("slow", [str(s) for s in SWEEP_SLOW])]

    def ours() -> tuple[float, list]:
        t0 = time.perf_counter()
        rows, _ = run_sweep(job, combinations(axes))
        return time.perf_counter() - t0, rows

    engines = {"ours": ours}
    if with_vbt:
        engines["vectorbt"] = lambda: vectorbt_grid(frame, combos)
        vectorbt_grid(frame.iloc[:1000], combos[:2])  # compile outside the timing
    times: dict[str, list[float]] = {name: [] for name in engines}
    out: dict[str, list] = {}
    for _ in range(rounds):
        for name, run in engines.items():
            seconds, out[name] = run()
            times[name].append(seconds)
    for name, t in times.items():
        med = statistics.median(t)
        print(f"{name:<9}: median {med:.2f}s (rounds {', '.join(f'{x:.2f}' for x in t)}) = "
              f"{len(combos) * len(frame) / med:,.0f} candle-runs/s")
    best = out["ours"][0]
    print(f"best     : fast {best.params['fast']} / slow {best.params['slow']}, net {best.metrics.net_pnl:,.2f}, "
          f"{best.metrics.trades} trades")
    if with_vbt:
        ratio = statistics.median(times["vectorbt"]) / statistics.median(times["ours"])
        print(f"ratio    : ours / vectorbt = {ratio:.2f}x")
        ranked = sorted(zip(out["vectorbt"], combos, strict=True), reverse=True)[0][1]
        print(f"vectorbt : best by total return fast {ranked[0]} / slow {ranked[1]}")


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
    ap.add_argument("--bt-rows", type=int, default=100_000, help="rows for backtrader (slow; default 100,000)")
    ap.add_argument("--rounds", type=int, default=3, help="timed rounds of each engine (medians; >= 3)")
    ap.add_argument("--sweep-rounds", type=int, default=3)
    ap.add_argument("--only", choices=["crossover", "sweep", "strategies"], default=None)
    args = ap.parse_args()
    with_vbt = importlib.util.find_spec("vectorbt") is not None
    if not with_vbt:
        print("vectorbt is not installed (pip install -e '.[bench]'): ours and backtrader only")
    t0 = time.perf_counter()
    frame = random_walk(args.rows, seed=42)
    print(f"data: seeded geometric random walk (seed 42, sigma 0.08%/min, 0.1 tick), {len(frame):,} one-minute "
          f"candles {frame.index[0]:%Y-%m-%d} .. {frame.index[-1]:%Y-%m-%d}, generated in {time.perf_counter() - t0:.2f}s")
    same = True
    if args.only in (None, "crossover"):
        same = bench_crossover(frame, min(args.bt_rows, len(frame)), args.rounds, with_vbt)
    if args.only in (None, "sweep"):
        bench_sweep(frame, args.sweep_rounds, with_vbt)
    if args.only in (None, "strategies"):
        bench_strategies(frame)
        bench_live_tick(frame)
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
