"""Operator use-cases: what the CLI and Telegram may do to the desk. Frontend-agnostic.

`Desk` owns the running pieces (orchestrators, database, capital manager, event bus, exchange
clients, scheduler) and exposes the use-cases below. Every use-case is ``async`` and returns
plain data: dicts / lists of dicts whose money values are ``Decimal``, times ``datetime`` (UTC)
and states upper-case strings ("RUNNING"). A request the operator got wrong (unknown bot,
ambiguous prefix, a scaling step the gates block, ...) raises ``ControlError`` whose message is
meant to be shown to the operator as is; it never contains a secret.

Use-cases (names are the contract for handlers/):

    list_bots() -> list[dict]                     name, strategy, symbol, state, pnl, positions, orders
    bot_status(name=None) -> dict                 one bot (``name``, prefix accepted) or the desk summary
    start_bot(name, by) / pause_bot(name, by) / stop_bot(name, by) -> dict   the bot's status after the change
    resolve_bot(prefix) -> str                    full name for a unique prefix (exact name wins)
    balances() -> dict                            per market type: {"free"|"used"|"total": {coin: Decimal}}
    positions() -> list[dict]                     open positions of every bot (strategy view)
    open_orders(name=None) -> list[dict]          non-final orders from the database
    recent_trades(n=10) -> list[dict]             newest first
    daily_pnl(days=7) -> list[dict]               {"date": date, "pnl": Decimal}
    logs(n=20) -> list[dict]                      newest first
    equity_curve(name=None) -> list[dict]         {"time": datetime, "equity": Decimal} from closed trades
    capital_report() -> dict                      CapitalManager.get_report()
    evaluate_scaling() -> dict                    ScalingDecision.to_dict(); also publishes SCALING_DECISION
    approve_scaling(approved_by) -> dict          gates re-checked NOW; advance_phase(); approval recorded
    reject_scaling(by) -> dict                    the decision and who rejected it are recorded
    halt(reason, by) -> dict                      capital halt + every running bot paused
    resume_trading(by) -> dict                    lift the halt; bots paused by it run again
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from traderagent.bots import BotSpec
from traderagent.orchestrator.bot_orchestrator import BotOrchestrator
from traderagent.orchestrator.budget import AnalysisBudget
from traderagent.orchestrator.capital_wiring import CapitalPersister
from traderagent.orchestrator.events import (
    ErrorRaised,
    EventBus,
    EventType,
    Halted,
    Payload,
    PhaseChanged,
    Resumed,
    RiskLimitHit,
    ScalingDecisionMade,
    TradingEvent,
)
from traderagent.orchestrator.market_data import MarketData
from traderagent.orchestrator.risk import DeskRisk, RiskRails
from traderagent.orchestrator.scheduler import DeskScheduler
from traderagent.orchestrator.state import BotState, IllegalTransition
from traderagent.strategies.base import BaseStrategy
from traderagent.utils.capital_manager import (
    CapitalManager,
    CapitalManagerError,
    DeploymentPhase,
    ScalingBlockedError,
)

log = logging.getLogger(__name__)
ZERO = Decimal(0)
DESK = "desk"  # bot_name of desk-wide events
LOGGED_EVENTS = frozenset(EventType) - {EventType.ORDER_PLACED}


class ControlError(Exception):
    """A use-case refused; the message is for the operator."""


@dataclass
class BotHandle:
    spec: BotSpec
    bot: BotOrchestrator


class Desk:
    """The running desk; build it with ``Desk(...)`` then ``await add_bot(spec)`` and ``await start()``."""

    def __init__(
        self,
        db: Any,
        clients: dict[str, Any],
        *,
        event_bus: EventBus | None = None,
        capital_manager: CapitalManager | None = None,
        capital_persister: CapitalPersister | None = None,
        rails: RiskRails | None = None,
        scheduler: DeskScheduler | None = None,
        market_data: dict[str, MarketData] | None = None,
        clock: Callable[[], datetime] | None = None,
        auto_start_phase_1: bool = True,
        analysis_budget: AnalysisBudget | None = None,
    ) -> None:
        self.db = db
        self.clients = clients  # market_type -> exchange client
        self.event_bus = event_bus or EventBus()
        self.capital = capital_manager
        self.capital_persister = capital_persister
        self.clock = clock or (lambda: datetime.now(UTC))
        self.risk = DeskRisk(rails or RiskRails(), clock=self.clock)
        self.scheduler = scheduler
        self.market = market_data or {mt: MarketData(c) for mt, c in clients.items()}
        self.auto_start_phase_1 = auto_start_phase_1
        self.analysis_budget = analysis_budget or AnalysisBudget()
        self.bots: dict[str, BotHandle] = {}
        self.tick_counts: dict[str, int] = {}  # scheduled tick runs per bot (whatever the state)
        self.ticked = asyncio.Event()  # set after every scheduled tick
        self.refused: list[tuple[str, str]] = []
        self._started = False
        self.event_bus.subscribe(self._log_events, name="db-log", types=LOGGED_EVENTS, batch=True)

    async def _log_events(self, events: list[TradingEvent]) -> None:
        """The DB log writer: every event worth reading later becomes a bot_logs row (the events
        queued meanwhile are written together)."""
        await self.db.add_logs(
            (None if e.bot_name == DESK else e.bot_name, _log_level(e.event_type), e.event_type.value,
             e.data.to_dict()) for e in events)

    # ================================================================== assembly
    async def add_bot(self, spec: BotSpec, *, client: Any = None,
                      market_data: MarketData | None = None) -> BotOrchestrator | None:
        """Create the strategy and orchestrator for ``spec`` (refused with a reason on bad params).

        ``client`` / ``market_data``: a different account for this bot (default: the desk's client
        for the bot's market type)."""
        from traderagent.strategies import create_strategy, strategy_class

        if spec.name in self.bots:
            self._refuse(spec.name, "a bot with this name already runs")
            return None
        client = client or self.clients.get(spec.market_type)
        if client is None:
            self._refuse(spec.name, f"no {spec.market_type} exchange client configured")
            return None
        try:
            market = client.market(spec.symbol)
            cls = strategy_class(spec.strategy)
            params = self._strategy_params(spec, cls)
            capital = self._bot_capital(spec) or Decimal("1")
            strategy = create_strategy(spec.strategy, params, qty_step=market.qty_step, tick_size=market.tick_size,
                                       allocated_capital=capital, market_type=spec.market_type)
        except Exception as exc:  # unknown symbol, bad parameter, ...: refuse this bot only
            self._refuse(spec.name, str(exc))
            return None
        bot = BotOrchestrator(
            spec.name, strategy, client, self.db, event_bus=self.event_bus, symbol=spec.symbol,
            market_type=spec.market_type, capital_manager=self.capital, risk=self.risk,
            market_data=market_data or self.market[spec.market_type], tick_seconds=spec.tick_seconds, clock=self.clock,
            analysis_budget=self.analysis_budget,
        )
        self.bots[spec.name] = BotHandle(spec, bot)
        return bot

    def _refuse(self, name: str, reason: str) -> None:
        log.error("bot %s refused: %s", name, reason)
        self.refused.append((name, reason))
        self.event_bus.publish(TradingEvent.of(name, ErrorRaised(f"bot refused: {reason}")))

    def _strategy_params(self, spec: BotSpec, cls: type[BaseStrategy]) -> dict[str, Any]:
        from traderagent.strategies import with_bot_timeframes

        params = with_bot_timeframes(spec.strategy, spec.params, spec.timeframes)
        if any(p.name == "risk_per_trade" for p in cls.PARAMS):
            params.setdefault("risk_per_trade", self.risk.rails.risk_per_trade)
        return params

    def _share(self, spec: BotSpec) -> Decimal:
        if spec.share is not None:
            return spec.share
        total = self.capital.total_capital if self.capital is not None else None
        if spec.capital is not None and total:
            return min(Decimal(1), spec.capital / total)
        # the bots without a share or capital split what the others leave
        fixed = [self._fixed_share(h.spec) for h in self.bots.values() if h.spec is not spec]
        free = max(Decimal(0), Decimal(1) - sum((f for f in fixed if f is not None), ZERO))
        flexible = 1 + sum(1 for f in fixed if f is None)
        return free / flexible

    def _fixed_share(self, spec: BotSpec) -> Decimal | None:
        if spec.share is not None:
            return spec.share
        if spec.capital is not None and self.capital is not None:
            return min(Decimal(1), spec.capital / self.capital.total_capital)
        return None

    def _bot_capital(self, spec: BotSpec) -> Decimal:
        """Phase allocation x share (without a capital manager: the declared capital)."""
        if self.capital is None:
            return spec.capital or Decimal("1000")
        deployed = self.capital.allocated_capital
        if deployed <= 0:  # before phase 1 the strategy still needs a size to build with
            deployed = self.capital.total_capital * self.capital.phases[DeploymentPhase.PHASE_1].allocation
        return (deployed * self._share(spec)).quantize(Decimal("0.01"))

    def apply_allocations(self) -> None:
        for handle in self.bots.values():
            handle.bot.set_allocation(self._bot_capital(handle.spec))

    # ================================================================== lifecycle
    async def start(self, *, schedule: bool = True) -> dict[str, Any]:
        """Phase 1 on a fresh record, bots rows, recovery of every bot, then the tick jobs."""
        await self.event_bus.start()
        if self.capital is not None and self.capital.phase is DeploymentPhase.NOT_STARTED and self.auto_start_phase_1:
            self.capital.start_phase_1()
            self._publish(self._phase_changed(DeploymentPhase.NOT_STARTED, None))
        self.apply_allocations()
        await self._restore_daily_pnl()
        report: dict[str, Any] = {}
        for name, handle in list(self.bots.items()):
            try:
                row = await self.db.get_bot(name)
                if row is None:
                    await self.db.create_bot(name, handle.spec.strategy, handle.spec.symbol, handle.spec.market_type,
                                             handle.spec.to_config(), handle.bot.allocated_capital)
                    saved = None
                else:
                    await self.db.update_bot(name, config=handle.spec.to_config(),
                                             allocated_capital=handle.bot.allocated_capital)
                    saved = row.state
                report[name] = await handle.bot.recover(saved)
            except Exception as exc:
                log.exception("recovery of %s failed", name)
                await handle.bot.fail(exc)
                report[name] = {"error": str(exc)}
        if self.capital is not None and self.capital.halted:
            for handle in self.bots.values():
                if handle.bot.state is BotState.RUNNING:
                    await handle.bot.pause("halt", by="desk")
        if schedule and self.scheduler is not None:
            self._schedule()
            self.scheduler.start()
        self._started = True
        return report

    def _schedule(self) -> None:
        assert self.scheduler is not None
        handles = list(self.bots.values())
        for i, handle in enumerate(handles):
            interval = handle.bot.tick_seconds
            offset = interval * i / max(1, len(handles))  # spread the first ticks over one interval
            self.scheduler.add_job(f"tick:{handle.spec.name}", self._ticker(handle.bot), interval, offset=offset)
        self.scheduler.add_job("desk:risk", self.check_desk_risk, 5.0, offset=5.0)

    def _ticker(self, bot: BotOrchestrator) -> Callable[[], Any]:
        async def run() -> None:
            try:
                await bot.tick()
            finally:
                self.tick_counts[bot.name] = self.tick_counts.get(bot.name, 0) + 1
                self.ticked.set()

        return run

    async def stop(self) -> None:
        """Stop ticking and persist everything (orders stay on the exchange; states stay in the DB)."""
        if self.scheduler is not None and self.scheduler.scheduler.running:
            self.scheduler.scheduler.pause()  # no new ticks; the ones in flight finish below
        for handle in self.bots.values():
            await handle.bot.save()
        if self.scheduler is not None:
            self.scheduler.shutdown()
        if self.capital_persister is not None:
            await self.capital_persister.flush()
        await self.event_bus.stop(timeout=5.0)
        self._started = False

    async def tick_all(self) -> None:
        """One tick of every bot, concurrently (tests and ``--ticks``)."""
        await asyncio.gather(*(h.bot.tick() for h in self.bots.values()))
        await self.check_desk_risk()

    async def _restore_daily_pnl(self) -> None:
        now = self.clock()
        midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
        self.risk.roll_day()
        for name in self.bots:
            try:
                self.risk.realized_today[name] = await self.db.realized_pnl(name, since=midnight)
            except Exception:  # the bot may not exist in the DB yet
                self.risk.realized_today[name] = ZERO

    async def check_desk_risk(self) -> None:
        """Desk-wide rails and the capital manager's equity (run every few seconds)."""
        if self.capital is None or self.capital.metrics is None:
            return
        unrealized = sum((h.bot.unrealized_pnl() for h in self.bots.values()), ZERO)
        if abs(unrealized - self.capital.metrics.unrealized_pnl) >= Decimal("0.01"):
            self.capital.update_unrealized_pnl(unrealized)
        deployed = self.capital.allocated_capital
        if self.risk.desk_loss_hit(deployed):
            running = [h.bot for h in self.bots.values() if h.bot.state is BotState.RUNNING]
            if running:
                self._publish(RiskLimitHit("max_daily_loss (desk)", -self.risk.desk_day_pnl(),
                                           self.risk.rails.max_daily_loss * deployed))
                for bot in running:
                    self.risk.paused_by_risk.add(bot.name)
                    await bot.pause("risk", by="risk rail")

    def _publish(self, payload: Payload) -> None:
        self.event_bus.publish(TradingEvent.of(DESK, payload))

    def _phase_changed(self, previous: DeploymentPhase, approved_by: str | None) -> PhaseChanged:
        cm = self._cm()
        return PhaseChanged(cm.phase, previous, cm.phases[cm.phase].allocation, cm.allocated_capital, approved_by)

    # ================================================================== lookup
    def resolve_bot(self, prefix: str) -> str:
        """The bot whose name is ``prefix`` or uniquely starts with it (case-insensitive)."""
        text = (prefix or "").strip()
        if not text:
            raise ControlError("Which bot? Give its name (a unique prefix is enough).")
        if text in self.bots:
            return text
        lowered = text.lower()
        exact = [n for n in self.bots if n.lower() == lowered]
        if len(exact) == 1:
            return exact[0]
        matches = sorted(n for n in self.bots if n.lower().startswith(lowered))
        if not matches:
            known = ", ".join(sorted(self.bots)) or "none"
            raise ControlError(f"No bot named {text!r}. Bots: {known}.")
        if len(matches) > 1:
            raise ControlError(f"{text!r} matches several bots: {', '.join(matches)}. Type more of the name.")
        return matches[0]

    def _bot(self, name: str) -> BotOrchestrator:
        return self.bots[self.resolve_bot(name)].bot

    # ================================================================== bots
    async def list_bots(self) -> list[dict[str, Any]]:
        return [self._summary(h) for h in self.bots.values()]

    def _summary(self, handle: BotHandle) -> dict[str, Any]:
        bot = handle.bot
        return {
            "name": bot.name,
            "strategy": bot.strategy.strategy_type,
            "symbol": bot.symbol,
            "market_type": bot.market_type,
            "state": bot.state.value,
            "paused_by": bot.paused_by,
            "allocated_capital": bot.allocated_capital,
            "realized_pnl": bot._realized,
            "unrealized_pnl": bot.unrealized_pnl(),
            "open_positions": len(bot.strategy.get_active_positions()),
            "open_orders": len(bot.open_orders),
            "last_price": bot.last_price,
            "last_error": bot.last_error,
        }

    async def bot_status(self, name: str | None = None) -> dict[str, Any]:
        """One bot's details, or (``name`` None) the desk: mode counts, capital, every bot's summary."""
        if name is None:
            states: dict[str, int] = {}
            for h in self.bots.values():
                states[h.bot.state.value] = states.get(h.bot.state.value, 0) + 1
            return {
                "bots": await self.list_bots(),
                "states": states,
                "refused": [{"name": n, "reason": r} for n, r in self.refused],
                "halted": bool(self.capital and self.capital.halted),
                "halt_reason": self.capital.halt_reason if self.capital else None,
                "phase": self.capital.phase.value if self.capital else None,
                "allocated_capital": self.capital.allocated_capital if self.capital else None,
                "exposure": self.risk.total_exposure(),
                "exposure_limit": self.risk.exposure_limit(self.capital.allocated_capital) if self.capital else None,
                "day_pnl": self.risk.desk_day_pnl(),
            }
        handle = self.bots[self.resolve_bot(name)]
        out = self._summary(handle)
        bot = handle.bot
        out.update(
            ticks=bot.ticks,
            last_tick_at=bot.last_tick_at,
            tick_seconds=bot.tick_seconds,
            timeframes=list(bot.strategy.timeframes),
            params=dict(bot.strategy.params),
            positions=[_position(bot.name, p) for p in bot.strategy.get_active_positions()],
            performance=bot.strategy.get_performance().to_dict(),
            day_pnl=self.risk.bot_day_pnl(bot.name),
        )
        return out

    async def start_bot(self, name: str, by: str = "operator") -> dict[str, Any]:
        bot = self._bot(name)
        if self.capital is not None and self.capital.halted:
            raise ControlError(f"Trading is halted ({self.capital.halt_reason}); resume trading first.")
        self.risk.paused_by_risk.discard(bot.name)
        await bot.start("operator", by=by)
        return await self.bot_status(bot.name)

    async def pause_bot(self, name: str, by: str = "operator") -> dict[str, Any]:
        bot = self._bot(name)
        try:
            await bot.pause("operator", by=by)
        except IllegalTransition as exc:
            raise ControlError(f"{bot.name} is {bot.state.value}: it cannot be paused.") from exc
        return await self.bot_status(bot.name)

    async def stop_bot(self, name: str, by: str = "operator") -> dict[str, Any]:
        bot = self._bot(name)
        try:
            await bot.stop("operator", by=by)
        except IllegalTransition as exc:
            raise ControlError(f"{bot.name} is {bot.state.value}: it cannot be stopped.") from exc
        return await self.bot_status(bot.name)

    # ================================================================== account
    async def balances(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for market_type, client in self.clients.items():
            try:
                out[market_type] = await client.fetch_balance()
            except Exception as exc:
                raise ControlError(f"The exchange did not answer the balance request ({type(exc).__name__}).") from exc
            if len(set(map(id, self.clients.values()))) == 1:
                break  # one account for every market type
        return out

    async def positions(self) -> list[dict[str, Any]]:
        return [_position(h.bot.name, p, h.bot.last_price) for h in self.bots.values()
                for p in h.bot.strategy.get_active_positions()]

    async def open_orders(self, name: str | None = None) -> list[dict[str, Any]]:
        bot_name = self.resolve_bot(name) if name else None
        rows = await self.db.list_non_final_orders(bot_name)
        return [_order(r) for r in rows]

    async def recent_trades(self, n: int = 10) -> list[dict[str, Any]]:
        return [_trade(t) for t in await self.db.list_trades(None, limit=max(1, min(n, 200)))]

    async def daily_pnl(self, days: int = 7) -> list[dict[str, Any]]:
        return [{"date": d, "pnl": p} for d, p in await self.db.daily_pnl(days=max(1, min(days, 366)))]

    async def logs(self, n: int = 20) -> list[dict[str, Any]]:
        rows = await self.db.get_logs(None, limit=max(1, min(n, 500)))
        return [{"bot": r.bot_name, "level": r.level, "message": r.message, "context": r.context,
                 "time": r.created_at} for r in rows]

    async def equity_curve(self, name: str | None = None) -> list[dict[str, Any]]:
        """Equity after each closed trade, oldest first, starting at the deployed capital."""
        bot_name = self.resolve_bot(name) if name else None
        if bot_name:
            start = self.bots[bot_name].bot.allocated_capital
        else:
            start = self.capital.allocated_capital if self.capital else ZERO
        trades = await self.db.list_trades(bot_name, limit=10_000, closed_only=True)
        equity, out = start, []
        for t in sorted(trades, key=lambda t: (t.closed_at, t.id)):
            equity += t.pnl or ZERO
            out.append({"time": t.closed_at, "equity": equity, "pnl": t.pnl, "bot": t.bot_name})
        return out

    # ================================================================== capital
    def _cm(self) -> CapitalManager:
        if self.capital is None:
            raise ControlError("Capital deployment is not configured on this desk.")
        return self.capital

    async def capital_report(self) -> dict[str, Any]:
        return self._cm().get_report()

    async def evaluate_scaling(self) -> dict[str, Any]:
        decision = self._cm().evaluate_scaling()
        self._publish(ScalingDecisionMade(decision.can_scale, decision.current_phase, decision.next_phase,
                                          tuple(decision.reasons), tuple(decision.blockers)))
        return decision.to_dict()

    async def approve_scaling(self, approved_by: str) -> dict[str, Any]:
        """Re-check the gates now (they may have changed since the decision was shown), then scale."""
        cm = self._cm()
        decision = cm.evaluate_scaling()
        if not decision.can_scale:
            raise ControlError("Scaling blocked: " + "; ".join(decision.blockers or decision.reasons))
        before = cm.phase
        try:
            allocated = cm.advance_phase()
        except ScalingBlockedError as exc:
            raise ControlError(str(exc)) from exc
        await self.db.record_approval("approve", before.value, cm.phase.value, str(approved_by), decision.to_dict())
        self.apply_allocations()
        for handle in self.bots.values():
            await self.db.update_bot(handle.spec.name, allocated_capital=handle.bot.allocated_capital)
        if self.capital_persister is not None:
            await self.capital_persister.flush()
        self._publish(self._phase_changed(before, str(approved_by)))
        return {"phase_from": before.value, "phase": cm.phase.value, "allocated_capital": allocated,
                "approved_by": str(approved_by), "decision": decision.to_dict()}

    async def reject_scaling(self, by: str) -> dict[str, Any]:
        cm = self._cm()
        decision = cm.evaluate_scaling()
        nxt = decision.next_phase.value if decision.next_phase else None
        await self.db.record_approval("reject", cm.phase.value, nxt, str(by), decision.to_dict())
        return {"phase": cm.phase.value, "rejected_phase": nxt, "rejected_by": str(by), "decision": decision.to_dict()}

    async def halt(self, reason: str, by: str) -> dict[str, Any]:
        """Stop all new entries at once (capital halt) and pause every running bot; exits stay managed."""
        cm = self._cm()
        text = (reason or "no reason given").strip()
        cm.halt(f"{text} (by {by})")
        paused = []
        for handle in self.bots.values():
            if handle.bot.state is BotState.RUNNING:
                await handle.bot.pause("halt", by=str(by))
                paused.append(handle.bot.name)
        if self.capital_persister is not None:
            await self.capital_persister.flush()
        await self.db.add_log(None, "WARNING", f"trading halted by {by}: {text}", {"paused": paused})
        self._publish(Halted(text, str(by), tuple(paused)))
        return {"halted": True, "reason": cm.halt_reason, "paused": paused}

    async def resume_trading(self, by: str) -> dict[str, Any]:
        cm = self._cm()
        try:
            cm.resume()
        except CapitalManagerError as exc:
            raise ControlError("Trading is not halted.") from exc
        resumed = []
        for handle in self.bots.values():
            if handle.bot.state is BotState.PAUSED and handle.bot.paused_by == "halt":
                await handle.bot.resume("halt lifted", by=str(by))
                resumed.append(handle.bot.name)
        if self.capital_persister is not None:
            await self.capital_persister.flush()
        await self.db.add_log(None, "INFO", f"trading resumed by {by}", {"resumed": resumed})
        self._publish(Resumed(str(by), tuple(resumed)))
        return {"halted": False, "resumed": resumed}


# ---------------------------------------------------------------------- plain-data views
def _log_level(event_type: EventType) -> str:
    if event_type in (EventType.ERROR, EventType.ORDER_FAILED):
        return "ERROR"
    return "WARNING" if event_type in (EventType.RISK_LIMIT, EventType.HALTED) else "INFO"


def _position(bot: str, p: Any, price: Decimal | None = None) -> dict[str, Any]:
    return {
        "bot": bot, "position_id": p.position_id, "side": p.direction.value, "size": p.size,
        "entry_price": p.entry_price, "stop_loss": p.stop_loss, "take_profit": p.take_profit,
        "current_price": price or p.current_price,
        "unrealized_pnl": (p.gross_pnl_at(price) - p.fees) if price else p.unrealized_pnl,
        "opened_at": p.entry_time,
    }


def _order(o: Any) -> dict[str, Any]:
    return {
        "bot": o.bot_name, "client_order_id": o.client_order_id, "exchange_order_id": o.exchange_order_id,
        "symbol": o.symbol, "side": o.side, "type": o.order_type, "qty": o.qty, "price": o.price,
        "status": o.status, "filled_qty": o.filled_qty, "tag": o.tag, "created_at": o.created_at,
    }


def _trade(t: Any) -> dict[str, Any]:
    return {
        "id": t.id, "bot": t.bot_name, "symbol": t.symbol, "side": t.side, "qty": t.qty,
        "entry_price": t.entry_price, "exit_price": t.exit_price, "pnl": t.pnl, "fees": t.fees,
        "opened_at": t.opened_at, "closed_at": t.closed_at, "tag": t.tag,
    }
