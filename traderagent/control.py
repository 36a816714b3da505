"""Operator use-cases: what the CLI and Telegram may do to the desk. Frontend-agnostic.

`Desk` owns the running pieces (orchestrators, database, capital manager, event bus, exchange
clients, scheduler) and exposes the use-cases below. Every use-case is ``async`` and returns
frozen dataclasses from `traderagent.results` (money ``Decimal``, times UTC ``datetime``). The
database and the exchange clients come in through the Protocols of `traderagent.ports`. A request
the operator got wrong (unknown bot, ambiguous prefix, a scaling step the gates block, ...) raises
``ControlError`` whose message is meant to be shown to the operator as is; it never contains a secret.

Use-cases (names are the contract for handlers/):

    list_bots() -> list[BotSummary]               name, strategy, symbol, state, pnl, positions, orders
    bot_status(name) -> BotStatus                 one bot (``name``, prefix accepted) in detail
    desk_status() -> DeskStatus                   state counts, capital, every bot's summary
    start_bot(name, by) / pause_bot(name, by) / stop_bot(name, by) -> BotStatus   the bot after the change
    start_all(by) -> StartAllOutcome              every bot not running started (refusals listed)
    pause_all(by) -> PauseAllOutcome              every running bot paused
    stop_all(by) -> StopAllOutcome                every bot stopped together; no order leaves after it begins
    resolve_bot(prefix) -> str                    full name for a unique prefix (exact name wins)
    balances() -> list[Wallet]                    one per market type (one if they share an account)
    positions() -> list[PositionView]             open positions of every bot (strategy view; linear: with
                                                  ByBit's mark, liquidation price and margin)
    open_orders(name=None) -> list[OrderView]     non-final orders from the database
    recent_trades(n=10) -> list[TradeView]        newest first
    daily_pnl(days=7) -> list[DailyPnl]           oldest first
    logs(n=20) -> list[LogLine]                   newest first
    equity_curve(name=None) -> list[EquityPoint]  equity after each closed trade, oldest first
    capital_report() -> CapitalReport             phase, deployed capital, record, gates, halt
    evaluate_scaling() -> ScalingCheck            also publishes SCALING_DECISION
    approve_scaling(approved_by, approver=None) -> ScalingApproved | ScalingPending
                                                  gates re-checked NOW; advance_phase() once enough
                                                  distinct approvers agreed; recorded
    reject_scaling(by) -> ScalingRejected         the decision and who rejected it are recorded
    halt(reason, by) -> HaltOutcome               capital halt + every running bot paused
    resume_trading(by) -> ResumeOutcome           lift the halt; bots paused by it run again
    record_action(user_id=..., action=..., ...)   one operator action into the audit trail (masked)
    audit_log(n=20) -> list[AuditLine]            the latest operator actions, newest first
    offer_scaling() -> bool                       every gate passes: publish SCALING_OFFERED (once per phase, daily)
    digest(day_end) -> Digest                     the 24 h up to day_end (local time): PnL, trades, fees, gates
    health() -> Health                            do the ticks run, does the exchange answer
    check_stall() -> bool                         TICKS_STALLED once when no tick completed for stall_ticks intervals
    announce_started(mode, report) / announce_stopping(reason)   DESK_STARTED / DESK_STOPPING

`Records` holds the use-cases that only read (or append to) the database; the console of a fleet
(fleet/console.py) shares them. handlers/ reach either through `ports.DeskPort`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, TypeVar

from traderagent.api.markets import normalize_symbol
from traderagent.bots import BotSpec
from traderagent.database.exceptions import DatabaseError, DatabaseUnavailableError, LeaseLapsed
from traderagent.orchestrator.analysis import AnalysisCache
from traderagent.orchestrator.bot_orchestrator import BotOrchestrator
from traderagent.orchestrator.budget import AnalysisBudget
from traderagent.orchestrator.capital_wiring import (
    CapitalPersister,
    ScalingOffers,
    reload_capital,
)
from traderagent.orchestrator.events import (
    DeskStarted,
    DeskStopping,
    ErrorRaised,
    EventBus,
    EventType,
    Halted,
    Payload,
    PhaseChanged,
    Resumed,
    RiskLimitHit,
    ScalingDecisionMade,
    TicksStalled,
    TradingEvent,
)
from traderagent.orchestrator.fill_stream import RECONCILE_SECONDS, AccountFills
from traderagent.orchestrator.gate import SendGate
from traderagent.orchestrator.lease import DESK_LEASE, Holder, Leases
from traderagent.orchestrator.market_data import MarketData
from traderagent.orchestrator.orders import unknown_on_symbol
from traderagent.orchestrator.perp import (
    FUNDING_TAG,
    FundingWatch,
    LiquidationWatch,
    PerpSetupError,
    position_risk,
    prepare_linear,
    share_funding,
)
from traderagent.orchestrator.risk import DeskRisk, FleetRails, RiskRails
from traderagent.orchestrator.scheduler import DeskScheduler
from traderagent.orchestrator.state import BotState, IllegalTransition
from traderagent.orchestrator.storage import STORAGE_CHECK_S, StorageWatch
from traderagent.ports import (
    ExchangePort,
    FillStream,
    FleetStorePort,
    LogLineSpec,
    OrderRow,
    RecoveryRows,
    StorePort,
    TradeRow,
)
from traderagent.results import (
    AuditLine,
    BotDay,
    BotStatus,
    BotSummary,
    CapitalReport,
    Check,
    DailyPnl,
    DeskStatus,
    Digest,
    EquityPoint,
    HaltOutcome,
    Health,
    LogLine,
    OrderView,
    PauseAllOutcome,
    PhaseRecord,
    PositionRisk,
    PositionView,
    RefusedBot,
    ResumeOutcome,
    ScalingApproved,
    ScalingCheck,
    ScalingPending,
    ScalingRejected,
    StartAllOutcome,
    StopAllOutcome,
    TradeView,
    Wallet,
)
from traderagent.strategies.base import BaseStrategy
from traderagent.strategies.types import PositionInfo
from traderagent.utils.capital_manager import (
    CapitalManager,
    CapitalManagerError,
    DeploymentPhase,
    PhaseMetrics,
    ScalingBlockedError,
    ScalingDecision,
)
from traderagent.utils.secrets_filter import mask

log = logging.getLogger(__name__)
T = TypeVar("T")
ZERO = Decimal(0)
DESK = "desk"  # bot_name of desk-wide events
STOP_SECONDS = 8.0  # a stop waits this long at most for sends on the wire and ticks in flight
LOGGED_EVENTS = frozenset(EventType) - {EventType.ORDER_PLACED}
AUDIT_ARGS_CHARS = 300  # an audited argument longer than this is shortened
PERP_CHECK_SECONDS = 30.0  # funding booked and liquidation distance checked this often
FUNDING_LAG_MS = 3_600_000  # a settlement older than this is in the transaction log when we look
BotOp = Callable[[str, str], Awaitable[BotStatus]]  # start_bot / pause_bot / stop_bot (name, by)
RECOVERY_CONCURRENCY = 32  # bots recovered at once at start-up (their reads and writes share requests and commits)
UNLOGGED_KEEP = 10_000  # event log lines kept while storage is lost


class ControlError(Exception):
    """A use-case refused; the message is for the operator."""


class Records:
    """The use-cases that only read (or append to) the database: the same for one desk and for the
    console of a fleet (fleet/console.py). A subclass gives ``db``, ``resolve_bot`` and the equity
    a curve starts from."""

    db: StorePort

    def resolve_bot(self, prefix: str) -> str:
        raise NotImplementedError

    async def _equity_start(self, bot_name: str | None) -> Decimal:
        raise NotImplementedError

    def _storage_lost(self, exc: DatabaseUnavailableError) -> None:
        """A write failed because the database is lost (the desk's storage watch hears of it)."""

    async def open_orders(self, name: str | None = None) -> list[OrderView]:
        bot_name = self.resolve_bot(name) if name else None
        rows = await self.db.list_non_final_orders(bot_name)
        return [_order(r) for r in rows]

    async def recent_trades(self, n: int = 10) -> list[TradeView]:
        return [_trade(t) for t in await self.db.list_trades(None, limit=max(1, min(n, 200)))]

    async def daily_pnl(self, days: int = 7) -> list[DailyPnl]:
        return [DailyPnl(d, p) for d, p in await self.db.daily_pnl(days=max(1, min(days, 366)))]

    async def logs(self, n: int = 20) -> list[LogLine]:
        rows = await self.db.get_logs(None, limit=max(1, min(n, 500)))
        return [LogLine(r.bot_name, r.level, r.message, r.context, r.created_at) for r in rows]

    async def equity_curve(self, name: str | None = None) -> list[EquityPoint]:
        """Equity after each closed trade, oldest first, starting at the deployed capital."""
        bot_name = self.resolve_bot(name) if name else None
        equity = await self._equity_start(bot_name)
        trades = await self.db.list_trades(bot_name, limit=10_000, closed_only=True)
        closed = sorted(((t.closed_at, t) for t in trades if t.closed_at is not None), key=lambda ct: (ct[0], ct[1].id))
        out = []
        for closed_at, t in closed:
            pnl = t.pnl or ZERO
            equity += pnl
            out.append(EquityPoint(closed_at, equity, pnl, t.bot_name))
        return out

    async def record_action(self, *, user_id: int | None, user_name: str, chat_id: int, role: str, action: str,
                            args: str = "", outcome: str = "ok", detail: str = "") -> None:
        """Write one operator action to the audit trail; arguments and detail are masked (no
        registered secret is ever stored) and shortened."""
        try:
            await self.db.add_audit(user_id=user_id, user_name=user_name, chat_id=chat_id, role=role, action=action,
                                    args=_short(mask(args)), outcome=outcome, detail=_short(mask(detail)))
        except DatabaseUnavailableError as exc:  # the action itself was done (or refused): say so, not an error
            self._storage_lost(exc)
            log.warning("audit line not written (storage lost): %s by %s: %s", action, user_name, outcome)

    async def day_digest(self, day_end: datetime, bots: Iterable[str], *, unrealized: Decimal, exposure: Decimal,
                         exposure_limit: Decimal | None, capital: CapitalManager | None) -> Digest:
        """The digest of the 24 hours up to ``day_end`` from the database (every bot's trades and errors), with
        the desk now as the caller sees it (a desk from memory, a fleet's console from its workers' marks)."""
        until = day_end.astimezone(UTC)
        since = until - timedelta(days=1)
        closed = list(await self.db.closed_trades(since, until))
        funding = [t for t in closed if is_funding(t)]  # in the PnL, not a trade
        trades = [t for t in closed if not is_funding(t)]
        return Digest(
            day=day_end.date(), timezone=str(day_end.tzinfo), since=since, until=until,
            bots=tuple(_bot_day(name, closed) for name in bots), pnl=_pnl_sum(closed), trades=len(trades),
            fees=sum((t.fees for t in trades), ZERO), funding=_pnl_sum(funding), unrealized_pnl=unrealized,
            exposure=exposure, exposure_limit=exposure_limit, errors=await self._errors(since, until),
            scaling=_scaling_check(capital.evaluate_scaling()) if capital else None,
        )

    async def _errors(self, since: datetime, until: datetime) -> int:
        logs = await self.db.get_logs(None, limit=1000)
        return sum(1 for r in logs if r.level in ("ERROR", "CRITICAL") and since <= _utc(r.created_at) < until)

    async def audit_log(self, n: int = 20) -> list[AuditLine]:
        rows = await self.db.list_audit(max(1, min(n, 500)))
        return [AuditLine(r.created_at, r.user_id, r.user_name, r.chat_id, r.role, r.action, r.args, r.outcome,
                          r.detail) for r in rows]


def resolve_name(prefix: str, names: Iterable[str]) -> str:
    """The name that is ``prefix`` or uniquely starts with it (case-insensitive); else ControlError."""
    known = list(names)
    text = (prefix or "").strip()
    if not text:
        raise ControlError("Which bot? Give its name (a unique prefix is enough).")
    if text in known:
        return text
    lowered = text.lower()
    exact = [n for n in known if n.lower() == lowered]
    if len(exact) == 1:
        return exact[0]
    matches = sorted(n for n in known if n.lower().startswith(lowered))
    if not matches:
        raise ControlError(f"No bot named {text!r}. Bots: {', '.join(sorted(known)) or 'none'}.")
    if len(matches) > 1:
        raise ControlError(f"{text!r} matches several bots: {', '.join(matches)}. Type more of the name.")
    return matches[0]


@dataclass
class BotHandle:
    spec: BotSpec
    bot: BotOrchestrator


class Desk(Records):
    """The running desk; build it with ``Desk(...)`` then ``await add_bot(spec)`` and ``await start()``."""

    def __init__(
        self,
        db: StorePort,
        clients: Mapping[str, ExchangePort],
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
        scaling_approvals_required: int = 1,
        offers: ScalingOffers | None = None,
        stall_ticks: int = 3,
        analysis_cache: AnalysisCache | None = None,
        leases: Leases | None = None,
        open_fill_stream: Callable[[ExchangePort, AccountFills], FillStream] | None = None,
    ) -> None:
        self.db = db
        self.clients = clients  # market_type -> exchange client
        self.gate = SendGate()  # closed by stop_sending(): no order leaves the desk after it
        self.storage = StorageWatch(db, self._publish)  # database lost: no entries until it is back
        for client in clients.values():
            self._guard(client)
        self.event_bus = event_bus or EventBus()
        self.capital = capital_manager
        self.capital_persister = capital_persister
        self.clock = clock or (lambda: datetime.now(UTC))
        self.risk = DeskRisk(rails or RiskRails(), clock=self.clock)
        self.scheduler = scheduler
        self.market = market_data or {mt: MarketData(c) for mt, c in clients.items()}
        self.auto_start_phase_1 = auto_start_phase_1
        self.analysis_budget = analysis_budget or AnalysisBudget()
        self.scaling_approvals_required = max(1, scaling_approvals_required)
        # the scaling step being approved (phase from, phase to) and its approvers so far: key -> label
        self._approvals: tuple[tuple[str, str], dict[str, str]] | None = None
        self.analysis_cache = analysis_cache or AnalysisCache()
        self.bots: dict[str, BotHandle] = {}
        self.tick_counts: dict[str, int] = {}  # scheduled tick runs per bot (whatever the state)
        self.ticked = asyncio.Event()  # set after every scheduled tick
        self.offers = offers or ScalingOffers(db)
        # a fleet's leader judges the scaling gates on the whole fleet's record (fleet/record.py): set by
        # the worker's console link; None: on this desk's own record
        self.capital_record: Callable[[CapitalManager], Awaitable[None]] | None = None
        self.stall_ticks = stall_ticks  # ticks stall after this many of the shortest interval without one
        self.started_at: datetime | None = None  # when the tick jobs were scheduled
        self.last_tick_at: datetime | None = None  # when the last scheduled tick completed
        self._stall_alerted = False
        self.refused: list[tuple[str, str]] = []
        self.liquidation_watch = LiquidationWatch()
        self.funding_watch = FundingWatch(FUNDING_LAG_MS)  # when an account's funding is read (check_perp)
        # each linear account's positions as last read (check_perp, every PERP_CHECK_SECONDS): /status shows
        # these instead of asking every account while the operator waits
        self.positions_seen: dict[int, list[dict[str, Any]]] = {}
        self.leases = leases  # one owner per bot: this desk runs only the bots it holds the lease of
        self.standby: dict[str, BotSpec] = {}  # bots another desk runs; taken over when their lease expires
        if leases is not None:
            self.gate.holds, self.gate.confirm = leases.holds, leases.confirm
            db.fence_writes(leases.token)  # and each bot's write commits only under its lease (lease.py)
        self._lease_beat = asyncio.Lock()  # one heartbeat at a time; a stop waits for the one in flight
        self._started = False
        self._stop_requested: float | None = None  # loop time of the stop's request (stop_sending)
        self._unlogged: deque[LogLineSpec] = deque(maxlen=UNLOGGED_KEEP)  # log lines storage could not take yet
        self._log_lock = asyncio.Lock()
        self._unrecovered: list[BotHandle] = []  # bots whose recovery at start waits for the database
        self.event_bus.subscribe(self._log_events, name="db-log", types=LOGGED_EVENTS, batch=True)
        # an account's private stream, opened at start (None: the bots poll their open orders each tick)
        self.open_fill_stream = open_fill_stream
        self.fill_streams: list[tuple[AccountFills, FillStream]] = []
        self._account_streams: dict[object, tuple[AccountFills, FillStream]] = {}  # account -> its stream
        # one worker of a fleet (join_fleet): its desk rails are the fleet's, its capital state the leader's
        self.fleet: FleetRails | None = None
        self._tell_fleet: Callable[[str], Awaitable[None]] | None = None
        self._led = True  # led at the last heartbeat: the capital state in memory is the newest
        if capital_persister is not None:
            capital_persister.may_write = lambda: self.leader and self._led

    async def _log_events(self, events: list[TradingEvent]) -> None:
        """The DB log writer: every event worth reading later becomes a bot_logs row (the events
        queued meanwhile are written together)."""
        await self._log_lines([(None if e.bot_name == DESK else e.bot_name, _log_level(e.event_type),
                                e.event_type.value, e.data.to_dict()) for e in events])

    async def _log_lines(self, lines: list[LogLineSpec]) -> None:
        """Write log lines, after those storage could not take yet (kept, bounded, while it is lost:
        STORAGE_LOST among them)."""
        async with self._log_lock:
            self._unlogged.extend(lines)
            kept = list(self._unlogged)
            try:
                await self.db.add_logs(kept)
            except DatabaseUnavailableError as exc:
                self.storage.trip(exc)
                return
            self._unlogged.clear()

    # ================================================================== assembly
    async def add_bot(self, spec: BotSpec, *, client: ExchangePort | None = None,
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
        self._guard(client)
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
            analysis_budget=self.analysis_budget, analysis_cache=self.analysis_cache, gate=self.gate,
            storage=self.storage,
        )
        self.bots[spec.name] = BotHandle(spec, bot)
        return bot

    async def add_bots(self, specs: Iterable[BotSpec]) -> None:
        """``add_bot`` each spec; with leases (acquired first), a bot another desk runs waits in
        ``standby`` instead, and is taken over when that desk stops renewing its lease."""
        for spec in specs:
            if self.leases is not None and not self.leases.owns(spec.name):  # another desk's, or worker's
                self.standby[spec.name] = spec
            else:
                await self.add_bot(spec)

    def _guard(self, client: Any) -> None:
        """Every create request of ``client`` passes the desk's gate right before it is written."""
        if hasattr(client, "before_order"):
            client.before_order = self.gate.on_wire

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
        # the bots without a share or capital split what the others leave (those run elsewhere too)
        specs = [h.spec for h in self.bots.values()] + list(self.standby.values())
        fixed = [self._fixed_share(other) for other in specs if other is not spec]
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
        self._share_exposure()

    async def _resize(self) -> None:
        """A new phase: every bot's allocation, in memory and in its row."""
        self.apply_allocations()
        for handle in self.bots.values():
            with contextlib.suppress(LeaseLapsed):  # taken over meanwhile: its new owner sets its own
                await self.db.update_bot(handle.spec.name, allocated_capital=handle.bot.allocated_capital)

    def _share_exposure(self) -> None:
        """A fleet's worker keeps its bots' part of the exposure limit (risk.py ``FleetRails``)."""
        if self.fleet is None:
            return
        mine = sum((self._share(h.spec) for h in self.bots.values()), ZERO)
        every = mine + sum((self._share(spec) for spec in self.standby.values()), ZERO)
        self.risk.exposure_share = mine / every if every > 0 else Decimal(1)

    # ================================================================== one worker of a fleet
    def join_fleet(self, store: FleetStorePort, tell: Callable[[str], Awaitable[None]]) -> None:
        """This desk is one worker of a fleet (fleet/bus.py ``FleetSignals``): ``tell(kind)`` wakes the
        others ("risk": the desk rail tripped; "capital": the leader wrote a new capital state)."""
        self._tell_fleet = tell
        self.fleet = FleetRails(store, self.risk, lambda: tell("risk"))

    async def reload_capital(self) -> bool:
        """A worker that does not lead takes the capital state the leader wrote (and its scaling offers);
        on a new phase its bots are re-sized as on the leader, which alone announces it. True then."""
        if self.capital is None or (self.leader and self._led):
            return False  # the leader's memory is the newest state
        before = await reload_capital(self.capital, self.db)
        await self.offers.load()
        if before is None:
            return False
        await self._resize()
        log.warning("capital phase now %s (the leader's record): bots re-sized", self.capital.phase.value)
        return True

    async def _tell(self, kind: str) -> None:
        if self._tell_fleet is not None:
            await self._tell_fleet(kind)

    # ================================================================== lifecycle
    async def start(self, *, schedule: bool = True) -> dict[str, Mapping[str, int | str]]:
        """Phase 1 on a fresh record, bots rows, recovery of every bot, then the tick jobs. Returns per bot
        what its recovery reconciled (``BotOrchestrator.recover`` counts) or ``{"error": message}``."""
        await self.event_bus.start()
        if self.leases is not None and self.leases.fleet:  # a start-up slowed past the window: still the leader?
            await self.leases.confirm(DESK_LEASE)
        self._led = self.leader  # the capital state was just read: a fleet's leader may write it
        if (self.capital is not None and self.capital.phase is DeploymentPhase.NOT_STARTED and self.auto_start_phase_1
                and self.leader):  # a fleet's other workers take phase 1 from the leader's record
            self.capital.start_phase_1()
            self._publish(self._phase_changed(DeploymentPhase.NOT_STARTED, None))
        self.apply_allocations()
        await self._restore_daily_pnl()
        await self.offers.load()
        refused = await self._prepare_perp()
        report = await self._recover_all(refused)
        await self._refuse_unknown()
        if self.capital is not None and self.capital.halted:
            for handle in self.bots.values():
                if handle.bot.state is BotState.RUNNING:
                    await handle.bot.pause("halt", by="desk")
        self._open_fill_streams()
        if schedule and self.scheduler is not None:
            self._schedule()
            self.scheduler.start()
            self.started_at = self.clock()
        self._started = True
        return report

    async def _recover_all(self, refused: Mapping[str, str]) -> dict[str, Mapping[str, int | str]]:
        """Every bot's ``_recover``, RECOVERY_CONCURRENCY at a time: one after the other, thousands of bots
        would take minutes of round trips; together they share the group commit and the account's reads. Their
        rows are read for all of them at once first (a lost database: each bot reads its own, and waits)."""
        handles = list(self.bots.items())
        try:
            loaded = await self.db.load_recoveries(self.bots)
        except DatabaseUnavailableError as exc:
            self.storage.trip(exc)
            loaded = {}
        results = await _at_most(RECOVERY_CONCURRENCY, [self._recover(handle, refused.get(name), loaded.get(name))
                                                        for name, handle in handles])
        return {name: result for (name, _), result in zip(handles, results, strict=True)}

    async def _recover(self, handle: BotHandle, refusal: str | None = None,
                       loaded: RecoveryRows | None = None) -> Mapping[str, int | str]:
        """The bot's row (created, or updated from the bots file), then its recovery (``refusal``: why
        it may not trade, e.g. its perpetual set-up failed: ERROR instead; ``loaded``: its rows, read
        already). A lost database postpones it: the bot waits (INITIALIZING, not in ERROR) and is
        recovered by ``check_storage`` once storage is back."""
        name = handle.spec.name
        try:
            row = loaded.row if loaded is not None else await self.db.get_bot(name)
            if row is None:
                await self.db.create_bot(name, handle.spec.strategy, handle.spec.symbol, handle.spec.market_type,
                                         handle.spec.to_config(), handle.bot.allocated_capital)
                saved = None
            else:
                await self.db.update_bot(name, config=handle.spec.to_config(),
                                         allocated_capital=handle.bot.allocated_capital)
                saved = row.state
            if refusal is not None:  # told, not a bug: the operator changes a setting
                await handle.bot.fail(refusal)
                return {"error": refusal}
            return await handle.bot.recover(saved, loaded)
        except DatabaseUnavailableError as exc:
            self.storage.trip(exc)
            self._unrecovered.append(handle)
            return {"error": f"waiting for the database: {exc}"}
        except LeaseLapsed as exc:  # taken over meanwhile (e.g. while storage was lost): the heartbeat drops it
            log.warning("%s not recovered here: %s", name, exc)
            return {"error": str(exc)}
        except Exception as exc:
            log.exception("recovery of %s failed", name)
            await handle.bot.fail(exc)
            return {"error": str(exc)}

    async def _refuse_unknown(self, symbols: set[str] | None = None) -> None:
        """Start-up: on a symbol where the exchange holds orders under a bot's id prefix that the
        database does not know (an empty or foreign database), no bot trades (ERROR until its
        operator's start, which cancels and records them); a position the bots' books do not hold
        is reported with them, and refuses the symbol too when such orders are there. ONE message
        says what was found on every symbol."""
        by_symbol: dict[tuple[int, str], list[BotOrchestrator]] = {}
        for handle in self.bots.values():
            if symbols is not None and handle.bot.symbol not in symbols:
                continue
            by_symbol.setdefault((id(handle.bot.client), handle.bot.symbol), []).append(handle.bot)
        positions = await self._account_positions()
        refusing: list[str] = []
        noticed: list[str] = []
        refused: list[BotOrchestrator] = []
        for (account, symbol), bots in by_symbol.items():
            held = None
            if bots[0].market_type == "linear":
                if account in positions:
                    held = sum((r["size"] if r["side"] == "long" else -r["size"]
                                for r in positions[account] if r["symbol"] == symbol), ZERO)
                else:
                    noticed.append(f"{symbol}: positions unread (the exchange did not answer)")
            found = unknown_on_symbol(list(bots), held)
            if found is not None:
                (refusing if found[1] else noticed).append(found[0])
                refused += [b for b in bots if found[1] and b.state is not BotState.STOPPED]
        if not (refusing or noticed):
            return
        parts = [f"refusing to trade {'; '.join(refusing)}. An empty or foreign database? Restore it, or /start "
                 "each bot: its unknown orders are cancelled and recorded, a position stays yours to close"] if refusing else []
        parts += [f"trading on, but the books do not match the exchange on {'; '.join(noticed)} (a position of "
                  "yours, or closed by hand?)"] if noticed else []
        text = ". ".join(parts)
        log.error("%s", text)
        self._publish(ErrorRaised(text))
        for bot in refused:
            await bot.refuse(text)

    def _schedule(self) -> None:
        """Every bot's tick in the scheduler's loop, first ticks spread over one interval. The bots
        of one account (one ``MarketData``) are neighbours in that spread, so with many bots they
        fall due in the same pass of the loop and share the account's open-orders and balance
        requests (with a few bots they are apart, as their ticks are cheap anyway)."""
        assert self.scheduler is not None
        handles = _by_account(list(self.bots.values()))
        for i, handle in enumerate(handles):
            self._schedule_bot(handle.bot, offset=handle.bot.tick_seconds * i / len(handles))
        self.scheduler.add_job("desk:risk", self.check_desk_risk, 5.0, offset=5.0)
        if self._linear_accounts():
            self.scheduler.add_job("desk:perp", self.check_perp, PERP_CHECK_SECONDS, offset=PERP_CHECK_SECONDS / 2)
        if self.leases is not None:
            self.scheduler.add_job("desk:leases", self.check_leases, self.leases.heartbeat,
                                   offset=self.leases.heartbeat)
        for i, (fills, _) in enumerate(self.fill_streams):
            self._schedule_reconcile(i, fills)
        self.scheduler.add_job("desk:storage", self.check_storage, STORAGE_CHECK_S, offset=STORAGE_CHECK_S)

    def _schedule_reconcile(self, i: int, fills: AccountFills) -> None:
        """The backstop of stream ``i``: it may miss what REST has."""
        assert self.scheduler is not None
        spread = RECONCILE_SECONDS * i / max(len(self.fill_streams), 1)  # the accounts' backstops apart, not at once
        self.scheduler.add_job(f"fills:{i}", fills.reconcile, RECONCILE_SECONDS, offset=RECONCILE_SECONDS + spread)

    async def ticked_at_least(self, ticks: int) -> None:
        """Return once every bot has run ``ticks`` scheduled ticks."""
        while min((self.tick_counts.get(n, 0) for n in self.bots), default=ticks) < ticks:
            self.ticked.clear()
            await self.ticked.wait()

    def _schedule_bot(self, bot: BotOrchestrator, offset: float) -> None:
        """The bot's tick job; ``offset`` spreads the first ticks of many bots over one interval."""
        assert self.scheduler is not None
        self.scheduler.add_tick(bot.name, self._ticker(bot), bot.tick_seconds, offset=offset)

    def _ticker(self, bot: BotOrchestrator) -> Callable[[], Awaitable[None]]:
        async def run() -> None:
            if self.leases is not None and not await self.leases.confirm(bot.name):
                return  # the bot's lease is not ours (or not confirmed): no tick
            try:
                await bot.tick()
            finally:
                self.tick_counts[bot.name] = self.tick_counts.get(bot.name, 0) + 1
                self.last_tick_at = self.clock()
                self.ticked.set()

        return run

    # ================================================================== one owner per bot
    async def check_leases(self) -> None:
        """The lease heartbeat (every ``leases.heartbeat`` s): renew this desk's leases, stop at once
        the bots another desk took over, take over the bots whose owner died."""
        assert self.leases is not None
        async with self._lease_beat:
            changes = await self.leases.beat()
            for name, holder in changes.lost.items():
                self._fence(name, holder)
            for name, holder in changes.gained.items():
                if self.gate.closed:  # stopping: the stop frees what the heartbeat just took
                    break
                await self._take_over(name, holder)
            for name in changes.handed_back:
                await self._hand_back(name)
        await self._follow_leader()

    async def _follow_leader(self) -> None:
        """A fleet's capital state is the leader's: re-read it here (the backstop of the leader's NOTIFY),
        and first of all when this worker has just become the leader, before it writes it."""
        if self.fleet is None:
            return
        if not self.leader:
            self._led = False
            await self.reload_capital()
        elif not self._led:  # re-read as a follower (``_led`` still False), then lead
            await self.reload_capital()
            self._led = True

    @property
    def leader(self) -> bool:
        """Does this desk run the desk-wide duties (scaling offers, digest; in a fleet the console sends those and
        the leader executes the approvals)? Alone, yes; in a fleet of workers, the one holding the desk lease
        (orchestrator/lease.py)."""
        return self.leases is None or self.leases.is_leader

    def _drop(self, name: str) -> BotHandle | None:
        """No tick and no fill of ``name`` here any more; its spec waits in ``standby``."""
        handle = self.bots.pop(name, None)
        if handle is None:
            return None
        if self.scheduler is not None:
            self.scheduler.remove_tick(name)
        for fills, _ in self.fill_streams:
            if handle.bot in fills.bots:
                fills.bots.remove(handle.bot)
        self.standby[name] = handle.spec
        self._share_exposure()
        return handle

    async def _hand_back(self, name: str) -> None:
        """A worker came back and ``name`` is its bot again (fleet/workers.py): no tick from here, its
        state saved after the tick in flight, its lease freed; the worker reconciles its orders by
        orderLinkId when it takes it."""
        assert self.leases is not None
        handle = self._drop(name)
        if handle is None:
            return
        try:
            await handle.bot.save()
        except Exception as exc:  # its orders were written before they were sent: the next owner finds them
            log.error("hand-back of %s: its state could not be saved (%s)", name, exc)
        await self.leases.release([name])
        log.warning("handed %s back: another worker runs it now", name)

    def _fence(self, name: str, holder: Holder) -> None:
        """Another desk runs ``name`` now: no tick, no order from here (the gate already refuses its
        sends); its in-memory state is dropped, a later takeover starts from the database."""
        handle = self._drop(name)
        if handle is None:
            return
        text = (f"lease lost: {holder.owner} runs {name} now (this desk missed its lease renewals); "
                "this desk sends none of its orders any more")
        self.event_bus.publish(TradingEvent.of(name, ErrorRaised(text, handle.bot.state)))  # the alert

    async def _take_over(self, name: str, previous: Holder) -> None:
        """The lease of ``name`` expired and is ours now: build it afresh, recover its orders by
        orderLinkId from the database and the exchange, and tick it."""
        assert self.leases is not None
        spec = self.standby.pop(name)
        bot = await self.add_bot(spec)
        if bot is None:  # refused (its reason is in self.refused): free it for a desk that can run it
            await self.leases.release([name])
            return
        self.risk.realized_today[name] = await self._day_pnl(name)
        self._share_exposure()
        report = await self._recover(self.bots[name], (await self._prepare_perp()).get(name))
        if self.capital is not None and self.capital.halted and bot.state is BotState.RUNNING:
            await bot.pause("halt", by="desk")
        log.warning("took over %s from %s (lease until %s UTC): %s", name, previous.owner,
                    f"{previous.expires_at:%H:%M:%S}", dict(report))
        self._open_fill_streams([self.bots[name]])
        if self._started and self.scheduler is not None:
            self._schedule_bot(bot, offset=0.0)

    def stop_sending(self) -> None:
        """The first, synchronous step of a stop (a signal handler calls it): no new tick, no new
        order from this instant; sends waiting for the rate limiter are abandoned."""
        if self.scheduler is not None and self.scheduler.scheduler.running:
            self.scheduler.scheduler.pause()
        self.gate.close()
        if self._stop_requested is None:  # the stop's bound counts from here (see stop)
            self._stop_requested = asyncio.get_running_loop().time()

    async def stop(self) -> None:
        """Stop within STOP_SECONDS: no new order (stop_sending), the sends on the wire answered or
        abandoned (their write-ahead rows stay PENDING for the next start), the ticks in flight
        finished, every bot saved (orders stay on the exchange; states stay in the DB). Counted from
        the stop's request (a signal), so what ran since (the announcement's delivery) is inside the
        bound, and the events left get what remains of it: the desk exits within about STOP_SECONDS
        + 1 s however busy the machine (issue 17: within 10 s)."""
        self.stop_sending()
        started = self._stop_requested or asyncio.get_running_loop().time()
        await asyncio.gather(*(stream.close() for _, stream in self.fill_streams), return_exceptions=True)
        await asyncio.gather(*(fills.drain() for fills, _ in self.fill_streams))
        self.fill_streams.clear()
        self._account_streams.clear()
        unanswered = await self.gate.drain(STOP_SECONDS / 2)
        log.info("stop: no new order will be sent (%d sent, %d refused or abandoned, %d unanswered)",
                 self.gate.sent, self.gate.refused, unanswered)
        if self.storage.lost:  # a last try: what the bots kept in memory is gone at exit
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.check_storage(), STOP_SECONDS / 4)
            if self.storage.lost:
                log.error("stop: the database is still lost (%s); what the bots kept in memory is not saved, "
                          "the next start reports the orders it does not know", self.storage.lost)
        saves = asyncio.gather(*(h.bot.save() for h in self.bots.values()), return_exceptions=True)
        left = STOP_SECONDS - (asyncio.get_running_loop().time() - started)
        settled = unanswered == 0
        try:
            for result in await asyncio.wait_for(saves, max(left, 0.5)):
                if isinstance(result, Exception):
                    log.error("stop: a bot could not be saved: %s", result)
        except TimeoutError:  # a tick still hangs (e.g. on an exchange timeout): its last step is durable
            settled = False
            log.error("stop: ticks still running after %.0f s; their last committed step stands", STOP_SECONDS)
        if self.leases is not None and settled:  # after every save, the next owner starts from them; after
            async with self._lease_beat:  # the heartbeat in flight, which the scheduler would cut short
                await self.leases.release()
        # not settled: a request may still reach the exchange; the leases expire after the fence instead
        if self.scheduler is not None:
            self.scheduler.shutdown()
        if self.capital_persister is not None:
            await self.capital_persister.flush()
        left = STOP_SECONDS + 1.0 - (asyncio.get_running_loop().time() - started)
        await self.event_bus.stop(timeout=min(max(left, 0.5), 5.0))
        self._started, self._stop_requested = False, None

    async def tick_all(self) -> None:
        """One tick of every bot, concurrently, and the entries they queued answered and booked (tests and
        ``--ticks``: each step ends settled)."""
        await asyncio.gather(*(h.bot.tick() for h in self.bots.values()))
        await self.gate.settled()
        await self.check_desk_risk()
        await self.check_storage()

    async def check_storage(self) -> None:
        """Is the database still there; when it was lost, is it back (orchestrator/storage.py)?"""
        waiting = self._unrecovered
        if not await self.storage.check(h.bot for h in self.bots.values() if h not in waiting):
            return  # once back, STORAGE_RESTORED's log line writes the kept ones
        if self.capital_persister is not None:
            await self.capital_persister.flush()
        if waiting:  # their recovery at start met the lost database: now
            self._unrecovered = []
            for handle in waiting:
                await self._recover(handle)
            await self._refuse_unknown({h.bot.symbol for h in waiting})

    async def _restore_daily_pnl(self) -> None:
        self.risk.roll_day()
        try:
            today = await self.db.realized_pnl_by_bot(since=self._midnight())
        except DatabaseError:  # as _day_pnl: no record, no loss today
            today = {}
        for name in self.bots:
            self.risk.realized_today[name] = today.get(name, ZERO)

    def _midnight(self) -> datetime:
        return self.clock().replace(hour=0, minute=0, second=0, microsecond=0)

    async def _day_pnl(self, name: str) -> Decimal:
        try:
            return await self.db.realized_pnl(name, since=self._midnight())
        except Exception:  # the bot may not exist in the DB yet
            return ZERO

    async def check_desk_risk(self) -> None:
        """Desk-wide rails and the capital manager's equity (run every few seconds)."""
        if self.fleet is not None:
            try:
                await self._check_fleet_risk(self.fleet)
            except DatabaseUnavailableError as exc:  # the fleet's rails are in the database: they wait for it
                self.storage.trip(exc)
            return
        if self.capital is None or self.capital.metrics is None:
            return
        self._mark_unrealized(sum((h.bot.unrealized_pnl() for h in self.bots.values()), ZERO))
        deployed = self.capital.allocated_capital
        if self.risk.desk_loss_hit(deployed):
            running = [h.bot for h in self.bots.values() if h.bot.state is BotState.RUNNING]
            if running:
                self._publish(RiskLimitHit("max_daily_loss (desk)", -self.risk.desk_day_pnl(),
                                           self.risk.rails.max_daily_loss * deployed))
                await self._pause_for_risk(running)

    async def _pause_for_risk(self, bots: Iterable[BotOrchestrator]) -> None:
        for bot in bots:
            self.risk.paused_by_risk.add(bot.name)
            await bot.pause("risk", by="risk rail")

    def _mark_unrealized(self, unrealized: Decimal) -> None:
        assert self.capital is not None
        if self.capital.metrics is not None and abs(unrealized - self.capital.metrics.unrealized_pnl) >= Decimal("0.01"):
            self.capital.update_unrealized_pnl(unrealized)

    async def _check_fleet_risk(self, fleet: FleetRails) -> None:
        """A fleet's worker writes its bots' marks; the leader marks the fleet's unrealised PnL and trips the desk
        rail for every worker (risk.py ``FleetRails``); every worker obeys it."""
        await fleet.publish({name: mark for name, h in self.bots.items() if (mark := h.bot.mark()) is not None})
        if self.capital is None or self.capital.metrics is None:
            return
        if self.leader and self._led:
            unrealized = await fleet.unrealized(self.bots.keys() | self.standby.keys())  # the bots file's bots
            self._mark_unrealized(unrealized)
            if hit := await fleet.check_loss(self.capital.allocated_capital, unrealized):
                self._publish(hit)
        await self.obey_fleet_rail()

    async def obey_fleet_rail(self) -> None:
        """While the fleet's daily-loss rail is tripped today, this worker's running bots pause."""
        if self.fleet is not None and await self.fleet.tripped():
            await self._pause_for_risk([h.bot for h in self.bots.values() if h.bot.state is BotState.RUNNING])

    # ================================================================== fill streams (orchestrator/fill_stream.py)
    def _open_fill_streams(self, handles: Iterable[BotHandle] | None = None) -> None:
        """One private stream per account (its clients of every market type share it). A bot taken
        over later (from another desk, or worker) joins its account's stream, opened then if this
        desk had none for that account."""
        if self.open_fill_stream is None or self.gate.closed:  # stopping: its streams are closed
            return
        opened = []
        for h in list(self.bots.values()) if handles is None else handles:
            client = h.bot.client
            account = getattr(client, "account_id", id(client))
            if account not in self._account_streams:
                fills = AccountFills([])
                self._account_streams[account] = fills, self.open_fill_stream(client, fills)
                self.fill_streams.append(self._account_streams[account])
                opened.append(self._account_streams[account])
            fills, stream = self._account_streams[account]
            if h.bot not in fills.bots:
                fills.bots.append(h.bot)
            h.bot.fill_stream = stream
            h.bot.market.account_stream = stream  # positions and wallet pushed: read without REST
        for fills, stream in opened:
            stream.start()
            if self.scheduler is not None and self.started_at is not None:  # a takeover: ticking already
                self._schedule_reconcile(self.fill_streams.index((fills, stream)), fills)

    # ================================================================== perpetuals (orchestrator/perp.py)
    def _linear_accounts(self) -> list[tuple[ExchangePort, list[BotHandle]]]:
        """Each account trading perpetuals with its linear bots."""
        groups: dict[int, tuple[ExchangePort, list[BotHandle]]] = {}
        for h in self.bots.values():
            if h.spec.market_type == "linear":
                groups.setdefault(id(h.bot.client), (h.bot.client, []))[1].append(h)
        return list(groups.values())

    async def _prepare_perp(self) -> dict[str, str]:
        """Position mode and leverage once per account and symbol; returns the bots refused, with why."""
        refused: dict[str, str] = {}

        async def account(client: ExchangePort, handles: list[BotHandle]) -> None:
            for symbol in sorted({h.spec.symbol for h in handles}):
                group = [h for h in handles if h.spec.symbol == symbol]
                try:
                    await prepare_linear(client, symbol, {h.spec.name: h.spec.leverage for h in group})
                except PerpSetupError as exc:
                    refused.update((h.spec.name, str(exc)) for h in group)
                except Exception as exc:  # e.g. the exchange unreachable: those bots fail as recovery would
                    log.exception("%s: position mode / leverage check failed", symbol)
                    refused.update((h.spec.name, f"{type(exc).__name__}: {exc}") for h in group)

        await _at_most(RECOVERY_CONCURRENCY, [account(client, handles) for client, handles in self._linear_accounts()])
        return refused

    async def check_perp(self) -> None:
        """Per account: the liquidation alert on its positions (its private stream's while that runs), then its
        funding, read for all its symbols at once and only when a settlement may have been charged
        (perp.FundingWatch), booked to the bots of each symbol."""
        for client, handles in self._linear_accounts():
            try:
                rows = self.positions_seen[id(client)] = await self._positions_of(client, handles)
                risks = [position_risk(r) for r in rows]
                for alert in self.liquidation_watch.check(id(client), risks, self.risk.rails.liquidation_alert):
                    self._publish(alert)
                await self._book_funding(client, handles)
            except Exception:  # the next check retries; the ticks go on meanwhile
                log.exception("perpetual risk check failed")

    async def _book_funding(self, client: ExchangePort, handles: list[BotHandle]) -> None:
        symbols = sorted({h.spec.symbol for h in handles})
        market = handles[0].bot.market
        announced = {s: (await market.ticker(s)).get("next_funding") for s in symbols}  # pushed while streams run
        asked_at = int(time.time() * 1000)  # the exchange's clock, as its rows are
        if not self.funding_watch.due(id(client), announced, asked_at):
            return
        since = min((s for h in handles if (s := h.bot.funding_since) is not None), default=None)
        rows = await client.fetch_funding(None, since)
        for symbol in symbols:
            group = [h for h in handles if h.spec.symbol == symbol]
            mine = [r for r in rows if r["symbol"] == normalize_symbol(symbol)]
            sizes = [sum((p.size for p in h.bot.strategy.get_active_positions()), ZERO) for h in group]
            for handle, charges in zip(group, share_funding(mine, sizes), strict=True):
                try:
                    await handle.bot.book_funding(charges, looked_until=asked_at - FUNDING_LAG_MS)
                except LeaseLapsed as exc:  # taken over meanwhile: its new owner books the funding
                    log.warning("%s: funding not booked here: %s", handle.spec.name, exc)
        self.funding_watch.read(id(client), announced, asked_at)  # all booked; a failure reads again next check

    async def _account_positions(self, only: ExchangePort | None = None) -> dict[int, list[dict[str, Any]]]:
        """Each linear account's (``only``: that one's) open positions (``fetch_positions`` rows) by account
        id; an account that cannot be asked now is absent. One request per account, whatever its symbols."""
        out: dict[int, list[dict[str, Any]]] = {}
        for client, handles in self._linear_accounts():
            if only is not None and client is not only:
                continue
            try:
                out[id(client)] = self.positions_seen[id(client)] = await self._positions_of(client, handles)
            except Exception as exc:
                log.warning("positions from the exchange unavailable: %s", exc)
        return out

    @staticmethod
    async def _positions_of(client: ExchangePort, handles: list[BotHandle]) -> list[dict[str, Any]]:
        """The account's positions, as its bots' market data keeps them (pushed on its private stream)."""
        market = handles[0].bot.market
        return await (market.positions() if market.client is client else client.fetch_positions())

    async def _exchange_risk(self, only: ExchangePort | None = None) -> dict[tuple[int, str], PositionRisk]:
        """The accounts' (``only``: one account's) perpetual positions by (account, symbol); none when ByBit
        cannot be asked now."""
        return {(account, r["symbol"]): position_risk(r)
                for account, rows in (await self._account_positions(only)).items() for r in rows}

    def _publish(self, payload: Payload) -> None:
        self.event_bus.publish(TradingEvent.of(DESK, payload))

    def _phase_changed(self, previous: DeploymentPhase, approved_by: str | None) -> PhaseChanged:
        cm = self._cm()
        return PhaseChanged(cm.phase, previous, cm.phases[cm.phase].allocation, cm.allocated_capital, approved_by)

    # ================================================================== lookup
    def resolve_bot(self, prefix: str) -> str:
        """The bot whose name is ``prefix`` or uniquely starts with it (case-insensitive)."""
        return resolve_name(prefix, self.bots)

    def bot_names(self) -> list[str]:
        return list(self.bots)

    def strategy_of(self, name: str) -> str | None:
        handle = self.bots.get(name)
        return handle.spec.strategy if handle else None

    def _bot(self, name: str) -> BotOrchestrator:
        return self.bots[self.resolve_bot(name)].bot

    # ================================================================== bots
    async def list_bots(self) -> list[BotSummary]:
        return [_summary(h.bot) for h in self.bots.values()]

    async def desk_status(self) -> DeskStatus:
        """The desk: state counts, capital, every bot's summary; from memory, no request (the perpetual
        positions as the last check read them)."""
        states: dict[str, int] = {}
        for h in self.bots.values():
            states[h.bot.state.value] = states.get(h.bot.state.value, 0) + 1
        cm = self.capital
        return DeskStatus(
            bots=tuple(await self.list_bots()),
            states=states,
            refused=tuple(RefusedBot(n, r) for n, r in self.refused),
            halted=bool(cm and cm.halted),
            halt_reason=cm.halt_reason if cm else None,
            phase=cm.phase.value if cm else None,
            allocated_capital=cm.allocated_capital if cm else None,
            exposure=self.risk.total_exposure(),
            exposure_limit=self.risk.exposure_limit(cm.allocated_capital) if cm else None,
            day_pnl=self.risk.desk_day_pnl(),
            storage_lost=self.storage.lost,
            exchange_positions=tuple(position_risk(r) for rows in self.positions_seen.values() for r in rows),
        )

    async def bot_status(self, name: str) -> BotStatus:
        """One bot's details (``name``: a unique prefix is enough)."""
        bot = self._bot(name)
        performance = bot.strategy.get_performance()
        risk = await self._exchange_risk(bot.client) if bot.market_type == "linear" else {}
        return BotStatus(
            **vars(_summary(bot)),
            ticks=bot.ticks,
            last_tick_at=bot.last_tick_at,
            tick_seconds=bot.tick_seconds,
            timeframes=tuple(bot.strategy.timeframes),
            params=dict(bot.strategy.params),
            positions=tuple(_position(bot.name, p, exchange=risk.get((id(bot.client), bot.symbol)))
                            for p in bot.strategy.get_active_positions()),
            total_trades=performance.total_trades,
            win_rate=performance.win_rate,
            total_fees=performance.total_fees,
            day_pnl=self.risk.bot_day_pnl(bot.name),
        )

    async def start_bot(self, name: str, by: str = "operator") -> BotStatus:
        bot = self._bot(name)
        if any(h.bot is bot for h in self._unrecovered):
            raise ControlError(f"{bot.name} waits for the database to recover it; it starts by itself then.")
        if self.capital is not None and self.capital.halted:
            raise ControlError(f"Trading is halted ({self.capital.halt_reason}); resume trading first.")
        self.risk.paused_by_risk.discard(bot.name)
        await bot.start("operator", by=by)
        return await self.bot_status(bot.name)

    async def pause_bot(self, name: str, by: str = "operator") -> BotStatus:
        bot = self._bot(name)
        try:
            await bot.pause("operator", by=by)
        except IllegalTransition as exc:
            raise ControlError(f"{bot.name} is {bot.state.value}: it cannot be paused.") from exc
        return await self.bot_status(bot.name)

    async def stop_bot(self, name: str, by: str = "operator") -> BotStatus:
        bot = self._bot(name)
        try:
            await bot.stop("operator", by=by)
        except IllegalTransition as exc:
            raise ControlError(f"{bot.name} is {bot.state.value}: it cannot be stopped.") from exc
        return await self.bot_status(bot.name)

    async def start_all(self, by: str = "operator") -> StartAllOutcome:
        """Start every bot that is not running; one refusal (e.g. the halt) is listed once."""
        names = [n for n, h in self.bots.items() if h.bot.state is not BotState.RUNNING]
        started, errors = await _each_bot(self.start_bot, names, by)
        return StartAllOutcome(started, errors)

    async def pause_all(self, by: str = "operator") -> PauseAllOutcome:
        """Pause every running bot: no new entries, open positions still managed."""
        names = [n for n, h in self.bots.items() if h.bot.state is BotState.RUNNING]
        paused, errors = await _each_bot(self.pause_bot, names, by)
        return PauseAllOutcome(paused, errors)

    async def stop_all(self, by: str = "operator") -> StopAllOutcome:
        """Every bot STOPPED, bounded: the send gate closes first (no order leaves from this instant;
        sends waiting for the rate limiter are abandoned, their rows left PENDING for reconciliation),
        then the bots stop together (entry orders cancelled), then the gate reopens for a later start."""
        names = [n for n, h in self.bots.items() if h.bot.state is not BotState.STOPPED]
        was_closed = self.gate.closed
        self.gate.close()
        try:
            results = await asyncio.gather(*(self.bots[n].bot.stop("operator", by=by) for n in names),
                                           return_exceptions=True)
        finally:
            if not was_closed:
                self.gate.reopen()
        stopped = tuple(n for n, r in zip(names, results, strict=True) if r is None)
        errors = tuple(sorted({f"{n}: {r}" for n, r in zip(names, results, strict=True) if r is not None}))
        return StopAllOutcome(stopped, errors)

    # ================================================================== account
    async def balances(self) -> list[Wallet]:
        out: list[Wallet] = []
        for market_type, client in self.clients.items():
            try:
                raw = await client.fetch_balance()
            except Exception as exc:
                raise ControlError(f"The exchange did not answer the balance request ({type(exc).__name__}).") from exc
            out.append(Wallet(market_type, free=raw["free"], used=raw["used"], total=raw["total"]))
            if len(set(map(id, self.clients.values()))) == 1:
                break  # one account for every market type
        return out

    async def positions(self) -> list[PositionView]:
        risk = await self._exchange_risk()
        return [_position(h.bot.name, p, h.bot.last_price, risk.get((id(h.bot.client), h.spec.symbol)))
                for h in self.bots.values() for p in h.bot.strategy.get_active_positions()]

    def _storage_lost(self, exc: DatabaseUnavailableError) -> None:
        self.storage.trip(exc)

    async def _equity_start(self, bot_name: str | None) -> Decimal:
        if bot_name:
            return self.bots[bot_name].bot.allocated_capital
        return self.capital.allocated_capital if self.capital else ZERO

    # ================================================================== capital
    def _cm(self) -> CapitalManager:
        if self.capital is None:
            raise ControlError("Capital deployment is not configured on this desk.")
        return self.capital

    async def _judged(self) -> CapitalManager:
        """The capital manager, its record brought up to the fleet's figures first (a fleet's leader)."""
        cm = self._cm()
        if self.capital_record is not None:
            await self.capital_record(cm)
        return cm

    async def capital_report(self) -> CapitalReport:
        cm = await self._judged()
        now = self.clock()
        return CapitalReport(
            total_capital=cm.total_capital, phase=cm.phase.value, allocated_capital=cm.allocated_capital,
            halted=cm.halted, halt_reason=cm.halt_reason,
            current=_phase_record(cm.metrics, now) if cm.metrics else None,
            gates=cm.phases.get(cm.phase), history=tuple(_phase_record(m, now) for m in cm.history),
        )

    async def evaluate_scaling(self) -> ScalingCheck:
        decision = (await self._judged()).evaluate_scaling()
        self._publish(ScalingDecisionMade(decision.can_scale, decision.current_phase, decision.next_phase,
                                          tuple(decision.reasons), tuple(decision.blockers)))
        return _scaling_check(decision)

    async def approve_scaling(self, approved_by: str, *,
                              approver: str | None = None) -> ScalingApproved | ScalingPending:
        """Re-check the gates now (they may have changed since the decision was shown), then scale once
        ``scaling_approvals_required`` distinct approvers (``approver``: a stable id, default
        ``approved_by``) agreed on this step; until then each new one is counted and recorded, a
        repeated one is not. The count lives in memory: a restart asks again."""
        cm = await self._judged()
        decision = cm.evaluate_scaling()
        if not decision.can_scale or decision.next_phase is None:
            raise ControlError("Scaling blocked: " + "; ".join(decision.blockers or decision.reasons))
        step = (cm.phase.value, decision.next_phase.value)
        approvers, repeated = self._count_approval(step, str(approved_by), approver or str(approved_by))
        if len(approvers) < self.scaling_approvals_required:
            if not repeated:
                await self.db.record_approval(f"approve {len(approvers)}/{self.scaling_approvals_required}",
                                              *step, str(approved_by), decision.to_dict())
            return ScalingPending(*step, tuple(approvers.values()), self.scaling_approvals_required, repeated,
                                  _scaling_check(decision))
        self._approvals = None
        last, approved_by = str(approved_by), ", ".join(approvers.values())
        before = cm.phase
        try:
            allocated = cm.advance_phase()
        except ScalingBlockedError as exc:
            raise ControlError(str(exc)) from exc
        # the earlier approvers have their own "approve k/n" rows; this one took the step
        await self.db.record_approval("approve", before.value, cm.phase.value, last,
                                      {**decision.to_dict(), "approvers": list(approvers.values())})
        self.offers.answered(before.value, self.clock())
        await self._resize()
        if self.capital_persister is not None:
            await self.capital_persister.flush()
        await self._tell("capital")  # the fleet's other workers re-size theirs
        self._publish(self._phase_changed(before, str(approved_by)))
        return ScalingApproved(before.value, cm.phase.value, allocated, str(approved_by), _scaling_check(decision))

    def _count_approval(self, step: tuple[str, str], label: str, key: str) -> tuple[dict[str, str], bool]:
        """The approvers of ``step`` with this one added; True when it had already approved."""
        if self._approvals is None or self._approvals[0] != step:
            self._approvals = (step, {})  # another step than the one being approved: start over
        approvers = self._approvals[1]
        repeated = key in approvers
        approvers.setdefault(key, label)
        return approvers, repeated

    async def reject_scaling(self, by: str) -> ScalingRejected:
        cm = await self._judged()
        decision = cm.evaluate_scaling()
        nxt = decision.next_phase.value if decision.next_phase else None
        self._approvals = None  # a rejection voids the approvals gathered so far
        await self.db.record_approval("reject", cm.phase.value, nxt, str(by), decision.to_dict())
        self.offers.answered(cm.phase.value, self.clock())
        await self._tell("capital")
        return ScalingRejected(cm.phase.value, nxt, str(by), _scaling_check(decision))

    async def offer_scaling(self) -> bool:
        """When every gate of the current phase passes, push the decision to the operator (SCALING_OFFERED):
        once per phase, again daily until answered. True when an offer went out now."""
        if self.capital is None:
            return False
        offer = await self.offers.offer((await self._judged()).evaluate_scaling(), self.clock())
        if offer is not None:
            self._publish(offer)
        return offer is not None

    async def halt(self, reason: str, by: str) -> HaltOutcome:
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
        self._publish(Halted(text, str(by), tuple(paused)))  # the db-log writer records it, once
        return HaltOutcome(text, tuple(paused))  # the reason as given: the view says who halted

    async def resume_trading(self, by: str) -> ResumeOutcome:
        cm = self._cm()
        try:
            cm.resume()
        except CapitalManagerError as exc:
            halted_here = any(h.bot.paused_by == "halt" for h in self.bots.values())
            if self.fleet is None or not halted_here:  # a fleet's worker may have re-read the leader's resume first
                raise ControlError("Trading is not halted.") from exc
        resumed = []
        for handle in self.bots.values():
            if handle.bot.state is BotState.PAUSED and handle.bot.paused_by == "halt":
                await handle.bot.resume("halt lifted", by=str(by))
                resumed.append(handle.bot.name)
        if self.capital_persister is not None:
            await self.capital_persister.flush()
        self._publish(Resumed(str(by), tuple(resumed)))
        return ResumeOutcome(tuple(resumed))

    # ================================================================== reports
    def announce_started(self, mode: str, report: Mapping[str, Mapping[str, int | str]]) -> None:
        """DESK_STARTED: what runs and what start-up recovery found (``start()``'s report)."""
        def total(key: str) -> int:
            return sum(int(counts.get(key, 0)) for counts in report.values() if "error" not in counts)

        problems = tuple(f"{name}: recovery failed: {counts['error']}" for name, counts in report.items()
                         if "error" in counts)
        problems += tuple(f"{name}: {counts['strangers']} order(s) on the exchange the database does not know"
                          for name, counts in report.items() if counts.get("strangers"))
        self._publish(DeskStarted(mode, tuple(self.bots), self.capital.phase if self.capital else None,
                                  total("filled_while_down"), total("adopted"), total("failed"), problems))

    def announce_stopping(self, reason: str) -> None:
        self._publish(DeskStopping(reason))

    def tick_silence(self) -> tuple[float, float] | None:
        """(seconds since the last completed tick, the stall limit); None when no tick is scheduled."""
        since = self.last_tick_at or self.started_at
        if since is None or not self.bots:
            return None
        limit = self.stall_ticks * min(h.bot.tick_seconds for h in self.bots.values())
        return (self.clock() - since).total_seconds(), limit

    def check_stall(self) -> bool:
        """TICKS_STALLED once when no tick completed for ``stall_ticks`` intervals; again after ticks resumed
        and stalled anew. True when the alert went out now."""
        silence = self.tick_silence()
        stalled = silence is not None and silence[0] > silence[1]
        alert = stalled and not self._stall_alerted
        self._stall_alerted = stalled
        if alert and silence is not None:
            worker = self.leases.owner if self.leases is not None and self.leases.fleet else None
            self._publish(TicksStalled(*silence, worker=worker))
        return alert

    async def health(self, timeout: float = 5.0) -> Health:
        """Are the ticks running, does the exchange answer within ``timeout`` seconds (one cached ticker
        per market type)."""
        silence = self.tick_silence()
        if silence is None:
            scheduler = Check(False, "no tick scheduled")
        else:
            scheduler = Check(silence[0] <= silence[1], f"last tick {silence[0]:.0f} s ago (limit {silence[1]:.0f} s)")
        return Health({"scheduler": scheduler, "exchange": await self._exchange_check(timeout)})

    async def _exchange_check(self, timeout: float) -> Check:
        symbols = {h.spec.market_type: h.spec.symbol for h in self.bots.values()}
        try:
            for market_type, symbol in symbols.items():
                await asyncio.wait_for(self.market[market_type].ticker(symbol), timeout)
        except Exception as exc:  # any failure is the answer
            return Check(False, f"{type(exc).__name__}: {exc}"[:200])
        return Check(True, f"answers ({', '.join(sorted(symbols))})")

    async def digest(self, day_end: datetime) -> Digest:
        """The 24 hours up to ``day_end`` (timezone-aware, the operator's local time): what closed, per bot and
        in total, the errors logged; and the desk now: exposure, unrealised PnL, progress against each gate."""
        cm = await self._judged() if self.capital is not None else None
        return await self.day_digest(
            day_end, self.bots, unrealized=sum((h.bot.unrealized_pnl() for h in self.bots.values()), ZERO),
            exposure=self.risk.total_exposure(),
            exposure_limit=self.risk.exposure_limit(cm.allocated_capital) if cm else None, capital=cm)


async def _each_bot(op: BotOp, names: list[str], by: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Apply ``op(name, by)`` to each bot in turn: (names done, distinct refusals in order)."""
    done: list[str] = []
    errors: list[str] = []
    for name in names:
        try:
            await op(name, by)
            done.append(name)
        except ControlError as exc:
            if str(exc) not in errors:
                errors.append(str(exc))
    return tuple(done), tuple(errors)


def _short(text: str) -> str:
    return text if len(text) <= AUDIT_ARGS_CHARS else text[:AUDIT_ARGS_CHARS - 1] + "…"


# ---------------------------------------------------------------------- results from the running pieces
def is_funding(t: TradeRow) -> bool:
    return (t.tag or "").startswith(FUNDING_TAG)


def _bot_day(name: str, closed: list[TradeRow]) -> BotDay:
    """One bot's part of a digest: its funding counts in its PnL, not as a trade."""
    mine = [t for t in closed if t.bot_name == name]
    trades = [t for t in mine if not is_funding(t)]
    return BotDay(name, _pnl_sum(mine), len(trades), sum((t.fees for t in trades), ZERO))


def _pnl_sum(trades: list[TradeRow]) -> Decimal:
    return sum((t.pnl or ZERO for t in trades), ZERO)


def _utc(value: datetime) -> datetime:
    """A stored time as aware UTC (SQLite gives it back naive)."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _log_level(event_type: EventType) -> str:
    if event_type in (EventType.ERROR, EventType.ORDER_FAILED, EventType.STORAGE_LOST):
        return "ERROR"
    warnings = (EventType.RISK_LIMIT, EventType.HALTED, EventType.LIQUIDATION_RISK, EventType.LIQUIDATED,
                EventType.TICKS_STALLED)
    return "WARNING" if event_type in warnings else "INFO"


def _summary(bot: BotOrchestrator) -> BotSummary:
    return BotSummary(
        name=bot.name, strategy=bot.strategy.strategy_type, symbol=bot.symbol, market_type=bot.market_type,
        state=bot.state.value, paused_by=bot.paused_by, allocated_capital=bot.allocated_capital,
        realized_pnl=bot._realized, unrealized_pnl=bot.unrealized_pnl(),
        open_positions=len(bot.strategy.get_active_positions()), open_orders=len(bot.open_orders),
        last_price=bot.last_price, last_error=bot.last_error,
    )


def _position(bot: str, p: PositionInfo, price: Decimal | None = None,
              exchange: PositionRisk | None = None) -> PositionView:
    return PositionView(
        bot=bot, position_id=p.position_id, side=p.direction.value, size=p.size, entry_price=p.entry_price,
        stop_loss=p.stop_loss, take_profit=p.take_profit, current_price=price or p.current_price,
        unrealized_pnl=(p.gross_pnl_at(price) - p.fees) if price else p.unrealized_pnl, opened_at=p.entry_time,
        exchange=exchange,
    )


def _order(o: OrderRow) -> OrderView:
    return OrderView(
        bot=o.bot_name, client_order_id=o.client_order_id, exchange_order_id=o.exchange_order_id, symbol=o.symbol,
        side=o.side, order_type=o.order_type, qty=o.qty, price=o.price, status=o.status, filled_qty=o.filled_qty,
        tag=o.tag, created_at=o.created_at,
    )


def _trade(t: TradeRow) -> TradeView:
    return TradeView(
        id=t.id, bot=t.bot_name, symbol=t.symbol, side=t.side, qty=t.qty, entry_price=t.entry_price,
        exit_price=t.exit_price, pnl=t.pnl, fees=t.fees, opened_at=t.opened_at, closed_at=t.closed_at, tag=t.tag,
    )


def _phase_record(m: PhaseMetrics, now: datetime) -> PhaseRecord:
    return PhaseRecord(
        phase=m.phase.value, started_at=m.started_at, duration_days=((m.ended_at or now) - m.started_at).days,
        total_trades=m.total_trades, winning_trades=m.winning_trades, win_rate=m.win_rate,
        realized_pnl=m.realized_pnl, unrealized_pnl=m.unrealized_pnl, equity=m.equity,
        max_drawdown_pct=m.max_drawdown_pct, errors_count=m.errors_count,
    )


def _scaling_check(d: ScalingDecision) -> ScalingCheck:
    return ScalingCheck(d.can_scale, d.current_phase.value, d.next_phase.value if d.next_phase else None,
                        tuple(d.reasons), tuple(d.blockers))


async def _at_most(limit: int, jobs: list[Awaitable[T]]) -> list[T]:
    """The jobs' results in their order, at most ``limit`` of them running at once."""
    slots = asyncio.Semaphore(limit)

    async def one(job: Awaitable[T]) -> T:
        async with slots:
            return await job

    return list(await asyncio.gather(*(one(job) for job in jobs)))


def _by_account(handles: list[BotHandle]) -> list[BotHandle]:
    """The bots, those of one account (their ``MarketData``) next to each other."""
    accounts: dict[int, list[BotHandle]] = {}
    for handle in handles:
        accounts.setdefault(id(handle.bot.market), []).append(handle)
    return [handle for bots in accounts.values() for handle in bots]
