"""Desk-wide risk rails from the validated settings / bots file.

* ``risk_per_trade``: handed to every strategy that sizes by risk (its ``risk_per_trade`` param).
* ``max_exposure``: open positions plus resting entry orders of ALL bots (notional, quote) may not
  exceed ``max_exposure`` x the capital deployed in the current phase; an entry that would cross
  it is not sent.
* ``max_daily_loss``: a bot whose loss today (realised + unrealised, UTC day) reaches
  ``max_daily_loss`` x its capital is paused with a RISK_LIMIT event; when the desk as a whole
  loses ``max_daily_loss`` x the deployed capital every bot pauses. At the UTC date change the
  counters reset and bots paused by this rail (not by an operator) resume.

In a fleet of workers (fleet/workers.py) "the desk" is every worker: `FleetRails` below. The per-bot
daily-loss rail stays each worker's own.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from traderagent.numbers import to_decimal
from traderagent.orchestrator.events import RiskLimitHit
from traderagent.ports import FleetStorePort
from traderagent.results import BotMark
from traderagent.strategies.params import RISK_DEFAULTS

ZERO = Decimal(0)


@dataclass(frozen=True)
class RiskRails:
    risk_per_trade: Decimal = RISK_DEFAULTS["risk_per_trade"]
    max_exposure: Decimal = RISK_DEFAULTS["max_exposure"]
    max_daily_loss: Decimal = RISK_DEFAULTS["max_daily_loss"]
    liquidation_alert: Decimal = RISK_DEFAULTS["liquidation_alert"]

    @classmethod
    def from_settings(cls, settings: Any, overrides: dict[str, Any] | None = None) -> RiskRails:
        values = {
            "risk_per_trade": settings.risk_per_trade,
            "max_exposure": settings.max_exposure,
            "max_daily_loss": settings.max_daily_loss,
            "liquidation_alert": settings.liquidation_alert,
        }
        for key, value in (overrides or {}).items():
            if key in values and value is not None:
                values[key] = to_decimal(value, field=key)
        return cls(**values)


@dataclass
class DeskRisk:
    """Shared by every orchestrator of a desk (one event loop: no locks needed)."""

    rails: RiskRails = field(default_factory=RiskRails)
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC), repr=False)
    day: date | None = None
    exposure: dict[str, Decimal] = field(default_factory=dict)  # bot -> notional committed
    realized_today: dict[str, Decimal] = field(default_factory=dict)
    unrealized: dict[str, Decimal] = field(default_factory=dict)
    paused_by_risk: set[str] = field(default_factory=set)
    exposure_share: Decimal = Decimal(1)  # this desk's part of the exposure limit (a fleet's worker: FleetRails)

    def roll_day(self) -> bool:
        """Reset the daily counters at the UTC date change; True when a new day started."""
        today = self.clock().astimezone(UTC).date()
        if self.day == today:
            return False
        new_day = self.day is not None
        self.day = today
        self.realized_today.clear()
        return new_day

    # --- exposure ---------------------------------------------------------------------------
    def set_exposure(self, bot: str, notional: Decimal) -> None:
        self.exposure[bot] = notional

    def total_exposure(self) -> Decimal:
        return sum(self.exposure.values(), ZERO)

    def exposure_limit(self, deployed_capital: Decimal) -> Decimal:
        return self.rails.max_exposure * deployed_capital * self.exposure_share

    def entry_allowed(self, bot: str, notional: Decimal, deployed_capital: Decimal) -> bool:
        return self.total_exposure() + notional <= self.exposure_limit(deployed_capital)

    # --- daily loss -------------------------------------------------------------------------
    def add_realized(self, bot: str, pnl: Decimal) -> None:
        self.roll_day()
        self.realized_today[bot] = self.realized_today.get(bot, ZERO) + pnl

    def set_unrealized(self, bot: str, pnl: Decimal) -> None:
        self.unrealized[bot] = pnl

    def bot_day_pnl(self, bot: str) -> Decimal:
        return self.realized_today.get(bot, ZERO) + self.unrealized.get(bot, ZERO)

    def desk_day_pnl(self) -> Decimal:
        return sum(self.realized_today.values(), ZERO) + sum(self.unrealized.values(), ZERO)

    def bot_loss_hit(self, bot: str, bot_capital: Decimal) -> bool:
        return bot_capital > 0 and -self.bot_day_pnl(bot) >= self.rails.max_daily_loss * bot_capital

    def desk_loss_hit(self, deployed_capital: Decimal) -> bool:
        return deployed_capital > 0 and -self.desk_day_pnl() >= self.rails.max_daily_loss * deployed_capital

    def to_state(self) -> dict[str, Any]:
        return {
            "day": self.day.isoformat() if self.day else None,
            "realized_today": {k: str(v) for k, v in self.realized_today.items()},
            "paused_by_risk": sorted(self.paused_by_risk),
        }

    def load_state(self, state: dict[str, Any] | None) -> None:
        if not state:
            return
        self.day = date.fromisoformat(state["day"]) if state.get("day") else None
        self.realized_today = {k: Decimal(v) for k, v in (state.get("realized_today") or {}).items()}
        self.paused_by_risk = set(state.get("paused_by_risk") or [])
        self.roll_day()


DESK_LOSS = "max_daily_loss"  # the desk_rails row of the fleet's daily-loss rail
MARK_REFRESH = timedelta(seconds=60)  # a mark is written again this old, its figures unchanged: a quiet bot's
# price stays fresh on the console (it shows a mark's age past 2 minutes: handlers/views.py STALE_MARK)


def _due(written: BotMark | None, mark: BotMark) -> bool:
    """Is ``mark`` to be written over ``written``? Its risk figures changed, or ``written`` is getting old. A
    price move alone writes nothing (with a position open it moves the unrealised PnL, which does)."""
    if written is None or mark.priced_at - written.priced_at >= MARK_REFRESH:
        return True
    return replace(mark, last_price=written.last_price, priced_at=written.priced_at) != written


class FleetRails:
    """The desk rails of a fleet of workers.

    * Marks: each worker writes its bots' marks (results.BotMark: price, position, unrealised PnL,
      exposure; table ``bot_marks``) at every risk check, only those that changed (``publish``). They are
      the one stored figure of a bot's open PnL: the leader's rail below and the console read them.
    * Daily loss: the leader adds the unrealised PnL of every bot still in the bots file (the marks of the
      others are deleted: a removed bot's last figure must not count) to the PnL every bot realised today
      (the trades table). When the fleet's loss reaches ``max_daily_loss`` x the deployed capital while a bot
      runs, the leader trips the rail: one conditional write of the ``desk_rails`` row (of two leaders in
      a hand-over, one), so ONE RISK_LIMIT alert, and a NOTIFY (``tell``) that wakes every worker. Every
      worker pauses its running bots while the rail is tripped today (woken, and at each risk check: a
      worker that starts or takes a bot over later pauses it too). Once the loss is under the limit the
      row is cleared (an operator may start bots again); bots it paused resume at the UTC date change,
      each at its first tick of the new day, as on a single desk.
    * Exposure: each worker keeps its share of the limit, its bots' capital shares over every bot's
      (``DeskRisk.exposure_share``). An entry is decided inside a tick and must not wait for the
      database, and a fleet total read from it is a risk check old: two workers could both spend the
      same headroom. The shares add up to the fleet's limit, so the fleet never exceeds it; the price is
      that a worker cannot borrow the headroom another leaves unused.
    """

    def __init__(self, store: FleetStorePort, risk: DeskRisk, tell: Callable[[], Awaitable[None]]) -> None:
        self.store = store
        self.risk = risk
        self.tell = tell  # wakes the other workers (fleet/bus.py)
        self._written: dict[str, BotMark] = {}

    async def publish(self, marks: Mapping[str, BotMark]) -> None:
        """Write the marks of this worker's bots that changed, or whose written one is MARK_REFRESH old."""
        written = {name: self._written[name] for name in marks.keys() & self._written.keys()}  # a bot that left
        due = {name: mark for name, mark in marks.items() if _due(written.get(name), mark)}  # and came back: anew
        if due:
            await self.store.save_marks(due)
            written.update(due)
        self._written = written

    async def unrealized(self, configured: Collection[str]) -> Decimal:
        """The fleet's unrealised PnL, as the workers last wrote it, of the bots in the bots file
        (``configured``): the marks of the others are deleted first, for the console's reads too."""
        await self.store.prune_marks(configured)
        return await self.store.fleet_unrealized()

    async def check_loss(self, deployed: Decimal, unrealized: Decimal) -> RiskLimitHit | None:
        """The leader's check: the RISK_LIMIT payload when it tripped the rail now (to publish, once)."""
        self.risk.roll_day()
        day = self.risk.day
        assert day is not None
        midnight = datetime.combine(day, time(), UTC)
        loss = -(await self.store.realized_pnl(since=midnight) + unrealized)
        limit = self.risk.rails.max_daily_loss * deployed
        if deployed <= 0 or loss < limit:
            if await self.store.rail_day(DESK_LOSS) is not None:
                await self.store.clear_rail(DESK_LOSS)
            return None
        if not await self.store.running_bots() or not await self.store.trip_rail(DESK_LOSS, day):
            return None
        await self.tell()
        return RiskLimitHit("max_daily_loss (desk)", loss, limit)

    async def tripped(self) -> bool:
        """Is the desk's daily-loss rail tripped today (every worker pauses its running bots)?"""
        self.risk.roll_day()
        return await self.store.rail_day(DESK_LOSS) == self.risk.day
