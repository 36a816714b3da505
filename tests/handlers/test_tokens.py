from __future__ import annotations

from handlers.tokens import TokenStore


class Clock:
    now = 0.0

    def __call__(self) -> float:
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
    store = TokenStore(ttl=60, clock=clock)
    token = store.issue("refresh", "", 1)
    clock.now = 61
    assert store.consume(token, 1) is None
    assert store.consume("never-issued", 1) is None


def test_using_one_button_voids_its_siblings() -> None:
    store = TokenStore()
    group = store.new_group()
    approve = store.issue("approve", "", 1, group=group)
    reject = store.issue("reject", "", 1, group=group)
    other = store.issue("refresh", "", 1)
    assert store.consume(approve, 1) is not None
    assert store.consume(reject, 1) is None
    assert store.consume(other, 1) is not None
