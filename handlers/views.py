"""The operator's screens as HTML text, drawn from the `traderagent.results` of the desk's use-cases.

Pure functions: a result in, text out (no Telegram, no desk). Every field is read directly: a
renamed or missing field is a type error and an AttributeError, never a "?" on the phone.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta

from handlers.formatting import MAX_MESSAGE, STATE_EMOJI, esc, fmt_num, fmt_pnl, split_message, table
from traderagent.numbers import ZERO
from traderagent.orchestrator.events import (
    UNMUTABLE_EVENTS,
    EventType,
    ScalingOffered,
    duration,
    operator_name,
    phase_name,
    short_id,
)
from traderagent.results import (
    AuditLine,
    BotStatus,
    BotSummary,
    CapitalReport,
    DailyPnl,
    DeskStatus,
    Digest,
    EquityPoint,
    HaltOutcome,
    LogLine,
    OrderView,
    PositionRisk,
    PositionView,
    ResumeOutcome,
    ScalingApproved,
    ScalingCheck,
    ScalingPending,
    ScalingRejected,
    TradeView,
    Wallet,
)

PAGE_LIMIT = MAX_MESSAGE - 80  # room for the footer of a /status page
STALE_MARK = timedelta(minutes=2)  # a price and uPnL a fleet's worker saved longer ago than this show their age


def now_stamp() -> str:
    return datetime.now(UTC).strftime("%H:%M:%S")


def _when(value: datetime | None) -> str:
    return value.strftime("%m-%d %H:%M") if value is not None else "–"


def short(text: object, n: int = 100) -> str:
    text = str(text)
    return text if len(text) <= n else text[: n - 1] + "…"


# ---------------------------------------------------------------------- bots and desk
def state_word(bot: BotSummary) -> str:
    word = bot.state.lower()
    if bot.state == "PAUSED" and bot.paused_by:
        word += f" ({bot.paused_by})"
    return f"{STATE_EMOJI.get(bot.state, '⚪')} {esc(word)}"


def desk_header(status: DeskStatus) -> str:
    bots = status.bots
    counts = ", ".join(f"{n} {esc(s.lower())}" for s, n in sorted(status.states.items()))
    realized = sum((b.realized_pnl for b in bots), ZERO)
    unrealized = sum((b.unrealized_pnl for b in bots), ZERO)
    lines = [f"📋 <b>Desk</b> · {len(bots)} bot{'s' if len(bots) != 1 else ''}" + (f": {counts}" if counts else "")]
    if status.halted:
        lines.append(f"🛑 <b>TRADING HALTED</b>: {esc(status.halt_reason or '')} · /resume_trading")
    if status.storage_lost:
        lines.append(f"💾 <b>DATABASE LOST</b>: {esc(short(status.storage_lost, 160))} · no new entries, "
                     "positions still protected")
    if status.phase:
        lines.append(f"{esc(phase_name(status.phase))} · deployed {fmt_num(status.allocated_capital, 2)}")
    lines.append(f"PnL {fmt_pnl(realized)} · unrealised {fmt_pnl(unrealized)} · today {fmt_pnl(status.day_pnl)}")
    limit = status.exposure_limit
    lines.append(f"Exposure {fmt_num(status.exposure, 2)}" + (f" / {fmt_num(limit, 2)}" if limit is not None else ""))
    if status.workers:  # a fleet: which worker runs how many bots
        per = Counter(status.workers.values())
        lines.append(f"🖥 {len(per)} worker{'s' if len(per) != 1 else ''}: "
                     + esc(", ".join(f"{short(w, 40)} ({n})" for w, n in sorted(per.items()))))
    for refused in status.refused[:5]:
        lines.append(f"⚠️ refused {esc(refused.name)}: {esc(short(refused.reason, 80))}")
    lines += [f"⚡ {exchange_risk_line(r)}" for r in status.exchange_positions[:10]]
    return "\n".join(lines)


def bot_line(bot: BotSummary) -> str:
    """Two lines per bot in the desk summary."""
    head = f"{state_word(bot)} <b>{esc(bot.name)}</b> · {esc(bot.symbol)} {esc(bot.strategy)}"
    body = (f"    pos {bot.open_positions} · orders {bot.open_orders} · "
            f"PnL {fmt_pnl(bot.realized_pnl)} · uPnL {fmt_pnl(bot.unrealized_pnl)} · "
            f"cap {fmt_num(bot.allocated_capital, 2)}{_age(bot.priced_at)}")
    line = f"{head}\n{body}"
    if bot.state == "ERROR" and bot.last_error:
        line += f"\n    ⚠️ {esc(short(bot.last_error))}"
    return line


def _age(priced_at: datetime | None, now: datetime | None = None) -> str:
    """" · priced 5 min 10 s ago" when the price and uPnL shown are a stale saved figure (a fleet's console)."""
    if priced_at is None:
        return ""
    age = (now or datetime.now(UTC)) - priced_at
    return f" · priced {duration(age)} ago" if age > STALE_MARK else ""


def desk_pages(status: DeskStatus) -> list[str]:
    header = desk_header(status)
    if not status.bots:
        return [f"{header}\nNo bots configured."]
    return split_message((bot_line(b) for b in status.bots), header=header, limit=PAGE_LIMIT) or [header]


def bot_detail(s: BotStatus) -> str:
    tfs = ", ".join(s.timeframes)
    lines = [
        f"{state_word(s)} <b>{esc(s.name)}</b>",
        f"{esc(s.symbol)} ({esc(s.market_type)}) · {esc(s.strategy)}" + (f" · {esc(tfs)}" if tfs else ""),
        f"Capital {fmt_num(s.allocated_capital, 2)} · last price {fmt_num(s.last_price)}",
        f"PnL {fmt_pnl(s.realized_pnl)} · unrealised {fmt_pnl(s.unrealized_pnl)} · today {fmt_pnl(s.day_pnl)}",
        f"Open orders {s.open_orders} · ticks {s.ticks} · last {_when(s.last_tick_at)}",
        f"Trades {s.total_trades} · win rate {s.win_rate:.0%} · fees {fmt_num(s.total_fees, 2)}",
        f"Positions: {len(s.positions)}" if s.positions else "No open position.",
    ]
    lines += [position_line(p, with_bot=False) for p in s.positions[:10]]
    if s.last_error:
        lines.append(f"⚠️ last error: {esc(short(s.last_error, 300))}")
    return "\n".join(lines)


def outcome(verb: str, done: Sequence[str], errors: Sequence[str], none: str) -> str:
    """What a bulk start / pause / stop did: the bots done, then each distinct refusal."""
    lines = [f"{verb}: {esc(', '.join(done))}" if done else none]
    lines += [f"⚠️ {esc(e)}" for e in errors]
    return "\n".join(lines)


# ---------------------------------------------------------------------- account and history
def wallet_view(w: Wallet) -> str:
    coins = sorted(set(w.total) | set(w.free))
    rows = [(coin, fmt_num(w.free.get(coin)), fmt_num(w.used.get(coin)), fmt_num(w.total.get(coin)))
            for coin in coins if w.total.get(coin) or w.free.get(coin)]
    body = table(rows, ["coin", "free", "used", "total"]) if rows else "empty"
    return f"💰 <b>Balance</b> ({esc(w.market_type)})\n{body}"


def position_line(p: PositionView, *, with_bot: bool = True) -> str:
    who = f"<b>{esc(p.bot)}</b> " if with_bot else ""
    line = (f"• {who}{esc(p.side)} {fmt_num(p.size)} @ {fmt_num(p.entry_price)}"
            f" → {fmt_num(p.current_price)} · uPnL {fmt_pnl(p.unrealized_pnl)}{_age(p.priced_at)}")
    if p.stop_loss is not None:
        line += f" · SL {fmt_num(p.stop_loss)}"
    if p.take_profit is not None:
        line += f" · TP {fmt_num(p.take_profit)}"
    if p.exchange is not None:
        line += f"\n    ⚡ ByBit {exchange_risk_line(p.exchange, with_position=False)}"
    return line


def exchange_risk_line(r: PositionRisk, *, with_position: bool = True) -> str:
    """The account's perpetual position as ByBit marks it: mark, liquidation price (and how far), margin."""
    head = f"{esc(r.symbol)} {esc(r.side)} {fmt_num(r.size)} @ {fmt_num(r.entry_price)} · " if with_position else ""
    liq = "liq –" if r.liq_price is None else f"liq {fmt_num(r.liq_price)}"
    if r.liq_distance is not None:
        liq += f" ({fmt_num(r.liq_distance * 100, 1)}% away)"
    lev = f" · {fmt_num(r.leverage)}x" if r.leverage is not None else ""
    return f"{head}mark {fmt_num(r.mark_price)} · {liq} · margin {fmt_num(r.margin, 2)}{lev}"


def order_line(o: OrderView) -> str:
    price = f" @ {fmt_num(o.price)}" if o.price is not None else " at market"
    filled = f" (filled {fmt_num(o.filled_qty)})" if o.filled_qty else ""
    tag = f" · {esc(o.tag)}" if o.tag else ""
    return (f"• <b>{esc(o.bot)}</b> {esc(o.side)} {esc(o.order_type)} {fmt_num(o.qty)} "
            f"{esc(o.symbol)}{price} · {esc(o.status.lower())}{filled}{tag}")


def trade_line(t: TradeView) -> str:
    head = f"• #{t.id} <b>{esc(t.bot)}</b> {esc(t.symbol)} {esc(t.side)} {fmt_num(t.qty)}"
    if t.closed_at is None:
        return f"{head} @ {fmt_num(t.entry_price)} · open since {_when(t.opened_at)}"
    return (f"{head} {fmt_num(t.entry_price)} → {fmt_num(t.exit_price)} · "
            f"PnL <b>{fmt_pnl(t.pnl)}</b> · {_when(t.closed_at)}")


def pnl_view(rows: Sequence[DailyPnl]) -> str:
    total, body = ZERO, []
    for row in rows:
        total += row.pnl
        body.append((row.date.strftime("%m-%d"), fmt_pnl(row.pnl), fmt_pnl(total)))
    return f"📅 <b>Daily PnL</b> ({len(rows)} days) · total <b>{fmt_pnl(total)}</b>\n" + table(body, ["day", "pnl", "cumul."])


ID_KEYS = frozenset({"client_order_id", "position_id", "exchange_order_id", "order_id", "order_link_id"})
PHASE_KEYS = frozenset({"phase", "previous", "current_phase", "next_phase", "phase_from", "phase_to"})


def context_value(key: str, value: object) -> str:
    """A log context value for people: ids by their tail, floats rounded, phases by name."""
    if key == "held":
        return duration(timedelta(seconds=float(str(value))))
    if isinstance(value, float):
        return f"{value:.0%}" if key in ("confidence", "win_rate") else f"{value:.4g}"
    text = str(value)
    if key in ID_KEYS:
        return short_id(text)
    if key in PHASE_KEYS:
        return phase_name(text)
    if key == "by":
        return operator_name(text)
    return text


def log_line(row: LogLine) -> str:
    mark = {"ERROR": "🔴", "WARNING": "🟠", "CRITICAL": "🔴"}.get(row.level, "▫️")
    ctx = row.context or {}
    extra = " ".join(f"{k}={context_value(k, v)}" for k, v in ctx.items()
                     if v is not None and not isinstance(v, dict | list))
    who = f"[{row.bot}] " if row.bot else ""
    text = short(f"{who}{row.message}" + (f" {extra}" if extra else ""), 300)
    return f"{mark} {row.time.strftime('%m-%d %H:%M:%S')} {esc(text)}"


def chart_caption(who: str, curve: Sequence[EquityPoint]) -> str:
    start = curve[0].equity - curve[0].pnl
    end = curve[-1].equity
    return (f"📈 <b>{esc(who)}</b> equity {fmt_num(start, 2)} → {fmt_num(end, 2)} "
            f"({fmt_pnl(end - start)}) over {len(curve)} closed trades")


# ---------------------------------------------------------------------- capital
def phase_view(r: CapitalReport) -> str:
    lines = [
        f"📈 <b>Capital deployment</b> · {esc(phase_name(r.phase))}",
        f"Total capital {fmt_num(r.total_capital, 2)} · deployed <b>{fmt_num(r.allocated_capital, 2)}</b>",
    ]
    if r.halted:
        lines.append(f"🛑 <b>HALTED</b>: {esc(r.halt_reason)}")
    if (m := r.current) is not None:
        lines += [
            f"In phase {m.duration_days} days · trades {m.total_trades} "
            f"(won {m.winning_trades}, win rate {m.win_rate:.0%})",
            f"Realised {fmt_pnl(m.realized_pnl)} · unrealised {fmt_pnl(m.unrealized_pnl)} · "
            f"equity {fmt_num(m.equity, 2)}",
            f"Max drawdown {m.max_drawdown_pct:.2f}% · errors {m.errors_count}",
        ]
    if (g := r.gates) is not None:
        lines.append(
            f"Gates to scale: ≥{g.min_days} days, ≥{g.min_trades} trades, win rate "
            f"≥{g.min_win_rate:.0%}, drawdown ≤{g.max_drawdown_pct}%, errors ≤{g.max_errors} · /scale")
    if r.history:
        lines.append("History: " + ", ".join(
            f"{esc(phase_name(h.phase))} ({h.total_trades} trades, {fmt_pnl(h.realized_pnl)})" for h in r.history))
    return "\n".join(lines)


def scaling_view(d: ScalingCheck) -> str:
    head = f"⚖️ <b>Scaling</b> {esc(phase_name(d.current_phase))}" + (
        f" → {esc(phase_name(d.next_phase))}" if d.next_phase else "")
    verdict = "✅ <b>Can scale</b>: approve to deploy the next phase." if d.can_scale else "⛔ <b>Cannot scale yet.</b>"
    return "\n".join([head, verdict, *gate_lines(d)])


def gate_lines(d: ScalingCheck) -> list[str]:
    return [f"✔️ {esc(r)}" for r in d.reasons] + [f"❌ {esc(b)}" for b in d.blockers]


def offer_view(o: ScalingOffered) -> str:
    """The desk's own scaling offer (it came without being asked), with Approve / Reject under it."""
    again = f" · reminder {o.times - 1}" if o.times > 1 else ""
    lines = [f"⚖️ <b>Ready to scale</b>: {esc(phase_name(o.current_phase))} → <b>{esc(phase_name(o.next_phase))}</b>"
             f"{again}",
             "Every gate of this phase passes:"]
    lines += [f"✔️ {esc(gate)}" for gate in o.passed]
    lines.append(f"Approve to deploy the next phase (the gates are checked again), or reject. "
                 f"These buttons expire {o.expires_at:%Y-%m-%d %H:%M} UTC; /scale asks again any time.")
    return "\n".join(lines)


def approved_view(a: ScalingApproved) -> str:
    return (f"✅ <b>Scaling approved</b> by {esc(operator_name(a.approved_by))}\n"
            f"{esc(phase_name(a.phase_from))} → <b>{esc(phase_name(a.phase))}</b>\n"
            f"Deployed capital: <b>{fmt_num(a.allocated_capital, 2)}</b>")


def pending_view(p: ScalingPending) -> str:
    who = ", ".join(p.approved_by)
    return (f"⏳ <b>Scaling {esc(p.phase)} → {esc(p.next_phase)}: {len(p.approved_by)} of {p.required} "
            f"approvals</b> ({esc(who)})\nAnother admin must approve; the gates are checked again then.")


def rejected_view(r: ScalingRejected) -> str:
    return (f"✖️ Scaling to {esc(phase_name(r.rejected_phase or '–'))} rejected by "
            f"{esc(operator_name(r.rejected_by))}.\n{esc(phase_name(r.phase))} stays.")


def digest_pages(d: Digest) -> list[str]:
    """The daily digest: the day's totals, the desk now, each gate, then every bot that closed a trade."""
    limit = f" / {fmt_num(d.exposure_limit, 2)}" if d.exposure_limit is not None else ""
    lines = [
        f"🗓 <b>Daily digest</b> · {d.day:%Y-%m-%d} ({esc(d.timezone)}, 24 h to {d.until:%H:%M} UTC)",
        f"PnL <b>{fmt_pnl(d.pnl)}</b> · {d.trades} trade{'s' if d.trades != 1 else ''} · fees {fmt_num(d.fees, 2)} · "
        f"funding {fmt_pnl(d.funding)}",
        f"Unrealised {fmt_pnl(d.unrealized_pnl)} · exposure {fmt_num(d.exposure, 2)}{limit} · errors {d.errors}",
    ]
    if (s := d.scaling) is not None:
        step = f" → {esc(phase_name(s.next_phase))}" if s.next_phase else " (the last)"
        lines.append(f"Scaling {esc(phase_name(s.current_phase))}{step}: {'ready, /scale' if s.can_scale else 'not yet'}")
        lines += gate_lines(s)
    traded = sorted((b for b in d.bots if b.trades), key=lambda b: b.pnl, reverse=True)
    quiet = len(d.bots) - len(traded)
    rows = [f"• <b>{esc(b.name)}</b> {fmt_pnl(b.pnl)} · {b.trades} trade{'s' if b.trades != 1 else ''} · "
            f"fees {fmt_num(b.fees, 2)}" for b in traded]
    if quiet:
        rows.append(f"{quiet} bot{'s' if quiet != 1 else ''} closed no trade.")
    header = "\n".join(lines)
    return split_message(rows, header=header) or [header]


def halted_view(h: HaltOutcome, by: str) -> str:
    paused = ", ".join(h.paused) or "none were running"
    return (f"🛑 <b>Trading halted</b> by {esc(operator_name(by))}\nReason: {esc(h.reason)}\n"
            f"Paused: {esc(paused)}\n/resume_trading lifts it.")


def resumed_view(r: ResumeOutcome, by: str) -> str:
    return (f"▶️ <b>Trading resumed</b> by {esc(operator_name(by))}\n"
            f"Running again: {esc(', '.join(r.resumed) or 'none')}")


def alerts_view(muted: set[EventType]) -> str:
    muted_names = ", ".join(sorted(t.value for t in muted)) or "none"
    always = ", ".join(sorted(t.value for t in UNMUTABLE_EVENTS))
    return (f"🔔 <b>Alerts</b>\nMuted: {esc(muted_names)}\nAlways on: {esc(always)}\n"
            "Tap a type to mute or unmute it, or: /alerts mute ORDER_PLACED")


# ---------------------------------------------------------------------- operators
AUDIT_MARK = {"ok": "✅", "denied": "🔒", "refused": "⚠️", "usage": "❔", "expired": "⌛", "error": "🔴"}


def audit_line(a: AuditLine) -> str:
    what = short(f"{a.action} {a.args}".strip(), 120)
    detail = f" · {short(a.detail, 120)}" if a.detail and a.outcome != "ok" else ""
    return (f"{AUDIT_MARK.get(a.outcome, '▫️')} {a.time.strftime('%m-%d %H:%M:%S')} {esc(a.user_name)} "
            f"({a.user_id}, {esc(a.role)}) {esc(what)} → {esc(a.outcome)}{esc(detail)}")


def verbosity_view(by_bot: Mapping[str, str], settings: Mapping[str, str]) -> str:
    """What each bot tells the chat, and the settings that decide it."""
    lines = ["🔊 <b>Verbosity</b> · all: every event · trades: fills and closes, no order chatter · "
             "errors: only what needs you"]
    lines += [f"• <b>{esc(bot)}</b>: {esc(level)}" for bot, level in sorted(by_bot.items())]
    if settings:
        lines.append("Set: " + esc(", ".join(f"{scope} {level}" for scope, level in sorted(settings.items()))))
    lines.append("Change: /verbosity &lt;bot|strategy&gt; &lt;all|trades|errors&gt;")
    return "\n".join(lines)
