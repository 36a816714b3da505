"""Exchange faults: 10% HTTP 5xx, 10% timeouts (the request executes, the answer comes too late)
and 10% rate-limit answers (10006). The run completes; every order ends in a state the exchange
confirms, and no intent got two orders."""

from __future__ import annotations

from collections import Counter

import pytest

from tests.orchestrator.helpers import DCA, GRID, SIM_KEY, TREND, assert_db_matches_sim, build_desk, run_ticks
from traderagent.orchestrator import orders
from traderagent.orchestrator.state import BotState

pytestmark = pytest.mark.slow(33)

async def test_run_under_faults_ends_consistent(sim, tmp_path, monkeypatch):
    h = await build_desk(sim.base_url, tmp_path / "faults.db", [GRID, DCA, TREND],
                         client_kwargs={"timeout": 0.4, "backoff_base": 0.01, "backoff_max": 0.05,
                                        "max_reset_wait": 0.1})
    try:
        sim.faults.error_rate = 0.1
        sim.faults.timeout_rate = 0.1
        sim.faults.timeout_seconds = 0.8
        sim.faults.ratelimit_rate = 0.1
        await run_ticks(h, sim, 40)
        sim.faults.error_rate = sim.faults.timeout_rate = sim.faults.ratelimit_rate = 0.0
        await run_ticks(h, sim, 1)
        # A send left uncertain by the last faults waits PENDING_GRACE_S (wall clock) before a miss
        # counts as FAILED; end that wait here instead of hoping the machine was slow enough.
        monkeypatch.setattr(orders, "PENDING_GRACE_S", 0.0)
        for _ in range(5):  # faults off: a few calm ticks settle every order (bounded, no sleeps)
            await h.desk.tick_all()
            await h.desk.event_bus.drain(5)
            try:
                await assert_db_matches_sim(h, sim)
                break
            except AssertionError:
                continue
        stats = h.client.get_statistics()
        assert stats["retries"] > 10, stats  # the faults really happened
        n = await assert_db_matches_sim(h, sim)
        assert n > 10
        rows = await h.db.list_orders(limit=10_000)
        assert not [r for r in rows if r.status == "PENDING"]
        assert all(b.bot.state is BotState.RUNNING for b in h.desk.bots.values())
        on_book = sim.orders(SIM_KEY)
        by_link = {r.client_order_id: r for r in rows}
        tags = Counter((by_link[o["orderLinkId"]].bot_name, by_link[o["orderLinkId"]].tag) for o in on_book)
        assert all(v == 1 for v in tags.values()), tags
    finally:
        await h.close()
