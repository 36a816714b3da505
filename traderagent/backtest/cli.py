"""`traderagent backtest`: load candles, build the strategy, run the engine, print a table or JSON, plot."""

from __future__ import annotations

import argparse
import json
import sys
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from traderagent.backtest.data import BacktestDataError, prepare, resample
from traderagent.backtest.engine import BacktestConfig, BacktestResult, run_backtest
from traderagent.numbers import NumberError, to_decimal
from traderagent.timeframes import TimeframeError, timeframe_ms, timeframe_name

_LONG_RUN = 200_000  # candles: show progress even when stderr is not a terminal


class UsageError(Exception):
    """Bad input from the user: printed as one line, exit code 2."""


def split_params(items: list[str]) -> dict[str, str]:
    """``["k=v", ...]`` -> ``{k: v}``; the strategy's declarations type and check the values (lists: ``1h,15m,5m``)."""
    params: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"bad --params item {item!r}: expected KEY=VALUE")
        params[key.strip()] = value
    return params


def _decimal_arg(name: str, text: str, *, minimum: Decimal = Decimal(0)) -> Decimal:
    try:
        value = to_decimal(text, field=f"--{name}")
    except NumberError as exc:
        raise UsageError(str(exc)) from None
    if value < minimum:
        raise UsageError(f"--{name} must be a number >= {minimum}, got {text!r}")
    return value


def check_plot_path(out: str) -> None:
    """Refuse an output name whose extension matplotlib cannot write, before the backtest runs."""
    from traderagent.backtest.plot import plot_formats

    formats = plot_formats()
    suffix = Path(out).suffix.lower()
    if suffix[1:] not in formats:
        raise UsageError(f"--plot {out}: unsupported extension {suffix or '(none)'}; "
                         f"use one of {', '.join('.' + f for f in formats)}")


def market_steps(frame: pd.DataFrame) -> tuple[Decimal, Decimal]:
    """(qty_step, tick_size) for data without instrument info: the tick from the prices' decimals,
    a quantity step worth about 0.01 of quote currency."""
    sample = frame["close"].to_numpy()[:2000]
    decimals = max((-int(Decimal(repr(float(x))).normalize().as_tuple().exponent) for x in sample), default=2)
    tick = Decimal(1).scaleb(-min(max(decimals, 0), 12))
    price = float(np.median(sample)) if len(sample) else 1.0
    exp = int(np.floor(np.log10(0.01 / price))) if price > 0 else -3
    qty_step = Decimal(1).scaleb(min(max(exp, -8), 0))
    return qty_step, tick


def build_strategy(name: str, params: dict, *, timeframe: str | None, data_tf_ms: int, frame: pd.DataFrame,
                   balance: Decimal):
    from traderagent.strategies import create_strategy, strategy_class

    try:
        cls = strategy_class(name)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    except ImportError as exc:
        raise UsageError(f"strategy {name!r} is not available: {exc}") from None
    params = dict(params)
    if any(p.name == "timeframe" for p in cls.PARAMS) and "timeframe" not in params:
        # single-timeframe strategies decide on the backtest's timeframe (default: the data's own)
        params["timeframe"] = timeframe or timeframe_name(data_tf_ms)
    qty_step, tick = market_steps(frame)
    try:
        return create_strategy(name, params, qty_step=qty_step, tick_size=tick, allocated_capital=balance)
    except (ValueError, TypeError) as exc:
        raise UsageError(f"{name}: {exc}") from None


def entry_frame(strategy, frame: pd.DataFrame, data_tf_ms: int, timeframe: str | None) -> tuple[pd.DataFrame, int]:
    entry_tf = timeframe_ms(strategy.timeframes[-1])
    if timeframe and timeframe_ms(timeframe) != entry_tf:
        raise UsageError(
            f"strategy {strategy.strategy_type} decides on {strategy.timeframes[-1]} candles; --timeframe {timeframe} conflicts"
        )
    if entry_tf < data_tf_ms or entry_tf % data_tf_ms:
        raise UsageError(
            f"strategy {strategy.strategy_type} needs {strategy.timeframes[-1]} candles; the data is {timeframe_name(data_tf_ms)}"
        )
    return resample(frame, entry_tf, data_tf_ms), entry_tf


class ProgressBar:
    def __init__(self, total: int, stream=None) -> None:
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.enabled = self.tty or total >= _LONG_RUN
        self.last_pct = -1
        self.t0 = time.perf_counter()

    def __call__(self, i: int, n: int) -> None:
        if not self.enabled or n <= 0:
            return
        pct = min(100, i * 100 // n)
        if pct == self.last_pct or (not self.tty and pct % 10):
            return
        self.last_pct = pct
        bar = "#" * (pct // 4)
        line = f"backtest [{bar:<25}] {pct:3d}% {i:,}/{n:,} candles {time.perf_counter() - self.t0:5.1f}s"
        self._write(("\r" + line) if self.tty else line + "\n")

    def done(self) -> None:
        if self.enabled and self.tty:
            self._write("\n")

    def _write(self, text: str) -> None:
        try:
            self.stream.write(text)
            self.stream.flush()
        except BrokenPipeError:  # stderr piped into a reader that left: the run itself goes on
            self.enabled = False


def _fmt(value: Any, pct: bool = False, places: int = 2) -> str:
    if value is None:
        return "n/a"
    if pct:
        return f"{float(value) * 100:.2f}%"
    if isinstance(value, Decimal):
        return f"{value:,.{places}f}"
    if isinstance(value, float):
        return f"{value:.{places}f}"
    return str(value)


def results_table(result: BacktestResult, info: dict) -> str:
    m = result.metrics
    rows = [
        ("strategy", result.strategy_name),
        ("data", f"{info['file']} ({info['source_timeframe']}, {info['gap_candles_filled']} gap candles filled)"),
        ("timeframe / candles", f"{result.timeframe} / {result.candles:,}"),
        ("period", f"{info['start'][:16]} .. {info['end'][:16]}"),
        ("initial balance", _fmt(result.initial_balance)),
        ("final balance", _fmt(result.final_balance)),
        ("net PnL", f"{_fmt(m.net_pnl)} ({m.return_pct * 100:+.2f}%)"),
        ("trades (closed)", f"{m.trades}  wins {m.wins} / losses {m.losses}"),
        ("win rate", _fmt(m.win_rate, pct=True)),
        ("profit factor", _fmt(m.profit_factor)),
        ("max drawdown", f"{_fmt(m.max_drawdown, pct=True)} ({_fmt(m.max_drawdown_amount)})"),
        ("Sharpe (annualised)", _fmt(m.sharpe_ratio)),
        ("total fees", _fmt(m.total_fees)),
        ("exposure", _fmt(m.exposure_pct, pct=True)),
        ("avg trade PnL", _fmt(m.avg_trade_pnl)),
        ("open at end", str(sum(1 for t in result.trades if not t.closed))),
        ("run time", f"{result.elapsed_s:.3f}s ({result.candles / max(result.elapsed_s, 1e-9):,.0f} candles/s)"),
    ]
    width = max(len(k) for k, _ in rows)
    lines = [f"{k:<{width}}  {v}" for k, v in rows]
    closed = [t for t in result.trades if t.closed]
    if closed:
        lines.append("")
        lines.append(f"last trades ({min(10, len(closed))} of {len(closed)}):")
        lines.append(f"  {'side':<5} {'entry time':<16} {'entry':>14} {'exit':>14} {'pnl':>12}  reason")
        for t in closed[-10:]:
            when = pd.Timestamp(t.entry_time_ms, unit="ms", tz="UTC").strftime("%Y-%m-%d %H:%M")
            lines.append(
                f"  {t.side:<5} {when:<16} {float(t.entry_price):>14.8g} {float(t.exit_price):>14.8g} "
                f"{float(t.pnl):>12.2f}  {t.exit_reason}"
            )
    return "\n".join(lines)


def run(args: argparse.Namespace) -> tuple[BacktestResult, dict]:
    balance = _decimal_arg("balance", args.balance, minimum=Decimal("0.00000001"))
    fee = _decimal_arg("fee", args.fee)
    slippage = _decimal_arg("slippage", args.slippage)
    if fee >= 1 or slippage >= 1:
        raise UsageError("--fee and --slippage are rates (0.00055 = 0.055%), must be < 1")
    params = split_params(args.params)
    if args.plot:
        check_plot_path(args.plot)
    try:
        if args.timeframe:
            timeframe_ms(args.timeframe)
        frame, data_tf, info = prepare(args.data)
    except (BacktestDataError, TimeframeError) as exc:
        raise UsageError(str(exc)) from None
    for warning in info["warnings"]:
        print(f"traderagent backtest: warning: {warning}", file=sys.stderr)
    strategy = build_strategy(args.strategy, params, timeframe=args.timeframe, data_tf_ms=data_tf,
                              frame=frame, balance=balance)
    try:
        frame, tf = entry_frame(strategy, frame, data_tf, args.timeframe)
    except (BacktestDataError, TimeframeError) as exc:
        raise UsageError(str(exc)) from None
    if len(frame) < strategy.min_candles:
        raise UsageError(
            f"{strategy.strategy_type} needs at least {strategy.min_candles} {timeframe_name(tf)} candles; the data has {len(frame)}"
        )
    info.update(timeframe=timeframe_name(tf), candles=len(frame), start=frame.index[0].isoformat(),
                end=frame.index[-1].isoformat())
    # ladder strategies rest limit orders: maker fee is the taker fee's usual ByBit ratio (0.02% vs 0.055%)
    maker = (fee * Decimal("0.02") / Decimal("0.055")).quantize(Decimal("0.0000001"))
    config = BacktestConfig(balance=balance, taker_fee=fee, maker_fee=maker, slippage=slippage)
    bar = ProgressBar(len(frame))
    try:
        result = run_backtest(strategy, frame, tf, config, progress=bar)
    except ValueError as exc:  # a strategy refusing its inputs (e.g. a grid range outside the data)
        raise UsageError(f"{strategy.strategy_type}: {exc}") from None
    finally:
        bar.done()
    return result, info


def main_backtest(args: argparse.Namespace) -> int:
    try:
        result, info = run(args)
    except UsageError as exc:
        print(f"traderagent backtest: error: {exc}", file=sys.stderr)
        return 2
    if args.plot:
        from traderagent.backtest.plot import plot_result

        try:
            plot_result(result, args.plot)
        except OSError as exc:
            print(f"traderagent backtest: error: cannot write plot {args.plot}: {exc.strerror}", file=sys.stderr)
            return 2
    if args.json:
        out = result.to_dict()
        out["data"] = info
        if args.plot:
            out["plot"] = str(args.plot)
        print(json.dumps(out, indent=2, default=str))
    else:
        text = results_table(result, info)
        print(f"{text}\n\nplot written to {args.plot}" if args.plot else text)
    return 0
