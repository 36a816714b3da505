"""One Telegram console for a fleet of desk workers on one PostgreSQL database (`traderagent console`).

`ConsoleDesk` is what the handlers call (``ports.DeskPort``), as `control.Desk` is in a single desk:

* reads come from the database: the bots and their states as the workers persist them, orders,
  trades, logs, daily PnL, the audit trail, the capital state, and the leases (which worker runs
  which bot; a bot no worker holds is listed as refused);
* a command for a bot (start, pause, stop, its detailed status) goes to the worker holding its lease;
  a desk-wide one (capital, scaling, balances, digest) to the leader, the worker holding ``@desk``;
  what concerns every bot (halt, resume, start/pause/stop all, positions) to every worker, each for
  its own bots, the answers merged (fleet/bus.py).

`Console` runs the real Telegram frontend (handlers/) on a `ConsoleDesk`; its outbox delivers the
alerts every worker stored, woken by NOTIFY, with a slow poll as backstop. It also sends the fleet's
scaling offers and daily digest (reports.py `FleetWatch`, which says why the console does).
/status reads every bot's price, position and unrealised PnL as its worker last wrote them at its risk
check (results.BotMark, table ``bot_marks``), shown with their age once stale.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import signal
import sys
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, TypeVar

from traderagent.config import FLEET_NEEDS_POSTGRESQL, Settings
from traderagent.control import ZERO, ControlError, Desk, Records, resolve_name
from traderagent.database.manager import DatabaseManager
from traderagent.database.models import BotModel
from traderagent.fleet.bus import DESK_LEASE, CommandBus, Listener, channel, decode_as, decode_list, poll
from traderagent.fleet.record import fleet_capital
from traderagent.orchestrator.events import EventBus
from traderagent.results import (
    BotMark,
    BotStatus,
    BotSummary,
    CapitalReport,
    DeskStatus,
    Digest,
    HaltOutcome,
    PauseAllOutcome,
    PositionView,
    RefusedBot,
    ResumeOutcome,
    ScalingApproved,
    ScalingCheck,
    ScalingPending,
    ScalingRejected,
    StartAllOutcome,
    StopAllOutcome,
    Wallet,
)
from traderagent.utils.capital_manager import CapitalManager, ScalingDecision

if TYPE_CHECKING:
    from handlers.app import TelegramFrontend
    from traderagent.ports import DeskPort

log = logging.getLogger(__name__)

OUTBOX_POLL = 5.0  # seconds: the console looks for stored alerts this often even without a NOTIFY
REFRESH_SECONDS = 30.0  # the bot names the handlers resolve are read again this often (and by every read)
KEEP_COMMANDS = dt.timedelta(days=7)  # finished commands are deleted after this
NO_WORKER = "no desk worker runs it (none holds its lease)"
T = TypeVar("T")


class ConsoleDesk(Records):
    """The fleet's use-cases for the handlers; see the module docstring."""

    db: DatabaseManager

    def __init__(self, db: DatabaseManager, bus: CommandBus, *,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.db = db
        self.bus = bus
        self.clock = clock
        self._bots: dict[str, BotModel] = {}  # the last read of the bots table (names resolve against it)
        self._workers: dict[str, str] = {}  # bot (or @desk) -> the worker holding its valid lease

    # ------------------------------------------------------------------ what the fleet runs
    async def refresh(self) -> None:
        """Read the bots and who runs them (every read use-case does; names resolve against the last read)."""
        self._bots = {b.name: b for b in await self.db.list_bots()}
        now = datetime.now(UTC)
        leases = await self.db.lease_holders([*self._bots, DESK_LEASE])
        self._workers = {r.bot_name: r.owner for r in leases if r.expires_at > now}

    def bot_names(self) -> list[str]:
        return list(self._bots)

    def strategy_of(self, name: str) -> str | None:
        row = self._bots.get(name)
        return row.strategy if row else None

    def resolve_bot(self, prefix: str) -> str:
        return resolve_name(prefix, self._bots)

    def _worker_targets(self) -> list[str]:
        """One lease per live worker (a bot it runs, or @desk), to address each worker once."""
        targets: dict[str, str] = {}
        for name, owner in sorted(self._workers.items(), key=lambda item: item[0] == DESK_LEASE):
            targets.setdefault(owner, name)
        return list(targets.values())

    # ------------------------------------------------------------------ reads from the database
    async def marks(self) -> dict[str, BotMark]:
        """Every bot's last price, position and uPnL as its worker last wrote them (results.BotMark)."""
        return await self.db.bot_marks()

    async def list_bots(self) -> list[BotSummary]:
        await self.refresh()
        return await self._summaries(await self.marks())

    async def _summaries(self, marks: Mapping[str, BotMark]) -> list[BotSummary]:
        orders = Counter(o.bot_name for o in await self.db.list_non_final_orders())
        positions = Counter(t.bot_name for t in await self.db.list_open_trades())
        return [BotSummary(
            name=b.name, strategy=b.strategy, symbol=b.symbol, market_type=b.market_type, state=b.state,
            paused_by=None, allocated_capital=b.allocated_capital, realized_pnl=await self.db.realized_pnl(b.name),
            unrealized_pnl=mark.unrealized_pnl if mark else ZERO, open_positions=positions.get(b.name, 0),
            open_orders=orders.get(b.name, 0), last_price=mark.last_price if mark else None, last_error=None,
            priced_at=mark.priced_at if mark else None) for b in self._bots.values() for mark in [marks.get(b.name)]]

    async def desk_status(self) -> DeskStatus:
        await self.refresh()
        marks = await self.marks()
        bots = await self._summaries(marks)
        states = dict(Counter(b.state for b in bots))
        cm = await self._capital()
        midnight = self.clock().astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        return DeskStatus(
            bots=tuple(bots), states=states,
            refused=tuple(RefusedBot(b.name, NO_WORKER) for b in bots if b.name not in self._workers),
            halted=bool(cm and cm.halted), halt_reason=cm.halt_reason if cm else None,
            phase=cm.phase.value if cm else None, allocated_capital=cm.allocated_capital if cm else None,
            exposure=_exposure(marks, self._bots), exposure_limit=None,
            day_pnl=await self.db.realized_pnl(since=midnight),
            storage_lost=None, workers={n: o for n, o in self._workers.items() if n != DESK_LEASE})

    async def _capital(self) -> CapitalManager | None:
        state = await self.db.load_capital_state()
        return CapitalManager.from_state(state) if state else None

    async def _equity_start(self, bot_name: str | None) -> Decimal:
        if bot_name:
            return self._bots[bot_name].allocated_capital
        cm = await self._capital()
        return cm.allocated_capital if cm else ZERO

    # ------------------------------------------------------------------ one bot: its worker
    async def _bot_call(self, operation: str, name: str, by: str) -> BotStatus:
        await self.refresh()
        bot = self.resolve_bot(name)
        arguments = {"by": by} if operation != "bot_status" else {}
        return decode_as(await self.bus.call(bot, operation, arguments, by=by), BotStatus)

    async def bot_status(self, name: str) -> BotStatus:
        return await self._bot_call("bot_status", name, "")

    async def start_bot(self, name: str, by: str = "operator") -> BotStatus:
        return await self._bot_call("start_bot", name, by)

    async def pause_bot(self, name: str, by: str = "operator") -> BotStatus:
        return await self._bot_call("pause_bot", name, by)

    async def stop_bot(self, name: str, by: str = "operator") -> BotStatus:
        return await self._bot_call("stop_bot", name, by)

    # ------------------------------------------------------------------ the desk: the leader
    async def _leader(self, operation: str, kind: type[T], arguments: Mapping[str, Any] | None = None, *,
                      by: str = "") -> T:
        return decode_as(await self.bus.call(DESK_LEASE, operation, arguments, by=by), kind)

    async def balances(self) -> list[Wallet]:
        return decode_list(await self.bus.call(DESK_LEASE, "balances"), Wallet)

    async def capital_report(self) -> CapitalReport:
        return await self._leader("capital_report", CapitalReport)

    async def evaluate_scaling(self) -> ScalingCheck:
        return await self._leader("evaluate_scaling", ScalingCheck)

    async def approve_scaling(self, approved_by: str, *,
                              approver: str | None = None) -> ScalingApproved | ScalingPending:
        result = await self.bus.call(DESK_LEASE, "approve_scaling", {"approved_by": approved_by,
                                                                      "approver": approver}, by=approved_by)
        if not isinstance(result, ScalingApproved | ScalingPending):
            raise TypeError(f"approve_scaling answered {type(result).__name__}")
        return result

    async def reject_scaling(self, by: str) -> ScalingRejected:
        return await self._leader("reject_scaling", ScalingRejected, {"by": by}, by=by)

    async def digest(self, day_end: dt.datetime) -> Digest:
        """Every worker's bots, from the database: their trades and errors, the unrealised PnL and exposure
        their workers last saved, the gates on the fleet's record (fleet/record.py)."""
        await self.refresh()
        marks = await self.marks()
        return await self.day_digest(
            day_end, self._bots, unrealized=sum((m.unrealized_pnl for m in marks.values()), ZERO),
            exposure=_exposure(marks, self._bots), exposure_limit=None, capital=await fleet_capital(self.db))

    async def scaling_decision(self) -> ScalingDecision | None:
        """The scaling gates judged on the fleet's record (None: capital deployment not started)."""
        cm = await fleet_capital(self.db)
        return cm.evaluate_scaling() if cm else None

    # ------------------------------------------------------------------ every bot: every worker
    async def _each_worker(self, operation: str, arguments: Mapping[str, Any], by: str) -> list[Any]:
        """``operation`` on every live worker (for its own bots); the answers, or the first refusal when
        none answered."""
        return list((await self._answers(operation, arguments, by)).values())

    async def _answers(self, operation: str, arguments: Mapping[str, Any], by: str) -> dict[str, Any]:
        """worker -> its answer to ``operation`` (see _each_worker)."""
        await self.refresh()
        targets = self._worker_targets()
        if not targets:
            raise ControlError("No desk worker is running: start one (traderagent worker).")
        answers = await asyncio.gather(*(self.bus.call(t, operation, arguments, by=by) for t in targets),
                                       return_exceptions=True)
        done = {self._workers[t]: a for t, a in zip(targets, answers, strict=True) if not isinstance(a, BaseException)}
        errors = [a for a in answers if isinstance(a, BaseException)]
        if not done and errors:
            raise errors[0]
        for error in errors:
            if not isinstance(error, ControlError):
                raise error
            log.warning("%s: a worker refused: %s", operation, error)
        return done

    async def positions(self) -> list[PositionView]:
        """Every worker's positions, live (with stops, targets and ByBit's view); a bot whose worker did not
        answer (or that none runs) shows the position its worker last saved, with the figure's age."""
        try:
            answers = await self._answers("positions", {}, "")
        except ControlError:  # no worker answered: what they saved is all there is
            answers = {}
        live = [p for answer in answers.values() for p in decode_list(answer, PositionView)]
        answered = {bot for bot, worker in self._workers.items() if worker in answers}
        marks = await self.marks()
        return live + [_saved_position(name, marks[name]) for name in self._bots
                       if name not in answered and name in marks and marks[name].position_qty]

    async def start_all(self, by: str = "operator") -> StartAllOutcome:
        answers = [decode_as(a, StartAllOutcome) for a in await self._each_worker("start_all", {"by": by}, by)]
        return StartAllOutcome(_joined(a.started for a in answers), _distinct(a.errors for a in answers))

    async def pause_all(self, by: str = "operator") -> PauseAllOutcome:
        answers = [decode_as(a, PauseAllOutcome) for a in await self._each_worker("pause_all", {"by": by}, by)]
        return PauseAllOutcome(_joined(a.paused for a in answers), _distinct(a.errors for a in answers))

    async def stop_all(self, by: str = "operator") -> StopAllOutcome:
        answers = [decode_as(a, StopAllOutcome) for a in await self._each_worker("stop_all", {"by": by}, by)]
        return StopAllOutcome(_joined(a.stopped for a in answers), _distinct(a.errors for a in answers))

    async def halt(self, reason: str, by: str) -> HaltOutcome:
        answers = [decode_as(a, HaltOutcome)
                   for a in await self._each_worker("halt", {"reason": reason, "by": by}, by)]
        return HaltOutcome(answers[0].reason, _joined(a.paused for a in answers))

    async def resume_trading(self, by: str) -> ResumeOutcome:
        answers = [decode_as(a, ResumeOutcome) for a in await self._each_worker("resume_trading", {"by": by}, by)]
        return ResumeOutcome(_joined(a.resumed for a in answers))


def _saved_position(bot: str, mark: BotMark) -> PositionView:
    """A bot's net position as its worker last saved it (no stops or targets: those are the worker's)."""
    qty = mark.position_qty
    return PositionView(bot=bot, position_id="saved", side="long" if qty > 0 else "short", size=abs(qty),
                        entry_price=mark.position_avg or mark.last_price, stop_loss=None, take_profit=None,
                        current_price=mark.last_price, unrealized_pnl=mark.unrealized_pnl, opened_at=None,
                        priced_at=mark.priced_at)


def _exposure(marks: Mapping[str, BotMark], bots: Iterable[str]) -> Decimal:
    """The fleet's exposure as its workers last saved it (the bots still configured)."""
    return sum((marks[name].exposure for name in bots if name in marks), ZERO)


def _joined(parts: Iterable[tuple[str, ...]]) -> tuple[str, ...]:
    return tuple(sorted(name for part in parts for name in part))


def _distinct(parts: Iterable[tuple[str, ...]]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(text for part in parts for text in part))


if TYPE_CHECKING:  # mypy checks that both desks are what the handlers call
    def _fits(desk: Desk, console: ConsoleDesk) -> tuple[DeskPort, DeskPort]:
        return desk, console


# ---------------------------------------------------------------------- the console process
class Console:
    """The Telegram frontend on a `ConsoleDesk`, its outbox fed with the alerts the workers store."""

    def __init__(self, settings: Settings, db: DatabaseManager, *, command_timeout: float = 30.0,
                 outbox_poll: float = OUTBOX_POLL, clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 **frontend: Any) -> None:
        from traderagent.orchestrator.capital_wiring import ScalingOffers
        from traderagent.reports import DigestTime, FleetWatch

        self.settings = settings
        self.db = db
        self.listener = Listener(db)
        self.desk = ConsoleDesk(db, CommandBus(db, self.listener, timeout=command_timeout), clock=clock)
        self.events = EventBus()  # the console's own reports (FleetWatch) to the frontend
        digest = DigestTime(settings.digest_time, settings.timezone, clock()) if settings.digest_time else None
        self.watch = FleetWatch(self.desk, self.events,
                                ScalingOffers(db, ttl=dt.timedelta(hours=settings.offer_ttl_hours)), digest)
        self.outbox_poll = outbox_poll
        self.frontend_options = frontend  # limits, poll_timeout: the tests' pace
        self.frontend: TelegramFrontend | None = None
        self._alerts = asyncio.Event()
        self.listener.on(channel(db, "outbox"), lambda _payload: self._alerts.set())
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        from handlers.app import build_application

        await self.desk.refresh()
        await self.listener.ensure()  # before the first read: no alert stored meanwhile is missed
        self.frontend = build_application(self.settings, self.desk, self.events, **self.frontend_options)
        self.frontend.outbox.admits = self.frontend.notifier.admits  # the chat's mutes and verbosity, now
        await self.frontend.start()
        await self.events.start()
        await self.watch.load()
        self.watch.start()
        self._tasks = [asyncio.create_task(poll(self.listener, self._alerts, self.frontend.outbox.pick_up,
                                                self.outbox_poll), name="console-alerts"),
                       asyncio.create_task(self._housekeeping(), name="console-housekeeping")]

    async def _housekeeping(self) -> None:
        """The bots the workers run (new ones resolve without a read first), and old commands pruned."""
        while True:
            try:
                await self.db.prune_commands(datetime.now(UTC) - KEEP_COMMANDS)
                for _ in range(int(3600 / REFRESH_SECONDS)):
                    await asyncio.sleep(REFRESH_SECONDS)
                    await self.desk.refresh()
            except Exception:  # the database may be away: the next round tries again
                log.exception("console housekeeping failed")
                await asyncio.sleep(REFRESH_SECONDS)

    async def stop(self) -> None:
        await self.watch.stop()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.events.stop()
        if self.frontend is not None:
            await self.frontend.stop()
        await self.listener.close()


async def run_console(settings: Settings, stop_event: asyncio.Event | None = None) -> int:
    """`traderagent console`: until Ctrl-C / SIGTERM (or ``stop_event``)."""
    if not settings.on_postgresql:
        print(f"traderagent: the console: {FLEET_NEEDS_POSTGRESQL}", file=sys.stderr, flush=True)
        return 2
    if not settings.telegram_bot_token:
        print("traderagent: the console needs TELEGRAM_BOT_TOKEN and TELEGRAM_CHAT_IDS", file=sys.stderr, flush=True)
        return 2
    stop_event = stop_event or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop_event.set)
    db = DatabaseManager(settings.database_url, master_key=settings.master_key)
    console: Console | None = None
    try:
        await db.initialize()
        console = Console(settings, db)
        await console.start()
        print(f"TraderAgent console: {len(console.desk.bot_names())} bot(s) on "
              f"{db.url.render_as_string(hide_password=True)}. Ctrl-C to stop.", flush=True)
        await stop_event.wait()
        return 0
    finally:
        if console is not None:
            await console.stop()
        await db.close()
