"""The console and the desk workers of a fleet talk through PostgreSQL: durable tables are the truth,
LISTEN/NOTIFY is the wake-up.

* A command (``desk_commands``) is a row: the console inserts it and NOTIFYs in one transaction; the
  worker that holds the lease of its ``target`` (a bot, or ``@desk``, the leader's lease) claims it
  with one conditional UPDATE (of two claimants one wins), runs the `control.Desk` use-case, stores
  the result and NOTIFYs back; the console, waiting on that, answers the operator. A command not
  claimed by its deadline is marked expired and never runs: each runs at most once.
* Alerts: a worker's notifier writes outbox rows (handlers/outbox.py ``StoredAlerts``) and NOTIFYs;
  the console's outbox takes them up and delivers them, once, in order.
* Between workers (``FleetSignals``, `control.Desk.join_fleet`): "capital",
  the leader wrote a new capital state (an approval, a rejection): every worker re-reads it and re-sizes
  its bots (and at each lease heartbeat regardless); "risk", the leader tripped the desk's daily-loss rail
  (the ``desk_rails`` row): every worker pauses its running bots (and at each risk check regardless).

Why PostgreSQL rather than Redis Streams: a fleet already runs on one PostgreSQL database (the leases,
the bots' state), so there is no second engine to run, secure and back up; a NOTIFY is sent when the
writing transaction commits, so a command, an alert or a result is never announced before it is
there, nor lost when nobody listened: a console or worker that restarts reads the tables. NOTIFY only
wakes; a slow poll covers a listener whose connection dropped. Channels carry the schema's name, so
fleets in two schemas of one database do not wake each other.

Results cross as JSON through one codec (``encode`` / ``decode``): the `traderagent.results`
dataclasses, Decimal, datetimes, tuples and mappings round-trip exactly.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import logging
from collections.abc import Awaitable, Callable, Mapping
from decimal import Decimal
from typing import Any, TypeVar

import asyncpg

from traderagent import results
from traderagent.control import ControlError, Desk
from traderagent.database.manager import DatabaseManager
from traderagent.database.models import DeskCommand
from traderagent.database.types import utcnow
from traderagent.orchestrator.lease import DESK_LEASE  # the leader worker's lease: desk-wide commands
from traderagent.utils.capital_manager import PhaseGates

log = logging.getLogger(__name__)

POLL_SECONDS = 2.0  # the backstop when a NOTIFY is missed (a listener reconnecting)
STOP_SECONDS = 10.0  # a stopping worker lets the commands it runs finish for this long

T = TypeVar("T")

# ---------------------------------------------------------------------- the codec
RESULT_TYPES: dict[str, type] = {
    cls.__name__: cls for cls in vars(results).values()
    if isinstance(cls, type) and dataclasses.is_dataclass(cls) and cls.__module__ == results.__name__
} | {PhaseGates.__name__: PhaseGates}


def encode(value: Any) -> Any:
    """A result (or an argument) as JSON: dataclasses, Decimal, datetime, date, tuples tagged."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        name = type(value).__name__
        if RESULT_TYPES.get(name) is not type(value):
            raise TypeError(f"{name} is not a result type")
        return {"$type": name, **{f.name: encode(getattr(value, f.name)) for f in dataclasses.fields(value)}}
    if isinstance(value, Decimal):
        return {"$decimal": str(value)}
    if isinstance(value, dt.datetime):
        return {"$datetime": value.isoformat()}
    if isinstance(value, dt.date):
        return {"$date": value.isoformat()}
    if isinstance(value, tuple):
        return {"$tuple": [encode(v) for v in value]}
    if isinstance(value, list):
        return [encode(v) for v in value]
    if isinstance(value, Mapping):
        return {"$map": {str(k): encode(v) for k, v in value.items()}}
    if value is None or isinstance(value, bool | int | float | str):
        return value
    raise TypeError(f"cannot encode {type(value).__name__}")


def decode(data: Any) -> Any:
    if isinstance(data, list):
        return [decode(v) for v in data]
    if not isinstance(data, dict):
        return data
    if "$type" in data:
        cls = RESULT_TYPES[data["$type"]]
        return cls(**{k: decode(v) for k, v in data.items() if k != "$type"})
    if "$decimal" in data:
        return Decimal(data["$decimal"])
    if "$datetime" in data:
        return dt.datetime.fromisoformat(data["$datetime"])
    if "$date" in data:
        return dt.date.fromisoformat(data["$date"])
    if "$tuple" in data:
        return tuple(decode(v) for v in data["$tuple"])
    if "$map" in data:
        return {k: decode(v) for k, v in data["$map"].items()}
    raise ValueError(f"not an encoded value: {sorted(data)}")


def decode_as(data: Any, kind: type[T]) -> T:
    value = decode(data)
    if not isinstance(value, kind):
        raise TypeError(f"expected {kind.__name__}, got {type(value).__name__}")
    return value


def decode_list(data: Any, kind: type[T]) -> list[T]:
    values = decode(data)
    if not isinstance(values, list) or not all(isinstance(v, kind) for v in values):
        raise TypeError(f"expected a list of {kind.__name__}")
    return values


# ---------------------------------------------------------------------- channels and the listener
def channel(db: DatabaseManager, kind: str) -> str:
    """``ta_commands_<schema>``: one channel per kind ("commands", "results", "outbox", "capital", "risk") and
    schema."""
    return f"ta_{kind}_{db.schema or 'public'}".lower()


class Listener:
    """One connection LISTENing on the fleet's channels; each notification calls its channel's callbacks.
    A lost connection is opened again by ``ensure`` (the pollers call it)."""

    def __init__(self, db: DatabaseManager) -> None:
        self.dsn = db.url.set(drivername="postgresql").render_as_string(hide_password=False)
        self.callbacks: dict[str, list[Callable[[str], None]]] = {}
        self._conn: asyncpg.Connection | None = None
        self._lock = asyncio.Lock()

    def on(self, name: str, callback: Callable[[str], None]) -> None:
        self.callbacks.setdefault(name, []).append(callback)

    async def ensure(self) -> bool:
        """Listening now? (Re)connects when needed; False (logged) when the server cannot be reached."""
        async with self._lock:
            if self._conn is not None and not self._conn.is_closed():
                return True
            try:
                self._conn = await asyncpg.connect(self.dsn, timeout=10)
                for name in self.callbacks:
                    await self._conn.add_listener(name, self._heard)
            except (OSError, asyncpg.PostgresError) as exc:
                log.warning("fleet listener cannot connect (%s); polling meanwhile", type(exc).__name__)
                self._conn = None
                return False
            return True

    def _heard(self, _conn: object, _pid: int, name: str, payload: str) -> None:
        for callback in self.callbacks.get(name, ()):
            callback(payload)

    async def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                await self._conn.close()
            self._conn = None


async def poll(listener: Listener, wake: asyncio.Event, work: Callable[[], Awaitable[object]],
                every: float) -> None:
    """Run ``work`` whenever a notification sets ``wake``, and every ``every`` s regardless."""
    while True:
        await listener.ensure()
        try:
            await work()
        except Exception:  # the database may be away: the next round tries again
            log.exception("fleet poll failed")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wake.wait(), every)
        wake.clear()


async def react(wake: asyncio.Event, work: Callable[[], Awaitable[object]]) -> None:
    """Run ``work`` whenever a notification sets ``wake`` (its own backstop runs elsewhere)."""
    while True:
        await wake.wait()
        wake.clear()
        try:
            await work()
        except Exception:  # the backstop tries again
            log.exception("fleet reaction failed")


# ---------------------------------------------------------------------- the console's side
class CommandBus:
    """Send a command to the worker that runs its target and wait for the answer."""

    def __init__(self, db: DatabaseManager, listener: Listener, *, timeout: float = 30.0,
                 poll: float = POLL_SECONDS) -> None:
        self.db = db
        self.listener = listener
        self.timeout = timeout
        self.poll = poll
        self.commands = channel(db, "commands")
        self._answered: dict[int, asyncio.Event] = {}
        listener.on(channel(db, "results"), self._result)

    def _result(self, payload: str) -> None:
        with contextlib.suppress(ValueError):
            if event := self._answered.get(int(payload)):
                event.set()

    async def call(self, target: str, operation: str, arguments: Mapping[str, Any] | None = None, *,
                   by: str = "", timeout: float | None = None) -> Any:
        """The decoded result of ``operation(**arguments)`` on the worker holding ``target``'s lease;
        ``ControlError`` with the worker's refusal, or when no worker answers."""
        if not await self.db.lease_holders([target]):
            raise ControlError(_nobody(target))
        limit = self.timeout if timeout is None else timeout
        deadline = utcnow() + dt.timedelta(seconds=limit)
        command_id = await self.db.add_command(target, operation, encode(dict(arguments or {})), by, deadline,
                                               notify=self.commands)
        answered = self._answered[command_id] = asyncio.Event()
        try:
            return await self._answer(command_id, answered, deadline, target, limit)
        finally:
            del self._answered[command_id]

    async def _answer(self, command_id: int, answered: asyncio.Event, deadline: dt.datetime, target: str,
                      limit: float) -> Any:
        while True:
            row = await self.db.get_command(command_id)
            if row is not None and row.status not in ("pending", "running"):
                return _outcome(row)
            left = (deadline - utcnow()).total_seconds()
            if left <= 0:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(answered.wait(), min(left, self.poll))
            answered.clear()
        if await self.db.expire_command(command_id):
            raise ControlError(f"No worker took the command for {target} in {limit:g} s (its worker may have "
                               "stopped; another takes its bots over once its lease expires). Nothing was done.")
        row = await self.db.get_command(command_id)
        if row is not None and row.status not in ("pending", "running"):
            return _outcome(row)  # answered in the last instant
        raise ControlError(f"The worker running {target} has not answered in {limit:g} s; it may still apply "
                           "the command. /status shows the outcome.")


def _nobody(target: str) -> str:
    if target == DESK_LEASE:
        return "No desk worker leads the fleet now (none holds the @desk lease): try again in a moment."
    return f"No desk worker runs {target} (none holds its lease): is a worker with it in its bots file running?"


def _outcome(row: DeskCommand) -> Any:
    result = row.result or {}
    if row.status == "done":
        return decode(result.get("value"))
    raise ControlError(str(result.get("error") or f"the command ended {row.status}"))


# ---------------------------------------------------------------------- the worker's side
BOT_OPERATIONS = frozenset({"bot_status", "start_bot", "pause_bot", "stop_bot"})  # (name, by) on the bot's owner
DESK_OPERATIONS = frozenset({"positions", "balances", "capital_report", "evaluate_scaling", "approve_scaling",
                             "reject_scaling", "halt", "resume_trading", "digest"})


class CommandServer:
    """A worker's end of the bus: claims the commands for the leases its desk holds and runs them."""

    def __init__(self, desk: Desk, db: DatabaseManager, *, owner: str | None = None,
                 poll: float = POLL_SECONDS) -> None:
        if owner is None:
            if desk.leases is None:
                raise ValueError("a worker serves commands for the leases it holds: the desk needs leases")
            owner = desk.leases.owner
        self.desk = desk
        self.db = db
        self.owner = owner
        self.poll = poll
        self.listener = Listener(db)
        self.results = channel(db, "results")
        self.served = 0
        self._wake = asyncio.Event()
        self.listener.on(channel(db, "commands"), lambda _payload: self._wake.set())
        self._loop: asyncio.Task[None] | None = None
        self._running: set[asyncio.Task[None]] = set()
        self._turns: dict[str, asyncio.Lock] = {}  # one command at a time per target, in id order (FIFO locks)

    async def start(self) -> None:
        await self.listener.ensure()
        self._loop = asyncio.create_task(poll(self.listener, self._wake, self._claim, self.poll),
                                         name="fleet-commands")

    async def _claim(self) -> None:
        for command in await self.db.claim_commands(self.owner, utcnow()):
            task = asyncio.create_task(self._run(command), name=f"command:{command.id}")
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def _run(self, command: DeskCommand) -> None:
        async with self._turns.setdefault(command.target, asyncio.Lock()):  # a pause, then a start: in order
            await self._answer(command)

    async def _answer(self, command: DeskCommand) -> None:
        try:
            value = await self._call(command)
            status, result = "done", {"value": encode(value)}
        except ControlError as exc:
            status, result = "refused", {"error": str(exc)}
        except Exception as exc:
            log.exception("command %s %s failed", command.operation, command.target)
            status, result = "failed", {"error": f"The worker failed on {command.operation} ({type(exc).__name__}); "
                                                 "see its log."}
        try:
            await self.db.finish_command(command.id, status, result, notify=self.results)
            self.served += 1
        except Exception:
            log.exception("the outcome of command %s could not be stored", command.id)

    async def _call(self, command: DeskCommand) -> Any:
        arguments = decode(command.arguments)
        if command.operation in BOT_OPERATIONS and command.target != DESK_LEASE:
            if command.target not in self.desk.bots:
                raise ControlError(f"{command.target} is not running on this worker yet (taking it over); "
                                   "try again in a moment.")
            return await getattr(self.desk, command.operation)(command.target, **arguments)
        if command.operation in DESK_OPERATIONS:
            return await getattr(self.desk, command.operation)(**arguments)
        raise ControlError(f"Unknown command {command.operation!r} for {command.target}.")

    async def stop(self) -> None:
        if self._loop is not None:
            self._loop.cancel()
            await asyncio.gather(self._loop, return_exceptions=True)
        if self._running:
            await asyncio.wait(set(self._running), timeout=STOP_SECONDS)
        await self.listener.close()

    async def __aenter__(self) -> CommandServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


class FleetSignals:
    """A worker's desk joined to the fleet (`control.Desk.join_fleet`): it tells the other workers, and
    hears from them, "capital" (re-read the capital state) and "risk" (the desk rail tripped), on the
    listener of its command server (which keeps it connected)."""

    KINDS = ("capital", "risk")

    def __init__(self, desk: Desk, db: DatabaseManager, listener: Listener) -> None:
        self.desk = desk
        self.db = db
        self._heard = {kind: asyncio.Event() for kind in self.KINDS}
        for kind, heard in self._heard.items():
            listener.on(channel(db, kind), _setter(heard))
        self._tasks: list[asyncio.Task[None]] = []
        self.handled = dict.fromkeys(self.KINDS, 0)  # notifications acted upon, per kind
        desk.join_fleet(db, self.tell)

    async def tell(self, kind: str) -> None:
        """Wake the workers listening on ``kind``."""
        await self.db.notify(channel(self.db, kind))

    def start(self) -> None:
        work = {"capital": self.desk.reload_capital, "risk": self.desk.obey_fleet_rail}
        self._tasks = [asyncio.create_task(react(self._heard[kind], self._counted(kind, w)), name=f"fleet-{kind}")
                       for kind, w in work.items()]

    def _counted(self, kind: str, work: Callable[[], Awaitable[object]]) -> Callable[[], Awaitable[None]]:
        async def run() -> None:
            await work()
            self.handled[kind] += 1

        return run

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


def _setter(event: asyncio.Event) -> Callable[[str], None]:
    return lambda _payload: event.set()


def serve_commands(desk: Desk, db: DatabaseManager, **kwargs: Any) -> CommandServer:
    """A worker's command server: ``async with serve_commands(desk, db):`` (or start() / stop())."""
    return CommandServer(desk, db, **kwargs)
