"""No lost coin: a ladder bot's book equals its exchange position after every desk step, whatever the order
of fills, partial fills, cancel races and restarts (a hypothesis state machine against the simulator)."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from decimal import Decimal
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, precondition, rule

from traderagent.orchestrator.events import EventType
from traderagent.sim import ExchangeSimulator, SimConfig
from traderagent.sim.config import DEFAULT_RATE_LIMITS

from .helpers import DCA, GRID, SIM_KEY, SIM_SECRET, Harness, build_desk


class LadderBook(RuleBasedStateMachine):
    """The market and a counterparty act in any order; the desk ticks and restarts. Cancel races are armed
    here and happen inside the desk's next cancel."""

    SPEC = DCA

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.db_path = Path(tempfile.mkdtemp()) / "book.db"
        unlimited = {path: 10**6 for path in DEFAULT_RATE_LIMITS}  # no wall-clock rate windows
        self.sim = ExchangeSimulator(SimConfig(seed=1, speed=0.0, history_candles=3000, rate_limits=unlimited))
        self.sim.add_account(SIM_KEY, SIM_SECRET, balances={"USDT": Decimal("100000")})
        self.spec = self.sim.specs[self.SPEC.symbol]
        self.h: Harness | None = None
        self.race: Decimal | None = None  # armed: the next cancel loses to a fill of this fraction

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    @initialize()
    def start(self) -> None:
        self.run(self.sim.start(host="127.0.0.1", port=0))
        self.run(self.open_desk())
        self.tick()

    async def open_desk(self) -> None:
        self.h = await build_desk(self.sim.base_url, self.db_path, [self.SPEC])
        cancel, cancel_batch = self.h.client.cancel_order, self.h.client.cancel_orders_batch

        async def cancel_after_a_fill(order_id: Any, symbol: str, **kw: Any) -> Any:
            self.race_fill(kw["client_order_id"])
            return await cancel(order_id, symbol, **kw)

        async def batch_after_a_fill(symbol: str, keys: Any) -> Any:
            self.race_fill(keys[0].client_order_id)  # the first of a batch cancel loses its race
            return await cancel_batch(symbol, keys)

        self.h.client.cancel_order = cancel_after_a_fill  # type: ignore[method-assign]
        self.h.client.cancel_orders_batch = batch_after_a_fill  # type: ignore[method-assign]

    def race_fill(self, link: str) -> None:
        """The order fills (in part) between the bot's decision to cancel it and the cancel's arrival."""
        order = next((o for o in self.sim.orders(SIM_KEY) if o["orderLinkId"] == link), None)
        if self.race is not None and order is not None:
            self.sim.fill(SIM_KEY, link, self.part(order, self.race))
            self.race = None

    def part(self, order: dict, fraction: Decimal) -> Decimal:
        step = self.spec.qty_step
        leaves = Decimal(order["leavesQty"])
        return max(step, (leaves * fraction).quantize(step)) if fraction < 1 else leaves

    def teardown(self) -> None:
        try:
            if self.h is not None:
                self.run(self.h.close())
            self.run(self.sim.stop())
            pending = asyncio.all_tasks(self.loop)
            for task in pending:
                task.cancel()
            if pending:
                self.run(asyncio.wait(pending))
        finally:
            self.loop.close()
            shutil.rmtree(self.db_path.parent, ignore_errors=True)

    # ------------------------------------------------------------ what the world does
    @rule(move=st.integers(-12, 12))
    def market_moves(self, move: int) -> None:
        """The price moves by move/1000 (ladder steps are 0.3 to 0.5 %): resting orders it touches fill."""
        price = self.sim.price(self.spec.symbol)
        self.sim.set_price(self.spec.symbol, (price * (1 + Decimal(move) / 1000)).quantize(self.spec.tick_size))

    @precondition(lambda self: self.resting())
    @rule(pick=st.integers(0, 10), fraction=st.sampled_from([Decimal("0.3"), Decimal("0.5"), Decimal(1)]))
    def counterparty_fills(self, pick: int, fraction: Decimal) -> None:
        """A resting order fills, in whole or in part, without the price reaching anything else."""
        orders = self.resting()
        order = orders[pick % len(orders)]
        self.sim.fill(SIM_KEY, order["orderLinkId"], self.part(order, fraction))

    @rule(fraction=st.sampled_from([Decimal("0.5"), Decimal(1)]))
    def arm_cancel_race(self, fraction: Decimal) -> None:
        self.race = fraction

    def resting(self) -> list[dict]:
        limits = [o for o in self.sim.orders(SIM_KEY, symbol=self.spec.symbol) if o["orderType"] == "Limit"]
        return sorted(limits, key=lambda o: (o["side"], Decimal(o["price"])))  # not by time: replays pick alike

    # ------------------------------------------------------------ what the desk does
    @rule()
    def tick(self) -> None:
        assert self.h is not None
        self.run(self.h.desk.tick_all())
        self.check_book()

    @rule()
    def restart(self) -> None:
        assert self.h is not None
        self.run(self.h.close())
        self.run(self.open_desk())
        self.check_book()

    def check_book(self) -> None:
        """After the desk has seen every fill: orders it placed in this step may have filled at once (a
        counter order at the price), and their follow-ups too, so it looks again until nothing is new."""
        assert self.h is not None
        bot = self.h.desk.bots[self.SPEC.name].bot
        for _ in range(5):
            before = [(o.client_order_id, o.status, o.filled) for o in bot.open_orders]
            self.run(bot._sync_orders())
            if [(o.client_order_id, o.status, o.filled) for o in bot.open_orders] == before:
                break
        book = sum((p.size if p.is_long else -p.size for p in bot.strategy.get_active_positions()), Decimal(0))
        held = sum((Decimal(p["size"]) * (1 if p["side"] == "Buy" else -1)
                    for p in self.sim.positions(SIM_KEY) if p["symbol"] == self.spec.symbol), Decimal(0))
        refused = [e.data for e in self.h.of(EventType.ERROR)]
        assert book == held, f"book {book} != exchange {held}; errors {refused}"
        assert not refused
        # a closed trade row carries what was closed: a DCA cycle's total quantity at its average entry
        # (the book keeps its latest closed records; older ones were looked at by the steps that closed them)
        rows = {r.tag: r for r in self.run(self.h.db.list_trades(self.SPEC.name, limit=10_000, closed_only=True))}
        for pos in bot.strategy.closed_positions:
            row = rows[pos.position_id]
            assert (row.qty, row.entry_price) == (pos.size, pos.entry_price), row.tag


class GridBook(LadderBook):
    SPEC = GRID


# no shrinking: fill timing over real sockets is not replayed bit for bit, so a failure is reported as found
FAST = settings(max_examples=10, stateful_step_count=20, deadline=None, derandomize=True,
                phases=(Phase.explicit, Phase.generate), suppress_health_check=[HealthCheck.too_slow])
LadderBook.TestCase.settings = GridBook.TestCase.settings = FAST
TestDCABook = LadderBook.TestCase
TestGridBook = GridBook.TestCase
