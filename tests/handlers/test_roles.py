"""Roles and the audit trail, through the real Application and the fake Bot API, in a group chat whose
members hold different roles, with a real desk on the simulator behind."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

import pytest

from handlers.auth import Role, command_of
from handlers.commands import COMMANDS
from tests.fakes.telegram_server import FakeTelegram
from tests.handlers.harness import CHAT, Operator, button, buttons, start_frontend, until
from traderagent.config import Settings, SettingsError
from traderagent.orchestrator.state import BotState
from traderagent.utils import secrets_filter

GROUP = -100500
ADMIN, ADMIN2, TRADER, VIEWER, NOBODY = 11, 15, 12, 13, 14
ROLES = {"telegram_admins": (ADMIN, ADMIN2), "telegram_traders": (TRADER,), "telegram_viewers": (VIEWER,)}
USER_OF = {Role.ADMIN: ADMIN, Role.TRADER: TRADER, Role.VIEWER: VIEWER}

# every command with the least role it needs; in an order where the allowed ones act (pause before start)
MATRIX: list[tuple[str, Role]] = [
    ("/status", Role.VIEWER), ("/status trend", Role.VIEWER), ("/balance", Role.VIEWER),
    ("/positions", Role.VIEWER), ("/orders", Role.VIEWER), ("/trades", Role.VIEWER), ("/pnl", Role.VIEWER),
    ("/phase", Role.VIEWER), ("/digest", Role.VIEWER), ("/logs", Role.VIEWER), ("/chart", Role.VIEWER),
    ("/help", Role.VIEWER),
    ("/alerts", Role.TRADER), ("/verbosity", Role.TRADER), ("/pause trend", Role.TRADER), ("/start trend", Role.TRADER),
    ("/stop trend", Role.TRADER),
    ("/pause", Role.ADMIN), ("/start", Role.ADMIN), ("/stop", Role.ADMIN), ("/scale", Role.ADMIN),
    ("/halt", Role.ADMIN), ("/resume_trading", Role.ADMIN), ("/audit", Role.ADMIN),
]


@pytest.fixture
async def group(fake, desk_h):
    # the group, and the private chats of the role holders (the matrix runs there: a group is paced at 20/min)
    front = await start_frontend(fake, desk_h.desk, chats=(GROUP, ADMIN, TRADER, VIEWER), **ROLES)
    yield front
    await front.stop()


def member(fake: FakeTelegram, user_id: int, chat_id: int = GROUP) -> Operator:
    return Operator(fake, chat_id, user_id=user_id, username=f"user{user_id}")


async def snapshot(h: Any, frontend: Any) -> tuple:
    """Everything an operator action could change: bot states (desk and DB), capital, approvals, alerts."""
    return (sorted((b.name, b.state) for b in await h.db.list_bots()),
            sorted((n, hd.bot.state.value) for n, hd in h.desk.bots.items()),
            h.desk.capital.halted, h.desk.capital.phase, len(await h.db.list_approvals()),
            await h.db.load_capital_state(), frozenset(frontend.notifier.muted))


async def audit_rows(db: Any, n: int, timeout: float = 10.0) -> list:
    """The audit trail (newest first) once it holds n rows: written after the reply, so wait for it."""
    deadline = asyncio.get_running_loop().time() + timeout
    while len(rows := await db.list_audit(500)) < n:
        assert asyncio.get_running_loop().time() < deadline, f"{len(rows)} audit rows, expected {n}"
        await asyncio.sleep(0.01)
    return rows


def answer_text(fake: FakeTelegram, answer: Any) -> str:
    return fake.callback_answers[answer.params["callback_query_id"]]["text"]


# ---------------------------------------------------------------------- the role matrix
def test_the_matrix_covers_every_command() -> None:
    assert {text.split()[0][1:] for text, _ in MATRIX} == {name for name, _, _ in COMMANDS}


def may_use(role: Role) -> list[str]:
    """The commands ``role`` may use in some form, in the menu's order."""
    allowed = {text.split()[0][1:] for text, needed in MATRIX if needed <= role}
    return [name for name, _, _ in COMMANDS if name in allowed]


async def test_each_user_s_menu_lists_what_their_role_may_do(fake, group) -> None:
    for user, role in ((ADMIN, Role.ADMIN), (ADMIN2, Role.ADMIN), (TRADER, Role.TRADER), (VIEWER, Role.VIEWER)):
        assert fake.menu(GROUP, user) == may_use(role), role  # BotCommandScopeChatMember
    for user, role in ((ADMIN, Role.ADMIN), (TRADER, Role.TRADER), (VIEWER, Role.VIEWER)):
        assert fake.menu(user) == may_use(role), role  # their private chats: BotCommandScopeChat
    assert fake.menu(GROUP, NOBODY) == may_use(Role.VIEWER)  # the default scope
    assert "halt" in may_use(Role.ADMIN) and "pause" in may_use(Role.TRADER) and "pause" not in may_use(Role.VIEWER)


async def test_a_menu_telegram_refuses_leaves_the_others(fake, desk_h, caplog) -> None:
    fake.faults["setMyCommands"] = [(400, "Bad Request: user not found", None)]  # the first call: the default
    front = await start_frontend(fake, desk_h.desk, chats=(GROUP,), **ROLES)
    try:
        assert 'command menu for {"type": "default"} not set: User not found' in caplog.text
        assert fake.menu(GROUP, TRADER) == may_use(Role.TRADER)
    finally:
        await front.stop()


@pytest.mark.parametrize("role", [Role.VIEWER, Role.TRADER, Role.ADMIN])
async def test_role_matrix(fake, desk_h, group, role: Role) -> None:
    user = USER_OF[role]
    op, desk = member(fake, user, chat_id=user), desk_h.desk  # roles hold in private chats too
    for done, (text, needed) in enumerate(MATRIX, start=1):
        before = await snapshot(desk_h, group)
        call = await op.command(text)
        row = (await audit_rows(desk_h.db, done))[0]
        assert (row.action, row.user_id, row.user_name, row.chat_id, row.role) == (
            text.split()[0], user, f"@user{user}", user, role.label)
        if role >= needed:
            assert "🔒" not in call.params["text"], text
            assert row.outcome == "ok", (text, row.detail)
        else:
            assert call.params["text"].startswith(f"🔒 {text.split()[0]} needs the {needed.label} role; "
                                                  f"you are {role.label}."), text
            assert row.outcome == "denied" and not buttons(call)
            assert await snapshot(desk_h, group) == before, text
        if role >= needed and text == "/pause trend":
            assert desk.bots["trend-btc"].bot.state is BotState.PAUSED
        if role >= needed and text == "/start trend":
            assert desk.bots["trend-btc"].bot.state is BotState.RUNNING
        if role >= needed and text == "/pause":
            assert all(h.bot.state is BotState.PAUSED for h in desk.bots.values())


async def test_a_member_without_a_role_can_do_nothing_and_is_told_once(fake, desk_h, group) -> None:
    before = await snapshot(desk_h, group)
    since = len(fake.calls)
    for text, _ in MATRIX:
        fake.push_command(GROUP, text, user_id=NOBODY)
    fake.push_command(GROUP, "good morning everyone", user_id=NOBODY)  # chatter: never answered
    await until(lambda: group.guard.denied == len(MATRIX) + 1)
    sent = [c for c in fake.calls[since:] if c.method == "sendMessage"]
    assert len(sent) == 1 and "no role" in sent[0].params["text"] and "<code>14</code>" in sent[0].params["text"]
    assert await snapshot(desk_h, group) == before
    rows = await desk_h.db.list_audit()
    assert [(r.user_id, r.outcome, r.role) for r in rows] == [(NOBODY, "denied", "no role")]


# ---------------------------------------------------------------------- buttons
async def test_buttons_need_their_role_and_a_refused_press_leaves_them_usable(fake, desk_h, group) -> None:
    admin, trader, viewer, nobody = (member(fake, u) for u in (ADMIN, TRADER, VIEWER, NOBODY))
    prompt = await admin.command("/halt news", match="Halt all trading")
    for who, refusal in ((trader, "needs the admin role; you are trader"),
                         (viewer, "needs the admin role; you are viewer"), (nobody, "no role")):
        for label in ("Halt trading", "Cancel"):  # Cancel needs what the button it cancels needs
            answer, _ = await who.press(prompt, button(prompt, label), method=None)
            assert refusal in answer_text(fake, answer)
    await until(lambda: group.guard.denied == 2)
    assert not desk_h.desk.capital.halted
    answer, edit = await member(fake, ADMIN2).press(prompt, button(prompt, "Halt trading"))
    assert answer_text(fake, answer) == "Trading halted" and desk_h.desk.capital.halted
    rows = await audit_rows(desk_h.db, 7)  # /halt, 4 refused presses, 1 no-role press (once), the halt
    assert [(r.user_id, r.action, r.outcome) for r in reversed(rows)] == [
        (ADMIN, "/halt", "ok"), (TRADER, "button:halt", "denied"), (TRADER, "button:cancel", "denied"),
        (VIEWER, "button:halt", "denied"), (VIEWER, "button:cancel", "denied"), (NOBODY, "button", "denied"),
        (ADMIN2, "button:halt", "ok")]
    assert rows[0].args == "news" and rows[0].detail == "Trading halted"


async def test_viewer_refreshes_but_cannot_pause_from_status(fake, desk_h, group) -> None:
    viewer, trader = member(fake, VIEWER), member(fake, TRADER)
    status = await viewer.command("/status", match="Desk")
    answer, _ = await viewer.press(status, button(status, "Pause trend-btc"), method=None)
    assert "needs the trader role" in answer_text(fake, answer)
    assert desk_h.desk.bots["trend-btc"].bot.state is BotState.RUNNING
    _, edit = await viewer.press(status, button(status, "Refresh"))
    answer, _ = await trader.press(edit, button(edit, "Pause trend-btc"))
    assert answer_text(fake, answer) == "trend-btc paused"
    assert desk_h.desk.bots["trend-btc"].bot.state is BotState.PAUSED


def two_admins_and_gates_met(desk_h: Any, clock: Any) -> Any:
    """SCALING_APPROVALS_REQUIRED=2 and a record that passes phase 1's gates (5 winning trades, 3 days)."""
    desk = desk_h.desk
    desk.scaling_approvals_required = 2
    for _ in range(5):
        desk.capital.record_trade(True, Decimal("2"))
    clock.advance(days=3)
    return desk


async def test_scaling_needs_two_different_admins(fake, desk_h, group, clock) -> None:
    desk = two_admins_and_gates_met(desk_h, clock)
    admin, admin2, trader = member(fake, ADMIN), member(fake, ADMIN2), member(fake, TRADER)
    offer = await admin.command("/scale", match="Scaling")
    answer, first = await admin.press(offer, button(offer, "Approve"))
    assert answer_text(fake, answer) == "1 of 2 approvals"
    assert "1 of 2 approvals" in first.params["text"] and "@user11 (11)" in first.params["text"]
    assert desk.capital.phase.value == "phase_1_5pct"
    answer, again = await admin.press(first, button(first, "Approve"))  # the same admin twice
    assert answer_text(fake, answer) == "You had already approved: 1 of 2 approvals"
    answer, _ = await trader.press(again, button(again, "Approve"), method=None)
    assert "needs the admin role" in answer_text(fake, answer)
    assert desk.capital.phase.value == "phase_1_5pct"
    answer, done = await admin2.press(again, button(again, "Approve"))
    assert answer_text(fake, answer) == "Approved" and "Scaling approved" in done.params["text"]
    assert desk.capital.phase.value == "phase_2_25pct"
    approvals = list(reversed(await desk_h.db.list_approvals()))
    assert [(a.action, a.approved_by) for a in approvals] == [
        ("approve 1/2", "@user11 (11)"), ("approve", "@user15 (15)")]
    assert approvals[1].decision["approvers"] == ["@user11 (11)", "@user15 (15)"]


async def test_a_rejection_voids_the_first_approval(fake, desk_h, group, clock) -> None:
    desk = two_admins_and_gates_met(desk_h, clock)
    await desk.approve_scaling("@user11 (11)", approver="11")
    await desk.reject_scaling("@user15 (15)")
    pending = await desk.approve_scaling("@user15 (15)", approver="15")
    assert pending.approved_by == ("@user15 (15)",)  # type: ignore[union-attr]
    assert desk.capital.phase.value == "phase_1_5pct"


# ---------------------------------------------------------------------- help, unknown commands, audit
@pytest.mark.parametrize("role,shown,hidden", [
    (Role.VIEWER, ["/status [bot]", "/trades [n]", "/help"], ["/pause", "/start", "/halt", "/audit", "/alerts"]),
    (Role.TRADER, ["/pause &lt;bot&gt;", "/start &lt;bot&gt;", "/stop &lt;bot&gt;", "/alerts"],
     ["/halt", "/scale", "/audit", "/pause [bot]"]),
    (Role.ADMIN, ["/pause [bot]", "/halt [reason]", "/scale", "/resume_trading", "/audit [n]"], []),
])
async def test_help_lists_only_what_the_user_may_do(fake, group, role: Role, shown: list, hidden: list) -> None:
    call = await member(fake, USER_OF[role]).command("/help", match="TraderAgent")
    text = call.params["text"]
    assert f"you are {role.label}" in text
    assert all(s in text for s in shown), text
    assert not any(h in text for h in hidden), text


async def test_unknown_command_gets_a_pointer_to_help(fake, group) -> None:
    call = await member(fake, VIEWER).command("/frobnicate now", match="Unknown")
    assert call.params["text"] == "Unknown command /frobnicate. /help lists what you may do."


def test_only_commands_for_this_bot_count() -> None:
    from telegram import Update

    def update(text: str) -> Update:
        return Update.de_json({"update_id": 1, "message": {
            "message_id": 1, "date": 1, "chat": {"id": GROUP, "type": "group", "title": "g"},
            "from": {"id": 1, "is_bot": False, "first_name": "A"}, "text": text}}, None)

    assert command_of(update("/Status@test_bot x"), "test_bot") == "/status"
    assert command_of(update("/frob"), "test_bot") == "/frob"
    assert command_of(update("/frob@other_bot"), "test_bot") is None
    assert command_of(update("hello /frob"), "test_bot") is None


async def test_audit_records_outcomes_masks_secrets_and_is_shown(fake, desk_h, group) -> None:
    admin = member(fake, ADMIN)
    secrets_filter.register_secret("Sup3rSecretValue")
    try:
        await admin.command("/halt key Sup3rSecretValue leaked", match="Halt all trading")
    finally:
        secrets_filter.clear_secrets()
    await admin.command("/trades 99", match="usage")
    await admin.command("/pause nosuch", match="⚠️")
    await member(fake, VIEWER).command("/halt", match="🔒")
    rows = await audit_rows(desk_h.db, 4)
    assert [(r.action, r.args, r.outcome) for r in reversed(rows)] == [
        ("/halt", "key *** leaked", "ok"), ("/trades", "99", "usage"), ("/pause", "nosuch", "refused"),
        ("/halt", "", "denied")]
    assert "No bot named" in rows[1].detail
    call = await admin.command("/audit 3", match="operator actions")
    text = call.params["text"]
    assert "@user11 (11, admin) /trades 99 → usage" in text and "@user13 (13, viewer) /halt → denied" in text
    assert "Sup3rSecretValue" not in text and "/halt key" not in text  # only the latest 3


# ---------------------------------------------------------------------- defaults and settings
async def test_without_roles_the_private_chat_user_is_admin_and_group_members_have_none(fake, desk_h) -> None:
    front = await start_frontend(fake, desk_h.desk, chats=(CHAT, GROUP))
    try:
        await Operator(fake).command("/halt", match="Halt all trading")
        call = await member(fake, ADMIN).command("/status", match="no role")
        assert "TELEGRAM_VIEWERS" in call.params["text"]
    finally:
        await front.stop()


def test_role_settings_are_parsed_and_checked() -> None:
    s = Settings.load({"TELEGRAM_ADMINS": "1, 2", "TELEGRAM_VIEWERS": "3", "SCALING_APPROVALS_REQUIRED": "2"},
                      env_file=None)
    assert (s.telegram_admins, s.telegram_traders, s.telegram_viewers) == ((1, 2), (), (3,))
    assert s.scaling_approvals_required == 2
    assert Settings.load({}, env_file=None).scaling_approvals_required == 1
    for env, needle in (({"TELEGRAM_ADMINS": "-100"}, "user ids are positive"),
                        ({"TELEGRAM_TRADERS": "bob"}, "not a numeric user id"),
                        ({"SCALING_APPROVALS_REQUIRED": "0"}, "from 1 to 5"),
                        ({"TELEGRAM_BOT_TOKEN": "1:x", "TELEGRAM_CHAT_IDS": "5, -100", "SCALING_APPROVALS_REQUIRED": "2"},
                         "needs as many admins; there are 1")):
        with pytest.raises(SettingsError, match=needle):
            Settings.load(env, env_file=None)


async def test_a_failing_command_is_audited_as_an_error(fake, desk_h, group, monkeypatch) -> None:
    async def broken() -> list:
        raise RuntimeError("boom")

    monkeypatch.setattr(desk_h.desk, "balances", broken)
    await member(fake, VIEWER).command("/balance", match="Internal error")
    [row] = await audit_rows(desk_h.db, 1)
    assert (row.action, row.outcome, row.user_id) == ("/balance", "error", VIEWER)
