"""The bot state machine: every legal and every illegal transition."""

from __future__ import annotations

import itertools
from decimal import Decimal

import pytest

from traderagent.database.manager import DatabaseManager
from traderagent.orchestrator.bot_orchestrator import BotOrchestrator
from traderagent.orchestrator.events import EventBus, EventType
from traderagent.orchestrator.state import (
    TRANSITIONS,
    BotState,
    IllegalTransition,
    check_transition,
    is_legal,
)
from traderagent.strategies import create_strategy

LEGAL = {
    (BotState.INITIALIZING, BotState.RUNNING), (BotState.INITIALIZING, BotState.PAUSED),
    (BotState.INITIALIZING, BotState.STOPPED), (BotState.INITIALIZING, BotState.ERROR),
    (BotState.RUNNING, BotState.PAUSED), (BotState.RUNNING, BotState.STOPPED), (BotState.RUNNING, BotState.ERROR),
    (BotState.PAUSED, BotState.RUNNING), (BotState.PAUSED, BotState.STOPPED), (BotState.PAUSED, BotState.ERROR),
    (BotState.STOPPED, BotState.RUNNING),
    (BotState.ERROR, BotState.RUNNING), (BotState.ERROR, BotState.STOPPED),
}
ALL_PAIRS = list(itertools.product(BotState, BotState))


def test_table_is_exactly_the_documented_one():
    assert {(a, b) for a, targets in TRANSITIONS.items() for b in targets} == LEGAL


@pytest.mark.parametrize(("current", "target"), ALL_PAIRS, ids=[f"{a.value}->{b.value}" for a, b in ALL_PAIRS])
def test_every_pair(current: BotState, target: BotState):
    if (current, target) in LEGAL:
        assert is_legal(current, target)
        check_transition(current, target)
    else:
        assert not is_legal(current, target)
        with pytest.raises(IllegalTransition, match=f"{current.value} to {target.value}"):
            check_transition(current, target, "b1")


@pytest.fixture
async def bot(tmp_path):
    db = DatabaseManager(f"sqlite+aiosqlite:///{tmp_path / 'state.db'}")
    await db.initialize()
    await db.create_bot("b1", "grid", "XRPUSDT", "linear", {}, Decimal("100"))
    strategy = create_strategy("grid", {"num_levels": 5}, qty_step="1", tick_size="0.0001", allocated_capital="100")
    bus = EventBus()
    seen = []

    async def rec(e):
        seen.append(e)

    bus.subscribe(rec, name="rec")
    await bus.start()
    orch = BotOrchestrator("b1", strategy, client=None, db_manager=db, event_bus=bus, symbol="XRPUSDT")
    orch.seen = seen
    yield orch
    await bus.stop()
    await db.close()


async def _force(bot: BotOrchestrator, state: BotState) -> None:
    """Reach `state` through legal steps only."""
    path = {
        BotState.INITIALIZING: [],
        BotState.RUNNING: [bot.start],
        BotState.PAUSED: [bot.start, bot.pause],
        BotState.STOPPED: [bot.start, bot.stop],
        BotState.ERROR: [bot.start, lambda: bot.fail("boom")],
    }[state]
    for step in path:
        await step()
    assert bot.state is state


OPS = {
    "start": (lambda b: b.start(), BotState.RUNNING),
    "pause": (lambda b: b.pause(), BotState.PAUSED),
    "resume": (lambda b: b.resume(), BotState.RUNNING),
    "stop": (lambda b: b.stop(), BotState.STOPPED),
}


@pytest.mark.parametrize("op", list(OPS))
@pytest.mark.parametrize("state", list(BotState), ids=[s.value for s in BotState])
async def test_orchestrator_operations(bot: BotOrchestrator, state: BotState, op: str):
    await _force(bot, state)
    call, target = OPS[op]
    idempotent = state is target and op != "resume"
    legal = is_legal(state, target) and not (op == "resume" and state is not BotState.PAUSED)
    if idempotent:
        await call(bot)
        assert bot.state is target
    elif legal:
        await call(bot)
        assert bot.state is target
        row = await bot.db.get_bot("b1")
        assert row.state == target.value  # persisted
        await bot.event_bus.drain(2)
        last = [e for e in bot.seen if e.event_type is EventType.STATUS_CHANGE][-1]
        assert last.data.old is state and last.data.new is target
    else:
        with pytest.raises(IllegalTransition):
            await call(bot)
        assert bot.state is state


async def test_error_emits_event_and_is_not_ticked(bot: BotOrchestrator):
    await bot.start()
    await bot.fail(RuntimeError("exchange said no"))
    assert bot.state is BotState.ERROR
    assert await bot.tick() is False  # needs an operator's start
    await bot.event_bus.drain(2)
    errors = [e for e in bot.seen if e.event_type is EventType.ERROR]
    assert errors and "exchange said no" in errors[-1].data.error
