"""Button tokens in the database (handlers/tokens.py over the real repository): what one run issued and
did not use answers in the next, what it used does not, long-lapsed ones are purged."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from handlers.tokens import KEEP_LAPSED, TokenStore
from traderagent.database.manager import DatabaseManager

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


async def test_tokens_outlive_a_restart_once(db: DatabaseManager) -> None:
    now = T0
    first = TokenStore(clock=lambda: now, store=db)
    group = first.new_group()
    approve = first.issue("approve", "phase_2_25pct", -100500, group=group, role=3, expires_at=T0 + timedelta(days=1))
    reject = first.issue("reject", "", -100500, group=group, role=3, expires_at=T0 + timedelta(days=1))
    refresh = first.issue("status", "0", 555)
    used = first.issue("status", "1", 555)
    assert first.consume(used, 555) is not None
    old = first.issue("status", "2", 555, expires_at=T0 - KEEP_LAPSED - timedelta(seconds=1))
    await first.flush()

    second = TokenStore(clock=lambda: now, store=db)
    await second.load()
    assert second.peek(used, 555) is None and second.peek(old, 555) is None
    assert [r.token for r in await db.load_tokens() if r.token == old] == []  # purged at load
    entry = second.consume(approve, -100500)
    assert entry is not None and (entry.action, entry.arg, entry.role, entry.expires_at) == (
        "approve", "phase_2_25pct", 3, T0 + timedelta(days=1))
    assert second.peek(reject, -100500) is None  # its sibling went with it
    now = T0 + timedelta(minutes=16)
    assert second.peek(refresh, 555) is None and second.lapsed(refresh, 555) is not None
    await second.flush()

    third = TokenStore(clock=lambda: now, store=db)
    await third.load()
    assert third.peek(approve, -100500) is None and third.peek(reject, -100500) is None  # used before the restart


async def test_a_press_between_issue_and_write_leaves_no_row(db: DatabaseManager) -> None:
    store = TokenStore(clock=lambda: T0, store=db)
    tokens = [store.issue("status", str(i), 555) for i in range(50)]
    for token in tokens[::2]:
        assert store.consume(token, 555) is not None  # some before their row is written, some after
        await asyncio.sleep(0)
    await store.flush()
    assert sorted(r.token for r in await db.load_tokens()) == sorted(tokens[1::2])
