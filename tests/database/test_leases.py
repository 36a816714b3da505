"""Bot leases in the database (both backends): the conditional upsert takes only a free, expired or
own lease; renewals keep a lease nobody took; release frees it at once."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable

from traderagent.database.manager import DatabaseManager

T0 = dt.datetime(2026, 12, 7, 8, 0, tzinfo=dt.UTC)
S = dt.timedelta(seconds=1)


def owners(rows) -> dict[str, str]:
    return {r.bot_name: r.owner for r in rows}


async def test_a_valid_lease_is_not_taken_an_expired_one_is(db: DatabaseManager) -> None:
    assert owners(await db.acquire_leases(["a", "b"], "desk-1", T0, T0 + 20 * S)) == {"a": "desk-1", "b": "desk-1"}
    # desk-2 at T0 + 19 s: both still held by desk-1; its new bot "c" is free
    rows = await db.acquire_leases(["a", "b", "c"], "desk-2", T0 + 19 * S, T0 + 39 * S)
    assert owners(rows) == {"a": "desk-1", "b": "desk-1", "c": "desk-2"}
    assert {r.bot_name: r.expires_at for r in rows}["a"] == T0 + 20 * S
    # desk-1 renews "a" only (b's renewal is missed), then desk-2 tries again after b expired
    await db.release_leases("desk-1", ["b"])
    await db.acquire_leases(["b"], "desk-3", T0, T0 + 20 * S)  # some desk took b, then died
    assert await db.renew_leases("desk-1", T0 + 45 * S) == ["a"]
    rows = await db.acquire_leases(["a", "b"], "desk-2", T0 + 21 * S, T0 + 41 * S)
    assert owners(rows) == {"a": "desk-1", "b": "desk-2"}
    # an owner acquiring again just extends its lease
    rows = await db.acquire_leases(["b"], "desk-2", T0 + 30 * S, T0 + 50 * S)
    assert [(r.owner, r.expires_at) for r in rows] == [("desk-2", T0 + 50 * S)]


async def test_renew_keeps_an_expired_lease_nobody_took_and_never_one_taken_over(db: DatabaseManager) -> None:
    await db.acquire_leases(["a", "b"], "desk-1", T0, T0 + 20 * S)
    await db.acquire_leases(["b"], "desk-2", T0 + 25 * S, T0 + 45 * S)  # desk-1 was frozen: b is taken over
    assert await db.renew_leases("desk-1", T0 + 50 * S) == ["a"]  # a expired, but nobody took it
    assert owners(await db.lease_holders(["a", "b"])) == {"a": "desk-1", "b": "desk-2"}


async def test_release_frees_only_the_owners_leases(db: DatabaseManager) -> None:
    await db.acquire_leases(["a"], "desk-1", T0, T0 + 20 * S)
    await db.acquire_leases(["b"], "desk-2", T0, T0 + 20 * S)
    await db.release_leases("desk-1")
    assert owners(await db.lease_holders(["a", "b"])) == {"b": "desk-2"}
    assert owners(await db.acquire_leases(["a", "b"], "desk-3", T0 + S, T0 + 21 * S)) == {"a": "desk-3", "b": "desk-2"}


async def test_two_desks_racing_for_the_same_bots_split_them_without_overlap(
        make_db: Callable[..., DatabaseManager]) -> None:
    first, second = make_db(), make_db()
    await first.initialize()
    await second.initialize()
    bots = [f"bot-{i}" for i in range(40)]
    await first.acquire_leases(bots[::2], "old", T0, T0 + 20 * S)  # half held by a desk that died
    one, two = await asyncio.gather(first.acquire_leases(bots, "desk-1", T0 + 30 * S, T0 + 50 * S),
                                    second.acquire_leases(bots, "desk-2", T0 + 30 * S, T0 + 50 * S))
    final = owners(await first.lease_holders(bots))
    assert len(final) == len(bots) and set(final.values()) <= {"desk-1", "desk-2"}
    # each desk's answer agrees with the table for the bots it claims: no bot has two owners
    for rows, me in ((one, "desk-1"), (two, "desk-2")):
        mine = {b for b, o in owners(rows).items() if o == me}
        assert mine == {b for b, o in final.items() if o == me}


async def test_the_lease_of_an_owner_known_dead_is_taken_before_it_expires(db: DatabaseManager) -> None:
    await db.acquire_leases(["a", "b"], "crashed", T0, T0 + 20 * S, process_space="here")
    await db.acquire_leases(["c"], "alive", T0, T0 + 20 * S)
    rows = await db.acquire_leases(["a", "c"], "restarted", T0 + S, T0 + 21 * S, process_space="here", dead=["crashed"])
    assert owners(rows) == {"a": "restarted", "c": "alive"}
    assert [r.process_space for r in rows] == ["here", None]
    assert owners(await db.lease_holders(["b"])) == {"b": "crashed"}  # not asked for: untouched


async def test_the_fencing_token_changes_with_every_owner_and_only_then(db: DatabaseManager) -> None:
    def token(rows) -> str:
        [row] = rows
        return row.token

    first = token(await db.acquire_leases(["a"], "desk-1", T0, T0 + 20 * S))
    assert first and token(await db.acquire_leases(["a"], "desk-1", T0 + S, T0 + 21 * S)) == first  # its own again
    await db.renew_leases("desk-1", T0 + 22 * S)
    assert token(await db.lease_holders(["a"])) == first
    second = token(await db.acquire_leases(["a"], "desk-2", T0 + 23 * S, T0 + 43 * S))  # expired: taken over
    await db.release_leases("desk-2")
    third = token(await db.acquire_leases(["a"], "desk-1", T0 + 24 * S, T0 + 44 * S))  # free again: back to desk-1
    assert len({first, second, third}) == 3


async def test_leases_named_by_prefix(db: DatabaseManager) -> None:
    """The workers' slots are read by their prefix; ``_`` and ``%`` in it are not wildcards."""
    await db.acquire_leases(["@worker/0", "@worker/1", "@desk", "a_worker/2", "bot"], "w", T0, T0 + 20 * S)
    assert [r.bot_name for r in await db.leases_named("@worker/")] == ["@worker/0", "@worker/1"]
    assert await db.leases_named("a%") == []
