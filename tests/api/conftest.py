from __future__ import annotations

import pytest

from tests.api.canned import CannedServer
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
