"""The operators' audit trail: rows in, newest first out; concurrent writers share a transaction."""

from __future__ import annotations

import asyncio

from traderagent.database.manager import DatabaseManager


async def test_audit_rows_round_trip_newest_first(db: DatabaseManager) -> None:
    await db.add_audit(user_id=42, user_name="@alice", chat_id=-100500, role="admin", action="/halt",
                       args="news", outcome="ok")
    await db.add_audit(user_id=None, user_name="unknown", chat_id=5, role="no role", action="button",
                       args="", outcome="denied", detail="no role")
    newest, oldest = await db.list_audit()
    assert (oldest.user_id, oldest.user_name, oldest.chat_id, oldest.role, oldest.action, oldest.args,
            oldest.outcome, oldest.detail) == (42, "@alice", -100500, "admin", "/halt", "news", "ok", "")
    assert (newest.user_id, newest.outcome, newest.detail) == (None, "denied", "no role")
    assert newest.created_at >= oldest.created_at and newest.created_at.tzinfo is not None
    assert [r.action for r in await db.list_audit(limit=1)] == ["button"]
    assert (await db.counts())["audit_log"] == 2


async def test_a_command_flood_is_written_in_few_transactions(db: DatabaseManager) -> None:
    before = db._group.transactions
    await asyncio.gather(*(db.add_audit(user_id=i, user_name=f"@u{i}", chat_id=1, role="viewer",
                                        action="/status", args="", outcome="ok") for i in range(200)))
    assert len(await db.list_audit(limit=500)) == 200
    assert db._group.transactions - before < 20
