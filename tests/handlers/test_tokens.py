from __future__ import annotations

from datetime import UTC, datetime, timedelta

from handlers.tokens import TokenStore

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


class Clock:
    now = T0

    def __call__(self) -> datetime:
        return self.now


def test_token_is_single_use_short_and_bound_to_its_chat() -> None:
    store = TokenStore()
    token = store.issue("approve", "phase_2", 555)
    assert len(token.encode()) <= 64
    assert store.consume(token, 999) is None  # foreign chat: nothing, and the owner keeps it
    action = store.consume(token, 555)
    assert action is not None and (action.action, action.arg) == ("approve", "phase_2")
    assert store.consume(token, 555) is None  # the double tap


def test_token_expires_and_unknown_tokens_are_expired() -> None:
    clock = Clock()
    store = TokenStore(ttl=timedelta(seconds=60), clock=clock)
    token = store.issue("refresh", "", 1)
    offer = store.issue("approve", "", 1, expires_at=T0 + timedelta(days=1))
    clock.now = T0 + timedelta(seconds=61)
    assert store.consume(token, 1) is None
    lapsed = store.lapsed(token, 1)
    assert lapsed is not None and lapsed.action == "refresh"  # too late, not unknown
    assert store.consume("never-issued", 1) is None and store.lapsed("never-issued", 1) is None
    assert store.peek(offer, 1) is not None  # a longer-lived button of its own


def test_using_one_button_voids_its_siblings() -> None:
    store = TokenStore()
    group = store.new_group()
    approve = store.issue("approve", "", 1, group=group)
    reject = store.issue("reject", "", 1, group=group)
    other = store.issue("refresh", "", 1)
    assert store.consume(approve, 1) is not None
    assert store.consume(reject, 1) is None
    assert store.consume(other, 1) is not None
