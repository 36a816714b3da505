"""The real `traderagent run` reports in: a restarted desk whose grid buy filled while it was down says
"desk started" with that fill in its recovery summary, answers its health endpoint, and says "desk
stopping" on SIGTERM, in the operator's chat (fake Bot API server) and on the console."""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import aiohttp
import pytest

from tests import forkserver
from tests.fakes.telegram_server import TOKEN
from tests.handlers.harness import CHAT, Operator

from .desk_procs import REPO, desk_env

pytestmark = pytest.mark.slow(11)

BOTS = """
[[bots]]
name = "xrp-grid"
strategy = "grid"
symbol = "XRPUSDT"
timeframe = "1m"
tick_seconds = 1
[bots.params]
num_levels = 9
range_pct = "0.02"
"""


def _desk(env: dict[str, str], tmp: Path, *args: str) -> subprocess.Popen:
    return forkserver.popen([sys.executable, "-m", "traderagent", "run", *args], env=env, cwd=tmp,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


async def test_restarted_desk_reports_its_recovery_and_its_stop(sim, fake, tmp_path) -> None:
    bots = tmp_path / "bots.toml"
    bots.write_text(BOTS)
    env = desk_env(sim.base_url, tmp_path / "desk.db", bots, BYBIT_API_KEY="test-key", BYBIT_API_SECRET="test-secret",
                   PYTHONPATH=str(REPO), NO_PROXY="127.0.0.1,localhost")
    first = _desk(env, tmp_path, "--ticks", "2")
    out, _ = await asyncio.to_thread(first.communicate, timeout=120)
    assert first.returncode == 0, out.decode()[-3000:]

    resting = sim.orders("test-key", symbol="XRPUSDT")
    top_buy = max(Decimal(o["price"]) for o in resting if o["side"] == "Buy")
    sim.set_price("XRPUSDT", top_buy)  # it fills while the desk is down

    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    env.update(TELEGRAM_BOT_TOKEN=TOKEN, TELEGRAM_CHAT_IDS=str(CHAT), TELEGRAM_API_BASE_URL=fake.url,
               TRADERAGENT_HEALTH_PORT=str(port), TRADERAGENT_STALL_TICKS="60")  # a slow machine is no stall
    second = _desk(env, tmp_path)
    try:
        call = await Operator(fake).next("sendMessage", 0, "paper desk started", timeout=60)
        started = call.params["text"]
        async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{port}/health") as resp:
            health = (resp.status, await resp.json())
    finally:
        second.send_signal(signal.SIGTERM)
        out, _ = await asyncio.to_thread(second.communicate, timeout=60)
    console = out.decode()
    assert second.returncode == 0, console[-3000:]
    assert ("paper desk started · 1 bot(s): xrp-grid · phase 1 · recovery: 1 fill(s) booked while down, "
            f"{len(resting)} order(s) adopted") in started, started
    stopping = "\n".join(t for t in fake.sent_texts(CHAT) if "desk stopping" in t)
    assert "desk stopping (SIGTERM)" in stopping
    assert "DESK_STARTED" in console and "DESK_STOPPING" in console
    assert health[0] == 200 and set(health[1]["checks"]) == {"scheduler", "exchange", "telegram"}, health
