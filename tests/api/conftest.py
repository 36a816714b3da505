from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from tests.api.canned import CannedServer
from tests.conftest import SIM_KEY, SIM_SECRET
from traderagent.api.bybit_direct_client import ByBitDirectClient

KEY = "canned-key-AAAA"
SECRET = "canned-secret-BBBB"


@pytest.fixture
async def canned():
    server = CannedServer()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def canned_client(canned):
    client = ByBitDirectClient(KEY, SECRET, base_url=canned.url, timeout=1.0, max_retries=2,
                               backoff_base=0.01, backoff_max=0.02)
    await client.initialize()
    yield client
    await client.close()



@asynccontextmanager
async def sim_client(sim_url: str, market_type: str) -> AsyncIterator[ByBitDirectClient]:
    """Our client over HTTP against the simulator (fixture ``sim``), initialised, closed after."""
    client = ByBitDirectClient(SIM_KEY, SIM_SECRET, base_url=sim_url, market_type=market_type,
                               backoff_base=0.01, backoff_max=0.05)
    await client.initialize()
    try:
        yield client
    finally:
        await client.close()


@pytest.fixture
async def linear(sim_url):
    async with sim_client(sim_url, "linear") as client:
        yield client


@pytest.fixture
async def spot(sim_url):
    async with sim_client(sim_url, "spot") as client:
        yield client
