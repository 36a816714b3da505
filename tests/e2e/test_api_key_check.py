"""The start-up check of what the ByBit key may do (GET /v5/user/query-api), over HTTP against the simulator.

Live mode refuses a key that can withdraw or move funds, a read-only key, and a key bound to no IP
address (unless TRADERAGENT_ALLOW_UNBOUND_KEY=true); demo mode reports the same findings as warnings.
"""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from tests import forkserver
from traderagent.api.bybit_direct_client import ByBitDirectClient
from traderagent.api.exceptions import AuthenticationError
from traderagent.app import StartupError, _check_api_key, run_desk
from traderagent.config import Settings
from traderagent.sim import ApiKeySettings, ExchangeSimulator, SimConfig

KEY, SECRET = "desk-key", "desk-secret"
TRADE = {"ContractTrade": ["Order", "Position"], "Spot": ["SpotTrade"]}
BOUND = ("127.0.0.1",)
BOTS = """
[[bots]]
name = "xrp-grid"
strategy = "grid"
symbol = "XRPUSDT"
timeframe = "1m"
share = "1"
tick_seconds = 1
[bots.params]
num_levels = 5
range_pct = "0.02"
"""


@pytest.fixture
async def exchange():
    sim = ExchangeSimulator(SimConfig(seed=3, speed=0.0))
    sim.add_account(KEY, SECRET, {"USDT": Decimal("10000")})
    await sim.start()
    yield sim
    await sim.stop()


@pytest.fixture
async def client(exchange):
    c = ByBitDirectClient(KEY, SECRET, base_url=exchange.base_url, backoff_base=0.01, backoff_max=0.02)
    await c.initialize()
    yield c
    await c.close()


def _settings(mode: str, url: str = "", **extra: str) -> Settings:
    env = {"TRADERAGENT_MODE": mode, "TRADERAGENT_ALLOW_LIVE": "true", "BYBIT_API_KEY": KEY,
           "BYBIT_API_SECRET": SECRET, "BYBIT_BASE_URL": url, **extra}
    return Settings.load(env=env, env_file=None)


def _key(sim: ExchangeSimulator, **settings) -> None:
    sim.key_settings[KEY] = ApiKeySettings(**settings)


# -- the client and the simulator -----------------------------------------------------------------------
async def test_client_reads_the_default_key_as_bound_to_no_ip(client) -> None:
    info = await client.fetch_api_key_info()
    assert info["read_only"] is False
    assert info["ips"] == ("*",)
    assert info["permissions"]["ContractTrade"] == ("Order", "Position")
    assert info["permissions"]["Wallet"] == ()


async def test_client_reads_the_configured_key(exchange, client) -> None:
    _key(exchange, read_only=True, ips=BOUND, permissions={"Wallet": ["AccountTransfer", "Withdraw"]})
    info = await client.fetch_api_key_info()
    assert info["read_only"] is True and info["ips"] == BOUND
    assert info["permissions"]["Wallet"] == ("AccountTransfer", "Withdraw")
    assert info["permissions"]["ContractTrade"] == ()


async def test_simulator_enforces_read_only_and_ip_binding(exchange, client) -> None:
    _key(exchange, read_only=True, ips=BOUND, permissions=TRADE)
    await client.fetch_balance()  # reading is allowed from the bound address
    with pytest.raises(AuthenticationError) as exc:
        await client.create_market_order("XRPUSDT", "buy", Decimal("10"))
    assert exc.value.ret_code == 10005
    _key(exchange, ips=("10.9.8.7",), permissions=TRADE)
    with pytest.raises(AuthenticationError) as exc:
        await client.fetch_balance()
    assert exc.value.ret_code == 10010


# -- live mode refuses, demo mode warns -------------------------------------------------------------------
@pytest.mark.parametrize(("key", "says"), [
    ({"ips": BOUND, "permissions": {**TRADE, "Wallet": ["Withdraw"]}}, "untick Wallet > Withdrawal"),
    ({"ips": BOUND, "permissions": {**TRADE, "Wallet": ["AccountTransfer"]}}, "untick Wallet > Account Transfer"),
    ({"ips": ("*",), "permissions": TRADE}, "Only IPs with permissions granted"),
    ({"ips": BOUND, "permissions": TRADE, "read_only": True}, "set it to Read-Write"),
], ids=["withdraw", "transfer", "unbound", "read-only"])
async def test_live_refuses_a_dangerous_or_useless_key_naming_the_setting(exchange, client, key, says, caplog) -> None:
    _key(exchange, **key)
    with pytest.raises(StartupError) as exc:
        await _check_api_key(_settings("live", exchange.base_url), client)
    assert str(exc.value).startswith("live trading refused: ") and says in str(exc.value)
    assert SECRET not in str(exc.value)
    caplog.set_level(logging.WARNING, logger="traderagent.app")
    await _check_api_key(_settings("demo", exchange.base_url), client)  # demo: the same finding, as a warning
    assert any(says in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)


async def test_live_accepts_a_bound_trading_key_silently(exchange, client, caplog) -> None:
    _key(exchange, ips=BOUND, permissions=TRADE)
    caplog.set_level(logging.WARNING, logger="traderagent.app")
    await _check_api_key(_settings("live", exchange.base_url), client)
    assert caplog.records == []


async def test_allow_unbound_key_accepts_the_missing_binding_loudly(exchange, client, caplog) -> None:
    _key(exchange, permissions=TRADE)
    settings = _settings("live", exchange.base_url, TRADERAGENT_ALLOW_UNBOUND_KEY="true")
    caplog.set_level(logging.WARNING, logger="traderagent.app")
    await _check_api_key(settings, client)
    assert any("TRADERAGENT_ALLOW_UNBOUND_KEY=true" in r.getMessage() for r in caplog.records)


async def test_allow_unbound_key_never_accepts_withdrawal(exchange, client) -> None:
    _key(exchange, permissions={**TRADE, "Wallet": ["Withdraw"]})
    settings = _settings("live", exchange.base_url, TRADERAGENT_ALLOW_UNBOUND_KEY="true")
    with pytest.raises(StartupError, match="Withdrawal"):
        await _check_api_key(settings, client)


async def test_a_key_that_cannot_be_checked_refuses_live_and_warns_in_demo(exchange, caplog) -> None:
    stranger = ByBitDirectClient("unknown-key", SECRET, base_url=exchange.base_url, backoff_base=0.01,
                                 backoff_max=0.02)
    await stranger.initialize()
    try:
        with pytest.raises(StartupError, match="could not be checked"):
            await _check_api_key(_settings("live", exchange.base_url), stranger)
        caplog.set_level(logging.WARNING, logger="traderagent.app")
        await _check_api_key(_settings("demo", exchange.base_url), stranger)
        assert any("API key check skipped" in r.getMessage() for r in caplog.records)
    finally:
        await stranger.close()


# -- the whole start ------------------------------------------------------------------------------------------
@pytest.fixture
def desk_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A clean installation (the audit of the working directory passes) with a one-bot file."""
    (tmp_path / ".gitignore").write_text(".env\n.env.*\n__pycache__/\n*.pyc\n*.db\n*.log\n")
    (tmp_path / "bots.toml").write_text(BOTS)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _live(url: str, root: Path, **extra: str) -> Settings:
    return _settings("live", url, DATABASE_URL=f"sqlite+aiosqlite:///{root / 'desk.db'}",
                     TRADERAGENT_BOTS_FILE=str(root / "bots.toml"), **extra)


async def test_live_start_refused_for_a_key_that_can_withdraw(exchange, desk_dir, capsys) -> None:
    _key(exchange, ips=BOUND, permissions={**TRADE, "Wallet": ["Withdraw"]})
    assert await run_desk(_live(exchange.base_url, desk_dir), ticks=1) == 2
    err = capsys.readouterr().err
    assert "live trading refused: the API key may withdraw funds" in err
    assert exchange.orders(KEY) == []  # refused before any bot traded


async def test_live_start_runs_with_a_bound_trading_key(exchange, desk_dir) -> None:
    _key(exchange, ips=BOUND, permissions=TRADE)
    assert await run_desk(_live(exchange.base_url, desk_dir), ticks=1) == 0
    assert exchange.request_counts["/v5/user/query-api"] == 1


async def test_sim_command_configures_its_key(tmp_path: Path) -> None:
    proc = forkserver.popen(
        [sys.executable, "-m", "traderagent", "sim", "--port", "0", "--api-key", KEY,
         "--api-secret", SECRET, "--key-ips", "127.0.0.1", "--key-wallet", "Withdraw,AccountTransfer"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd=tmp_path, text=True)
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 60)
        assert "listening on" in line, line
        async with ByBitDirectClient(KEY, SECRET, base_url=line.split()[-1]) as c:
            info = await c.fetch_api_key_info()
        assert info["ips"] == BOUND and info["permissions"]["Wallet"] == ("Withdraw", "AccountTransfer")
    finally:
        proc.terminate()
        await asyncio.to_thread(proc.wait, 60)
        proc.stdout.close()
