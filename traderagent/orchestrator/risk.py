"""Desk-wide risk rails from the validated settings / bots file.

* ``risk_per_trade``: handed to every strategy that sizes by risk (its ``risk_per_trade`` param).
* ``max_exposure``: open positions plus resting entry orders of ALL bots (notional, quote) may not
  exceed ``max_exposure`` x the capital deployed in the current phase; an entry that would cross
  it is not sent.
* ``max_daily_loss``: a bot whose loss today (realised + unrealised, UTC day) reaches
  ``max_daily_loss`` x its capital is paused with a RISK_LIMIT event; when the desk as a whole
  loses ``max_daily_loss`` x the deployed capital every bot pauses. At the UTC date change the
  counters reset and bots paused by this rail (not by an operator) resume.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from traderagent.numbers import to_decimal
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
        return self.rails.max_exposure * deployed_capital

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
