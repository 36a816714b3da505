"""Paper simulator state on disk: the cost of the save that precedes every order answer, and of a restore.

Run: .venv/bin/python bench/bench_sim_state.py [--open N] [--closed N] [--candles N]
An account with N resting limit orders and N market orders (filled: closed, with executions), the replay
moved on by --candles 1m candles; saves into a temporary folder (fsync included).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from traderagent.sim import ExchangeSimulator, SimConfig, persist  # noqa: E402


def _simulator() -> ExchangeSimulator:
    sim = ExchangeSimulator(SimConfig(seed=0))
    sim.add_account("paper-key", "paper-secret", {"USDT": Decimal("100000000")})
    return sim


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--open", type=int, default=50)
    p.add_argument("--closed", type=int, default=5000)
    p.add_argument("--candles", type=int, default=86_400)
    args = p.parse_args()
    sim = _simulator()
    acct = sim.engine.accounts["paper-key"]
    for i in range(args.closed):
        sim.engine.create_order(acct, {"category": "linear", "symbol": "XRPUSDT", "side": "Buy",
                                       "orderType": "Market", "qty": "10", "orderLinkId": f"m{i}"})
    for i in range(args.open):
        sim.engine.create_order(acct, {"category": "linear", "symbol": "XRPUSDT", "side": "Buy", "orderType": "Limit",
                                       "qty": "10", "price": "0.5", "orderLinkId": f"o{i}"})
    for series in sim.series.values():
        series.fast_forward(args.candles)
    path = Path(tempfile.mkdtemp()) / "traderagent.sim.json"
    n = 50
    started = time.perf_counter()
    for _ in range(n):
        persist.save(sim, path)
    save_ms = (time.perf_counter() - started) / n * 1000
    started = time.perf_counter()
    _simulator().keep_state(path)
    restore_ms = (time.perf_counter() - started) * 1000
    print(f"{args.open} open + {args.closed} closed orders (last {persist.KEEP_CLOSED} kept), "
          f"{args.candles} candles replayed per symbol: file {path.stat().st_size / 1e6:.2f} MB, "
          f"save {save_ms:.1f} ms, restore {restore_ms:.0f} ms")


if __name__ == "__main__":
    main()
