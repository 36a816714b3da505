"""A fleet worker writes its bots' marks (orchestrator/risk.py `FleetRails`, table ``bot_marks``) at its risk
check: only those whose risk figures changed, or whose written mark is MARK_REFRESH old; the leader counts
the marks of the bots in the bots file only, deleting the others'."""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from traderagent.orchestrator.risk import MARK_REFRESH, DeskRisk, FleetRails
from traderagent.results import BotMark

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


class Store:
    """The marks table in memory, and every write made to it."""

    def __init__(self) -> None:
        self.marks: dict[str, BotMark] = {}
        self.writes: list[set[str]] = []

    async def save_marks(self, marks: Mapping[str, BotMark]) -> None:
        self.writes.append(set(marks))
        self.marks.update(marks)

    async def prune_marks(self, keep: Collection[str]) -> int:
        gone = [name for name in self.marks if name not in keep]
        for name in gone:
            del self.marks[name]
        return len(gone)

    async def fleet_unrealized(self) -> Decimal:
        return sum((m.unrealized_pnl for m in self.marks.values()), Decimal(0))


async def _tell() -> None:
    pass


def _mark(price: str = "100", unrealized: str = "0", exposure: str = "50", seconds: float = 0) -> BotMark:
    return BotMark(Decimal(price), Decimal("0.5"), Decimal("90"), Decimal(unrealized), Decimal(exposure),
                   T0 + timedelta(seconds=seconds))


async def test_only_the_marks_that_changed_or_aged_are_written():
    store = Store()
    rails = FleetRails(store, DeskRisk(), _tell)  # type: ignore[arg-type]
    await rails.publish({"a": _mark(), "b": _mark()})
    await rails.publish({"a": _mark(seconds=5), "b": _mark(price="101", seconds=5)})  # a price alone: no write
    await rails.publish({"a": _mark(unrealized="-3", seconds=10), "b": _mark(seconds=10)})
    await rails.publish({"a": _mark(unrealized="-3", seconds=15), "b": _mark(exposure="60", seconds=15)})
    await rails.publish({"a": _mark(unrealized="-3", seconds=70), "b": _mark(exposure="60", seconds=20)})
    assert store.writes == [{"a", "b"}, {"a"}, {"b"}, {"a"}]  # a's last: its written mark was MARK_REFRESH old
    assert MARK_REFRESH == timedelta(seconds=60)
    assert store.marks["a"] == _mark(unrealized="-3", seconds=70)


async def test_a_bot_that_left_and_came_back_is_written_again():
    store = Store()
    rails = FleetRails(store, DeskRisk(), _tell)  # type: ignore[arg-type]
    await rails.publish({"a": _mark(), "b": _mark()})
    await rails.publish({"a": _mark()})  # b runs on another worker now, which writes it
    store.marks["b"] = dataclasses.replace(_mark(), unrealized_pnl=Decimal("-7"))
    await rails.publish({"a": _mark(), "b": _mark()})  # b is back here: its mark is written, if unchanged too
    assert store.writes == [{"a", "b"}, {"b"}] and store.marks["b"] == _mark()


async def test_the_leader_counts_only_the_bots_of_the_bots_file():
    store = Store()
    rails = FleetRails(store, DeskRisk(), _tell)  # type: ignore[arg-type]
    await rails.publish({"a": _mark(unrealized="-5"), "removed": _mark(unrealized="-900")})
    assert await rails.unrealized({"a", "b"}) == Decimal("-5")  # "removed" left the bots file
    assert set(store.marks) == {"a"}  # deleted: the console does not count it either
