"""`traderagent backtest`: load candles, build the strategy, run the engine, print a table or JSON, plot."""

from __future__ import annotations

import argparse
import json
import sys
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pandas as pd

from traderagent.backtest.data import BacktestDataError, prepare, resample
from traderagent.backtest.engine import BacktestConfig, BacktestResult
from traderagent.backtest.sweep import BacktestJob, combinations, parse_axis, run_sweep, sweep_table
from traderagent.numbers import NumberError, to_decimal
from traderagent.strategies.base import BaseStrategy
from traderagent.timeframes import TimeframeError, derived_from, timeframe_ms, timeframe_name

_LONG_RUN = 200_000  # candles: show progress even when stderr is not a terminal


class UsageError(Exception):
    """Bad input from the user: printed as one line, exit code 2."""


def split_params(items: list[str]) -> dict[str, str]:
    """``["k=v", ...]`` -> ``{k: v}``; the strategy's declarations type and check the values (lists:
    ``1h,15m,5m`` or JSON-ish ``[3, 3, 2]``, ``["1h","15m","5m"]``; see ``Param.parse``)."""
    params: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"bad --param item {item!r}: expected KEY=VALUE")
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


def symbol_of(path: str | Path) -> str:
    """The symbol a candle file is named after: ``XRPUSDT-perp-5m.csv`` -> XRPUSDT, ``ETH_BTC-5m.csv`` -> ETHBTC."""
    return Path(path).stem.split("-")[0].replace("_", "").replace("/", "").upper()


def instrument_steps(symbol: str, market: str, qty_step: str | None, tick: str | None) -> tuple[Decimal, Decimal]:
    """(quantity step, tick size): ``--qty-step``/``--tick`` when given, else the simulator's instrument table
    (spot quantities step by the base coin's precision). Never guessed from the candles: a later price must
    not change an earlier trade's size."""
    if (qty_step is None) != (tick is None):
        raise UsageError("give --qty-step and --tick together")
    if qty_step is not None and tick is not None:
        tiny = Decimal("1e-18")
        return _decimal_arg("qty-step", qty_step, minimum=tiny), _decimal_arg("tick", tick, minimum=tiny)
    from traderagent.sim.market import DEFAULT_SYMBOLS

    spec = next((s for s in DEFAULT_SYMBOLS if s.symbol == symbol), None)
    if spec is None:
        known = ", ".join(s.symbol for s in DEFAULT_SYMBOLS)
        raise UsageError(f"{symbol} is not in the instrument table ({known}): give its --qty-step and --tick")
    return (spec.base_precision if market == "spot" else spec.qty_step), spec.tick_size


def strategy_params(name: str, params: dict, timeframe: str | None) -> tuple[type[BaseStrategy], dict]:
    """The strategy class and its parameters; ``--timeframe`` sets a single-timeframe strategy's ``timeframe``."""
    from traderagent.strategies import strategy_class

    try:
        cls = strategy_class(name)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    except ImportError as exc:
        raise UsageError(f"strategy {name!r} is not available: {exc}") from None
    params = dict(params)
    if timeframe and any(p.name == "timeframe" for p in cls.PARAMS):
        if params.setdefault("timeframe", timeframe) != timeframe:
            raise UsageError(f"--timeframe {timeframe} conflicts with --param timeframe={params['timeframe']}")
    return cls, params


def build_strategy(name: str, params: dict, *, timeframe: str | None, market: str,
                   steps: tuple[Decimal, Decimal], balance: Decimal) -> BaseStrategy:
    """The strategy on its own timeframes (see ``strategy_params``)."""
    cls, params = strategy_params(name, params, timeframe)
    qty_step, tick = steps
    try:
        return cls(params, qty_step=qty_step, tick_size=tick, allocated_capital=balance, market_type=market)
    except (ValueError, TypeError) as exc:
        raise UsageError(f"{name}: {exc}") from None


def entry_frame(strategy, frame: pd.DataFrame, data_tf_ms: int, timeframe: str | None) -> tuple[pd.DataFrame, int]:
    """The data resampled to the strategy's entry timeframe (an error when the data is coarser)."""
    entry = strategy.timeframes[-1]
    if timeframe and timeframe_ms(timeframe) != timeframe_ms(entry):
        raise UsageError(f"strategy {strategy.strategy_type} decides on {entry} candles; --timeframe {timeframe} conflicts")
    try:
        entry_tf = derived_from(entry, data_tf_ms)
    except TimeframeError as exc:
        raise UsageError(f"strategy {strategy.strategy_type} {exc}") from None
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


def _when(ms: int) -> str:
    return pd.Timestamp(ms, unit="ms", tz="UTC").strftime("%Y-%m-%d %H:%M")


def results_table(result: BacktestResult, info: dict, *, last: int = 10) -> str:
    m = result.metrics
    closed = "closed round trips" if result.ladder else "closed trades"  # ladders: grid pairs, DCA cycles
    rows = [
        ("strategy", result.strategy_name),
        ("instrument", f"{info['symbol']} {info['market']} (qty step {info['qty_step']}, tick {info['tick_size']}, "
                       f"limits fill on {info['fill']})"),
        ("data", f"{info['file']} ({info['source_timeframe']}, {info['gap_candles_filled']} gap candles filled)"),
        ("timeframe / candles", f"{result.timeframe} / {result.candles:,}"),
        ("period", f"{info['start'][:16]} .. {info['end'][:16]}"),
        ("initial balance", _fmt(result.initial_balance)),
        ("final balance", _fmt(m.final_balance)),
        ("net PnL", f"{_fmt(m.net_pnl)} ({m.return_pct * 100:+.2f}%)"),
        ("realised PnL", f"{_fmt(m.realized_pnl)} ({m.trades} {closed})"),
        ("unrealised PnL", f"{_fmt(m.unrealized_pnl)} ({m.open_trades} open, {m.open_qty.normalize():f} held, "
                           "marked at the last close)"),
        (f"{closed}", f"{m.trades}  wins {m.wins} / losses {m.losses}"),
        ("win rate", _fmt(m.win_rate, pct=True)),
        ("profit factor", _fmt(m.profit_factor)),
        ("avg closed PnL", _fmt(m.avg_trade_pnl)),
        ("max drawdown", f"{_fmt(m.max_drawdown, pct=True)} ({_fmt(m.max_drawdown_amount)})"),
        ("Sharpe (annualised)", _fmt(m.sharpe_ratio)),
        ("total fees", _fmt(m.total_fees)),
        ("exposure", _fmt(m.exposure_pct, pct=True)),
        ("run time", f"{result.elapsed_s:.3f}s ({result.candles / max(result.elapsed_s, 1e-9):,.0f} candles/s)"),
    ]
    width = max(len(k) for k, _ in rows)
    lines = [f"{k:<{width}}  {v}" for k, v in rows]
    if result.trades:
        shown = result.trades[-last:]
        lines += ["", f"last trades ({len(shown)} of {len(result.trades)}; open ones marked at the last close):",
                  f"  {'side':<5} {'qty':>14} {'entry time':<16} {'entry':>14} {'exit time':<16} {'exit':>14} "
                  f"{'pnl':>12}  reason"]
        for t in shown:
            exit_time, exit_price = (_when(t.exit_time_ms), f"{float(t.exit_price):>14.8g}") if t.closed else ("open", "")
            lines.append(f"  {t.side:<5} {t.qty.normalize():>14f} {_when(t.entry_time_ms):<16} "
                         f"{float(t.entry_price):>14.8g} {exit_time:<16} {exit_price:>14} {float(t.pnl):>12.2f}  "
                         f"{t.exit_reason}")
    return "\n".join(lines)


def setup(args: argparse.Namespace) -> tuple[BacktestJob, BaseStrategy, dict]:
    """Check the arguments, load the candles, build the strategy: (the job, the strategy, data info)."""
    balance = _decimal_arg("balance", args.balance, minimum=Decimal("0.00000001"))
    fee = _decimal_arg("fee", args.fee)
    slippage = _decimal_arg("slippage", args.slippage)
    if fee >= 1 or slippage >= 1:
        raise UsageError("--fee and --slippage are rates (0.00055 = 0.055%), must be < 1")
    params = split_params([*(args.params or []), *(args.param or [])])
    if args.plot:
        check_plot_path(args.plot)
    try:
        if args.timeframe:
            timeframe_ms(args.timeframe)
        frame, data_tf, info = prepare(args.data)
    except (BacktestDataError, TimeframeError) as exc:
        raise UsageError(str(exc)) from None
    symbol = (args.symbol or symbol_of(args.data)).upper()
    steps = instrument_steps(symbol, args.market, args.qty_step, args.tick)
    for warning in info["warnings"]:
        print(f"traderagent backtest: warning: {warning}", file=sys.stderr)
    strategy = build_strategy(args.strategy, params, timeframe=args.timeframe, market=args.market, steps=steps,
                              balance=balance)
    try:
        frame, tf = entry_frame(strategy, frame, data_tf, args.timeframe)
    except BacktestDataError as exc:
        raise UsageError(str(exc)) from None
    if len(frame) < strategy.min_candles:
        raise UsageError(
            f"{strategy.strategy_type} needs at least {strategy.min_candles} {timeframe_name(tf)} candles; the data has {len(frame)}"
        )
    info.update(symbol=symbol, market=args.market, qty_step=str(steps[0]), tick_size=str(steps[1]), fill=args.fill,
                timeframe=timeframe_name(tf), candles=len(frame), start=frame.index[0].isoformat(),
                end=frame.index[-1].isoformat())
    # ladder strategies rest limit orders: maker fee is the taker fee's usual ByBit ratio (0.02% vs 0.055%)
    maker = (fee * Decimal("0.02") / Decimal("0.055")).quantize(Decimal("0.0000001"))
    config = BacktestConfig(balance=balance, taker_fee=fee, maker_fee=maker, slippage=slippage, limit_fill=args.fill)
    _, used = strategy_params(args.strategy, params, args.timeframe)
    job = BacktestJob(type(strategy), used, steps[0], steps[1], balance, args.market, frame, tf, config)
    return job, strategy, info


def run(args: argparse.Namespace) -> tuple[BacktestResult, dict]:
    job, strategy, info = setup(args)
    bar = ProgressBar(len(job.frame))
    try:
        result = job.run(strategy, progress=bar)
    except ValueError as exc:  # a strategy refusing its inputs (e.g. a grid range outside the data)
        raise UsageError(f"{strategy.strategy_type}: {exc}") from None
    finally:
        bar.done()
    return result, info


def main_sweep(args: argparse.Namespace) -> int:
    """``--sweep name=a:b:step ...``: every combination on a process pool, a ranked table (or JSON rows)."""
    try:
        axes = [parse_axis(text) for text in args.sweep]
        job, _, info = setup(args)
        declared = {name for p in job.cls.PARAMS for name in (p.name, *p.aliases)}
        unknown = [name for name, _ in axes if name not in declared]
        if unknown:
            raise UsageError(f"--sweep {', '.join(unknown)}: not a parameter of {args.strategy}")
    except (UsageError, ValueError) as exc:
        print(f"traderagent backtest: error: {exc}", file=sys.stderr)
        return 2
    combos = combinations(axes)
    started = time.perf_counter()
    rows, refused = run_sweep(job, combos, workers=args.workers)
    elapsed = time.perf_counter() - started
    if args.json:
        print(json.dumps({"data": info, "elapsed_s": round(elapsed, 3), "refused": refused,
                          "rows": [{"params": r.params, "metrics": r.metrics.to_dict()} for r in rows]}, indent=2))
        return 0
    print(f"{args.strategy} on {info['symbol']} {info['timeframe']} ({info['candles']:,} candles): "
          f"{len(combos)} combinations in {elapsed:.2f}s, {refused} refused by the strategy\n")
    print(sweep_table(rows))
    return 0


def main_backtest(args: argparse.Namespace) -> int:
    if args.sweep:
        if args.plot:
            print("traderagent backtest: error: --plot draws one run; it cannot be combined with --sweep", file=sys.stderr)
            return 2
        return main_sweep(args)
    try:
        result, info = run(args)
    except UsageError as exc:
        print(f"traderagent backtest: error: {exc}", file=sys.stderr)
        return 2
    if args.plot:
        from traderagent.backtest.plot import plot_result

        try:
            plot_result(result, args.plot, symbol=info["symbol"])
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
