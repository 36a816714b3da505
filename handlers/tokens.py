"""One-time tokens behind inline buttons.

Each button's callback_data is `<token>` (12 url-safe characters, far below Telegram's 64-byte
limit); the token maps to the action, its argument and the chat it was issued to. A token is
consumed by the first press: a second tap, a press after the TTL, a press from another chat or a
token this process never issued (e.g. from before a restart) all come back as None: "expired".
A button may live longer than the default TTL (a pushed scaling offer: a day); `lapsed` tells a
press that came too late from one that was never valid, so the answer can say so.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field

DEFAULT_TTL = 15 * 60


@dataclass(frozen=True)
class ButtonAction:
    action: str
    arg: str
    chat_id: int
    group: str = ""  # tokens of one message share a group: using one voids its siblings
    role: int = 0  # the least role (handlers.auth.Role) a press needs
    expires_at: float = field(default=0.0, compare=False)


class TokenStore:
    def __init__(self, ttl: float = DEFAULT_TTL, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self.clock = clock
        self._tokens: dict[str, ButtonAction] = {}

    def issue(self, action: str, arg: str, chat_id: int, *, group: str = "", role: int = 0,
              ttl: float | None = None) -> str:
        self._expire()
        token = secrets.token_urlsafe(9)  # 12 characters
        self._tokens[token] = ButtonAction(action, arg, chat_id, group, role, self.clock() + (ttl or self.ttl))
        return token

    def lapsed(self, token: str, chat_id: int) -> ButtonAction | None:
        """The action behind a button of this chat pressed after its TTL (not yet forgotten), else None."""
        entry = self._tokens.get(token)
        return entry if entry is not None and entry.chat_id == chat_id and entry.expires_at < self.clock() else None

    def new_group(self) -> str:
        return secrets.token_hex(4)

    def peek(self, token: str, chat_id: int) -> ButtonAction | None:
        """The action behind a button without using it up (a press refused for its role leaves it)."""
        entry = self._tokens.get(token)
        if entry is None or entry.chat_id != chat_id:
            return None
        if entry.expires_at < self.clock():
            self._tokens.pop(token, None)
            return None
        return entry

    def consume(self, token: str, chat_id: int) -> ButtonAction | None:
        """The action behind a pressed button, once; None when expired, used or foreign."""
        entry = self.peek(token, chat_id)
        if entry is None:
            return None
        if entry.group:
            self._tokens = {t: e for t, e in self._tokens.items() if e.group != entry.group}
        else:
            del self._tokens[token]
        return entry

    def __len__(self) -> int:
        return len(self._tokens)

    def _expire(self) -> None:
        now = self.clock()
        if len(self._tokens) > 1000:
            self._tokens = {t: e for t, e in self._tokens.items() if e.expires_at >= now}
