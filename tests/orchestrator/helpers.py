"""Building desks against the in-process simulator (fixture `sim`) for the orchestrator tests."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from tests.conftest import SIM_KEY, SIM_SECRET
from traderagent.api.bybit_direct_client import ByBitDirectClient
from traderagent.bots import BotSpec
from traderagent.control import Desk
from traderagent.database.manager import DatabaseManager
from traderagent.orchestrator.capital_wiring import load_capital_manager
from traderagent.orchestrator.events import EventBus, TradingEvent
from traderagent.orchestrator.lease import Leases
from traderagent.orchestrator.market_data import MarketData
from traderagent.orchestrator.risk import RiskRails

# bots that trade quickly on the simulator's replay (1m steps)
GRID = BotSpec("xrp-grid", "grid", "XRPUSDT", timeframes=("1m",), share=Decimal("0.3"), tick_seconds=1,
               params={"num_levels": 9, "range_pct": "0.02"})
DCA = BotSpec("sol-dca", "dca", "SOLUSDT", timeframes=("1m",), share=Decimal("0.3"), tick_seconds=1,
              params={"base_order": "20", "safety_order": "20", "max_safety_orders": 3, "price_deviation": "0.003",
                      "step_scale": "1.2", "volume_scale": "1.2", "take_profit": "0.003"})
TREND = BotSpec("btc-trend", "trend_follower", "BTCUSDT", timeframes=("1m",), share=Decimal("0.4"), tick_seconds=1,
                params={"ema_fast": 3, "ema_slow": 8, "adx_period": 5, "adx_threshold": 5.0, "atr_period": 5,
                        "stop_atr_mult": 1.5, "trailing_atr_mult": 1.5, "take_profit_r": 1.5,
                        "risk_per_trade": "0.05"})


class Clock:
    """A settable UTC clock for the capital manager and the daily risk reset."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime(2026, 3, 2, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kw: float) -> None:
        self.now += timedelta(**kw)


@dataclass
class Harness:
    desk: Desk
    db: DatabaseManager
    client: ByBitDirectClient
    events: list[TradingEvent] = field(default_factory=list)

    async def close(self) -> None:
        await self.desk.stop()
        await self.client.close()
        await self.db.close()

    def of(self, event_type: Any, bot: str | None = None) -> list[TradingEvent]:
        return [e for e in self.events if e.event_type == event_type and (bot is None or e.bot_name == bot)]


async def build_desk(
    sim_url: str,
    db_path: Path,
    specs: list[BotSpec],
    *,
    rails: RiskRails | None = None,
    clock: Callable[[], datetime] | None = None,
    total_capital: Decimal = Decimal("20000"),
    start: bool = True,
    client_kwargs: dict[str, Any] | None = None,
    lease_owner: str | None = None,
    db: DatabaseManager | None = None,
) -> Harness:
    """A desk like `traderagent run` builds, with zero market-data TTL so every tick sees the
    market the test just stepped to. With ``lease_owner`` it holds leases (heartbeat 5 s, timeout
    20 s on ``clock``) and runs only the bots no other desk holds."""
    client = ByBitDirectClient(SIM_KEY, SIM_SECRET, base_url=sim_url, **(client_kwargs or {}))
    await client.initialize()
    db = db or DatabaseManager(f"sqlite+aiosqlite:///{db_path}")  # ``db``: another database (PostgreSQL)
    await db.initialize()
    capital, persister = await load_capital_manager(db, total_capital, clock=clock)
    leases = None
    if lease_owner is not None:
        leases = Leases(db, heartbeat=5, timeout=20, owner=lease_owner, clock=clock)
        await leases.acquire(spec.name for spec in specs)
    bus = EventBus()
    desk = Desk(db, {"linear": client}, event_bus=bus, capital_manager=capital, capital_persister=persister,
                rails=rails or RiskRails(Decimal("0.01"), Decimal("5"), Decimal("0.5")),
                market_data={"linear": MarketData(client, ttl=0)}, clock=clock, leases=leases)
    harness = Harness(desk, db, client)

    async def record(event: TradingEvent) -> None:
        harness.events.append(event)

    bus.subscribe(record, name="test-recorder")
    await desk.add_bots(specs)
    if start:
        await desk.start(schedule=False)
    return harness


async def build_spot_desk(sim_url: str, db_path: Path) -> Harness:
    """A spot desk without capital deployment (bots with their own ``capital``), not started."""
    client = ByBitDirectClient(SIM_KEY, SIM_SECRET, base_url=sim_url, market_type="spot")
    await client.initialize()
    db = DatabaseManager(f"sqlite+aiosqlite:///{db_path}")
    await db.initialize()
    desk = Desk(db, {"spot": client}, rails=RiskRails(Decimal("0.01"), Decimal("5"), Decimal("0.5")),
                market_data={"spot": MarketData(client, ttl=0)})
    harness = Harness(desk, db, client)

    async def record(event: TradingEvent) -> None:
        harness.events.append(event)

    desk.event_bus.subscribe(record, name="test-recorder")
    return harness


async def run_ticks(h: Harness, sim: Any, n: int, *, step: int = 1) -> None:
    for _ in range(n):
        await h.desk.tick_all()
        sim.step_all(step)
    await h.desk.event_bus.drain(5)


STATUS_FROM_SIM = {"New": "OPEN", "PartiallyFilled": "PARTIALLY_FILLED", "Filled": "FILLED",
                   "Cancelled": "CANCELLED", "PartiallyFilledCanceled": "CANCELLED", "Rejected": "REJECTED",
                   "Deactivated": "CANCELLED"}


def creates(sim: Any) -> int:
    """Create requests that reached the simulator, single or batch."""
    return sim.request_counts["/v5/order/create"] + sim.request_counts["/v5/order/create-batch"]


def sim_orders_by_link(sim: Any) -> dict[str, dict]:
    """The bots' own orders (the stops the exchange holds for positions have no orderLinkId)."""
    return {o["orderLinkId"]: o for o in sim.orders(SIM_KEY, open_only=False) if o["orderLinkId"]}


async def assert_db_matches_sim(h, sim) -> int:
    """Every DB order is the simulator's order with the same orderLinkId, status and quantities."""
    on_sim = sim_orders_by_link(sim)
    rows = await h.db.list_orders(limit=10_000)
    for row in rows:
        so = on_sim.get(row.client_order_id)
        if row.status in ("FAILED", "REJECTED"):
            assert so is None or so["orderStatus"] == "Rejected"
            continue
        assert so is not None, f"{row.client_order_id} ({row.tag}) is not on the simulator"
        assert row.status == STATUS_FROM_SIM[so["orderStatus"]], (row.tag, row.status, so["orderStatus"])
        assert row.qty == Decimal(so["qty"])
        assert row.filled_qty == Decimal(so["cumExecQty"])
        assert row.side == so["side"].lower()
        assert row.exchange_order_id == so["orderId"]
    mine = {r.client_order_id for r in rows}
    prefixes = tuple(h.bot.prefix for h in h.desk.bots.values())
    assert {link for link in on_sim if link.startswith(prefixes)} <= mine  # nothing unknown on the book
    return len(rows)
