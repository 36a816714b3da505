"""The Telegram frontend: a python-telegram-bot Application running beside the trading engine.

It shares the service's event loop (initialize / start / start_polling, never run_polling),
sets each user's command menu (setMyCommands per role and scope), and talks only to the desk's
use-cases (`traderagent.ports.DeskPort`: `control.Desk`, or `fleet.console.ConsoleDesk` in front of a
fleet) and the event bus. Built only when a bot token is configured: the desk runs without it.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta

from telegram import Update
from telegram.constants import ParseMode
from telegram.error import BadRequest, NetworkError, TimedOut
from telegram.ext import Application, ApplicationBuilder, Defaults
from telegram.request import HTTPXRequest

from handlers.auth import ChatGuard, Roles
from handlers.commands import menu, menu_scopes, register
from handlers.formatting import emoji
from handlers.notifier import Notifier
from handlers.outbox import Limits, Outbox
from handlers.reports import Reports
from handlers.tokens import TokenStore
from traderagent.config import Settings
from traderagent.orchestrator.events import EventBus, Subscription
from traderagent.ports import DeskPort, OutboxStore, TokenStorePort
from traderagent.results import Check

log = logging.getLogger(__name__)

TELEGRAM_API = "https://api.telegram.org"
DELIVERY_LIMIT = 120.0  # seconds an alert may wait for Telegram before the health check fails


class TelegramFrontend:
    """Owns the PTB Application, the outbox, the notifier and the button tokens."""

    def __init__(self, application: Application, desk: DeskPort, notifier: Notifier, outbox: Outbox,
                 guard: ChatGuard, tokens: TokenStore, *, poll_timeout: int = 10) -> None:
        self.application = application
        self.desk = desk
        self.notifier = notifier
        self.outbox = outbox
        self.guard = guard
        self.tokens = tokens
        self.poll_timeout = poll_timeout
        self.connected = False
        self.retry_delay = 5.0  # first background retry when Telegram is unreachable; doubles to 5 min
        self.stop_grace = 5.0  # seconds a stop gives the outbox; what is left waits in the database
        self._retry: asyncio.Task[None] | None = None
        self.timezone = "UTC"  # the operator's zone (the digest's day)
        self.subscriptions: list[tuple[EventBus, Subscription]] = []

    def detach(self) -> None:
        """Take no more events: a frontend that could not start must not queue them."""
        for bus, sub in self.subscriptions:
            bus.unsubscribe(sub)
        self.subscriptions.clear()

    def health(self) -> Check:
        """Does Telegram deliver: connected, and no alert waiting longer than DELIVERY_LIMIT."""
        if not self.connected:
            return Check(False, "not connected to Telegram")
        oldest = self.outbox.oldest_alert
        waited = (datetime.now(UTC) - oldest).total_seconds() if oldest else 0.0
        if waited > DELIVERY_LIMIT:
            return Check(False, f"{self.outbox.pending_alerts} alert(s) waiting, the oldest for {waited:.0f} s")
        return Check(True, f"delivering ({self.outbox.pending_alerts} alert(s) queued)")

    async def start(self) -> None:
        """Connect now; if Telegram is unreachable the desk keeps trading and this keeps retrying in the
        background (alerts wait in the outbox meanwhile). A rejected token still raises."""
        try:
            await self.notifier.load()
        except Exception:
            log.exception("could not read the alert verbosity; the defaults apply")
        try:
            await self.tokens.load()
        except Exception:
            log.exception("could not read the button tokens; buttons sent before the restart answer \"expired\"")
        try:
            await self._connect()
        except (NetworkError, TimedOut) as exc:
            log.warning("Telegram unreachable (%s); retrying in the background, alerts are queued", exc)
            self._retry = asyncio.create_task(self._connect_later(), name="telegram-connect")

    async def _connect(self) -> None:
        await self.application.initialize()
        await self._set_menus()
        await self.application.start()
        assert self.application.updater is not None, "build_application builds with an updater"
        await self.application.updater.start_polling(
            timeout=self.poll_timeout, allowed_updates=[Update.MESSAGE, Update.CALLBACK_QUERY],
            drop_pending_updates=True,  # commands typed while the service was down are not replayed
        )
        await self.outbox.start()
        self.connected = True
        log.info("Telegram frontend running for %d chat(s)", len(self.guard.allowed))

    async def _set_menus(self) -> None:
        """Each user's command menu lists what their role may do. A scope Telegram refuses (e.g. a listed
        user who is not a member of the group) is logged; the others still apply."""
        for scope, role in menu_scopes(self.guard.allowed, self.guard.roles):
            try:
                await self.application.bot.set_my_commands(menu(role), scope=scope)
            except BadRequest as exc:
                log.warning("command menu for %s not set: %s", scope.to_json(), exc.message)

    async def _connect_later(self) -> None:
        delay = self.retry_delay
        while True:
            await asyncio.sleep(delay)
            try:
                await self._connect()
                return
            except (NetworkError, TimedOut) as exc:
                delay = min(delay * 2, 300.0)
                log.warning("Telegram still unreachable (%s); next try in %.0f s", exc, delay)
            except Exception:
                log.exception("the Telegram frontend cannot start")
                return

    async def stop(self) -> None:
        if self._retry is not None:
            self._retry.cancel()
            await asyncio.gather(self._retry, return_exceptions=True)
        await self.outbox.stop(timeout=self.stop_grace if self.connected else 0.0)
        if self.application.updater and self.application.updater.running:
            await self.application.updater.stop()
        if self.application.running:
            await self.application.stop()
        await self.application.shutdown()
        await self.tokens.flush()  # the buttons pressed until now are used up after a restart too


def build_application(settings: Settings, desk: DeskPort, event_bus: EventBus, *,
                      limits: Limits | None = None, poll_timeout: int = 10) -> TelegramFrontend:
    """Build the frontend from settings (token, chat ids, optional Bot API base URL); `limits` is
    Telegram's pace (tests run it faster). The desk's database, when it can, keeps the outbox."""
    if not settings.telegram_bot_token:
        raise ValueError("TELEGRAM_BOT_TOKEN is not set")
    if not settings.telegram_chat_ids:
        raise ValueError("TELEGRAM_CHAT_IDS is empty: nobody could command the bot")
    base = (settings.telegram_api_base_url or TELEGRAM_API).rstrip("/")
    application = (
        ApplicationBuilder()
        .token(settings.telegram_bot_token.get())
        .base_url(f"{base}/bot")
        .base_file_url(f"{base}/file/bot")
        .request(HTTPXRequest(connection_pool_size=16))
        .get_updates_request(HTTPXRequest(read_timeout=poll_timeout + 10))
        # no PTB rate limiter: every send goes through the outbox, which paces and never gives up
        .defaults(Defaults(parse_mode=ParseMode.HTML))
        # a slow command (an exchange call timing out) must not hold /halt back; button tokens are
        # consumed synchronously, so a double tap still acts once
        .concurrent_updates(8)
        .build()
    )
    roles = Roles.from_settings(settings)
    groups = [c for c in settings.telegram_chat_ids if c < 0]
    if groups and not roles.configured:
        log.warning("TELEGRAM_CHAT_IDS lists group chat(s) %s but no operator has a role: group members can do "
                    "nothing until TELEGRAM_ADMINS / TELEGRAM_TRADERS / TELEGRAM_VIEWERS name them", groups)
    guard = ChatGuard(settings.telegram_chat_ids, roles)
    tokens = TokenStore(clock=desk.clock, store=desk.db if isinstance(desk.db, TokenStorePort) else None)

    store = desk.db if isinstance(desk.db, OutboxStore) else None
    outbox = Outbox(application.bot, settings.telegram_chat_ids, store=store, limits=limits, emoji=emoji,
                    max_age=timedelta(hours=settings.telegram_outbox_max_age_hours))
    notifier = Notifier(outbox, strategy_of=desk.strategy_of, store=store)
    frontend = TelegramFrontend(application, desk, notifier, outbox, guard, tokens, poll_timeout=poll_timeout)
    frontend.timezone = settings.timezone
    frontend.subscriptions += [(event_bus, notifier.attach(event_bus)), (event_bus, Reports(frontend).attach(event_bus))]
    application.add_handler(guard.handler(), group=-1)
    register(application, frontend)
    return frontend
