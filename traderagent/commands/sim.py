"""`traderagent sim [--host H] [--port P] [--speed S] [--seed N] [--api-key K] ...`: serve the ByBit
V5-compatible exchange simulator until Ctrl-C / SIGTERM.

Its options are declared in cli.py; this is the command-line edge of traderagent/sim/server.py.
Like the simulator itself it never imports traderagent.api.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from decimal import Decimal
from typing import Any

from traderagent.sim.server import ApiKeySettings, ExchangeSimulator, Faults, SimConfig


def main_sim(args: Any) -> int:
    """`traderagent sim`: serve until Ctrl-C / SIGTERM."""
    cfg = SimConfig(
        seed=args.seed if args.seed is not None else 0,
        speed=args.speed,
        price_source="random" if args.seed is not None else "real",
        faults=Faults(error_rate=args.error_rate, timeout_rate=args.timeout_rate,
                      ratelimit_rate=args.ratelimit_rate),
    )
    try:
        return asyncio.run(_serve(cfg, args))
    except KeyboardInterrupt:
        return 0


async def _serve(cfg: SimConfig, args: Any) -> int:
    sim = ExchangeSimulator(cfg)
    key = ApiKeySettings(read_only=args.key_read_only, ips=tuple(args.key_ips.split(",")))
    key.permissions["Wallet"] = [p for p in args.key_wallet.split(",") if p]
    sim.add_account(args.api_key, args.api_secret, {"USDT": Decimal(args.balance)}, key=key)
    try:
        url = await sim.start(host=args.host, port=args.port)
    except (OSError, OverflowError) as exc:  # port in use, out of range, unknown host
        await sim.stop()
        reason = getattr(exc, "strerror", None) or str(exc)
        print(f"traderagent sim: cannot listen on {args.host}:{args.port} ({reason}); "
              "choose a free --port from 1 to 65535, or 0 for any", file=sys.stderr, flush=True)
        return 2
    print(f"simulator listening on {url}", flush=True)
    print(f"account key: {args.api_key}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await sim.stop()
        print("simulator stopped", file=sys.stderr, flush=True)
    return 0
