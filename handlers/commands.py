"""The operator's commands and what their buttons do.

Every handler is thin: parse the arguments -> call `traderagent.control.Desk` -> format with
handlers/formatting.py. A wrong argument gets the command's usage line; a `ControlError` (unknown
bot, halted desk, blocked scaling, ...) is shown as is; anything unexpected goes to the
Application's error handler, which logs it and tells the chat "internal error, see logs" (never
a traceback). Every outgoing text passes through `secrets_filter.mask`.

`COMMANDS` is the single list of (name, description, callback) used both for registration and
for setMyCommands; `register(application, frontend)` wires it all.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import wraps
from typing import Any

from telegram import InlineKeyboardMarkup, Message, Update
from telegram.error import NetworkError, TelegramError, TimedOut
from telegram.ext import Application, CallbackQueryHandler, CommandHandler, ContextTypes

from handlers.callbacks import Button, Interaction, Press, action, keyboard, on_button
from handlers.charts import render_equity_png
from handlers.formatting import MAX_MESSAGE, STATE_EMOJI, esc, fmt_num, fmt_pnl, split_message, table
from traderagent.control import ControlError
from traderagent.numbers import ZERO, decimal_or
from traderagent.orchestrator.events import UNMUTABLE_EVENTS, EventType
from traderagent.utils.secrets_filter import mask

log = logging.getLogger(__name__)

PAGE_LIMIT = MAX_MESSAGE - 80  # room for the footer of a /status page
BOT_BUTTONS_UP_TO = 6  # per-bot Pause/Resume buttons on /status for small desks only
MAX_LIST_LINES = 150  # /orders over every bot: the rest is one /orders <bot> away
INTERNAL_ERROR = "⚠️ Internal error, see logs."
STOP_NOTE = "Its entry orders are cancelled; exits already on the exchange stay. /start runs it again."


class UsageError(Exception):
    """Bad or missing arguments; the text (if any) is added under the usage line."""


async def _maybe_await(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


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

    async def reply(self, text: str, markup: InlineKeyboardMarkup | None = None) -> Message:
        return await self.context.bot.send_message(self.chat_id, mask(text), reply_markup=markup)

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
        return str(await _maybe_await(self.desk.resolve_bot(self.args[0])))

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
Handler = Callable[[Update, ContextTypes.DEFAULT_TYPE], Awaitable[None]]


def command(usage: str) -> Callable[[CommandFunc], Handler]:
    """Wrap a command: usage line on bad arguments, the desk's message on ControlError."""

    def wrap(func: CommandFunc) -> Handler:
        @wraps(func)
        async def handler(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
            if update.effective_chat is None:
                return
            cmd = Cmd(update, context, usage)
            try:
                await func(cmd)
            except UsageError as exc:
                detail = f"\n{esc(exc)}" if str(exc) else ""
                await cmd.reply(f"usage: {esc(usage)}{detail}")
            except ControlError as exc:
                await cmd.reply(f"⚠️ {esc(exc)}")

        handler.usage = usage  # type: ignore[attr-defined]
        return handler

    return wrap


# ====================================================================== views
def _now() -> str:
    return datetime.now(UTC).strftime("%H:%M:%S")


def _when(value: Any) -> str:
    return value.strftime("%m-%d %H:%M") if isinstance(value, datetime) else "–"


def _short(text: Any, n: int = 100) -> str:
    text = str(text)
    return text if len(text) <= n else text[: n - 1] + "…"


def state_word(bot: dict[str, Any]) -> str:
    state = str(bot.get("state", "?"))
    word = state.lower()
    if state == "PAUSED" and bot.get("paused_by"):
        word += f" ({bot['paused_by']})"
    return f"{STATE_EMOJI.get(state, '⚪')} {esc(word)}"


def desk_header(status: dict[str, Any]) -> str:
    bots = status.get("bots") or []
    states = status.get("states") or {}
    counts = ", ".join(f"{n} {esc(s.lower())}" for s, n in sorted(states.items()))
    realized = sum((decimal_or(b.get("realized_pnl"), ZERO) for b in bots), ZERO)
    unrealized = sum((decimal_or(b.get("unrealized_pnl"), ZERO) for b in bots), ZERO)
    lines = [f"📋 <b>Desk</b> · {len(bots)} bot{'s' if len(bots) != 1 else ''}" + (f": {counts}" if counts else "")]
    if status.get("halted"):
        lines.append(f"🛑 <b>TRADING HALTED</b>: {esc(status.get('halt_reason') or '')} · /resume_trading")
    if status.get("phase"):
        lines.append(f"Phase {esc(status['phase'])} · deployed {fmt_num(status.get('allocated_capital'), 2)}")
    lines.append(f"PnL {fmt_pnl(realized)} · unrealised {fmt_pnl(unrealized)} · today {fmt_pnl(status.get('day_pnl'))}")
    if status.get("exposure") is not None:
        limit = status.get("exposure_limit")
        lines.append(f"Exposure {fmt_num(status['exposure'], 2)}" + (f" / {fmt_num(limit, 2)}" if limit is not None else ""))
    for refused in (status.get("refused") or [])[:5]:
        lines.append(f"⚠️ refused {esc(refused.get('name'))}: {esc(_short(refused.get('reason'), 80))}")
    return "\n".join(lines)


def bot_line(bot: dict[str, Any]) -> str:
    """Two lines per bot in the desk summary."""
    head = (f"{state_word(bot)} <b>{esc(bot.get('name'))}</b> · {esc(bot.get('symbol'))} "
            f"{esc(bot.get('strategy'))}")
    body = (f"    pos {bot.get('open_positions', 0)} · orders {bot.get('open_orders', 0)} · "
            f"PnL {fmt_pnl(bot.get('realized_pnl'))} · uPnL {fmt_pnl(bot.get('unrealized_pnl'))} · "
            f"cap {fmt_num(bot.get('allocated_capital'), 2)}")
    line = f"{head}\n{body}"
    if bot.get("state") == "ERROR" and bot.get("last_error"):
        line += f"\n    ⚠️ {esc(_short(bot['last_error']))}"
    return line


def desk_pages(status: dict[str, Any]) -> list[str]:
    header = desk_header(status)
    bots = status.get("bots") or []
    if not bots:
        return [f"{header}\nNo bots configured."]
    return split_message((bot_line(b) for b in bots), header=header, limit=PAGE_LIMIT) or [header]


def bot_detail(s: dict[str, Any]) -> str:
    perf = s.get("performance") or {}
    tfs = ", ".join(s.get("timeframes") or [])
    lines = [
        f"{state_word(s)} <b>{esc(s.get('name'))}</b>",
        f"{esc(s.get('symbol'))} ({esc(s.get('market_type', ''))}) · {esc(s.get('strategy'))}" + (f" · {esc(tfs)}" if tfs else ""),
        f"Capital {fmt_num(s.get('allocated_capital'), 2)} · last price {fmt_num(s.get('last_price'))}",
        f"PnL {fmt_pnl(s.get('realized_pnl'))} · unrealised {fmt_pnl(s.get('unrealized_pnl'))} · today {fmt_pnl(s.get('day_pnl'))}",
        f"Open orders {s.get('open_orders', 0)} · ticks {s.get('ticks', 0)} · last {_when(s.get('last_tick_at'))}",
    ]
    if perf:
        win = perf.get("win_rate")
        lines.append(f"Trades {perf.get('total_trades', 0)} · win rate {float(win or 0):.0%} · "
                     f"fees {fmt_num(perf.get('total_fees'), 2)}")
    positions = s.get("positions") or []
    lines.append(f"Positions: {len(positions)}" if positions else "No open position.")
    for p in positions[:10]:
        lines.append(position_line(p, with_bot=False))
    if s.get("last_error"):
        lines.append(f"⚠️ last error: {esc(_short(s['last_error'], 300))}")
    return "\n".join(lines)


def position_line(p: dict[str, Any], *, with_bot: bool = True) -> str:
    who = f"<b>{esc(p.get('bot'))}</b> " if with_bot else ""
    line = (f"• {who}{esc(p.get('side'))} {fmt_num(p.get('size'))} @ {fmt_num(p.get('entry_price'))}"
            f" → {fmt_num(p.get('current_price'))} · uPnL {fmt_pnl(p.get('unrealized_pnl'))}")
    if p.get("stop_loss") is not None:
        line += f" · SL {fmt_num(p['stop_loss'])}"
    if p.get("take_profit") is not None:
        line += f" · TP {fmt_num(p['take_profit'])}"
    return line


def order_line(o: dict[str, Any]) -> str:
    price = f" @ {fmt_num(o['price'])}" if o.get("price") is not None else " at market"
    filled = f" (filled {fmt_num(o.get('filled_qty'))})" if decimal_or(o.get("filled_qty"), ZERO) else ""
    tag = f" · {esc(o['tag'])}" if o.get("tag") else ""
    return (f"• <b>{esc(o.get('bot'))}</b> {esc(o.get('side'))} {esc(o.get('type'))} {fmt_num(o.get('qty'))} "
            f"{esc(o.get('symbol'))}{price} · {esc(str(o.get('status', '')).lower())}{filled}{tag}")


def trade_line(t: dict[str, Any]) -> str:
    head = f"• #{t.get('id')} <b>{esc(t.get('bot'))}</b> {esc(t.get('symbol'))} {esc(t.get('side'))} {fmt_num(t.get('qty'))}"
    if t.get("closed_at") is None:
        return f"{head} @ {fmt_num(t.get('entry_price'))} · open since {_when(t.get('opened_at'))}"
    return (f"{head} {fmt_num(t.get('entry_price'))} → {fmt_num(t.get('exit_price'))} · "
            f"PnL <b>{fmt_pnl(t.get('pnl'))}</b> · {_when(t.get('closed_at'))}")


def pnl_view(rows: list[dict[str, Any]]) -> str:
    total, body = ZERO, []
    for row in rows:
        total += decimal_or(row.get("pnl"), ZERO)
        day = row.get("date")
        body.append((day.strftime("%m-%d") if hasattr(day, "strftime") else str(day), fmt_pnl(row.get("pnl")),
                     fmt_pnl(total)))
    return f"📅 <b>Daily PnL</b> ({len(rows)} days) · total <b>{fmt_pnl(total)}</b>\n" + table(body, ["day", "pnl", "cumul."])


def phase_view(r: dict[str, Any]) -> str:
    m = r.get("current_metrics") or {}
    gates = r.get("gates") or {}
    lines = [
        f"📈 <b>Capital deployment</b> · {esc(r.get('current_phase'))}",
        f"Total capital {fmt_num(r.get('total_capital'), 2)} · deployed <b>{fmt_num(r.get('allocated_capital'), 2)}</b>",
    ]
    if r.get("halted"):
        lines.append(f"🛑 <b>HALTED</b>: {esc(r.get('halt_reason'))}")
    if m:
        lines += [
            f"In phase {m.get('duration_days', 0)} days · trades {m.get('total_trades', 0)} "
            f"(won {m.get('winning_trades', 0)}, win rate {float(m.get('win_rate') or 0):.0%})",
            f"Realised {fmt_pnl(m.get('realized_pnl'))} · unrealised {fmt_pnl(m.get('unrealized_pnl'))} · "
            f"equity {fmt_num(m.get('equity'), 2)}",
            f"Max drawdown {float(m.get('max_drawdown_pct') or 0):.2f}% · errors {m.get('errors_count', 0)}",
        ]
    if gates:
        lines.append(
            f"Gates to scale: ≥{gates.get('min_days')} days, ≥{gates.get('min_trades')} trades, win rate "
            f"≥{float(gates.get('min_win_rate') or 0):.0%}, drawdown ≤{gates.get('max_drawdown_pct')}%, "
            f"errors ≤{gates.get('max_errors')} · /scale")
    history = r.get("phase_history") or []
    if history:
        lines.append("History: " + ", ".join(
            f"{esc(h.get('phase'))} ({h.get('total_trades', 0)} trades, {fmt_pnl(h.get('realized_pnl'))})" for h in history))
    return "\n".join(lines)


def scaling_view(d: dict[str, Any]) -> str:
    nxt = d.get("next_phase")
    head = f"⚖️ <b>Scaling</b> {esc(d.get('current_phase'))}" + (f" → {esc(nxt)}" if nxt else "")
    verdict = ("✅ <b>Can scale</b>: approve to deploy the next phase." if d.get("can_scale")
               else "⛔ <b>Cannot scale yet.</b>")
    lines = [head, verdict]
    lines += [f"✔️ {esc(r)}" for r in d.get("reasons") or []]
    lines += [f"❌ {esc(b)}" for b in d.get("blockers") or []]
    return "\n".join(lines)


def log_line(row: dict[str, Any]) -> str:
    level = str(row.get("level", ""))
    mark = {"ERROR": "🔴", "WARNING": "🟠", "CRITICAL": "🔴"}.get(level, "▫️")
    ctx = row.get("context") or {}
    extra = " ".join(f"{k}={v}" for k, v in ctx.items() if v is not None and not isinstance(v, dict | list)) \
        if isinstance(ctx, dict) else str(ctx)
    t = row.get("time")
    stamp = t.strftime("%m-%d %H:%M:%S") if isinstance(t, datetime) else ""
    who = f"[{row['bot']}] " if row.get("bot") else ""
    text = _short(f"{who}{row.get('message', '')}" + (f" {extra}" if extra else ""), 300)
    return f"{mark} {stamp} {esc(text)}"


def alerts_view(muted: set[EventType]) -> str:
    muted_names = ", ".join(sorted(t.value for t in muted)) or "none"
    always = ", ".join(sorted(t.value for t in UNMUTABLE_EVENTS))
    return (f"🔔 <b>Alerts</b>\nMuted: {esc(muted_names)}\nAlways on: {esc(always)}\n"
            "Tap a type to mute or unmute it, or: /alerts mute ORDER_PLACED")


# ====================================================================== status rendering (commands and buttons)
Rendered = tuple[str, InlineKeyboardMarkup | None]


def _toggle(bot: dict[str, Any], view: str, *, with_name: bool = True) -> Button:
    name = str(bot.get("name"))
    label = f" {name}" if with_name else ""
    if bot.get("state") == "RUNNING":
        return (f"⏸ Pause{label}", "pause", f"{name}|{view}")
    return (f"▶️ Resume{label}", "resume", f"{name}|{view}")


async def render_desk(frontend: Any, chat_id: int, page: int = 0) -> Rendered:
    status = await frontend.desk.bot_status(None)
    pages = desk_pages(status)
    page = min(max(page, 0), len(pages) - 1)
    footer = f"\n<i>{f'page {page + 1}/{len(pages)} · ' if len(pages) > 1 else ''}updated {_now()} UTC</i>"
    rows: list[list[Button]] = [[("🔄 Refresh", "status", str(page))]]
    if page > 0:
        rows[0].insert(0, ("◀️", "status", str(page - 1)))
    if page < len(pages) - 1:
        rows[0].append(("▶️", "status", str(page + 1)))
    bots = status.get("bots") or []
    if len(bots) <= BOT_BUTTONS_UP_TO:
        toggles = [_toggle(b, f"page:{page}") for b in bots]
        rows += [toggles[i:i + 2] for i in range(0, len(toggles), 2)]
    return pages[page] + footer, keyboard(frontend, chat_id, rows)


async def render_bot(frontend: Any, chat_id: int, name: str) -> Rendered:
    status = await frontend.desk.bot_status(name)
    text = bot_detail(status) + f"\n<i>updated {_now()} UTC</i>"
    rows = [[("🔄 Refresh", "status_bot", str(status.get("name"))), _toggle(status, "bot", with_name=False)]]
    return text, keyboard(frontend, chat_id, rows)


async def render_view(frontend: Any, chat_id: int, view: str, name: str) -> Rendered:
    if view == "bot":
        return await render_bot(frontend, chat_id, name)
    return await render_desk(frontend, chat_id, int(view.partition(":")[2] or 0))


def render_alerts(frontend: Any, chat_id: int) -> Rendered:
    muted = frontend.notifier.muted
    buttons: list[Button] = [
        (f"{'🔕' if t in muted else '🔔'} {t.value.lower()}", "alert", t.value)
        for t in EventType if t not in UNMUTABLE_EVENTS
    ]
    rows = [buttons[i:i + 2] for i in range(0, len(buttons), 2)]
    return alerts_view(muted), keyboard(frontend, chat_id, rows)


# ====================================================================== commands
async def _each_bot(desk: Any, names: Iterable[str], op: str, by: str) -> tuple[list[str], list[str]]:
    """Apply `desk.<op>(name, by)` to each bot; (names done, distinct error messages)."""
    done: list[str] = []
    errors: list[str] = []
    for name in names:
        try:
            await getattr(desk, op)(name, by)
            done.append(name)
        except ControlError as exc:
            if str(exc) not in errors:
                errors.append(str(exc))
    return done, errors


def _outcome(verb: str, done: list[str], errors: list[str], none: str) -> str:
    lines = [f"{verb}: {esc(', '.join(done))}" if done else none]
    lines += [f"⚠️ {esc(e)}" for e in errors]
    return "\n".join(lines)


@command("/start [bot]")
async def cmd_start(c: Cmd) -> None:
    name = await c.bot_arg()
    if name:
        status = await c.desk.start_bot(name, c.by)
        await c.reply(f"▶️ <b>{esc(status.get('name', name))}</b> is {state_word(status)}")
        return
    # Telegram clients send a bare /start when a chat with the bot is first opened: never act on it
    # without a confirmation.
    bots = await c.desk.list_bots()
    names = [b["name"] for b in bots if b["state"] != "RUNNING"]
    if not bots:
        await c.reply("No bots configured.")
        return
    if not names:
        await c.reply("Every bot is already running. /status shows them.")
        return
    text = f"▶️ Start all {len(names)} bots ({esc(_short(', '.join(names), 300))})?"
    await c.reply(text, c.keyboard([[("▶️ Start all", "start_all", ""),
                                      ("Cancel", "cancel", "Start cancelled: nothing changed.")]]))


@command("/pause [bot]")
async def cmd_pause(c: Cmd) -> None:
    name = await c.bot_arg()
    if name:
        status = await c.desk.pause_bot(name, c.by)
        await c.reply(f"⏸ <b>{esc(status.get('name', name))}</b> is {state_word(status)}: no new entries, "
                      "open positions are still managed. /start resumes it.")
        return
    bots = await c.desk.list_bots()
    done, errors = await _each_bot(c.desk, [b["name"] for b in bots if b["state"] == "RUNNING"], "pause_bot", c.by)
    await c.reply(_outcome("⏸ Paused (no new entries, positions still managed)", done, errors,
                           "No running bot to pause."))


@command("/stop [bot]")
async def cmd_stop(c: Cmd) -> None:
    name = await c.bot_arg()
    if name:
        text = f"⏹ Stop <b>{esc(name)}</b>?\n{STOP_NOTE}"
        confirm: Button = (f"⏹ Stop {name}", "stop", name)
    else:
        names = [b["name"] for b in await c.desk.list_bots() if b["state"] != "STOPPED"]
        if not names:
            await c.reply("Every bot is already stopped.")
            return
        text = f"⏹ Stop all {len(names)} bots ({esc(_short(', '.join(names), 300))})?\n{STOP_NOTE}"
        confirm = ("⏹ Stop all", "stop", "")
    await c.reply(text, c.keyboard([[confirm, ("Cancel", "cancel", "Stop cancelled: nothing changed.")]]))


@command("/status [bot]")
async def cmd_status(c: Cmd) -> None:
    name = await c.bot_arg()
    text, markup = await (render_bot(c.frontend, c.chat_id, name) if name else render_desk(c.frontend, c.chat_id))
    await c.reply(text, markup)


@command("/balance")
async def cmd_balance(c: Cmd) -> None:
    if c.args:
        raise UsageError()
    balances = await c.desk.balances()
    parts = []
    for market_type, b in balances.items():
        totals, free, used = b.get("total") or {}, b.get("free") or {}, b.get("used") or {}
        coins = sorted(set(totals) | set(free))
        rows = [(coin, fmt_num(free.get(coin)), fmt_num(used.get(coin)), fmt_num(totals.get(coin)))
                for coin in coins if decimal_or(totals.get(coin), ZERO) or decimal_or(free.get(coin), ZERO)]
        body = table(rows, ["coin", "free", "used", "total"]) if rows else "empty"
        parts.append(f"💰 <b>Balance</b> ({esc(market_type)})\n{body}")
    await c.reply_lines(parts, empty="No exchange account configured.")


@command("/positions")
async def cmd_positions(c: Cmd) -> None:
    if c.args:
        raise UsageError()
    positions = await c.desk.positions()
    header = f"📊 <b>Open positions</b> ({len(positions)})"
    await c.reply_lines((position_line(p) for p in positions), header=header, empty="No open position.")


@command("/orders [bot]")
async def cmd_orders(c: Cmd) -> None:
    name = await c.bot_arg()
    orders = await c.desk.open_orders(name)
    lines = [order_line(o) for o in orders[:MAX_LIST_LINES]]
    if len(orders) > MAX_LIST_LINES:
        lines.append(f"… and {len(orders) - MAX_LIST_LINES} more: /orders &lt;bot&gt; lists one bot's.")
    header = f"📝 <b>Open orders</b>{f' of {esc(name)}' if name else ''} ({len(orders)})"
    await c.reply_lines(lines, header=header, empty="No open orders.")


@command("/trades [n], n between 1 and 50")
async def cmd_trades(c: Cmd) -> None:
    n = c.int_arg(10, 1, 50)
    trades = await c.desk.recent_trades(n)
    await c.reply_lines((trade_line(t) for t in trades), header=f"🧾 <b>Last {n} trades</b>", empty="No trades yet.")


@command("/pnl [days], days between 1 and 90")
async def cmd_pnl(c: Cmd) -> None:
    days = c.int_arg(7, 1, 90)
    rows = await c.desk.daily_pnl(days)
    await c.reply(pnl_view(rows))


@command("/phase")
async def cmd_phase(c: Cmd) -> None:
    if c.args:
        raise UsageError()
    await c.reply(phase_view(await c.desk.capital_report()))


@command("/scale")
async def cmd_scale(c: Cmd) -> None:
    if c.args:
        raise UsageError()
    decision = await c.desk.evaluate_scaling()
    markup = None
    if decision.get("can_scale"):
        markup = c.keyboard([[("✅ Approve", "approve", str(decision.get("next_phase") or "")),
                              ("✖️ Reject", "reject", "")]])
    await c.reply(scaling_view(decision), markup)


@command("/halt [reason]")
async def cmd_halt(c: Cmd) -> None:
    reason = " ".join(c.args).strip() or "manual halt"
    if len(reason) > 200:
        raise UsageError("the reason is limited to 200 characters")
    report = await c.desk.capital_report()
    if report.get("halted"):
        await c.reply(f"🛑 Trading is already halted: {esc(report.get('halt_reason'))}\n/resume_trading lifts it.")
        return
    text = (f"🛑 <b>Halt all trading?</b>\nReason: {esc(reason)}\nNew entries stop at once and every running bot "
            "pauses; open positions stay managed. /resume_trading lifts it.")
    await c.reply(text, c.keyboard([[("🛑 Halt trading", "halt", reason),
                                     ("Cancel", "cancel", "Halt cancelled: trading continues.")]]))


@command("/resume_trading")
async def cmd_resume_trading(c: Cmd) -> None:
    if c.args:
        raise UsageError()
    report = await c.desk.capital_report()
    if not report.get("halted"):
        await c.reply("Trading is not halted.")
        return
    text = (f"▶️ <b>Lift the halt?</b>\nHalted: {esc(report.get('halt_reason'))}\n"
            "Bots paused by the halt run again.")
    await c.reply(text, c.keyboard([[("▶️ Resume trading", "resume_trading", ""),
                                     ("Cancel", "cancel", "Trading stays halted.")]]))


@command("/logs [n], n between 1 and 50")
async def cmd_logs(c: Cmd) -> None:
    n = c.int_arg(10, 1, 50)
    rows = list(reversed(await c.desk.logs(n)))  # oldest first: reads top-down
    await c.reply_lines((log_line(r) for r in rows), header=f"📜 <b>Last {n} log lines</b>", empty="No log lines.")


@command("/chart [bot]")
async def cmd_chart(c: Cmd) -> None:
    name = await c.bot_arg()
    curve = await c.desk.equity_curve(name)
    who = name or "desk"
    if not curve:
        await c.reply(f"No closed trades yet for {esc(who)}: nothing to chart.")
        return
    png = await asyncio.to_thread(render_equity_png, curve, f"Equity · {who}")
    start = decimal_or(curve[0]["equity"], ZERO) - decimal_or(curve[0].get("pnl"), ZERO)
    end = decimal_or(curve[-1]["equity"], ZERO)
    caption = (f"📈 <b>{esc(who)}</b> equity {fmt_num(start, 2)} → {fmt_num(end, 2)} "
               f"({fmt_pnl(end - start)}) over {len(curve)} closed trades")
    await c.context.bot.send_photo(c.chat_id, photo=png, caption=mask(caption))


@command("/alerts [mute|unmute TYPE]")
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


@command("/help")
async def cmd_help(c: Cmd) -> None:
    lines = ["🤖 <b>TraderAgent</b> · a bot name may be a unique prefix"]
    lines += [f"{esc(getattr(cb, 'usage', '/' + name))} — {esc(desc)}" for name, desc, cb in COMMANDS]
    await c.reply("\n".join(lines))


# ====================================================================== button actions
@action("status")
async def act_status(p: Press) -> str:
    text, markup = await render_desk(p.frontend, p.chat_id, int(p.arg or 0))
    await p.edit(text, markup)
    return "Updated"


@action("status_bot")
async def act_status_bot(p: Press) -> str:
    text, markup = await render_bot(p.frontend, p.chat_id, p.arg)
    await p.edit(text, markup)
    return "Updated"


async def _toggle_bot(p: Press, op: str, done: str) -> str:
    name, _, view = p.arg.partition("|")
    try:
        await getattr(p.desk, op)(name, p.by)
        toast = f"{name} {done}"
    except ControlError as exc:
        toast = str(exc)
    text, markup = await render_view(p.frontend, p.chat_id, view, name)
    await p.edit(text, markup)
    return toast


@action("pause")
async def act_pause(p: Press) -> str:
    return await _toggle_bot(p, "pause_bot", "paused")


@action("resume")
async def act_resume(p: Press) -> str:
    return await _toggle_bot(p, "start_bot", "running")


@action("stop")
async def act_stop(p: Press) -> str:
    names = [p.arg] if p.arg else [b["name"] for b in await p.desk.list_bots() if b["state"] != "STOPPED"]
    done, errors = await _each_bot(p.desk, names, "stop_bot", p.by)
    await p.edit(_outcome(f"⏹ Stopped by {esc(p.by)}", done, errors, "Nothing was stopped."))
    return "Stopped" if done else "Nothing stopped"


@action("start_all")
async def act_start_all(p: Press) -> str:
    names = [b["name"] for b in await p.desk.list_bots() if b["state"] != "RUNNING"]
    done, errors = await _each_bot(p.desk, names, "start_bot", p.by)
    await p.edit(_outcome(f"▶️ Started by {esc(p.by)}", done, errors, "Every bot is already running."))
    return "Started" if done else "Nothing started"


@action("cancel")
async def act_cancel(p: Press) -> str:
    await p.edit(esc(p.arg or "Cancelled."))
    return "Cancelled"


@action("halt")
async def act_halt(p: Press) -> str:
    result = await p.desk.halt(p.arg, p.by)
    paused = ", ".join(result.get("paused") or []) or "none were running"
    await p.edit(f"🛑 <b>Trading halted</b> by {esc(p.by)}\nReason: {esc(result.get('reason') or p.arg)}\n"
                 f"Paused: {esc(paused)}\n/resume_trading lifts it.")
    return "Trading halted"


@action("resume_trading")
async def act_resume_trading(p: Press) -> str:
    result = await p.desk.resume_trading(p.by)
    resumed = ", ".join(result.get("resumed") or []) or "none"
    await p.edit(f"▶️ <b>Trading resumed</b> by {esc(p.by)}\nRunning again: {esc(resumed)}")
    return "Trading resumed"


@action("approve")
async def act_approve(p: Press) -> str:
    try:
        result = await p.desk.approve_scaling(approved_by=p.by)
    except ControlError as exc:
        blockers = "\n".join(f"❌ {esc(part)}" for part in str(exc).split("; "))
        await p.edit(f"⛔ <b>Scaling not applied</b>: the gates were re-checked at approval.\n{blockers}")
        return "Blocked by the gates"
    await p.edit(f"✅ <b>Scaling approved</b> by {esc(p.by)}\n"
                 f"Phase {esc(result.get('phase_from'))} → <b>{esc(result.get('phase'))}</b>\n"
                 f"Deployed capital: <b>{fmt_num(result.get('allocated_capital'), 2)}</b>")
    return "Approved"


@action("reject")
async def act_reject(p: Press) -> str:
    result = await p.desk.reject_scaling(p.by)
    await p.edit(f"✖️ Scaling to {esc(result.get('rejected_phase') or '–')} rejected by {esc(p.by)}.\n"
                 f"Phase stays {esc(result.get('phase'))}.")
    return "Rejected"


@action("alert")
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
    ("halt", "Kill switch: halt all trading, after a confirmation", cmd_halt),
    ("resume_trading", "Lift the halt, after a confirmation", cmd_resume_trading),
    ("logs", "Last n log lines (default 10)", cmd_logs),
    ("chart", "Equity curve of the desk or one bot", cmd_chart),
    ("alerts", "Mute or unmute notification types", cmd_alerts),
    ("help", "This list", cmd_help),
]


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
    try:
        await context.bot.send_message(chat.id, INTERNAL_ERROR)
    except TelegramError as exc:
        log.warning("could not report the error to chat %s: %s", chat.id, exc)


def register(application: Application, frontend: Any) -> None:
    """Wire the commands, the button dispatcher and the error handler."""
    application.bot_data["frontend"] = frontend
    for name, _description, callback in COMMANDS:
        application.add_handler(CommandHandler(name, callback))
    application.add_handler(CallbackQueryHandler(on_button))
    application.add_error_handler(on_error)
