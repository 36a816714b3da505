"""The exchange simulator as its own process, for the crash-recovery tests.

Like `traderagent sim`, plus test controls: SIGUSR1 freezes the replay (speed 0) so the final
comparison sees a market that no longer moves; lines on stdin, each answered with one line:
``speed X`` (the replay's speed), ``price SYMBOL P`` (move the market to P now: what it touches fills,
held stops trigger; answers "moved N" with the number of orders filled). Prints "simulator listening
on URL" when ready.

    python tests/e2e/sim_process.py --speed 20 --key K --secret S --balance 100000
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from decimal import Decimal

from traderagent.sim import ExchangeSimulator, Faults, SimConfig


async def serve(args: argparse.Namespace) -> None:
    cfg = SimConfig(seed=args.seed, speed=args.speed,
                    faults=Faults(error_rate=args.error_rate, timeout_rate=args.timeout_rate,
                                  timeout_seconds=args.timeout_seconds, ratelimit_rate=args.ratelimit_rate))
    sim = ExchangeSimulator(cfg)
    sim.add_account(args.key, args.secret, {"USDT": Decimal(args.balance)})
    url = await sim.start(host="127.0.0.1", port=0)
    print(f"simulator listening on {url}", flush=True)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()

    def freeze() -> None:
        sim.config.speed = 0.0
        sim.faults.error_rate = sim.faults.timeout_rate = sim.faults.ratelimit_rate = 0.0
        print("frozen", flush=True)

    loop.add_signal_handler(signal.SIGUSR1, freeze)
    controls = asyncio.create_task(_controls(sim))
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        controls.cancel()
        await sim.stop()


async def _controls(sim: ExchangeSimulator) -> None:
    """The stdin test controls (see the module docstring)."""
    reader = asyncio.StreamReader()
    loop = asyncio.get_running_loop()
    try:
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    except ValueError:  # stdin is a plain file: no controls
        return
    while line := (await reader.readline()).decode().split():
        if line[0] == "speed":
            sim.config.speed = float(line[1])
            print("ok", flush=True)
        elif line[0] == "price":
            moved = sim.set_price(line[1], Decimal(line[2]))
            sim.save_state()
            print(f"moved {moved}", flush=True)
        else:
            print(f"unknown control {line[0]!r}", flush=True)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--speed", type=float, default=10.0)
    p.add_argument("--seed", type=int, default=3)
    p.add_argument("--key", default="paper-key")
    p.add_argument("--secret", default="paper-secret")
    p.add_argument("--balance", default="100000")
    p.add_argument("--error-rate", type=float, default=0.0)
    p.add_argument("--timeout-rate", type=float, default=0.0)
    p.add_argument("--timeout-seconds", type=float, default=15.0)
    p.add_argument("--ratelimit-rate", type=float, default=0.0)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(p.parse_args()))


if __name__ == "__main__":
    main()
