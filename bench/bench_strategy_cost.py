"""A strategy's own cost: one live tick per strategy, and a year of 1m candles through the per-candle path.

Run: .venv/bin/python bench/bench_strategy_cost.py [--rounds 60]
1. Live tick: analyze_market + generate_signal + update_positions on the last 500 real XRPUSDT 5m
   candles (tests/data), per strategy; median and p90 over --rounds (5 warm-up calls first). Budget 5 ms.
2. A year: 525,600 1m candles (seeded random walk): trend follower ``prepare`` once, then
   ``signal_at`` for every candle. Budget: prepare < 2 s, the per-candle loop < 10 s.
These are CPU-bound: quote the load average printed beside them.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from decimal import Decimal
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from traderagent.strategies import create_strategy  # noqa: E402
from traderagent.strategies.indicators import load_candles_csv  # noqa: E402


def live_tick_ms(name: str, window: pd.DataFrame, rounds: int) -> list[float]:
    s = create_strategy(name, {}, qty_step="1", tick_size="0.0001", allocated_capital="10000")

    def tick() -> None:
        s.analyze_market(window)
        s.generate_signal(window, Decimal("10000"))
        s.update_positions(Decimal("1.07"), window)

    for _ in range(5):
        tick()
    samples = []
    for _ in range(rounds):
        t = time.perf_counter()
        tick()
        samples.append((time.perf_counter() - t) * 1000)
    return samples


def year_of_minutes() -> tuple[float, float, int]:
    n = 525_600
    rng = np.random.default_rng(42)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.0008, n)))
    spread = close * rng.uniform(0, 0.001, n)
    idx = pd.date_range("2023-01-01", periods=n, freq="1min", tz="UTC")
    df = pd.DataFrame({"open": close, "high": close + spread, "low": close - spread, "close": close,
                       "volume": 1.0}, index=idx)
    s = create_strategy("trend_follower", {}, qty_step="0.001", tick_size="0.01", allocated_capital="10000")
    t = time.perf_counter()
    prepared = s.prepare(df)
    prepare_s = time.perf_counter() - t
    t = time.perf_counter()
    signals = sum(s.signal_at(prepared, i, Decimal("10000")) is not None for i in range(n))
    return prepare_s, time.perf_counter() - t, signals


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--rounds", type=int, default=60)
    args = p.parse_args()
    print(f"load average {os.getloadavg()[0]:.2f}")
    window = load_candles_csv(str(REPO / "tests" / "data" / "XRPUSDT-perp-5m.csv")).iloc[-500:]
    for name in ("trend_follower", "grid", "dca"):
        ms = live_tick_ms(name, window, args.rounds)
        p90 = statistics.quantiles(ms, n=10)[-1]
        med = statistics.median(ms)
        print(f"live tick {name:15s} median {med:6.2f} ms  p90 {p90:6.2f} ms  {'ok' if med <= 5 else 'OVER'} (budget 5 ms)")
    prepare_s, loop_s, signals = year_of_minutes()
    ok = prepare_s < 2 and loop_s < 10
    print(f"year of 1m candles: prepare {prepare_s:.2f} s, per-candle loop {loop_s:.2f} s "
          f"({525_600 / loop_s:,.0f} candles/s), {signals} signals  {'ok' if ok else 'OVER'} (budget 2 s / 10 s)")


if __name__ == "__main__":
    main()
