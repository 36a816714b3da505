"""One-time tokens behind inline buttons.

Each button's callback_data is `<token>` (12 url-safe characters, far below Telegram's 64-byte
limit); the token maps to the action, its argument and the chat it was issued to. A token is
consumed by the first press: a second tap, a press after its expiry, a press from another chat or a
token never issued all come back as None: "expired". A button may live longer than the default TTL
(a pushed scaling offer: a day); `lapsed` tells a press that came too late from one that was never
valid, so the answer can say so.

With a `TokenStorePort` (the desk's database) the tokens outlive a restart: issued and used ones are
written behind (`WriteBehind`), in order, so a press never waits for the database; `load()` at
start brings back the previous run's. Times are the desk's clock (UTC datetimes).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta

from handlers.write_behind import WriteBehind
from traderagent.ports import TokenStorePort

DEFAULT_TTL = timedelta(minutes=15)
KEEP_LAPSED = timedelta(days=1)  # a lapsed token is remembered this long: its press says "too late"
PRUNE_ABOVE = 1000  # tokens in memory before the long-lapsed ones are forgotten


@dataclass(frozen=True)
class ButtonAction:
    action: str
    arg: str
    chat_id: int
    group: str = ""  # tokens of one message share a group: using one voids its siblings
    role: int = 0  # the least role (handlers.auth.Role) a press needs
    expires_at: datetime = datetime.max.replace(tzinfo=UTC)


def _utcnow() -> datetime:
    return datetime.now(UTC)


class TokenStore:
    def __init__(self, ttl: timedelta = DEFAULT_TTL, clock: Callable[[], datetime] = _utcnow,
                 store: TokenStorePort | None = None) -> None:
        self.ttl = ttl
        self.clock = clock
        self.store = store
        self._tokens: dict[str, ButtonAction] = {}
        # (token, its action) issued, (token, None) used or forgotten: in order
        self._changes: WriteBehind[tuple[str, ButtonAction | None]] | None = (
            WriteBehind(self._write, "button token change(s)") if store is not None else None)

    async def load(self) -> None:
        """The tokens of the previous run (those lapsed long ago are deleted instead)."""
        if self.store is None:
            return
        await self.store.delete_tokens(expired_before=self.clock() - KEEP_LAPSED)
        for row in await self.store.load_tokens():
            self._tokens[row.token] = ButtonAction(row.action, row.arg, row.chat_id, row.token_group, row.role,
                                                   row.expires_at)

    def issue(self, action: str, arg: str, chat_id: int, *, group: str = "", role: int = 0,
              expires_at: datetime | None = None) -> str:
        """A fresh token for one button, valid until ``expires_at`` (default: the store's TTL from now)."""
        self._prune()
        token = secrets.token_urlsafe(9)  # 12 characters
        entry = ButtonAction(action, arg, chat_id, group, role, expires_at or self.clock() + self.ttl)
        self._tokens[token] = entry
        if self._changes is not None:
            self._changes.add([(token, entry)])
        return token

    def lapsed(self, token: str, chat_id: int) -> ButtonAction | None:
        """The action behind a button of this chat pressed after its expiry (not yet forgotten), else None."""
        entry = self._tokens.get(token)
        return entry if entry is not None and entry.chat_id == chat_id and entry.expires_at < self.clock() else None

    def new_group(self) -> str:
        return secrets.token_hex(4)

    def peek(self, token: str, chat_id: int) -> ButtonAction | None:
        """The action behind a valid button without using it up (a press refused for its role leaves it)."""
        entry = self._tokens.get(token)
        if entry is None or entry.chat_id != chat_id or entry.expires_at < self.clock():
            return None
        return entry

    def consume(self, token: str, chat_id: int) -> ButtonAction | None:
        """The action behind a pressed button, once; None when expired, used or foreign."""
        entry = self.peek(token, chat_id)
        if entry is None:
            return None
        self._forget([t for t, e in self._tokens.items() if e.group == entry.group] if entry.group else [token])
        return entry

    async def flush(self) -> None:
        """Wait until every token issued or used so far is written."""
        if self._changes is not None:
            await self._changes.flush()

    def __len__(self) -> int:
        return len(self._tokens)

    def _forget(self, tokens: list[str]) -> None:
        for token in tokens:
            del self._tokens[token]
        if self._changes is not None:
            self._changes.add((token, None) for token in tokens)

    def _prune(self) -> None:
        if len(self._tokens) > PRUNE_ABOVE:
            long_ago = self.clock() - KEEP_LAPSED
            self._forget([t for t, e in self._tokens.items() if e.expires_at < long_ago])

    async def _write(self, changes: list[tuple[str, ButtonAction | None]]) -> None:
        """Rows for the tokens issued, deletes for those used; one issued and used since the last write
        is never written."""
        assert self.store is not None, "changes are queued only with a store"
        issued = {token: entry for token, entry in changes if entry is not None}
        used = [token for token, entry in changes if entry is None and issued.pop(token, None) is None]
        await self.store.save_tokens([_row(token, entry) for token, entry in issued.items()])
        if used:
            await self.store.delete_tokens(used)


def _row(token: str, entry: ButtonAction) -> dict[str, object]:
    row = asdict(entry)
    row["token_group"] = row.pop("group")
    return {"token": token, **row}
