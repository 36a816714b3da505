"""`traderagent run --workers N`: N worker processes (and the Telegram console) under one supervisor.

Each child is a `traderagent worker --slot I --workers N` (fleet/workers.py), plus, when Telegram is
configured, one `traderagent console`. The supervisor

* restarts a child that dies (a crash, kill -9), after 1 s, doubling to 30 s while it keeps dying
  young; its bots run meanwhile on the other workers, and come back to it when it returns;
* stops the fleet when a child refuses to start (exit code 2: a setting to fix, which a restart
  cannot), and exits with that code;
* forwards SIGTERM / SIGINT to every child and exits once they have stopped; a child that stops
  cleanly by itself (exit code 0) is not restarted.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from traderagent.config import Settings

FIRST_DELAY, LAST_DELAY = 1.0, 30.0
YOUNG = 60.0  # a child that ran shorter than this before dying waits twice as long before the next start


def commands(args: Any, workers: int, telegram: bool) -> dict[str, list[str]]:
    """name -> command line of every child."""
    from traderagent.cli import COMMANDS

    base = [sys.executable, "-m", "traderagent"]
    bots = ["--bots", args.bots] if getattr(args, "bots", None) else []
    children = {f"worker {i}": [*base, "worker", "--slot", str(i), "--workers", str(workers), *bots]
                for i in range(workers)}
    if telegram and "console" in COMMANDS:  # the console's own command (fleet/console.py)
        children["console"] = [*base, "console"]
    return children


class Supervisor:
    def __init__(self, children: dict[str, list[str]]) -> None:
        self.children = children
        self.procs: dict[str, asyncio.subprocess.Process] = {}
        self.stopping = asyncio.Event()

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> None:
        self.stopping.set()
        for proc in self.procs.values():
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(sig)

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.stop, sig)
        codes = await asyncio.gather(*(self._keep(name, cmd) for name, cmd in self.children.items()))
        return max((c if c >= 0 else 128 - c for c in codes), default=0)

    async def _keep(self, name: str, cmd: list[str]) -> int:
        """Run one child until the fleet stops; returns its last exit code."""
        loop = asyncio.get_running_loop()
        delay = FIRST_DELAY
        while True:
            started = loop.time()
            proc = self.procs[name] = await asyncio.create_subprocess_exec(*cmd)
            print(f"traderagent: {name} started (pid {proc.pid})", flush=True)
            if self.stopping.is_set():  # the signal came while it was starting
                proc.send_signal(signal.SIGTERM)
            code = await proc.wait()
            if self.stopping.is_set() or code == 0:
                return code
            if code == 2:  # it refused to start: a setting to fix, the same at every restart
                print(f"traderagent: {name} refused to start (exit code 2): stopping the fleet", file=sys.stderr,
                      flush=True)
                self.stop()
                return code
            delay = FIRST_DELAY if loop.time() - started >= YOUNG else delay
            print(f"traderagent: {name} exited with code {code}: restarting it in {delay:g} s", file=sys.stderr,
                  flush=True)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), delay)
                return code
            delay = min(2 * delay, LAST_DELAY)


async def supervise(settings: Settings, args: Any, workers: int) -> int:
    """Run the fleet until it stops; the exit code is the highest of its children's."""
    from traderagent.fleet.workers import sqlite_refusal

    if refusal := sqlite_refusal(settings, workers):
        print(f"traderagent: {refusal}", file=sys.stderr, flush=True)
        return 2
    children = commands(args, workers, telegram=bool(settings.telegram_bot_token))
    print(f"traderagent: supervising {', '.join(children)}; Ctrl-C to stop", flush=True)
    return await Supervisor(children).run()
