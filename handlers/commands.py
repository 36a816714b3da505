"""The operator's commands and what their buttons do.

Every handler is thin: parse the arguments -> call `traderagent.control.Desk` -> render its result
with handlers/views.py. A wrong argument gets the command's usage line; a `ControlError` (unknown
bot, halted desk, blocked scaling, ...) is shown as is; anything unexpected goes to the
Application's error handler, which logs it and tells the chat "internal error, see logs" (never
a traceback). Every outgoing text passes through `secrets_filter.mask`.

Each command declares once, in `@command(usage, role, all_bots=...)`, the least role it needs (and
the role its all-bots form needs, when it has one); a user whose role is lower is told so and
nothing happens. Every call, allowed or not, is written to the audit trail with its outcome.
Buttons declare theirs in `@action(name, role)` (handlers/callbacks.py).

`COMMANDS` is the single list of (name, description, callback) used both for registration and
for the menus (setMyCommands per role and scope, `menu_scopes`); `register(application, frontend)` wires it all. A command the bot does not know
gets a one-line pointer to /help.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from dataclasses import dataclass
from functools import wraps
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from telegram import (
    BotCommand,
    BotCommandScope,
    BotCommandScopeChat,
    BotCommandScopeChatMember,
    BotCommandScopeDefault,
    InlineKeyboardMarkup,
    Update,
)
from telegram.error import NetworkError, TimedOut
from telegram.ext import (
    Application,
    CallbackQueryHandler,
    CommandHandler,
    ContextTypes,
    MessageHandler,
    filters,
)

from handlers import views
from handlers.auth import Role, Roles, audit, command_of
from handlers.callbacks import Button, Interaction, Press, action, frontend_of, keyboard, on_button
from handlers.charts import render_equity_png
from handlers.formatting import esc, split_message
from handlers.notifier import Verbosity
from handlers.reports import OWN_MESSAGES
from traderagent.control import BotOp, ControlError
from traderagent.orchestrator.events import UNMUTABLE_EVENTS, EventType
from traderagent.results import BotSummary, ScalingPending
from traderagent.strategies import STRATEGY_TYPES
from traderagent.utils.secrets_filter import mask

if TYPE_CHECKING:
    from handlers.app import TelegramFrontend

log = logging.getLogger(__name__)

BOT_BUTTONS_UP_TO = 6  # per-bot Pause/Resume buttons on /status for small desks only
MAX_LIST_LINES = 150  # /orders over every bot: the rest is one /orders <bot> away
INTERNAL_ERROR = "⚠️ Internal error, see logs."
ECHO = 1000  # longest error text that may echo the operator's arguments
MAX_BOT_NAME = 64  # as the bots table stores it
STOP_NOTE = "Its entry orders are cancelled; exits already on the exchange stay. /start runs it again."


class UsageError(Exception):
    """Bad or missing arguments; the text (if any) is added under the usage line."""


# ====================================================================== command plumbing
@dataclass
class Cmd(Interaction):
    usage: str

    @property
    def chat_id(self) -> int:
        return self.update.effective_chat.id  # type: ignore[union-attr]

    @property
    def args(self) -> list[str]:
        return list(self.context.args or [])

    async def reply(self, text: str, markup: InlineKeyboardMarkup | None = None) -> None:
        """Into the chat's outbox: sent in turn, ahead of alerts, split when over 4096 units."""
        self.frontend.outbox.reply(self.chat_id, mask(text), markup)

    async def reply_lines(self, lines: Iterable[str], header: str = "", empty: str = "Nothing to show.") -> None:
        """Lines packed into as few messages as the 4096-character limit allows."""
        messages = split_message(lines, header=header)
        for text in messages or [f"{header}\n{empty}" if header else empty]:
            await self.reply(text)

    async def bot_arg(self) -> str | None:
        """The optional single bot argument, resolved from a unique prefix."""
        if len(self.args) > 1:
            raise UsageError("give one bot name (a unique prefix is enough)")
        if not self.args:
            return None
        if len(self.args[0]) > MAX_BOT_NAME:
            raise UsageError(f"a bot name has at most {MAX_BOT_NAME} characters")
        return self.desk.resolve_bot(self.args[0])

    def int_arg(self, default: int, lo: int, hi: int) -> int:
        if not self.args:
            return default
        if len(self.args) > 1:
            raise UsageError()
        try:
            value = int(self.args[0])
        except ValueError:
            raise UsageError() from None
        if not lo <= value <= hi:
            raise UsageError()
        return value


CommandFunc = Callable[[Cmd], Awaitable[None]]
Handler = Callable[[Update, ContextTypes.DEFAULT_TYPE], Coroutine[Any, Any, None]]


@dataclass(frozen=True)
class Access:
    """Who may use a command: the least role, and the role its all-bots form (no bot name) needs."""

    usage: str
    role: Role
    all_bots: Role | None = None

    def needed(self, args: list[str]) -> Role:
        return self.all_bots if self.all_bots is not None and not args else self.role

    def usage_for(self, role: Role) -> str | None:
        """The usage line as ``role`` may use it; None when it may not use the command at all."""
        if role < self.role:
            return None
        if self.all_bots is not None and role < self.all_bots:
            return self.usage.replace("[bot]", "<bot>")  # one bot at a time only
        return self.usage


ACCESS: dict[Handler, Access] = {}  # filled by @command


def command(usage: str, role: Role, *, all_bots: Role | None = None) -> Callable[[CommandFunc], Handler]:
    """Wrap a command: the role check (``all_bots``: what the form without a bot name needs), usage line
    on bad arguments, the desk's message on ControlError; every call audited with its outcome."""
    access = Access(usage, role, all_bots)
    name = usage.split()[0]

    def wrap(func: CommandFunc) -> Handler:
        @wraps(func)
        async def handler(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
            if update.effective_chat is None:
                return
            cmd = Cmd(update, context, usage)
            record = functools.partial(audit, context, cmd.actor, name, " ".join(cmd.args))
            needed = access.needed(cmd.args)
            if cmd.actor.role < needed:
                refusal = f"🔒 {name} needs the {needed.label} role; you are {cmd.actor.role.label}."
                await cmd.reply(f"{refusal} /help lists what you may do.")
                await record("denied", refusal)
                return
            try:
                outcome, detail = await _run(cmd, func)
            except Exception:
                await record("error")
                raise  # to on_error
            await record(outcome, detail)

        ACCESS[handler] = access
        return handler

    return wrap


async def _run(cmd: Cmd, func: CommandFunc) -> tuple[str, str]:
    """Run a permitted command: (outcome, detail) for the audit trail."""
    try:
        await func(cmd)
    except UsageError as exc:
        detail = f"\n{esc(views.short(exc, ECHO))}" if str(exc) else ""
        await cmd.reply(f"usage: {esc(cmd.usage)}{detail}")
        return "usage", str(exc)
    except ControlError as exc:  # may echo what the operator typed: shortened
        await cmd.reply(f"⚠️ {esc(views.short(exc, ECHO))}")
        return "refused", str(exc)
    return "ok", ""


# ====================================================================== status rendering (commands and buttons)
Rendered = tuple[str, InlineKeyboardMarkup | None]


def _toggle(bot: BotSummary, view: str, *, with_name: bool = True) -> Button:
    name = bot.name
    label = f" {name}" if with_name else ""
    if bot.state == "RUNNING":
        return (f"⏸ Pause{label}", "pause", f"{name}|{view}")
    return (f"▶️ Resume{label}", "resume", f"{name}|{view}")


async def render_desk(frontend: TelegramFrontend, chat_id: int, page: int = 0) -> Rendered:
    status = await frontend.desk.desk_status()
    pages = views.desk_pages(status)
    page = min(max(page, 0), len(pages) - 1)
    footer = f"\n<i>{f'page {page + 1}/{len(pages)} · ' if len(pages) > 1 else ''}updated {views.now_stamp()} UTC</i>"
    rows: list[list[Button]] = [[("🔄 Refresh", "status", str(page))]]
    if page > 0:
        rows[0].insert(0, ("◀️", "status", str(page - 1)))
    if page < len(pages) - 1:
        rows[0].append(("▶️", "status", str(page + 1)))
    if len(status.bots) <= BOT_BUTTONS_UP_TO:
        toggles = [_toggle(b, f"page:{page}") for b in status.bots]
        rows += [toggles[i:i + 2] for i in range(0, len(toggles), 2)]
    return pages[page] + footer, keyboard(frontend, chat_id, rows)


async def render_bot(frontend: TelegramFrontend, chat_id: int, name: str) -> Rendered:
    status = await frontend.desk.bot_status(name)
    text = views.bot_detail(status) + f"\n<i>updated {views.now_stamp()} UTC</i>"
    rows = [[("🔄 Refresh", "status_bot", status.name), _toggle(status, "bot", with_name=False)]]
    return text, keyboard(frontend, chat_id, rows)


async def render_view(frontend: TelegramFrontend, chat_id: int, view: str, name: str) -> Rendered:
    if view == "bot":
        return await render_bot(frontend, chat_id, name)
    return await render_desk(frontend, chat_id, int(view.partition(":")[2] or 0))


def render_alerts(frontend: TelegramFrontend, chat_id: int) -> Rendered:
    muted = frontend.notifier.muted
    buttons: list[Button] = [
        (f"{'🔕' if t in muted else '🔔'} {t.value.lower()}", "alert", t.value)
        for t in EventType if t not in UNMUTABLE_EVENTS | OWN_MESSAGES
    ]
    rows = [buttons[i:i + 2] for i in range(0, len(buttons), 2)]
    return views.alerts_view(muted), keyboard(frontend, chat_id, rows)


def _approval_buttons(next_phase: str) -> list[list[Button]]:
    return [[("✅ Approve", "approve", next_phase), ("✖️ Reject", "reject", "")]]


# ====================================================================== commands
@command("/start [bot]", Role.TRADER, all_bots=Role.ADMIN)
async def cmd_start(c: Cmd) -> None:
    name = await c.bot_arg()
    if name:
        status = await c.desk.start_bot(name, c.by)
        await c.reply(f"▶️ <b>{esc(status.name)}</b> is {views.state_word(status)}")
        return
    # Telegram clients send a bare /start when a chat with the bot is first opened: never act on it
    # without a confirmation.
    bots = await c.desk.list_bots()
    names = [b.name for b in bots if b.state != "RUNNING"]
    if not bots:
        await c.reply("No bots configured.")
        return
    if not names:
        await c.reply("Every bot is already running. /status shows them.")
        return
    text = f"▶️ Start all {len(names)} bots ({esc(views.short(', '.join(names), 300))})?"
    await c.reply(text, c.keyboard([[("▶️ Start all", "start_all", ""),
                                      ("Cancel", "cancel", "Start cancelled: nothing changed.")]]))


@command("/pause [bot]", Role.TRADER, all_bots=Role.ADMIN)
async def cmd_pause(c: Cmd) -> None:
    name = await c.bot_arg()
    if name:
        status = await c.desk.pause_bot(name, c.by)
        await c.reply(f"⏸ <b>{esc(status.name)}</b> is {views.state_word(status)}: no new entries, "
                      "open positions are still managed. /start resumes it.")
        return
    outcome = await c.desk.pause_all(c.by)
    await c.reply(views.outcome("⏸ Paused (no new entries, positions still managed)", outcome.paused,
                                outcome.errors, "No running bot to pause."))


@command("/stop [bot]", Role.TRADER, all_bots=Role.ADMIN)
async def cmd_stop(c: Cmd) -> None:
    name = await c.bot_arg()
    if name:
        text = f"⏹ Stop <b>{esc(name)}</b>?\n{STOP_NOTE}"
        confirm: Button = (f"⏹ Stop {name}", "stop", name)
    else:
        names = [b.name for b in await c.desk.list_bots() if b.state != "STOPPED"]
        if not names:
            await c.reply("Every bot is already stopped.")
            return
        text = f"⏹ Stop all {len(names)} bots ({esc(views.short(', '.join(names), 300))})?\n{STOP_NOTE}"
        confirm = ("⏹ Stop all", "stop_all", "")
    await c.reply(text, c.keyboard([[confirm, ("Cancel", "cancel", "Stop cancelled: nothing changed.")]]))


@command("/status [bot]", Role.VIEWER)
async def cmd_status(c: Cmd) -> None:
    name = await c.bot_arg()
    text, markup = await (render_bot(c.frontend, c.chat_id, name) if name else render_desk(c.frontend, c.chat_id))
    await c.reply(text, markup)


@command("/balance", Role.VIEWER)
async def cmd_balance(c: Cmd) -> None:
    if c.args:
        raise UsageError()
    wallets = await c.desk.balances()
    await c.reply_lines(map(views.wallet_view, wallets), empty="No exchange account configured.")


@command("/positions", Role.VIEWER)
async def cmd_positions(c: Cmd) -> None:
    if c.args:
        raise UsageError()
    positions = await c.desk.positions()
    header = f"📊 <b>Open positions</b> ({len(positions)})"
    await c.reply_lines(map(views.position_line, positions), header=header, empty="No open position.")


@command("/orders [bot]", Role.VIEWER)
async def cmd_orders(c: Cmd) -> None:
    name = await c.bot_arg()
    orders = await c.desk.open_orders(name)
    lines = [views.order_line(o) for o in orders[:MAX_LIST_LINES]]
    if len(orders) > MAX_LIST_LINES:
        lines.append(f"… and {len(orders) - MAX_LIST_LINES} more: /orders &lt;bot&gt; lists one bot's.")
    header = f"📝 <b>Open orders</b>{f' of {esc(name)}' if name else ''} ({len(orders)})"
    await c.reply_lines(lines, header=header, empty="No open orders.")


@command("/trades [n], n between 1 and 50", Role.VIEWER)
async def cmd_trades(c: Cmd) -> None:
    n = c.int_arg(10, 1, 50)
    trades = await c.desk.recent_trades(n)
    await c.reply_lines(map(views.trade_line, trades), header=f"🧾 <b>Last {n} trades</b>", empty="No trades yet.")


@command("/pnl [days], days between 1 and 90", Role.VIEWER)
async def cmd_pnl(c: Cmd) -> None:
    days = c.int_arg(7, 1, 90)
    rows = await c.desk.daily_pnl(days)
    await c.reply(views.pnl_view(rows))


@command("/phase", Role.VIEWER)
async def cmd_phase(c: Cmd) -> None:
    if c.args:
        raise UsageError()
    await c.reply(views.phase_view(await c.desk.capital_report()))


@command("/scale", Role.ADMIN)
async def cmd_scale(c: Cmd) -> None:
    if c.args:
        raise UsageError()
    decision = await c.desk.evaluate_scaling()
    markup = None
    if decision.can_scale:
        markup = c.keyboard(_approval_buttons(decision.next_phase or ""))
    await c.reply(views.scaling_view(decision), markup)


@command("/digest", Role.VIEWER)
async def cmd_digest(c: Cmd) -> None:
    """The daily digest on demand: the 24 hours up to now in the operator's zone."""
    if c.args:
        raise UsageError()
    digest = await c.desk.digest(c.desk.clock().astimezone(ZoneInfo(c.frontend.timezone)))
    for page in views.digest_pages(digest):
        await c.reply(page)


@command("/halt [reason]", Role.ADMIN)
async def cmd_halt(c: Cmd) -> None:
    reason = " ".join(c.args).strip() or "manual halt"
    if len(reason) > 200:
        raise UsageError("the reason is limited to 200 characters")
    report = await c.desk.capital_report()
    if report.halted:
        await c.reply(f"🛑 Trading is already halted: {esc(report.halt_reason)}\n/resume_trading lifts it.")
        return
    text = (f"🛑 <b>Halt all trading?</b>\nReason: {esc(reason)}\nNew entries stop at once and every running bot "
            "pauses; open positions stay managed. /resume_trading lifts it.")
    await c.reply(text, c.keyboard([[("🛑 Halt trading", "halt", reason),
                                     ("Cancel", "cancel", "Halt cancelled: trading continues.")]]))


@command("/resume_trading", Role.ADMIN)
async def cmd_resume_trading(c: Cmd) -> None:
    if c.args:
        raise UsageError()
    report = await c.desk.capital_report()
    if not report.halted:
        await c.reply("Trading is not halted.")
        return
    text = (f"▶️ <b>Lift the halt?</b>\nHalted: {esc(report.halt_reason)}\n"
            "Bots paused by the halt run again.")
    await c.reply(text, c.keyboard([[("▶️ Resume trading", "resume_trading", ""),
                                     ("Cancel", "cancel", "Trading stays halted.")]]))


@command("/logs [n], n between 1 and 50", Role.VIEWER)
async def cmd_logs(c: Cmd) -> None:
    n = c.int_arg(10, 1, 50)
    rows = list(reversed(await c.desk.logs(n)))  # oldest first: reads top-down
    await c.reply_lines(map(views.log_line, rows), header=f"📜 <b>Last {n} log lines</b>", empty="No log lines.")


@command("/chart [bot]", Role.VIEWER)
async def cmd_chart(c: Cmd) -> None:
    name = await c.bot_arg()
    curve = await c.desk.equity_curve(name)
    who = name or "desk"
    if not curve:
        await c.reply(f"No closed trades yet for {esc(who)}: nothing to chart.")
        return
    png = await asyncio.to_thread(render_equity_png, curve, f"Equity · {who}")
    c.frontend.outbox.photo(c.chat_id, png, mask(views.chart_caption(who, curve)))


@command("/alerts [mute|unmute TYPE]", Role.TRADER)
async def cmd_alerts(c: Cmd) -> None:
    notifier = c.frontend.notifier
    if c.args:
        if len(c.args) != 2 or c.args[0].lower() not in ("mute", "unmute"):
            raise UsageError()
        wanted = c.args[1].upper()
        if wanted not in EventType.__members__:
            raise UsageError("types: " + ", ".join(t.value for t in EventType))
        event_type = EventType[wanted]
        if not notifier.set_muted(event_type, c.args[0].lower() == "mute"):
            await c.reply(f"🔒 {esc(event_type.value)} alerts can never be muted: they mean money is at risk "
                          "or trading stopped.")
            return
    text, markup = render_alerts(c.frontend, c.chat_id)
    await c.reply(text, markup)


@command("/verbosity [bot|strategy] [all|trades|errors]", Role.TRADER)
async def cmd_verbosity(c: Cmd) -> None:
    notifier = c.frontend.notifier
    if c.args:
        if len(c.args) != 2 or c.args[1].lower() not in Verbosity.__members__.values():
            raise UsageError("all: every event · trades: no order placed/cancelled or signal chatter · "
                             "errors: errors, failed orders, halts and risk limits only")
        target, level = c.args[0], Verbosity(c.args[1].lower())
        scope = (f"strategy:{target.lower()}" if target.lower() in STRATEGY_TYPES
                 else f"bot:{c.desk.resolve_bot(target[:MAX_BOT_NAME])}")
        await notifier.set_verbosity(scope, level)
    await c.reply(views.verbosity_view({name: notifier.verbosity(name) for name in c.desk.bot_names()}, notifier.levels))


@command("/audit [n], n between 1 and 50", Role.ADMIN)
async def cmd_audit(c: Cmd) -> None:
    n = c.int_arg(10, 1, 50)
    rows = list(reversed(await c.desk.audit_log(n)))  # oldest first: reads top-down
    await c.reply_lines(map(views.audit_line, rows), header=f"🗂 <b>Last {n} operator actions</b>",
                        empty="No operator action recorded yet.")


@command("/help", Role.VIEWER)
async def cmd_help(c: Cmd) -> None:
    """Only what the asking user may do."""
    role = c.actor.role
    lines = [f"🤖 <b>TraderAgent</b> · you are {role.label} · a bot name may be a unique prefix"]
    lines += [f"{esc(usage)} — {esc(desc)}" for _, desc, cb in COMMANDS if (usage := ACCESS[cb].usage_for(role))]
    await c.reply("\n".join(lines))


async def on_unknown(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """A command this bot does not have: a one-line pointer (commands meant for other bots are left alone)."""
    name = command_of(update, context.bot.username)
    if name is None or update.effective_chat is None:
        return
    frontend_of(context).outbox.reply(update.effective_chat.id,
                                      f"Unknown command {esc(views.short(name, 40))}. /help lists what you may do.")


# ====================================================================== button actions
@action("status", Role.VIEWER)
async def act_status(p: Press) -> str:
    text, markup = await render_desk(p.frontend, p.chat_id, int(p.arg or 0))
    await p.edit(text, markup)
    return "Updated"


@action("status_bot", Role.VIEWER)
async def act_status_bot(p: Press) -> str:
    text, markup = await render_bot(p.frontend, p.chat_id, p.arg)
    await p.edit(text, markup)
    return "Updated"


async def _toggle_bot(p: Press, op: BotOp, done: str) -> str:
    name, _, view = p.arg.partition("|")
    try:
        await op(name, p.by)
        toast = f"{name} {done}"
    except ControlError as exc:
        toast = str(exc)
    text, markup = await render_view(p.frontend, p.chat_id, view, name)
    await p.edit(text, markup)
    return toast


@action("pause", Role.TRADER)
async def act_pause(p: Press) -> str:
    return await _toggle_bot(p, p.desk.pause_bot, "paused")


@action("resume", Role.TRADER)
async def act_resume(p: Press) -> str:
    return await _toggle_bot(p, p.desk.start_bot, "running")


@action("stop", Role.TRADER)
async def act_stop(p: Press) -> str:
    try:
        await p.desk.stop_bot(p.arg, p.by)
        done, errors = [p.arg], []
    except ControlError as exc:
        done, errors = [], [str(exc)]
    await p.edit(views.outcome(f"⏹ Stopped by {esc(p.by)}", done, errors, "Nothing was stopped."))
    return "Stopped" if done else "Nothing stopped"


@action("stop_all", Role.ADMIN)
async def act_stop_all(p: Press) -> str:
    outcome = await p.desk.stop_all(p.by)  # all at once: no order leaves the desk once the stop begins
    await p.edit(views.outcome(f"⏹ Stopped by {esc(p.by)}", outcome.stopped, outcome.errors, "Nothing was stopped."))
    return "Stopped" if outcome.stopped else "Nothing stopped"


@action("start_all", Role.ADMIN)
async def act_start_all(p: Press) -> str:
    outcome = await p.desk.start_all(p.by)
    await p.edit(views.outcome(f"▶️ Started by {esc(p.by)}", outcome.started, outcome.errors,
                               "Every bot is already running."))
    return "Started" if outcome.started else "Nothing started"


@action("cancel", None)  # needs what the button it cancels needs
async def act_cancel(p: Press) -> str:
    await p.edit(esc(p.arg or "Cancelled."))
    return "Cancelled"


@action("halt", Role.ADMIN)
async def act_halt(p: Press) -> str:
    await p.edit(views.halted_view(await p.desk.halt(p.arg, p.by), p.by))
    return "Trading halted"


@action("resume_trading", Role.ADMIN)
async def act_resume_trading(p: Press) -> str:
    await p.edit(views.resumed_view(await p.desk.resume_trading(p.by), p.by))
    return "Trading resumed"


@action("approve", Role.ADMIN)
async def act_approve(p: Press) -> str:
    try:
        result = await p.desk.approve_scaling(approved_by=p.by, approver=str(p.actor.user_id))
    except ControlError as exc:
        blockers = "\n".join(f"❌ {esc(part)}" for part in str(exc).split("; "))
        await p.edit(f"⛔ <b>Scaling not applied</b>: the gates were re-checked at approval.\n{blockers}")
        return "Blocked by the gates"
    if isinstance(result, ScalingPending):  # another admin must approve: fresh buttons for them
        await p.edit(views.pending_view(result), p.keyboard(_approval_buttons(result.next_phase)))
        count = f"{len(result.approved_by)} of {result.required} approvals"
        return f"You had already approved: {count}" if result.repeated else count
    await p.edit(views.approved_view(result))
    return "Approved"


@action("reject", Role.ADMIN)
async def act_reject(p: Press) -> str:
    await p.edit(views.rejected_view(await p.desk.reject_scaling(p.by)))
    return "Rejected"


@action("alert", Role.TRADER)
async def act_alert(p: Press) -> str:
    event_type = EventType(p.arg)
    notifier = p.frontend.notifier
    muted = event_type not in notifier.muted
    notifier.set_muted(event_type, muted)
    text, markup = render_alerts(p.frontend, p.chat_id)
    await p.edit(text, markup)
    return f"{event_type.value.lower()} {'muted' if muted else 'unmuted'}"


# ====================================================================== registration
COMMANDS: list[tuple[str, str, Handler]] = [
    ("status", "Bots, positions, PnL and capital; /status <bot> for one bot", cmd_status),
    ("start", "Start or resume a bot (all bots without a name)", cmd_start),
    ("pause", "No new entries, positions still managed (all bots without a name)", cmd_pause),
    ("stop", "Stop a bot or all bots, after a confirmation", cmd_stop),
    ("balance", "Exchange balances", cmd_balance),
    ("positions", "Open positions of every bot", cmd_positions),
    ("orders", "Open orders, optionally of one bot", cmd_orders),
    ("trades", "Last n trades (default 10)", cmd_trades),
    ("pnl", "Daily realised PnL for the last n days (default 7)", cmd_pnl),
    ("phase", "Capital deployment phase and its record", cmd_phase),
    ("scale", "Evaluate scaling to the next phase; approve or reject", cmd_scale),
    ("digest", "The last 24 hours: PnL per bot, trades, fees, errors, scaling gates", cmd_digest),
    ("halt", "Kill switch: halt all trading, after a confirmation", cmd_halt),
    ("resume_trading", "Lift the halt, after a confirmation", cmd_resume_trading),
    ("logs", "Last n log lines (default 10)", cmd_logs),
    ("chart", "Equity curve of the desk or one bot", cmd_chart),
    ("alerts", "Mute or unmute notification types", cmd_alerts),
    ("verbosity", "How much each bot or strategy tells: all, trades or errors", cmd_verbosity),
    ("audit", "Last n operator actions: who did what, when, with what outcome (default 10)", cmd_audit),
    ("help", "This list", cmd_help),
]


def menu(role: Role) -> list[BotCommand]:
    """The command menu of ``role``: only what it may use."""
    return [BotCommand(name, description) for name, description, callback in COMMANDS
            if ACCESS[callback].usage_for(role)]


def menu_scopes(chat_ids: Iterable[int], roles: Roles) -> list[tuple[BotCommandScope, Role]]:
    """Whose menu shows which role's commands (setMyCommands per Bot API scope): by default (a user
    nothing narrower names, e.g. a new group member) the viewer's; in an allowed private chat (its id
    is its user's) that user's role; in an allowed group each listed user's (BotCommandScopeChatMember)."""
    scopes: list[tuple[BotCommandScope, Role]] = [(BotCommandScopeDefault(), Role.VIEWER)]
    for chat_id in chat_ids:
        if chat_id > 0:
            role = roles.of(chat_id, private_chat=True)
            if role is not Role.NONE:
                scopes.append((BotCommandScopeChat(chat_id), role))
        else:
            scopes += [(BotCommandScopeChatMember(chat_id, user), role) for user, role in roles.holders().items()]
    return scopes


async def on_error(update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Log the failure; tell the chat something went wrong, never what (no traceback, no secret)."""
    err = context.error
    if update is None and isinstance(err, NetworkError | TimedOut):
        log.warning("Telegram polling: %s", err)  # PTB retries by itself
        return
    log.error("Telegram handler failed", exc_info=err)
    chat = update.effective_chat if isinstance(update, Update) else None
    if chat is None:
        return
    frontend_of(context).outbox.reply(chat.id, INTERNAL_ERROR)


def register(application: Application, frontend: TelegramFrontend) -> None:
    """Wire the commands, the button dispatcher and the error handler."""
    application.bot_data["frontend"] = frontend
    for name, _description, callback in COMMANDS:
        application.add_handler(CommandHandler(name, callback))
    application.add_handler(MessageHandler(filters.COMMAND, on_unknown))  # after every known command
    application.add_handler(CallbackQueryHandler(on_button))
    application.add_error_handler(on_error)
