"""DatabaseManager: the async persistence API of the spec, one facade over the repositories.

- engine.py: connections, SQLite/PostgreSQL hooks, error translation, Alembic migrations.
- repositories.py: one repository per table group (credentials, bots, orders, trades, grid, logs,
  capital); each method's validation and SQL live there.
- here: the facade, and `save_bot_progress`, the one write of a bot's step, which spans the groups
  in one group-committed transaction.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from traderagent.database.crypto import CredentialCipher
from traderagent.database.exceptions import DuplicateOrderError
from traderagent.database.group_commit import GroupCommit
from traderagent.database.models import (
    Approval,
    AuditEntry,
    BotLease,
    BotLog,
    BotModel,
    BotRuntime,
    CapitalState,
    Credential,
    GridLevel,
    Order,
    Trade,
)
from traderagent.database.repositories import (
    AuditRepository,
    BotsRepository,
    CapitalRepository,
    CommandsRepository,
    CredentialsRepository,
    FleetRiskRepository,
    GridRepository,
    LeasesRepository,
    LogsRepository,
    OrdersRepository,
    OutboxRepository,
    TokensRepository,
    TradesRepository,
    clean_order_updates,
    grid_rows,
    trade_close,
)


class DatabaseManager(CredentialsRepository, BotsRepository, OrdersRepository, TradesRepository, GridRepository,
                      LogsRepository, CapitalRepository, AuditRepository, OutboxRepository, LeasesRepository,
                      CommandsRepository, TokensRepository, FleetRiskRepository):
    """Async database access for the whole service; see the module docstring."""

    def __init__(
        self,
        database_url: str,
        *,
        master_key: Any = None,
        log_retention: int = 10_000,
        schema: str | None = None,
        connect_timeout: float = 5.0,
        busy_timeout_ms: int = 30_000,
        echo: bool = False,
    ) -> None:
        # Validate a given key now (clear error at start-up); a missing key only matters for credentials.
        text = master_key.get() if callable(getattr(master_key, "get", None)) else master_key
        self._cipher = CredentialCipher(text) if text else None
        if log_retention < 1:
            raise ValueError("log_retention must be at least 1")
        self.log_retention = log_retention
        self._untrimmed_logs = {}  # lines added per bot name since its last trim
        super().__init__(database_url, schema=schema, connect_timeout=connect_timeout,
                         busy_timeout_ms=busy_timeout_ms, echo=echo)
        self._group = GroupCommit(self._write, {
            "fence": self._check_fences,  # first: a bot's lease checked (and locked) before its writes
            "orders": self._insert_orders, "order_updates": self._apply_order_updates,
            "trades": self._insert_trades, "trade_closes": self._close_trades,
            "runtime": self._upsert_runtimes, "states": self._set_bot_states, "grid": self._replace_grids, "logs": self._insert_logs,
            "audit": self._insert_audit,
        }, durable={"orders"})  # the write-ahead rows: on disk before their orders are sent

    async def save_bot_progress(self, name: str, *, new_orders: Iterable[Mapping[str, Any]] = (),
                                order_updates: Iterable[tuple[str, Mapping[str, Any]]] = (),
                                runtime: dict[str, Any] | None = None,
                                grid: Sequence[Mapping[str, Any]] | None = None,
                                new_trades: Iterable[Mapping[str, Any]] = (),
                                trade_closes: Iterable[tuple[int, Mapping[str, Any]]] = (),
                                state: str | None = None) -> list[int]:
        """One step of a bot, committed in ONE transaction (group commit): write-ahead order rows
        (order rows: client_order_id, symbol, side, order_type, qty, optional price, status,
        exchange_order_id, filled_qty, avg_price, fee, reduce_only, tag, created_at), order updates
        ((client_order_id, fields): exchange_order_id, status, filled_qty, avg_price, fee, price, qty,
        tag), its runtime snapshot, its grid table (index, price, side, optional qty, status,
        client_order_id), new trades (as record_trade takes them, exit and pnl optional) and trade
        closes ((trade id, {exit_price, pnl, fees, closed_at})) and its state (the bots table's column, as
        ``set_bot_state`` writes it, shared with other bots' steps: a desk's start sets a thousand), whichever
        are given. All or nothing:
        DuplicateOrderError, OrderNotFoundError, TradeNotFoundError, TradeAlreadyClosedError, or
        LeaseLapsed (fenced: the bot's lease is not the one this desk held when called), with none
        of it written.
        Returns, once it is durable, the new trades' ids."""
        fence = self._fence(name)
        bot_id = await self._bot_id(name)
        rows = [self._order_row(bot_id, spec) for spec in new_orders]
        cleaned = clean_order_updates(order_updates)
        parts: list[tuple[str, Any]] = []
        if rows:
            parts.append(("orders", rows))
        if cleaned:
            parts.append(("order_updates", cleaned))
        if runtime is not None:
            parts.append(("runtime", (bot_id, dict(runtime))))
        if state is not None:
            parts.append(("states", (bot_id, str(state))))
        if grid is not None:
            parts.append(("grid", (bot_id, grid_rows(bot_id, grid))))
        first_trade = len(parts)
        parts += [("trades", self._trade_row(bot_id, spec)) for spec in new_trades]
        new = len(parts) - first_trade
        parts += [("trade_closes", (int(tid), trade_close(**close))) for tid, close in trade_closes]
        if not parts:
            return []
        if fence is not None:
            parts.append(("fence", fence))
        try:
            results = await self._group.write(*parts)
        except IntegrityError:
            if not rows:
                raise
            ids = [r["client_order_id"] for r in rows]
            dup = await self._existing_client_ids(ids) or [i for i in ids if ids.count(i) > 1]
            raise DuplicateOrderError(dup[0] if dup else "?") from None
        return results[first_trade:first_trade + new]

    async def record_trade(self, bot_name: str, symbol: str, side: str, qty: Decimal | int | str,
                           entry_price: Decimal | int | str, exit_price: Decimal | int | str,
                           pnl: Decimal | int | str, *, fees: Decimal | int | str = 0,
                           opened_at: dt.datetime | None = None, closed_at: dt.datetime | None = None,
                           tag: str | None = None) -> Trade:
        """A completed round trip in one call (e.g. a grid buy/sell pair)."""
        return await self._insert_trade(bot_name, {"symbol": symbol, "side": side, "qty": qty,
                                                   "entry_price": entry_price, "exit_price": exit_price,
                                                   "pnl": pnl, "fees": fees, "opened_at": opened_at,
                                                   "closed_at": closed_at, "tag": tag})

    async def _insert_trade(self, bot_name: str, spec: Mapping[str, Any]) -> Trade:
        [trade_id] = await self.save_bot_progress(bot_name, new_trades=[spec])
        async with self._read() as session:
            return await session.get_one(Trade, trade_id)

    # --- maintenance ---------------------------------------------------------------------------------

    async def counts(self) -> dict[str, int]:
        """Row count per table (for status displays and tests)."""
        models = (Credential, BotModel, Order, Trade, GridLevel, BotLog, CapitalState, Approval, BotRuntime, AuditEntry,
                  BotLease)
        async with self._read() as session:
            return {m.__tablename__: int((await session.execute(select(func.count()).select_from(m))).scalar_one())
                    for m in models}

    def __repr__(self) -> str:
        return f"DatabaseManager({self.url.render_as_string(hide_password=True)!r})"
