"""Fixtures shared by the whole suite."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real-candle CSVs in ../shared/data (see its README)."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real candle data not found at {SHARED_DATA}")
    return SHARED_DATA


# --- exchange simulator (written by the simulator helper) -------------------------------------------
SIM_KEY = "test-key"
SIM_SECRET = "test-secret"


@pytest.fixture
async def sim():
    """A started ByBit V5 simulator (speed 0: prices move only via set_price/step) with account
    ("test-key", "test-secret") holding 100000 USDT."""
    from decimal import Decimal

    from traderagent.sim import ExchangeSimulator, SimConfig

    simulator = ExchangeSimulator(SimConfig(seed=1, speed=0.0))
    simulator.add_account(SIM_KEY, SIM_SECRET, balances={"USDT": Decimal("100000")})
    await simulator.start(host="127.0.0.1", port=0)
    try:
        yield simulator
    finally:
        await simulator.stop()


@pytest.fixture
def sim_url(sim) -> str:
    """Base URL of the `sim` fixture's server, e.g. http://127.0.0.1:54321."""
    return sim.base_url


@pytest.fixture
async def fake(monkeypatch):
    """The fake Telegram Bot API server on 127.0.0.1 (tests/fakes/telegram_server.py)."""
    from tests.fakes.telegram_server import FakeTelegram

    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")  # httpx must never route loopback via a proxy
    server = FakeTelegram()
    await server.start()
    yield server
    await server.stop()
