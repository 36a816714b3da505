"""`traderagent run`: paper mode end to end, clean stops, and the live-mode guards."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

import pytest

from tests import forkserver
from traderagent.app import format_event
from traderagent.database.manager import DatabaseManager
from traderagent.orchestrator.events import (
    Halted,
    OrderFilled,
    OrderRef,
    TradeClosed,
    TradeOpened,
    TradingEvent,
)

from .desk_procs import desk_env

PY = sys.executable


def _env(tmp: Path, **extra: str) -> dict[str, str]:
    env = desk_env("", tmp / "desk.db", tmp / "none.toml")
    for key in ("BYBIT_BASE_URL", "BYBIT_API_KEY", "BYBIT_API_SECRET"):
        env.pop(key)
    env["LOG_LEVEL"] = "info"
    env.update(extra)
    return env


def _run(tmp: Path, *args: str, timeout: float = 90, **extra: str) -> subprocess.CompletedProcess:
    return forkserver.run([PY, "-m", "traderagent", "run", *args], env=_env(tmp, **extra), cwd=tmp,
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow(11)
def test_paper_mode_runs_demo_desk_for_n_ticks(tmp_path):
    out = _run(tmp_path, "--ticks", "3", TRADERAGENT_PAPER_SPEED="5")
    assert out.returncode == 0, out.stderr[-3000:]
    assert "[xrp-grid] STATUS_CHANGE initializing → running (new bot, by desk)" in out.stdout, out.stdout + out.stderr[-3000:]
    assert "ORDER_PLACED" in out.stdout
    assert out.stdout.rstrip().endswith("desk stopped")
    banner = out.stdout[:out.stdout.index("Ctrl-C to stop.")]
    assert "TraderAgent paper desk: 4 bot(s) from the demo set" in banner
    assert f"database  {tmp_path / 'desk.db'}" in banner
    assert "built-in simulator http://127.0.0.1:" in banner and str(tmp_path / "desk.sim.json") in banner
    assert "telegram  off (set TELEGRAM_BOT_TOKEN and TELEGRAM_CHAT_IDS" in banner
    assert "INITIALIZING -> RUNNING" not in out.stderr  # each event once: on the console, not in the log too
    assert "alembic" not in out.stderr

    async def check():
        db = DatabaseManager(f"sqlite+aiosqlite:///{tmp_path / 'desk.db'}")
        await db.initialize()
        try:
            bots = {b.name: b.state for b in await db.list_bots()}
            assert set(bots) == {"xrp-grid", "sol-dca", "btc-trend", "eth-smc"}
            assert await db.list_orders(limit=5)
            assert (await db.load_capital_state())["phase"] == "phase_1_5pct"
        finally:
            await db.close()

    asyncio.run(check())


def test_sigterm_stops_cleanly(tmp_path):
    proc = forkserver.popen([PY, "-m", "traderagent", "run"], env=_env(tmp_path), cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    lines = []
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        lines.append(line)
        if "Ctrl-C to stop" in line:
            break
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, "".join(lines) + err
    assert "desk stopped" in out


def test_live_mode_needs_allow_live(tmp_path):
    out = _run(tmp_path, "--ticks", "1", TRADERAGENT_MODE="live", BYBIT_API_KEY="k" * 18, BYBIT_API_SECRET="s" * 18)
    assert out.returncode == 2
    assert "TRADERAGENT_ALLOW_LIVE" in out.stderr


def test_live_mode_refused_on_critical_audit_failure(tmp_path):
    planted = "AbCd" + "EfGhIjKlMnOpQrStUv12"  # assembled here so the repository's own audit stays clean
    (tmp_path / "settings_local.py").write_text(f'api_key = "{planted}"\n')
    out = _run(tmp_path, "--ticks", "1", TRADERAGENT_MODE="live", TRADERAGENT_ALLOW_LIVE="true",
               BYBIT_API_KEY="k" * 18, BYBIT_API_SECRET="s" * 18, BYBIT_BASE_URL="http://127.0.0.1:9")
    assert out.returncode == 2, out.stderr[-2000:]
    assert "security audit" in out.stderr and "no_hardcoded_secrets" in out.stderr
    assert planted not in out.stderr + out.stdout


def test_console_lines_are_readable():
    order = OrderRef("x-1", "grid:5:buy", "XRPUSDT", "buy", "limit", Decimal("10"), Decimal("1.2"), "USDT")
    line = format_event(TradingEvent.of("xrp-grid", OrderFilled(order, Decimal("10"), Decimal("1.2"), Decimal("0.0072"),
                                                                "USDT")))
    assert line.endswith("[xrp-grid] ORDER_FILLED buy limit 10 XRPUSDT @ 1.2 = 12.00 USDT · fee 0.0072 USDT (grid:5:buy)")
    closed = format_event(TradingEvent.of("b", TradeClosed(1, "p", "X", "long", Decimal(1), Decimal(1), Decimal(2),
                                                           Decimal(1), "take_profit", "USDT")))
    assert "1 → 2 · PnL +1.00 USDT (+100.00 %) · take profit" in closed
    assert "\n" not in format_event(TradingEvent.of("desk", Halted("x\ny", "op", ())))


@pytest.mark.slow(17)
def test_rejected_telegram_token_leaves_the_desk_trading(tmp_path):
    """A wrong bot token is reported (masked) and the desk trades on without Telegram."""
    import threading

    from tests.fakes.telegram_server import FakeTelegram

    loop = asyncio.new_event_loop()
    fake = FakeTelegram()
    url = loop.run_until_complete(fake.start())
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    wrong_token = "987654321:WRONGTOKENabcdefghijklmnopqrstuvwxyz1"  # audit: allow (test fixture)
    try:
        out = _run(tmp_path, "--ticks", "3", TRADERAGENT_PAPER_SPEED="5", TELEGRAM_BOT_TOKEN=wrong_token,
                   TELEGRAM_CHAT_IDS="555", TELEGRAM_API_BASE_URL=url, NO_PROXY="127.0.0.1,localhost")
    finally:
        asyncio.run_coroutine_threadsafe(fake.stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "Telegram frontend not started" in out.stderr + out.stdout
    assert "ORDER_PLACED" in out.stdout
    assert wrong_token not in out.stdout + out.stderr
    assert [c.method for c in fake.calls] == ["getMe"] and fake.calls[0].status == 401


def test_console_trade_line_omits_levels_a_ladder_position_lacks():
    grid = TradeOpened(4, "p", "XRPUSDT", "long", Decimal("10"), Decimal("1.2"), None, None, "USDT")
    assert format_event(TradingEvent.of("xrp-grid", grid)).endswith(
        "[xrp-grid] TRADE_OPENED long 10 XRPUSDT @ 1.2 = 12.00 USDT (trade #4)")
    trend = TradeOpened(5, "p", "BTCUSDT", "long", Decimal("0.01"), Decimal("50000"), Decimal("49000"),
                        Decimal("53000"), "USDT")
    assert format_event(TradingEvent.of("btc", trend)).endswith("@ 50000 = 500.00 USDT · stop 49000 · target 53000 (trade #5)")


def test_help_describes_the_tool_and_every_option():
    import argparse

    from traderagent.cli import build_parser

    def missing(parser: argparse.ArgumentParser, path: str) -> list[str]:
        out = []
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            if not action.help:
                out.append(f"{path} {action.dest}")
            if isinstance(action, argparse._SubParsersAction):
                helps = {c.dest: c.help for c in action._choices_actions}
                out += [f"{path} {name}" for name in action.choices if not helps.get(name)]
                out += [m for name, child in action.choices.items() for m in missing(child, f"{path} {name}")]
        return out

    parser = build_parser()
    top = parser.format_help()
    assert "argument parsing only" not in top and "trading bots" in top and "traderagent run" in top
    assert missing(parser, "traderagent") == []
