from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.sim.helpers import SignedClient


@pytest.fixture
async def client(sim_url: str) -> AsyncIterator[SignedClient]:
    """The simulator's default test account over our own signed HTTP client (independent of traderagent.api)."""
    async with SignedClient(sim_url) as c:
        yield c
