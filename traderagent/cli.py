"""TraderAgent: ByBit V5 trading bots (SMC, trend, grid, DCA) run from Telegram, with a built-in exchange simulator.

Start with `traderagent run`: with no configuration it trades on paper against the built-in
simulator. Settings come from the environment or `.env` (see .env.example).

This module only parses arguments. Each subcommand's work lives with the code it drives and is
imported lazily, so `traderagent --help` stays fast and a broken optional part cannot break the others.
"""

from __future__ import annotations

import argparse
import importlib
import math
import os
import sys
from collections.abc import Callable

# subcommand -> "module:function"; the function takes the parsed namespace and returns an exit code.
COMMANDS = {
    "run": "traderagent.app:main_run",
    "console": "traderagent.app:main_console",
    "worker": "traderagent.app:main_worker",
    "sim": "traderagent.commands.sim:main_sim",
    "backtest": "traderagent.backtest.cli:main_backtest",
    "db": "traderagent.commands.db:main_db",
    "keygen": "traderagent.commands.db:main_keygen",
    "credentials": "traderagent.commands.db:main_credentials",
    "audit": "traderagent.commands.audit:main_audit",
    "validate": "traderagent.commands.validate:main_validate",
}


def _checked(convert: Callable[[str], float], ok: Callable[[float], bool], rule: str) -> Callable[[str], float]:
    """An argparse type: `convert`, then refuse a value breaking `rule` in one line naming the option."""
    def parse(text: str) -> float:
        try:
            value = convert(text)
            valid = ok(value)
        except ValueError:
            valid = False
        if not valid:
            raise argparse.ArgumentTypeError(f"must be {rule}, got {text!r}")
        return value
    return parse


_POSITIVE = _checked(float, lambda v: math.isfinite(v) and v > 0, "a number > 0")
_COUNT = _checked(int, lambda v: v >= 0, "a whole number >= 0")
_WORKERS = _checked(int, lambda v: v >= 1, "a whole number >= 1")
_RATE = _checked(float, lambda v: 0 <= v <= 1, "a probability from 0 to 1")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="traderagent", description="\n\n".join(__doc__.split("\n\n")[:2]),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                help="what to do (each has its own --help)")

    run = sub.add_parser("run", help="run the trading desk (paper mode with no keys)")
    run.add_argument("--bots", help="bots file (default: TRADERAGENT_BOTS_FILE or bots.toml; paper demo set if absent)")
    run.add_argument("--ticks", type=_COUNT, default=0, help="stop after this many ticks per bot (0: run until Ctrl-C)")
    run.add_argument("--workers", type=_WORKERS, default=1,
                     help="run N worker processes on one PostgreSQL database (and the Telegram console), "
                          "restarting any that dies (default 1: one process)")

    worker = sub.add_parser("worker", help="run one worker of a multi-process desk (PostgreSQL; no Telegram)")
    worker.add_argument("--bots", help="bots file (default: TRADERAGENT_BOTS_FILE or bots.toml); the same for every worker")
    worker.add_argument("--slot", type=int, default=None,
                        help="this worker's slot, 0 to N-1 (default: the first one no live worker holds)")
    worker.add_argument("--workers", type=_WORKERS, default=1, help="how many workers the fleet has (default 1)")

    sub.add_parser("console", help="one Telegram console for a fleet of desk workers (PostgreSQL DATABASE_URL)")

    sim = sub.add_parser("sim", help="run the ByBit V5-compatible exchange simulator")
    sim.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    sim.add_argument("--port", type=int, default=8900, help="port to listen on (default 8900; 0: any free port)")
    sim.add_argument("--speed", type=_POSITIVE, default=1.0, help="candles replayed per second")
    sim.add_argument("--seed", type=int, default=None, help="seed a random walk instead of real candles")
    sim.add_argument("--api-key", default="paper-key", help="account key the simulator accepts")
    sim.add_argument("--api-secret", default="paper-secret", help="its secret")
    sim.add_argument("--balance", default="10000", help="starting USDT balance")
    sim.add_argument("--error-rate", type=_RATE, default=0.0, help="probability of an injected HTTP 5xx")
    sim.add_argument("--timeout-rate", type=_RATE, default=0.0, help="probability of a response delayed past the client timeout")
    sim.add_argument("--ratelimit-rate", type=_RATE, default=0.0, help="probability of an injected 10006 answer")
    sim.add_argument("--key-ips", default="*", help="IP addresses the account key is bound to, comma-separated (*: none)")
    sim.add_argument("--key-wallet", default="", help="Wallet permissions of the key, e.g. Withdraw,AccountTransfer")
    sim.add_argument("--key-read-only", action="store_true", help="make the account key read-only")

    bt = sub.add_parser("backtest", help="backtest a strategy on historical candles")
    bt.add_argument("--strategy", required=True, help="smc, trend_follower, grid or dca")
    bt.add_argument("--data", required=True, help="CSV file: timestamp_ms,open,high,low,close,volume")
    bt.add_argument("--timeframe", default=None,
                    help="the strategy's decision timeframe (default: its own; the data is resampled to it)")
    bt.add_argument("--param", action="append", default=[], metavar="K=V",
                    help="a strategy parameter (repeatable; lists: levels=1,2,3 or swing_lengths=[3,3,2])")
    bt.add_argument("--params", nargs="*", default=[], metavar="K=V", help="several strategy parameters at once")
    bt.add_argument("--symbol", default=None, help="instrument (default: the data file's name, e.g. XRPUSDT)")
    bt.add_argument("--market", choices=["linear", "spot"], default="linear",
                    help="linear perpetual (default) or spot (never shorts)")
    bt.add_argument("--qty-step", default=None, help="quantity step (default: the simulator's instrument table)")
    bt.add_argument("--tick", default=None, help="price tick (default: the simulator's instrument table)")
    bt.add_argument("--fill", choices=["touch", "through"], default="touch",
                    help="a resting limit fills when the price touches it (default) or trades through it")
    bt.add_argument("--balance", default="10000", help="starting balance")
    bt.add_argument("--fee", default="0.00055", help="taker fee rate")
    bt.add_argument("--slippage", default="0.0002", help="market-order slippage rate")
    bt.add_argument("--plot", default=None, metavar="OUT.png", help="draw the equity curve with trades (.png, .svg, .pdf, ...)")
    bt.add_argument("--json", action="store_true", help="print results as JSON")
    bt.add_argument("--sweep", action="append", default=[], metavar="NAME=A:B:STEP",
                    help="run every combination of these parameter ranges on all cores; print them ranked")
    bt.add_argument("--workers", type=int, default=None, help="sweep processes (default: one per core)")

    db = sub.add_parser("db", help="database maintenance")
    db.add_argument("action", choices=["upgrade", "current", "copy"],
                    help="upgrade: apply migrations; current: show revision; copy: copy every row to another database")
    db.add_argument("--url", default=None, help="database URL (default: DATABASE_URL)")
    db.add_argument("--from", dest="source", default=None, help="copy: database to read (default: DATABASE_URL)")
    db.add_argument("--to", dest="target", default=None, help="copy: database to fill (migrated first; must be empty)")
    db.add_argument("--force", action="store_true", help="copy: replace the rows the target already holds")

    sub.add_parser("keygen", help="print a new TRADERAGENT_MASTER_KEY")

    creds = sub.add_parser("credentials", help="exchange keys stored encrypted in the database (demo/live mode)")
    creds_sub = creds.add_subparsers(dest="action", required=True, metavar="ACTION", help="set, list or delete")
    for action, text in (("set", "store keys (read from a prompt or stdin, never from arguments)"),
                         ("delete", "delete stored keys")):
        creds_sub.add_parser(action, help=text).add_argument("name", choices=["demo", "live"], help="trading mode")
    creds_sub.add_parser("list", help="stored names with a masked API key")

    audit = sub.add_parser("audit", help="security audit of a project folder")
    audit.add_argument("path", nargs="?", default=".", help="project folder to audit (default: the current one)")
    audit.add_argument("--json", action="store_true", help="print the report as JSON")

    validate = sub.add_parser("validate", help="validate the bots file and risk settings")
    validate.add_argument("bots_file", nargs="?", default=None,
                          help="bots file (default: TRADERAGENT_BOTS_FILE or bots.toml)")
    validate.add_argument("--demo", action="store_true", help="validate the paper demo set instead of a bots file")
    validate.add_argument("--bounds-table", action="store_true", help="print the README's parameter bounds tables")
    validate.add_argument("--json", action="store_true", help="print the findings as JSON")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    module_name, func_name = COMMANDS[args.command].split(":")
    func = getattr(importlib.import_module(module_name), func_name)
    try:
        code = int(func(args) or 0)
        sys.stdout.flush()  # a pipe is block-buffered: a reader that left shows here, not at exit
        return code
    except BrokenPipeError:  # `traderagent audit --json | head`: the reader left early
        _silence_stdout()
        return 141  # what a shell reports for a tool stopped by a closed pipe (128 + SIGPIPE)


def _silence_stdout() -> None:
    """Point stdout at devnull: Python flushes it again at exit, which would raise a second time."""
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, ValueError):  # stdout without a file descriptor (captured by a test): nothing to flush
        pass


if __name__ == "__main__":
    sys.exit(main())
