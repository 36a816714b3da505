"""`traderagent run`: the composition root. Builds the desk from settings and runs it.

Modes (``TRADERAGENT_MODE``, see config.py):

* ``paper`` (default, no keys needed): the built-in exchange simulator starts in this process on
  127.0.0.1 (``TRADERAGENT_PAPER_PORT``, 0 = any free port), replays real candles at
  ``TRADERAGENT_PAPER_SPEED`` candles per second and funds an account with
  ``TRADERAGENT_PAPER_BALANCE``; its exchange is kept beside the database (``sim_state_path``), so
  a restarted desk finds its orders and positions again. With ``BYBIT_BASE_URL`` set, paper mode
  trades against that simulator instead (e.g. one started by ``traderagent sim``), with
  ``BYBIT_API_KEY/SECRET`` or the simulator's default paper account.
* ``demo``: ByBit's demo trading (api-demo.bybit.com) with real keys (``BYBIT_API_KEY/SECRET``, or the
  keys stored with ``traderagent credentials set demo``; live mode likewise).
* ``live``: api.bybit.com; needs ``TRADERAGENT_ALLOW_LIVE=true`` (Settings refuses otherwise) and a
  security audit without critical failures. Other modes only warn about audit failures.
  Demo and live ask ByBit what the key may do (``_check_api_key``): live refuses, demo warns.

Bots come from the bots file (``--bots`` or ``TRADERAGENT_BOTS_FILE``); without one, paper mode
runs a demo set of four bots (one per strategy); a ladder bot that cannot trade its symbol is
refused before it starts. A banner says what runs and where; then events print one line each.
A start-up failure the operator can fix exits with code 2 and one line on stderr naming the
setting at fault (the traceback only at LOG_LEVEL=debug).
``--ticks N`` stops after every bot ticked N times; Ctrl-C / SIGTERM stop cleanly (order state
and capital state saved, scheduler shut down, database closed).

The desk reports in (traderagent/reports.py): DESK_STARTED with what recovery found, DESK_STOPPING,
the daily digest, scaling offers, stalled ticks; and answers ``GET /health`` on 127.0.0.1 when
``TRADERAGENT_HEALTH_PORT`` is set (traderagent/health.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import gc
import logging
import signal
import sys
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from traderagent.config import Settings, SettingsError
from traderagent.orchestrator.events import EventBus, TradingEvent

if TYPE_CHECKING:
    from handlers.notifier import Notifier
    from traderagent.api.bybit_direct_client import ByBitDirectClient
    from traderagent.bots import BotsFile
    from traderagent.control import Desk
    from traderagent.database.manager import DatabaseManager
    from traderagent.fleet.workers import Worker, WorkerLeases
    from traderagent.orchestrator.lease import Leases

L = TypeVar("L", bound="Leases")

log = logging.getLogger("traderagent.app")

PAPER_KEY, PAPER_SECRET = "paper-key", "paper-secret"  # the simulator's default paper account (not secrets)


class StartupError(RuntimeError):
    """The desk refuses to start; the message says why (and never contains a secret)."""


# ---------------------------------------------------------------------- console output
def format_event(event: TradingEvent) -> str:
    """One line per event, e.g. ``12:00:01 [xrp-grid] ORDER_FILLED buy limit 10 XRPUSDT @ 1.2 = 12.00 USDT ...``."""
    return f"{event.timestamp:%H:%M:%S} [{event.bot_name}] {event.event_type.value} {event.data.summary()}"


async def console_subscriber(event: TradingEvent) -> None:
    print(format_event(event), flush=True)


# ---------------------------------------------------------------------- assembly
@dataclass
class Runtime:
    """Everything main_run started, so shutdown can undo it in order."""

    settings: Settings
    desk: Any = None
    db: DatabaseManager | None = None  # typed: mypy checks the adapters against traderagent.ports
    clients: dict[str, ByBitDirectClient] = field(default_factory=dict)
    sim: Any = None
    frontend: Any = None
    base_url: str | None = None
    bots_file: Any = None
    sim_restored: bool = False
    watch: Any = None
    health: Any = None
    started: bool = False  # the desk announced its start: it announces its stop too
    stop_reason: str = "start-up failed"
    leases: Leases | None = None
    stream_session: Any = None  # the aiohttp session of the streams
    public_streams: Any = None  # tickers and klines for every bot (api/bybit_streams.py PublicStreams)
    link: Any = None  # a fleet worker's link to the console (TRADERAGENT_CONSOLE=external)
    worker: Worker | None = None  # one worker of a fleet (fleet/workers.py): its slot of the bots
    heap_settling: asyncio.Task | None = None  # freeze_heap_once_settled


def _audit(settings: Settings) -> None:
    """A critical audit failure refuses a live start; other modes only warn."""
    from traderagent.utils.security_audit import SecurityAuditor

    report = SecurityAuditor(Path.cwd()).run_full_audit()
    failures = [r for r in report.results if not r.passed]
    critical = [r for r in failures if r.severity == "critical"]
    for r in failures:
        log.warning("security audit: %s failed (%s): %s", r.check_name, r.severity, r.message)
    if critical and settings.mode == "live":
        names = ", ".join(r.check_name for r in critical)
        raise StartupError(f"live trading refused: security audit critical failure(s): {names} "
                           "(run `traderagent audit` for details)")


async def _check_api_key(settings: Settings, client: ByBitDirectClient) -> None:
    """Ask ByBit what the key may do (GET /v5/user/query-api). Live refuses a key that can withdraw or
    move funds, is read-only, or is bound to no IP (unless TRADERAGENT_ALLOW_UNBOUND_KEY=true); demo warns."""
    from traderagent.api.exceptions import ExchangeAPIError
    from traderagent.utils.security_audit import api_key_verdict, review_api_key

    live = settings.mode == "live"
    try:
        info = await client.fetch_api_key_info()
    except ExchangeAPIError as exc:
        if live:
            raise StartupError(f"live trading refused: the API key's permissions could not be checked ({exc})") from None
        log.warning("API key check skipped: ByBit did not report the key's permissions (%s)", exc)
        return
    refusals, warnings = api_key_verdict(review_api_key(info["read_only"], info["ips"], info["permissions"]),
                                         live=live, allow_unbound=settings.allow_unbound_key)
    for warning in warnings:
        log.warning("API key: %s", warning)
    if refusals:
        raise StartupError("live trading refused: " + "; ".join(refusals))


def _sqlite_file(database_url: str) -> tuple[str, Path | None]:
    """(backend name, the database file: None unless SQLite on disk)."""
    from sqlalchemy.engine import make_url

    url = make_url(database_url)
    name, backend = url.database, url.get_backend_name()
    return backend, Path(name) if backend == "sqlite" and name and name != ":memory:" else None


def sim_state_path(settings: Settings) -> Path | None:
    """Where the paper simulator keeps its exchange state: beside an SQLite desk database
    (``traderagent.db`` -> ``traderagent.sim.json``), in the working folder for PostgreSQL, nowhere
    for an in-memory database (the desk forgets everything too)."""
    backend, db_file = _sqlite_file(settings.database_url)
    if backend != "sqlite":
        return Path("traderagent.sim.json")
    return db_file.with_suffix(".sim.json") if db_file else None


async def _start_paper_sim(settings: Settings, rt: Runtime) -> tuple[str, str, str]:
    from traderagent.sim import ExchangeSimulator, SimConfig
    from traderagent.sim.persist import StateFileError

    sim = ExchangeSimulator(SimConfig(seed=0, speed=settings.paper_speed))
    sim.add_account(PAPER_KEY, PAPER_SECRET, balances={"USDT": settings.paper_balance})
    rt.sim = sim
    path = sim_state_path(settings)
    try:
        saved_port = sim.keep_state(path) if path is not None else None
    except StateFileError as exc:
        raise StartupError(str(exc)) from None
    rt.sim_restored = saved_port is not None
    port = settings.paper_port or saved_port or 0
    try:
        url = await sim.start(host="127.0.0.1", port=port)
    except OSError as exc:
        if port == settings.paper_port:
            raise StartupError(f"TRADERAGENT_PAPER_PORT={port}: cannot listen on 127.0.0.1 "
                               f"({exc.strerror or exc}); choose a free port, or 0 for any") from None
        url = await sim.start(host="127.0.0.1", port=0)  # the last run's port is taken: any will do
    return url, PAPER_KEY, PAPER_SECRET


async def _connection(settings: Settings, rt: Runtime) -> tuple[str | None, str, str, bool]:
    """(base_url, key, secret, testnet) for the mode."""
    if settings.mode == "paper":
        if settings.bybit_base_url:
            key = settings.bybit_api_key.get() or PAPER_KEY
            secret = settings.bybit_api_secret.get() or PAPER_SECRET
            return settings.bybit_base_url, key, secret, False
        url, key, secret = await _start_paper_sim(settings, rt)
        return url, key, secret, False
    testnet = settings.mode == "demo"
    key, secret = settings.bybit_api_key.get(), settings.bybit_api_secret.get()
    if not (key and secret):
        assert rt.db is not None, "build opens the database first"
        key, secret = await _stored_keys(settings, rt.db)
    return settings.bybit_base_url or None, key, secret, testnet


async def _stored_keys(settings: Settings, db: DatabaseManager) -> tuple[str, str]:
    """(api_key, api_secret) stored with `traderagent credentials set <mode>`; StartupError (one line) when
    there are none or they cannot be decrypted."""
    from traderagent.database.exceptions import DatabaseError
    from traderagent.utils.secrets_filter import register_secret

    try:
        stored = await db.load_credentials(settings.mode)
    except DatabaseError as exc:
        raise StartupError(str(exc)) from None
    if stored is None:
        raise StartupError(f"TRADERAGENT_MODE={settings.mode} needs BYBIT_API_KEY and BYBIT_API_SECRET, or keys "
                           f"stored with `traderagent credentials set {settings.mode}`")
    register_secret(stored[0])
    register_secret(stored[1])
    return stored[0], stored[1]


def load_bots(settings: Settings, bots_arg: str | None) -> Any:
    from traderagent.bots import BotsFile, demo_bots, load_bots_file

    path = Path(bots_arg) if bots_arg else settings.bots_file
    if path.is_file():
        try:
            return load_bots_file(path, total_capital=settings.total_capital)
        except (ValueError, OSError) as exc:
            raise StartupError(f"bots file unusable: {exc}") from None
    if bots_arg:
        raise StartupError(f"bots file {path} not found")
    if settings.mode != "paper":
        raise StartupError(f"no bots file ({path}); create one from bots.example.toml "
                           "(paper mode runs a demo set without it)")
    return BotsFile(bots=demo_bots())


async def build(settings: Settings, bots_arg: str | None, rt: Runtime) -> Any:
    from traderagent.api.bybit_direct_client import ByBitDirectClient
    from traderagent.control import Desk
    from traderagent.database.manager import DatabaseManager
    from traderagent.orchestrator.capital_wiring import ScalingOffers, load_capital_manager
    from traderagent.orchestrator.market_data import MarketData
    from traderagent.orchestrator.risk import RiskRails
    from traderagent.orchestrator.scheduler import DeskScheduler

    bots_file = load_bots(settings, bots_arg)  # its refused bots are listed in the banner
    if not bots_file.bots:
        raise StartupError("no bot to run, every bot in the bots file was refused: "
                           + "; ".join(f"{n}: {r}" for n, r in bots_file.refused))

    rt.db = DatabaseManager(settings.database_url, master_key=settings.master_key or None)
    await rt.db.initialize()  # first: the paper simulator keeps its state beside the database
    fleet = None
    if rt.worker is not None:  # its slot and its share of the bots
        rt.leases = fleet = await join_fleet(settings, rt.db, bots_file, rt.worker)
    else:  # before the simulator: a refused desk leaves it alone
        rt.leases = await claim_bots(settings, rt.db, bots_file)
    base_url, key, secret, testnet = await _connection(settings, rt)
    rt.base_url = base_url
    market_types = sorted({b.market_type for b in bots_file.bots})
    for mt in market_types:
        client = ByBitDirectClient(key, secret, testnet=testnet, market_type=mt, base_url=base_url)
        rt.clients[mt] = client
        await _reach_exchange(client)
    if settings.mode != "paper":
        await _check_api_key(settings, rt.clients[market_types[0]])

    rt.bots_file = bots_file
    capital, persister = await load_capital_manager(rt.db, settings.total_capital)
    bus = EventBus()
    bus.subscribe(console_subscriber, name="console")
    if settings.streams:
        from traderagent.api.bybit_streams import PublicStreams
        rt.public_streams = PublicStreams(_stream_session(rt), rt.clients[market_types[0]].base_url)
    public = {mt: MarketData(c, streams=rt.public_streams) for mt, c in rt.clients.items()}
    offers = ScalingOffers(rt.db, ttl=timedelta(hours=settings.offer_ttl_hours))
    desk = Desk(rt.db, rt.clients, event_bus=bus, capital_manager=capital, capital_persister=persister,
                rails=RiskRails.from_settings(settings, bots_file.risk), scheduler=DeskScheduler(),
                market_data=public, scaling_approvals_required=settings.scaling_approvals_required,
                offers=offers, stall_ticks=settings.stall_ticks, leases=rt.leases,
                open_fill_stream=_fill_streams(rt) if settings.streams else None)
    desk.refused.extend(bots_file.refused)
    await desk.add_bots(bots_file.bots)
    await refuse_untradable(desk)
    await rt.leases.release(n for n in rt.leases.held if n not in desk.bots)  # refused here: free for others
    if fleet is not None:  # a worker takes no bot it refused (its share may be empty for now)
        fleet.runnable = lambda name: name in desk.bots or name in desk.standby
    elif not desk.bots:
        raise StartupError("no bot could be built: " + "; ".join(f"{n}: {r}" for n, r in desk.refused))
    rt.desk = desk
    return desk


async def claim_bots(settings: Settings, db: DatabaseManager, bots_file: BotsFile) -> Leases:
    """One owner per bot: take the lease of every bot of the bots file. The bots another live desk
    runs are named in one line; with none left to run here the desk refuses to start."""
    from traderagent.orchestrator.lease import Leases, held_elsewhere

    leases = new_leases(settings, db, Leases)
    await leases.acquire(spec.name for spec in bots_file.bots)
    if leases.elsewhere:
        line = held_elsewhere(leases.elsewhere)
        if not leases.held:
            raise StartupError(f"{line}: no bot left to run here (stop that desk first; a desk that died frees "
                               "its bots when its lease expires, TRADERAGENT_LEASE_TIMEOUT)")
        log.warning("%s: not run here (taken over if that desk stops renewing its leases)", line)
    leases.keep()
    return leases


def new_leases(settings: Settings, db: DatabaseManager, cls: type[L], **kwargs: Any) -> L:
    """The desk's leases (``cls``: Leases, or a worker's), timed by the settings."""
    from traderagent.api.bybit_direct_client import RECV_WINDOW

    try:  # sends stop this long before the lease may expire: a delayed request is stale by then
        return cls(db, heartbeat=settings.lease_heartbeat, timeout=settings.lease_timeout,
                   fence=RECV_WINDOW / 1000 + 1, **kwargs)
    except ValueError as exc:
        raise StartupError(f"TRADERAGENT_LEASE_TIMEOUT / TRADERAGENT_LEASE_HEARTBEAT: {exc}") from None


def _stream_session(rt: Runtime) -> Any:
    """The one aiohttp session of every stream."""
    from traderagent.api.bybit_streams import stream_session

    if rt.stream_session is None:
        rt.stream_session = stream_session()
    return rt.stream_session


def _fill_streams(rt: Runtime) -> Callable[[Any, Any], Any]:
    """The desk's factory of private streams: one per account, on one aiohttp session."""
    from traderagent.api.bybit_streams import PrivateStream

    def open_stream(client: Any, fills: Any) -> PrivateStream:
        return PrivateStream(_stream_session(rt), client, on_fill=fills.on_fill, on_order=fills.on_order,
                             on_position=fills.on_positions, on_wallet=fills.on_wallet,
                             on_connected=fills.reconcile, on_auth_failed=fills.on_auth_failed)
    return open_stream


async def refuse_untradable(desk: Any) -> None:
    """Refuse, before it starts, a ladder bot whose parameters cannot trade its symbol at today's price
    (a quantity that rounds to zero, an order under the exchange's minimum): its first tick would only
    fail. A trial copy of its strategy makes the first decision; the bot itself is untouched."""
    for name, handle in list(desk.bots.items()):
        if handle.bot.strategy.is_ladder and (reason := await _untradable(handle.bot)):
            del desk.bots[name]
            desk.refused.append((name, reason))


async def _untradable(bot: Any) -> str | None:
    from traderagent.api.exceptions import ExchangeAPIError
    from traderagent.numbers import to_decimal

    trial = copy.deepcopy(bot.strategy)
    try:
        price = to_decimal((await bot.market.ticker(bot.symbol))["last"])
        frames = await bot.market.frames(bot.symbol, tuple(trial.timeframes), trial.history_candles)
    except ExchangeAPIError:  # no market data now: the first tick will tell
        return None
    try:
        prepared = trial.prepare(*(frames[tf] for tf in trial.timeframes))
        trial.on_candle_close(prepared, len(prepared) - 1)
        intents = trial.desired_orders(price, trial.allocated_capital)
    except ValueError as exc:
        return f"cannot trade {bot.symbol} at {price} with {trial.allocated_capital} USDT: {exc}"
    market = bot.client.market(bot.symbol)
    for intent in intents:
        at = intent.price or price
        if intent.qty < market.min_qty or intent.qty * at < market.min_notional:
            return (f"its order {intent.tag} of {intent.qty} {bot.symbol} at {at} is worth {intent.qty * at:.2f} "
                    f"USDT; the exchange's minimum is {market.min_qty} {market.base} and {market.min_notional} "
                    f"USDT (more capital for the bot, or fewer orders)")
    return None


def worker_notifier(settings: Settings, desk: Desk, db: DatabaseManager) -> Notifier:
    """A fleet worker's alerts: rendered as in a single desk, stored in the outbox table for the console."""
    from handlers.notifier import Notifier
    from handlers.outbox import StoredAlerts
    from traderagent.fleet.bus import channel

    alerts = StoredAlerts(db, settings.telegram_chat_ids, notify=channel(db, "outbox"))
    return Notifier(alerts, strategy_of=desk.strategy_of, store=db)


def _build_telegram(settings: Settings, desk: Any) -> Any:
    """The Telegram frontend, when TELEGRAM_BOT_TOKEN is set, built (its notifier subscribed) before the desk
    starts, so the start-up events queue for the chat. A frontend that cannot be built or started (a
    rejected token, a bad chat id list) is logged and the desk trades on without it: stopping trading
    because the phone link is misconfigured would leave open positions unmanaged."""
    if not settings.telegram_bot_token:
        return None
    from handlers import build_application

    try:
        return build_application(settings, desk, desk.event_bus)
    except Exception as exc:  # noqa: BLE001 - any failure here must not stop the trading desk
        _telegram_failed(exc)
        return None


async def _start_telegram(frontend: Any) -> Any:
    if frontend is None:
        return None
    try:
        await frontend.start()
    except Exception as exc:  # noqa: BLE001 - any failure here must not stop the trading desk
        _telegram_failed(exc)
        frontend.detach()
        return None
    return frontend


def _telegram_failed(exc: Exception) -> None:
    log.error("Telegram frontend not started (%s): fix TELEGRAM_BOT_TOKEN / TELEGRAM_CHAT_IDS; "
              "the desk runs without it", exc)


async def _start_reports(settings: Settings, rt: Runtime) -> None:
    """The watch loop (stalls, scaling offers, digest) and, when configured, the health endpoint."""
    from traderagent.health import HealthServer
    from traderagent.reports import DeskWatch, DigestTime
    from traderagent.results import Check

    desk = rt.desk
    digest = DigestTime(settings.digest_time, settings.timezone, desk.clock()) if settings.digest_time else None
    rt.watch = DeskWatch(desk, digest, reports=rt.link is None)  # a fleet's console sends offers and digests
    rt.watch.start()
    if not settings.health_port:
        return
    telegram = None
    if rt.frontend is not None:
        telegram = rt.frontend.health  # "not connected" while it connects, and if it never does
    elif settings.telegram_bot_token:
        telegram = lambda: Check(False, "the Telegram frontend could not be built (see the log)")  # noqa: E731
    server = HealthServer(desk, telegram, port=settings.health_port)
    try:
        await server.start()
    except OSError as exc:
        log.error("health endpoint not started: TRADERAGENT_HEALTH_PORT=%d: %s", settings.health_port,
                  exc.strerror or exc)
        return
    rt.health = server


async def run_desk(settings: Settings, *, bots_arg: str | None = None, ticks: int = 0,
                   stop_event: asyncio.Event | None = None, worker: Worker | None = None) -> int:
    """Run the desk until stopped; ``worker``: as one worker of a fleet (fleet/workers.py), which
    has no Telegram frontend (the console process has it)."""
    rt = Runtime(settings, worker=worker)
    stop_event = stop_event or asyncio.Event()
    loop = asyncio.get_running_loop()

    def request_stop(sig: signal.Signals) -> None:  # closes the order gate at once, before any other task runs
        if rt.desk is not None:
            rt.desk.stop_sending()
        rt.stop_reason = "Ctrl-C" if sig is signal.SIGINT else sig.name
        stop_event.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, request_stop, sig)
    try:
        await asyncio.to_thread(_audit, settings)
        desk = await build(settings, bots_arg, rt)
        print(banner(settings, rt), flush=True)
        if settings.console == "external" or worker is not None:  # a fleet worker: the console serves Telegram
            from traderagent.fleet.link import ConsoleLink

            assert rt.db is not None, "build() opened the database"
            rt.link = ConsoleLink(desk, rt.db, worker_notifier(settings, desk, rt.db))
            await rt.link.attach()
        else:
            rt.frontend = _build_telegram(settings, desk)
        report = await desk.start(schedule=True)
        for name, counts in report.items():
            if any(v for k, v in counts.items() if k != "open"):
                log.info("recovered %s: %s", name, counts)
        desk.announce_started(settings.mode, report)
        rt.started, rt.stop_reason = True, "stopped"
        await _start_reports(settings, rt)  # listening before the chat hears of the start
        rt.frontend = await _start_telegram(rt.frontend)
        freeze_heap()
        rt.heap_settling = asyncio.create_task(freeze_heap_once_settled(desk))
        if rt.link is not None:
            await rt.link.serve()
        if ticks > 0:
            waiter = asyncio.create_task(_wait_ticks(desk, ticks))
            stopper = asyncio.create_task(stop_event.wait())
            done, _ = await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()
            stopper.cancel()
            if waiter in done:
                rt.stop_reason = f"--ticks {ticks} done"
        else:
            await stop_event.wait()
        return 0
    except Exception as exc:
        message = startup_message(exc)
        if message is None:
            raise
        log.debug("start-up failed", exc_info=True)
        print(f"traderagent: {message}", file=sys.stderr, flush=True)
        return 2
    finally:
        await _shutdown(rt)


def startup_message(exc: BaseException) -> str | None:
    """The one line an operator reads for a start-up failure they can fix (None: a bug, keep the traceback)."""
    from traderagent.database.exceptions import DatabaseError, MasterKeyError

    if isinstance(exc, StartupError | MasterKeyError):
        return str(exc)
    if isinstance(exc, DatabaseError):
        return str(exc) if "DATABASE_URL" in str(exc) else f"{exc}; check DATABASE_URL"
    return None


async def _reach_exchange(client: Any) -> None:
    """First contact with the exchange; a failure names the setting to check."""
    from traderagent.api.exceptions import AuthenticationError, ExchangeAPIError, NetworkError

    try:
        await client.initialize()
    except NetworkError as exc:
        raise StartupError(f"cannot reach the exchange at {client.base_url} ({exc}); check the network "
                           "connection, or BYBIT_BASE_URL") from None
    except AuthenticationError as exc:
        raise StartupError(f"the exchange refused BYBIT_API_KEY / BYBIT_API_SECRET ({exc}); check both, "
                           "and TRADERAGENT_MODE (demo keys work only in demo mode)") from None
    except ExchangeAPIError as exc:
        raise StartupError(f"the exchange at {client.base_url} answered {exc}") from None


def banner(settings: Settings, rt: Runtime) -> str:
    """What the operator needs to know at start: what runs, where its state lives, how to stop it."""
    from sqlalchemy.engine import make_url

    desk = rt.desk
    _, db_file = _sqlite_file(settings.database_url)
    where = str(db_file.resolve()) if db_file else make_url(settings.database_url).render_as_string(hide_password=True)
    if rt.sim is not None:
        kept = rt.sim.state_path
        state = ("state not kept" if kept is None else
                 f"state {'restored from' if rt.sim_restored else 'kept in'} {kept.resolve()}")
        exchange = f"built-in simulator {rt.base_url}, {rt.sim.balance(PAPER_KEY).get('USDT')} USDT, {state}"
    else:
        exchange = rt.base_url or ("ByBit demo" if settings.mode == "demo" else "ByBit")
    telegram = ("in the console process (a worker has none)" if rt.worker is not None else
                "on" if settings.telegram_bot_token else
                "off (set TELEGRAM_BOT_TOKEN and TELEGRAM_CHAT_IDS to run the desk from Telegram)")
    source = "demo set (no bots file)" if rt.bots_file.source is None else f"bots file {rt.bots_file.source}"
    lines = [f"TraderAgent {settings.mode} desk: {len(desk.bots)} bot(s) from the {source}: {', '.join(desk.bots)}",
             f"  database  {where}", f"  exchange  {exchange}", f"  telegram  {telegram}"]
    if desk.refused:
        lines.append(f"  refused   {len(desk.refused)} bot(s): "
                     + "; ".join(f"{name}: {reason}" for name, reason in desk.refused))
    if rt.worker is not None:
        from traderagent.fleet.workers import WorkerLeases

        assert isinstance(rt.leases, WorkerLeases)
        lead = ", leads the desk" if rt.leases.is_leader else ""
        lines.append(f"  worker    {rt.leases.slot} of {rt.worker.workers}{lead} ({rt.leases.owner}); "
                     f"{len(desk.standby)} bot(s) on other workers")
    lines.append("Ctrl-C to stop.")
    return "\n".join(lines)


SETTLE_TICKS = 3  # by its third tick a bot has loaded its candles, analysed them and had its first orders answered


def freeze_heap() -> None:
    """Collect once, then leave what is alive out of every later collection (gc.freeze). What the desk has
    built lives as long as it does: on a thousand bots one full collection walking it stops the event loop,
    every tick and command with it, for 100s of ms. Cyclic garbage among frozen objects is never freed."""
    gc.collect()
    gc.freeze()


async def freeze_heap_once_settled(desk: Any) -> None:
    """Freeze again once every bot has run SETTLE_TICKS ticks: start-up leaves the bots' candle books,
    analyses and first orders still to build, which full collections kept walking (1,000 bots in lock
    step: the longest collection 79-116 ms before, 39-41 ms after)."""
    await desk.ticked_at_least(SETTLE_TICKS)
    freeze_heap()


async def _wait_ticks(desk: Any, ticks: int) -> None:
    await desk.ticked_at_least(ticks)
    if desk.scheduler is not None and desk.scheduler.scheduler.running:
        desk.scheduler.scheduler.pause()  # no tick past the N-th (the stop follows) ...
    await desk.gate.settled()  # ... and the orders they queued are answered and booked first


async def _shutdown(rt: Runtime) -> None:
    """Reverse order of start; each step guarded so one failure does not skip the rest."""
    if rt.heap_settling is not None:
        rt.heap_settling.cancel()
    if rt.desk is not None:
        rt.desk.stop_sending()  # before the first await: a stop during start-up sends nothing either
    if rt.started:
        rt.desk.announce_stopping(rt.stop_reason)
        await rt.desk.event_bus.drain(2.0)  # into the notifier's queue before it is stopped
    steps: list[tuple[str, Any]] = []
    for name, part in (("health endpoint", rt.health), ("desk watch", rt.watch)):
        if part is not None:
            steps.append((name, part.stop))
    if rt.frontend is not None:
        steps.append(("telegram", rt.frontend.stop))
    if rt.link is not None:
        steps.append(("console link", rt.link.stop))
    if rt.desk is not None:
        steps.append(("desk", rt.desk.stop))
    if rt.public_streams is not None:
        steps.append(("public streams", rt.public_streams.close))
    if rt.stream_session is not None:
        steps.append(("streams", rt.stream_session.close))
    for name, client in rt.clients.items():
        steps.append((f"client {name}", client.close))
    if rt.desk is None and rt.leases is not None:  # a desk releases its own leases when it stops
        steps.append(("leases", rt.leases.release))
    if rt.db is not None:
        steps.append(("database", rt.db.close))
    if rt.sim is not None:
        steps.append(("simulator", rt.sim.stop))
    for name, step in steps:
        try:
            await step()
        except Exception:
            log.exception("shutdown of %s failed", name)
    if rt.desk is not None:
        print("desk stopped", flush=True)


def main_run(args: Any, worker: Worker | None = None) -> int:
    """`traderagent run [--bots FILE] [--ticks N] [--workers N]` (and `traderagent worker`, with ``worker``)."""
    workers = int(getattr(args, "workers", 1) or 1)
    if worker is None and workers > 1:
        from traderagent.fleet.supervisor import supervise

        return run_main(lambda settings: supervise(settings, args, workers))
    return run_main(lambda settings: run_desk(settings, bots_arg=getattr(args, "bots", None),
                                              ticks=int(getattr(args, "ticks", 0) or 0), worker=worker))


def run_main(run: Callable[[Settings], Coroutine[Any, Any, int]]) -> int:
    """A long-running command (`run`, `console`): settings, logging, then ``run(settings)`` until stopped."""
    try:
        settings = Settings.load()
    except SettingsError as exc:
        print(f"traderagent: {exc}", file=sys.stderr)
        return 2
    try:
        from traderagent.utils.logging_setup import configure_logging

        configure_logging(settings)
    except ImportError:  # pragma: no cover - logging_setup ships with the package
        logging.basicConfig(level=settings.log_level)
    try:
        return asyncio.run(run(settings))
    except KeyboardInterrupt:
        return 130


# ---------------------------------------------------------------------- a fleet (traderagent/fleet)
async def join_fleet(settings: Settings, db: DatabaseManager, bots_file: BotsFile, worker: Worker) -> WorkerLeases:
    """This worker's leases, its slot and share of the bots taken (app.build calls it for a worker)."""
    from traderagent.fleet.workers import (
        Leases,
        SlotTaken,
        WorkerLeases,
        first_free_slot,
        slot_name,
        sqlite_refusal,
    )

    if refusal := sqlite_refusal(settings, worker.workers):
        raise StartupError(refusal)
    if settings.mode == "paper" and not settings.bybit_base_url:
        raise StartupError("a worker trades on a shared exchange: in paper mode start one `traderagent sim` for "
                           "the fleet and set BYBIT_BASE_URL to it")
    names = [spec.name for spec in bots_file.bots]
    probe = new_leases(settings, db, Leases)
    try:
        slot = slot_name(worker.slot) if worker.slot is not None else await first_free_slot(db, worker.workers, probe)
        leases = new_leases(settings, db, WorkerLeases, bots=names, slot=slot, owner=probe.owner)
        await leases.join()
    except SlotTaken as exc:
        raise StartupError(f"{exc}; stop that worker, or start this one with another --slot") from None
    return leases


def main_worker(args: Any) -> int:
    """`traderagent worker [--slot I] [--workers N] [--bots FILE]`."""
    workers = int(args.workers)
    if args.slot is not None and not 0 <= args.slot < workers:
        print(f"traderagent: --slot must be from 0 to {workers - 1} (--workers {workers})", file=sys.stderr)
        return 2
    from traderagent.fleet.workers import Worker

    return main_run(args, worker=Worker(args.slot, workers))


def main_console(args: Any) -> int:
    """`traderagent console`."""
    from traderagent.fleet.console import run_console

    return run_main(run_console)


__all__ = ["StartupError", "console_subscriber", "format_event", "main_run", "run_desk", "run_main"]
