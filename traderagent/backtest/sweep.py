"""Parameter sweep: one backtest per combination of ``--sweep name=a:b:step`` ranges, on every core.

The candles go to each worker process once (the pool's initializer); a task is only the combination's
parameters and comes back as the run's metric set. Combinations the strategy refuses (e.g. a fast EMA not
below the slow one) are counted, not run. Rows are ranked by net PnL, best first.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

import pandas as pd

from traderagent.backtest.engine import BacktestConfig, BacktestResult, Progress, run_backtest
from traderagent.metrics import Metrics
from traderagent.strategies.base import BaseStrategy


@dataclass(frozen=True)
class BacktestJob:
    """A strategy class with its fixed inputs, the candles and the fill rules: one backtest per parameter set."""

    cls: type[BaseStrategy]
    params: dict[str, Any]
    qty_step: Decimal
    tick_size: Decimal
    balance: Decimal
    market: str
    frame: pd.DataFrame  # the entry timeframe's candles
    tf_ms: int
    config: BacktestConfig = field(default_factory=BacktestConfig)

    def build(self, combo: dict[str, str]) -> BaseStrategy:
        return self.cls({**self.params, **combo}, qty_step=self.qty_step, tick_size=self.tick_size,
                        allocated_capital=self.balance, market_type=self.market)

    def run(self, strategy: BaseStrategy, progress: Progress | None = None) -> BacktestResult:
        return run_backtest(strategy, self.frame, self.tf_ms, self.config, progress=progress)


@dataclass(frozen=True)
class SweepRow:
    params: dict[str, str]
    metrics: Metrics


def parse_axis(text: str) -> tuple[str, list[str]]:
    """``name=a:b:step`` -> (name, [a, a+step, ... <= b]) as strings the strategy's declarations parse."""
    name, sep, spec = text.partition("=")
    parts = spec.split(":")
    if not sep or not name.strip() or len(parts) != 3:
        raise ValueError(f"bad --sweep {text!r}: expected NAME=START:STOP:STEP")
    try:
        start, stop, step = (Decimal(p.strip()) for p in parts)
    except InvalidOperation:
        raise ValueError(f"bad --sweep {text!r}: START, STOP and STEP must be numbers") from None
    if step <= 0 or stop < start:
        raise ValueError(f"bad --sweep {text!r}: needs STEP > 0 and START <= STOP")
    count = int((stop - start) / step) + 1
    return name.strip(), [str(start + k * step) for k in range(count)]


def combinations(axes: Sequence[tuple[str, list[str]]]) -> list[dict[str, str]]:
    names = [name for name, _ in axes]
    return [dict(zip(names, values, strict=True)) for values in itertools.product(*(v for _, v in axes))]


_job: BacktestJob | None = None  # a worker's shared inputs, set once by the pool's initializer


def _init(job: BacktestJob) -> None:
    global _job
    _job = job


def _run_one(combo: dict[str, str]) -> SweepRow | None:
    assert _job is not None, "the pool's initializer sets the job"
    return run_combo(_job, combo)


def run_combo(job: BacktestJob, combo: dict[str, str]) -> SweepRow | None:
    """One combination's metrics, or None when the strategy refuses its parameters."""
    try:
        strategy = job.build(combo)
    except ValueError:
        return None
    return SweepRow(combo, job.run(strategy).metrics)


def run_sweep(job: BacktestJob, combos: Sequence[dict[str, str]], *, workers: int | None = None) -> tuple[list[SweepRow], int]:
    """(rows ranked by net PnL, combinations refused); ``workers`` processes (default: every core)."""
    workers = workers or os.cpu_count() or 1
    chunk = max(1, len(combos) // (workers * 4))
    with ProcessPoolExecutor(workers, initializer=_init, initargs=(job,)) as pool:
        results = list(pool.map(_run_one, combos, chunksize=chunk))
    rows = [r for r in results if r is not None]
    rows.sort(key=lambda r: r.metrics.net_pnl, reverse=True)
    return rows, len(results) - len(rows)


def _opt(value: float | None, fmt: str) -> str:
    return "n/a" if value is None else format(value, fmt)


def sweep_table(rows: Sequence[SweepRow], *, top: int | None = None) -> str:
    """The ranked table: one line per combination, best net PnL first."""
    names = list(rows[0].params) if rows else []
    head = ["rank", *names, "net pnl", "return", "trades", "win rate", "pf", "max dd", "sharpe"]
    body = []
    for rank, row in enumerate(rows[:top] if top else rows, 1):
        m = row.metrics
        body.append([str(rank), *(row.params[n] for n in names), f"{m.net_pnl:,.2f}", f"{m.return_pct:+.2%}",
                     str(m.trades), _opt(m.win_rate, ".1%"), _opt(m.profit_factor, ".2f"),
                     f"{m.max_drawdown:.2%}", _opt(m.sharpe_ratio, ".2f")])
    widths = [max(len(r[k]) for r in [head, *body]) for k in range(len(head))]
    return "\n".join("  ".join(cell.rjust(w) for cell, w in zip(r, widths, strict=True)) for r in [head, *body])
