"""One repository per table group; `DatabaseManager` (manager.py) combines them into the facade.

Each repository validates what it writes (Decimal money through `traderagent.numbers`, choices,
known fields) and reads through the shared `Store` sessions. Money: Decimal in, Decimal out, exact on
both backends; aggregates are computed in SQL (see types.py for how SUM stays exact on SQLite).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
import secrets
from collections import Counter
from collections.abc import Collection, Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Any, cast

from sqlalchemy import CursorResult, Table, bindparam, case, delete, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from traderagent.database.crypto import CredentialCipher
from traderagent.database.engine import Store
from traderagent.database.exceptions import (
    DuplicateBotError,
    MasterKeyError,
    OrderNotFoundError,
    TradeAlreadyClosedError,
    TradeNotFoundError,
)
from traderagent.database.models import (
    NON_FINAL_ORDER_STATUSES,
    ORDER_STATUSES,
    AlertVerbosity,
    Approval,
    AuditEntry,
    Base,
    BotLease,
    BotLog,
    BotMarkRow,
    BotModel,
    BotRuntime,
    ButtonToken,
    CapitalState,
    Credential,
    DeskCommand,
    DeskRail,
    DeskReport,
    GridLevel,
    Order,
    OutboxRow,
    Trade,
)
from traderagent.database.types import (
    UTC,
    exact_sum,
    utc_day,
    utcnow,
)
from traderagent.numbers import decimal_or, positive_decimal, to_decimal
from traderagent.results import BotMark

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
ORDER_SIDES = ("buy", "sell")
ORDER_TYPES = ("limit", "market")
TRADE_SIDES = ("long", "short", "buy", "sell")
BOT_FIELDS = {"name", "strategy", "symbol", "market_type", "config", "state", "allocated_capital"}
ORDER_UPDATE_FIELDS = {"exchange_order_id", "status", "filled_qty", "avg_price", "fee", "price", "qty", "tag"}
GRID_FIELDS = {"price", "side", "qty", "status", "client_order_id"}
DECIMAL_FIELDS = {"qty", "price", "filled_qty", "avg_price", "fee", "fees", "allocated_capital", "pnl",
                  "entry_price", "exit_price"}


_MARK_COLUMNS = tuple(f.name for f in dataclasses.fields(BotMark))  # bot_marks has a column per field


def _table(model: type[Base]) -> Table:
    """A model's Table, for bulk Core statements (SQLAlchemy types ``__table__`` as any FromClause)."""
    return cast(Table, model.__table__)


def _order_status(value: str) -> str:
    status = str(value).strip().upper()
    if status == "CANCELED":
        status = "CANCELLED"
    if status not in ORDER_STATUSES:
        raise ValueError(f"unknown order status {value!r}; expected one of {', '.join(ORDER_STATUSES)}")
    return status


def _choice(value: str, allowed: tuple[str, ...], what: str) -> str:
    text = str(value).strip().lower()
    if text not in allowed:
        raise ValueError(f"{what} must be one of {', '.join(allowed)}, not {value!r}")
    return text


def _clean_fields(fields: Mapping[str, Any], allowed: set[str], what: str) -> dict[str, Any]:
    unknown = set(fields) - allowed
    if unknown:
        raise TypeError(f"{what}: unknown field(s) {', '.join(sorted(unknown))}; allowed: {', '.join(sorted(allowed))}")
    out = dict(fields)
    for key in out.keys() & DECIMAL_FIELDS:
        out[key] = decimal_or(out[key], None, field=key)
    return out


def _clean_order_update(fields: Mapping[str, Any], what: str) -> dict[str, Any]:
    values = _clean_fields(fields, ORDER_UPDATE_FIELDS, what)
    if "status" in values:
        values["status"] = _order_status(values["status"])
    for key in ("filled_qty", "fee", "qty"):
        if key in values and values[key] is None:
            raise ValueError(f"{key} must not be None")
    return values


def clean_order_updates(updates: Iterable[tuple[str, Mapping[str, Any]]]) -> list[tuple[str, dict[str, Any]]]:
    return [(str(cid), _clean_order_update(fields, "order update")) for cid, fields in updates]


def trade_close(exit_price: Any, pnl: Any, *, fees: Any = 0, closed_at: dt.datetime | None = None,
                qty: Any = None, entry_price: Any = None) -> dict[str, Any]:
    """A trade close, validated: ``fees`` is the exit fee (added to the fees paid on entry); ``qty`` and
    ``entry_price``, when given, replace the opening ones (a DCA cycle closes its total at its average)."""
    return {"exit_price": positive_decimal(exit_price, field="exit_price"), "pnl": to_decimal(pnl, field="pnl"),
            "fees": to_decimal(fees, field="fees"), "closed_at": closed_at or utcnow(),
            "qty": None if qty is None else positive_decimal(qty, field="qty"),
            "entry_price": None if entry_price is None else positive_decimal(entry_price, field="entry_price")}


def grid_rows(bot_id: int, levels: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    rows, now = [], utcnow()
    for spec in levels:
        extra = _clean_fields({k: v for k, v in spec.items() if k != "index"}, GRID_FIELDS, "grid level")
        rows.append({
            "bot_id": bot_id, "level_index": int(spec["index"]), "price": positive_decimal(extra["price"], field="price"),
            "side": _choice(extra["side"], ORDER_SIDES, "side"), "qty": extra.get("qty"),
            "status": str(extra.get("status", "EMPTY")), "client_order_id": extra.get("client_order_id"),
            "updated_at": now})
    return rows


async def _notify(session: AsyncSession, channel: str, payload: str) -> None:
    """NOTIFY on PostgreSQL, delivered when the transaction commits; elsewhere the readers poll."""
    if session.get_bind().dialect.name == "postgresql":
        await session.execute(select(func.pg_notify(channel, payload)))


class CredentialsRepository(Store):
    """Exchange keys, encrypted under TRADERAGENT_MASTER_KEY (Fernet, crypto.py)."""

    _cipher: CredentialCipher | None

    def _cipher_or_raise(self) -> CredentialCipher:
        if self._cipher is None:
            raise MasterKeyError(
                "TRADERAGENT_MASTER_KEY is not set: credentials are stored encrypted and need it "
                "(create one with `traderagent keygen`)"
            )
        return self._cipher

    async def save_credentials(self, name: str, api_key: str, api_secret: str, *, testnet: bool = False) -> None:
        """Store (or replace) encrypted credentials under `name`."""
        cipher = self._cipher_or_raise()
        key_ct, secret_ct = cipher.encrypt(api_key), cipher.encrypt(api_secret)
        async with self._write() as session:
            row = (await session.execute(select(Credential).where(Credential.name == name))).scalar_one_or_none()
            if row is None:
                session.add(Credential(name=name, api_key_encrypted=key_ct, api_secret_encrypted=secret_ct,
                                       testnet=bool(testnet)))
            else:
                row.api_key_encrypted, row.api_secret_encrypted, row.testnet = key_ct, secret_ct, bool(testnet)

    async def load_credentials(self, name: str) -> tuple[str, str, bool] | None:
        """(api_key, api_secret, testnet), or None when nothing is stored under `name`."""
        async with self._read() as session:
            row = (await session.execute(select(Credential).where(Credential.name == name))).scalar_one_or_none()
        if row is None:
            return None
        cipher = self._cipher_or_raise()
        what = f"credentials {name!r}"
        return (cipher.decrypt(row.api_key_encrypted, what=what), cipher.decrypt(row.api_secret_encrypted, what=what),
                bool(row.testnet))

    async def list_credentials(self) -> list[str]:
        """Names of stored credentials (never their contents)."""
        async with self._read() as session:
            return list((await session.execute(select(Credential.name).order_by(Credential.name))).scalars())

    async def delete_credentials(self, name: str) -> bool:
        async with self._write() as session:
            result = cast(CursorResult[Any], await session.execute(delete(Credential).where(Credential.name == name)))
            return bool(result.rowcount)


IN_CHUNK = 1000  # names or ids per IN list of the bulk reads (far below either backend's bound on parameters)


@dataclasses.dataclass(frozen=True)
class BotRecovery:
    """A bot's rows its start-up recovery reads (``load_recoveries``): the bot row (None: a new bot), its
    runtime snapshot, its open trades and its non-final orders, oldest first, as ``load_bot_runtime``,
    ``list_open_trades`` and ``list_non_final_orders`` give them."""

    row: BotModel | None
    runtime: dict[str, Any] | None = None
    open_trades: list[Trade] = dataclasses.field(default_factory=list)
    orders: list[Order] = dataclasses.field(default_factory=list)


class BotsRepository(Store):
    """Bots and their runtime snapshots."""

    async def create_bot(self, name: str, strategy: str, symbol: str, market_type: str, config: dict[str, Any],
                         allocated_capital: Decimal | int | str, *, state: str = "STOPPED") -> BotModel:
        if not name or not str(name).strip():
            raise ValueError("bot name must not be empty")
        bot = BotModel(name=name, strategy=strategy, symbol=symbol, market_type=market_type, config=dict(config or {}),
                       state=str(state), allocated_capital=to_decimal(allocated_capital, field="allocated_capital"))
        try:
            async with self._bot_write(name) as session:
                session.add(bot)
        except IntegrityError:
            raise DuplicateBotError(name) from None
        return bot

    async def get_bot(self, name: str) -> BotModel | None:
        async with self._read() as session:
            return (await session.execute(select(BotModel).where(BotModel.name == name))).scalar_one_or_none()

    async def list_bots(self) -> list[BotModel]:
        async with self._read() as session:
            return list((await session.execute(select(BotModel).order_by(BotModel.id))).scalars())

    async def update_bot(self, name: str, /, **fields: Any) -> BotModel:
        """Change any of: name (rename), strategy, symbol, market_type, config, state, allocated_capital."""
        values = _clean_fields(fields, BOT_FIELDS, "update_bot")
        if "allocated_capital" in values and values["allocated_capital"] is None:
            raise ValueError("allocated_capital must not be None")
        try:
            async with self._bot_write(name) as session:
                bot = await self._bot(session, name)
                for key, value in values.items():
                    setattr(bot, key, dict(value) if key == "config" else value)
        except IntegrityError:
            raise DuplicateBotError(str(values.get("name"))) from None
        return bot

    async def set_bot_state(self, name: str, state: str) -> BotModel:
        return await self.update_bot(name, state=str(state))

    @staticmethod
    async def _set_bot_states(session: AsyncSession, items: list[tuple[int, str]]) -> None:
        latest = dict(items)  # a bot's later state in the same batch supersedes an earlier one
        table = _table(BotModel)
        await session.execute(update(table).where(table.c.id == bindparam("bid")).values(
            state=bindparam("v_state"), updated_at=bindparam("v_at")),
            [{"bid": bot_id, "v_state": state, "v_at": utcnow()} for bot_id, state in latest.items()])

    async def _upsert_runtimes(self, session: AsyncSession, items: list[tuple[int, dict[str, Any]]]) -> None:
        latest = dict(items)  # a later snapshot of a bot supersedes an earlier one in the same batch
        stmt = self._upsert(BotRuntime.__table__)
        stmt = stmt.on_conflict_do_update(index_elements=["bot_id"],
                                          set_={"state": stmt.excluded.state, "saved_at": stmt.excluded.saved_at})
        now = utcnow()
        await session.execute(stmt, [{"bot_id": b, "state": st, "saved_at": now} for b, st in latest.items()])

    async def load_bot_runtime(self, name: str) -> dict[str, Any] | None:
        async with self._read() as session:
            bot = await self._bot(session, name)
            row = await session.get(BotRuntime, bot.id)
            return None if row is None else dict(row.state)

    async def load_recoveries(self, names: Iterable[str]) -> dict[str, BotRecovery]:
        """What the start-up recovery of each of these bots reads (``BotRecovery``), for all of them in a few
        queries: a thousand bots read one by one were thousands of round trips."""
        names = list(names)
        rows: dict[str, BotModel] = {}
        runtimes: dict[int, dict[str, Any]] = {}
        trades: dict[int, list[Trade]] = {}
        orders: dict[int, list[Order]] = {}
        async with self._read() as session:
            for start in range(0, len(names), IN_CHUNK):
                q = select(BotModel).where(BotModel.name.in_(names[start:start + IN_CHUNK]))
                rows.update((bot.name, bot) for bot in (await session.execute(q)).scalars())
            ids = [bot.id for bot in rows.values()]
            for start in range(0, len(ids), IN_CHUNK):
                chunk = ids[start:start + IN_CHUNK]
                q_runtime = select(BotRuntime).where(BotRuntime.bot_id.in_(chunk))
                runtimes.update((r.bot_id, dict(r.state)) for r in (await session.execute(q_runtime)).scalars())
                q_trades = select(Trade).where(Trade.closed_at.is_(None), Trade.bot_id.in_(chunk)).order_by(Trade.id)
                for trade in (await session.execute(q_trades)).scalars():
                    trades.setdefault(trade.bot_id, []).append(trade)
                q_orders = (select(Order).where(Order.status.in_(NON_FINAL_ORDER_STATUSES), Order.bot_id.in_(chunk))
                            .order_by(Order.id))
                for order in (await session.execute(q_orders)).scalars():
                    orders.setdefault(order.bot_id, []).append(order)
        self._bot_ids.update((name, bot.id) for name, bot in rows.items())
        return {name: BotRecovery(bot, runtimes.get(bot.id), trades.get(bot.id, []), orders.get(bot.id, []))
                if (bot := rows.get(name)) is not None else BotRecovery(None) for name in names}


class OrdersRepository(Store):
    """Orders, written ahead of the exchange (PENDING) and updated from it."""

    @staticmethod
    def _order_row(bot_id: int, spec: Mapping[str, Any]) -> dict[str, Any]:
        """Validate one order's fields into a full column dict (same keys for every row: batchable)."""
        now = utcnow()
        price = spec.get("price")
        return {
            "bot_id": bot_id,
            "client_order_id": str(spec["client_order_id"]),
            "exchange_order_id": spec.get("exchange_order_id"),
            "symbol": str(spec["symbol"]),
            "side": _choice(spec["side"], ORDER_SIDES, "side"),
            "order_type": _choice(spec["order_type"], ORDER_TYPES, "order_type"),
            "qty": positive_decimal(spec["qty"], field="qty"),
            "price": None if price is None else positive_decimal(price, field="price"),
            "status": _order_status(spec.get("status", "PENDING")),
            "filled_qty": to_decimal(spec.get("filled_qty", 0), field="filled_qty"),
            "avg_price": decimal_or(spec.get("avg_price"), None, field="avg_price"),
            "fee": to_decimal(spec.get("fee", 0), field="fee"),
            "reduce_only": bool(spec.get("reduce_only", False)),
            "tag": spec.get("tag"),
            "created_at": spec.get("created_at") or now,
            "updated_at": spec.get("updated_at") or spec.get("created_at") or now,
        }

    @staticmethod
    async def _insert_orders(session: AsyncSession, items: list[list[dict[str, Any]]]) -> None:
        # Core insert on the table: one executemany batched into multi-row VALUES (the ORM bulk
        # path would split the batch wherever a None column appears/disappears)
        await session.execute(insert(_table(Order)), [row for rows in items for row in rows])

    async def _existing_client_ids(self, ids: list[str]) -> list[str]:
        found: list[str] = []
        async with self._read() as session:
            for start in range(0, len(ids), 500):
                chunk = ids[start:start + 500]
                q = select(Order.client_order_id).where(Order.client_order_id.in_(chunk))
                found.extend((await session.execute(q)).scalars())
        return found

    @staticmethod
    async def _apply_order_updates(session: AsyncSession, items: list[list[tuple[str, dict[str, Any]]]]) -> None:
        updates = [u for item in items for u in item]
        wanted = list(dict.fromkeys(cid for cid, _ in updates))
        found: set[str] = set()
        for start in range(0, len(wanted), 500):
            q = select(Order.client_order_id).where(Order.client_order_id.in_(wanted[start:start + 500]))
            found.update((await session.execute(q)).scalars())
        missing = [cid for cid in wanted if cid not in found]
        if missing:
            raise OrderNotFoundError(missing[0])  # rolls the whole transaction back
        table, now = _table(Order), utcnow()
        # one executemany per run of updates setting the same columns (runs keep submission order)
        for keys, run in itertools.groupby(updates, key=lambda u: tuple(sorted(u[1]))):
            stmt = (update(table).where(table.c.client_order_id == bindparam("cid_"))
                    .values({k: bindparam(f"v_{k}", type_=table.c[k].type) for k in (*keys, "updated_at")}))
            await session.execute(stmt, [{"cid_": cid, "v_updated_at": now, **{f"v_{k}": v for k, v in values.items()}}
                                         for cid, values in run])

    async def get_order(self, client_order_id: str) -> Order | None:
        async with self._read() as session:
            q = select(Order).where(Order.client_order_id == client_order_id)
            return (await session.execute(q)).scalar_one_or_none()

    async def list_orders(self, bot_name: str | None = None, *, statuses: Iterable[str] | None = None,
                          limit: int = 100) -> list[Order]:
        """Newest first."""
        q = select(Order).order_by(Order.id.desc()).limit(limit)
        if bot_name is not None:
            q = q.where(Order.bot_id == self._bot_id_subquery(bot_name))
        if statuses is not None:
            q = q.where(Order.status.in_([_order_status(s) for s in statuses]))
        async with self._read() as session:
            return list((await session.execute(q)).scalars())

    async def list_non_final_orders(self, bot_name: str | None = None) -> list[Order]:
        """Every PENDING/OPEN/PARTIALLY_FILLED order, oldest first (what start-up reconciles)."""
        q = select(Order).where(Order.status.in_(NON_FINAL_ORDER_STATUSES)).order_by(Order.id)
        if bot_name is not None:
            q = q.where(Order.bot_id == self._bot_id_subquery(bot_name))
        async with self._read() as session:
            return list((await session.execute(q)).scalars())


class TradesRepository(Store):
    """Trades (round trips) and the PnL aggregates computed from them in SQL."""

    @staticmethod
    def _trade_row(bot_id: int, spec: Mapping[str, Any]) -> dict[str, Any]:
        exit_price, pnl, closed_at = spec.get("exit_price"), spec.get("pnl"), spec.get("closed_at")
        if (exit_price is None) != (pnl is None):
            raise ValueError("a closed trade needs both exit_price and pnl (an open one neither)")
        if exit_price is not None and closed_at is None:
            closed_at = utcnow()
        return {
            "bot_id": bot_id,
            "symbol": str(spec["symbol"]),
            "side": _choice(spec["side"], TRADE_SIDES, "side"),
            "qty": positive_decimal(spec["qty"], field="qty"),
            "entry_price": positive_decimal(spec["entry_price"], field="entry_price"),
            "exit_price": None if exit_price is None else positive_decimal(exit_price, field="exit_price"),
            "pnl": decimal_or(pnl, None, field="pnl"),
            "fees": to_decimal(spec.get("fees", 0), field="fees"),
            "opened_at": spec.get("opened_at") or utcnow(),
            "closed_at": closed_at if exit_price is not None else None,
            "tag": spec.get("tag"),
        }

    @staticmethod
    async def _insert_trades(session: AsyncSession, items: list[dict[str, Any]]) -> list[int]:
        table = _table(Trade)
        result = await session.execute(insert(table).returning(table.c.id, sort_by_parameter_order=True), items)
        return list(result.scalars())

    @staticmethod
    async def _close_trades(session: AsyncSession, items: list[tuple[int, dict[str, Any]]]) -> None:
        table = _table(Trade)
        ids = [tid for tid, _ in items]
        found = {row.id: row for row in (await session.execute(
            select(table.c.id, table.c.fees, table.c.closed_at).where(table.c.id.in_(ids)))).all()}
        params, closing = [], set()
        for tid, close in items:
            row = found.get(tid)
            if row is None:
                raise TradeNotFoundError(tid)
            if row.closed_at is not None or tid in closing:
                raise TradeAlreadyClosedError(tid)
            closing.add(tid)
            params.append({"tid": tid, "v_exit": close["exit_price"], "v_pnl": close["pnl"],
                           "v_fees": row.fees + close["fees"], "v_closed": close["closed_at"],
                           "v_qty": close.get("qty"), "v_entry": close.get("entry_price")})
        await session.execute(update(table).where(table.c.id == bindparam("tid")).values(
            exit_price=bindparam("v_exit"), pnl=bindparam("v_pnl"), fees=bindparam("v_fees"),
            closed_at=bindparam("v_closed"), qty=func.coalesce(bindparam("v_qty", type_=table.c.qty.type), table.c.qty),
            entry_price=func.coalesce(bindparam("v_entry", type_=table.c.entry_price.type), table.c.entry_price)),
            params)

    async def list_trades(self, bot_name: str | None = None, limit: int = 20, *,
                          closed_only: bool = False) -> list[Trade]:
        """Newest first."""
        q = select(Trade).order_by(Trade.id.desc()).limit(limit)
        if bot_name is not None:
            q = q.where(Trade.bot_id == self._bot_id_subquery(bot_name))
        if closed_only:
            q = q.where(Trade.closed_at.is_not(None))
        async with self._read() as session:
            return list((await session.execute(q)).scalars())

    async def closed_trades(self, since: dt.datetime, until: dt.datetime | None = None) -> list[Trade]:
        """Every bot's trades closed from ``since`` (to before ``until``), in the order they closed."""
        q = select(Trade).where(Trade.closed_at >= since).order_by(Trade.closed_at, Trade.id)
        if until is not None:
            q = q.where(Trade.closed_at < until)
        async with self._read() as session:
            return list((await session.execute(q)).scalars())

    async def list_open_trades(self, bot_name: str | None = None) -> list[Trade]:
        """Oldest first."""
        q = select(Trade).where(Trade.closed_at.is_(None)).order_by(Trade.id)
        if bot_name is not None:
            q = q.where(Trade.bot_id == self._bot_id_subquery(bot_name))
        async with self._read() as session:
            return list((await session.execute(q)).scalars())

    async def newest_trade_close(self, bot_name: str, tag_prefix: str) -> dt.datetime | None:
        """The latest close time of the bot's trades whose tag starts with ``tag_prefix`` (None: none)."""
        q = select(func.max(Trade.closed_at)).where(Trade.bot_id == self._bot_id_subquery(bot_name),
                                                    Trade.tag.startswith(tag_prefix, autoescape=True))
        async with self._read() as session:
            return (await session.execute(q)).scalar()

    # --- aggregates (computed in SQL, exact) ---

    def _trade_filter(self, q: Any, bot_name: str | None) -> Any:
        return q if bot_name is None else q.where(Trade.bot_id == self._bot_id_subquery(bot_name))

    async def realized_pnl_by_bot(self, *, since: dt.datetime) -> dict[str, Decimal]:
        """``realized_pnl(name, since=since)`` of every bot with a trade closed since then, in one query."""
        q = (select(BotModel.name, exact_sum(Trade.pnl)).join(BotModel, BotModel.id == Trade.bot_id)
             .where(Trade.closed_at >= since).group_by(BotModel.name))
        async with self._read() as session:
            return {name: total for name, total in (await session.execute(q)).all() if total is not None}

    async def realized_pnl(self, bot_name: str | None = None, *, since: dt.datetime | None = None) -> Decimal:
        """Sum of pnl over closed trades (optionally closed at or after `since`)."""
        q = self._trade_filter(select(exact_sum(Trade.pnl)).where(Trade.closed_at.is_not(None)), bot_name)
        if since is not None:
            q = q.where(Trade.closed_at >= since)
        async with self._read() as session:
            total = (await session.execute(q)).scalar_one()
        return total if total is not None else Decimal("0")

    async def daily_pnl(self, days: int = 7, bot_name: str | None = None) -> list[tuple[dt.date, Decimal]]:
        """Realised PnL per UTC day for the last `days` days including today, oldest first;
        days without closed trades are present with 0."""
        if days < 1:
            raise ValueError("days must be at least 1")
        today = utcnow().date()
        first = today - dt.timedelta(days=days - 1)
        day = utc_day(Trade.closed_at)
        q = (select(day, exact_sum(Trade.pnl))
             .where(Trade.closed_at >= dt.datetime.combine(first, dt.time(), UTC), Trade.pnl.is_not(None))
             .group_by(day))
        q = self._trade_filter(q, bot_name)
        async with self._read() as session:
            sums = {dt.date.fromisoformat(d): total for d, total in (await session.execute(q)).all()}
        return [(first + dt.timedelta(days=i), sums.get(first + dt.timedelta(days=i), Decimal("0")))
                for i in range(days)]


class GridRepository(Store):
    """A grid bot's levels, replaced as a whole."""

    @staticmethod
    async def _replace_grids(session: AsyncSession, items: list[tuple[int, list[dict[str, Any]]]]) -> None:
        latest = dict(items)  # a later table of a bot supersedes an earlier one in the same batch
        table = _table(GridLevel)
        await session.execute(delete(table).where(table.c.bot_id.in_(list(latest))))
        rows = [row for rows in latest.values() for row in rows]
        if rows:
            await session.execute(insert(table), rows)

    async def get_grid_levels(self, bot_name: str) -> list[GridLevel]:
        q = (select(GridLevel).where(GridLevel.bot_id == self._bot_id_subquery(bot_name))
             .order_by(GridLevel.level_index))
        async with self._read() as session:
            return list((await session.execute(q)).scalars())


class LogsRepository(Store):
    """The bot log journal, pruned to the newest `log_retention` lines per bot."""

    log_retention: int
    _untrimmed_logs: dict[str | None, int]

    async def add_log(self, bot_name: str | None, level: str, message: str,
                      context: dict[str, Any] | None = None) -> None:
        """Append a log line (see add_logs)."""
        await self.add_logs([(bot_name, level, message, context)])

    async def add_logs(self, lines: Iterable[tuple[str | None, str, str, Mapping[str, Any] | None]]) -> int:
        """Append ``(bot_name, level, message, context)`` lines in one write; returns how many.
        Each bot name keeps its newest `log_retention` lines: older ones are pruned once the bot
        has added a hundredth of that window since its last pruning (so with the default 10,000 a
        bot holds at most 10,099 lines, and pruning costs one statement per 100 lines)."""
        rows, now = [], utcnow()
        for bot_name, level, message, context in lines:
            lvl = str(level).strip().upper()
            if lvl == "WARN":
                lvl = "WARNING"
            if lvl not in LOG_LEVELS:
                raise ValueError(f"log level must be one of {', '.join(LOG_LEVELS)}, not {level!r}")
            rows.append({"bot_name": bot_name, "level": lvl, "message": str(message),
                         "context": None if context is None else dict(context), "created_at": now})
        if rows:
            await self._group.write(("logs", rows))
        return len(rows)

    async def _insert_logs(self, session: AsyncSession, items: list[list[dict[str, Any]]]) -> None:
        rows = [row for item in items for row in item]
        await session.execute(insert(_table(BotLog)), rows)
        slack = max(1, self.log_retention // 100)
        for name, added in Counter(row["bot_name"] for row in rows).items():
            untrimmed = self._untrimmed_logs.get(name, slack - 1) + added  # unknown: prune now
            if untrimmed < slack:
                self._untrimmed_logs[name] = untrimmed
                continue
            same_bot = BotLog.bot_name.is_(None) if name is None else BotLog.bot_name == name
            # id of the newest line that falls outside the window; everything at or below it goes
            cutoff = (select(BotLog.id).where(same_bot).order_by(BotLog.id.desc())
                      .offset(self.log_retention).limit(1).scalar_subquery())
            await session.execute(delete(BotLog).where(same_bot, BotLog.id <= cutoff))
            self._untrimmed_logs[name] = 0

    async def count_logs(self, level: str, since: dt.datetime, *, starting: str = "") -> int:
        """Lines of ``level`` logged from ``since`` whose message starts with ``starting`` (every bot's)."""
        q = select(func.count()).select_from(BotLog).where(BotLog.level == level, BotLog.created_at >= since)
        if starting:
            q = q.where(BotLog.message.startswith(starting, autoescape=True))
        async with self._read() as session:
            return int((await session.execute(q)).scalar_one())

    async def get_logs(self, bot_name: str | None = None, limit: int = 50) -> list[BotLog]:
        """Newest first; bot_name None means every bot's (and the system's) lines."""
        q = select(BotLog).order_by(BotLog.id.desc()).limit(limit)
        if bot_name is not None:
            q = q.where(BotLog.bot_name == bot_name)
        async with self._read() as session:
            return list((await session.execute(q)).scalars())


class CapitalRepository(Store):
    """The capital manager state and the operator approvals."""

    async def save_capital_state(self, state: dict[str, Any]) -> None:
        """The one row (id 1), upserted: several workers starting together may all write the first."""
        stmt = self._upsert(_table(CapitalState))
        stmt = stmt.on_conflict_do_update(index_elements=["id"], set_={"state": stmt.excluded.state,
                                                                        "updated_at": stmt.excluded.updated_at})
        async with self._write() as session:
            await session.execute(stmt, {"id": 1, "state": dict(state), "updated_at": utcnow()})

    async def load_capital_state(self) -> dict[str, Any] | None:
        async with self._read() as session:
            row = await session.get(CapitalState, 1)
            return None if row is None else dict(row.state)

    async def record_approval(self, action: str, phase_from: str | None, phase_to: str | None,
                              approved_by: str | int, decision: dict[str, Any]) -> Approval:
        """Record an operator's scaling decision (action e.g. "approve", "reject", "halt", "resume")."""
        row = Approval(action=str(action), phase_from=None if phase_from is None else str(phase_from),
                       phase_to=None if phase_to is None else str(phase_to), approved_by=str(approved_by),
                       decision=dict(decision))
        async with self._write() as session:
            session.add(row)
        return row

    async def list_approvals(self, limit: int = 50) -> list[Approval]:
        """Newest first."""
        async with self._read() as session:
            q = select(Approval).order_by(Approval.id.desc()).limit(limit)
            return list((await session.execute(q)).scalars())

    async def claim_report(self, kind: str, period: str) -> bool:
        """Claim sending the ``kind`` report of ``period`` (periods order as text, e.g. ISO dates): True for
        the one caller that moved the kind's last period forward to it, False when it was sent already."""
        table = _table(DeskReport)
        stmt = self._upsert(table)
        stmt = stmt.on_conflict_do_update(index_elements=["kind"],
                                          set_={"period": stmt.excluded.period, "sent_at": stmt.excluded.sent_at},
                                          where=table.c.period < stmt.excluded.period).returning(table.c.kind)
        async with self._write() as session:
            claimed = (await session.execute(stmt, {"kind": kind, "period": period, "sent_at": utcnow()})).first()
        return claimed is not None

    async def last_report(self, kind: str) -> str | None:
        """The last period the ``kind`` report went out for (None: never)."""
        async with self._read() as session:
            row = await session.get(DeskReport, kind)
            return None if row is None else row.period


class AuditRepository(Store):
    """The operators' audit trail (commands and button presses from chat)."""

    async def add_audit(self, *, user_id: int | None, user_name: str, chat_id: int, role: str, action: str,
                        args: str, outcome: str, detail: str = "") -> None:
        """Append one action; concurrent ones share a transaction (a command flood is one write)."""
        row = {"user_id": user_id, "user_name": user_name[:80], "chat_id": chat_id, "role": role[:16],
               "action": action[:40], "args": args, "outcome": outcome[:16], "detail": detail,
               "created_at": utcnow()}
        await self._group.write(("audit", row))

    @staticmethod
    async def _insert_audit(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
        await session.execute(insert(_table(AuditEntry)), rows)

    async def list_audit(self, limit: int = 20) -> list[AuditEntry]:
        """Newest first."""
        async with self._read() as session:
            q = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit)
            return list((await session.execute(q)).scalars())


class OutboxRepository(Store):
    """Alerts waiting for a chat (handlers/outbox.py) and the operator's alert verbosity."""

    async def add_outbox(self, rows: Iterable[Mapping[str, Any]], *, notify: str | None = None) -> list[int]:
        """Queue alerts (chat_id, kind, bot_name, text, line, created_at) in one write; their ids, in order.
        ``notify``: a channel told so in the same transaction (another process delivers them)."""
        items = [OutboxRow(**dict(row)) for row in rows]
        if items:
            async with self._write() as session:
                session.add_all(items)
                await session.flush()
                if notify:
                    await _notify(session, notify, "")
        return [item.id for item in items]

    async def pending_outbox(self, chat_ids: Iterable[int]) -> list[OutboxRow]:
        """The undelivered alerts of these chats, oldest first."""
        q = select(OutboxRow).where(OutboxRow.chat_id.in_(list(chat_ids))).order_by(OutboxRow.id)
        async with self._read() as session:
            return list((await session.execute(q)).scalars())

    async def delete_outbox(self, ids: Iterable[int]) -> None:
        wanted = list(ids)
        if wanted:
            async with self._write() as session:
                await session.execute(delete(OutboxRow).where(OutboxRow.id.in_(wanted)))

    async def save_verbosity(self, scope: str, level: str) -> None:
        stmt = self._upsert(_table(AlertVerbosity))
        stmt = stmt.on_conflict_do_update(index_elements=["scope"],
                                          set_={"level": stmt.excluded.level, "updated_at": stmt.excluded.updated_at})
        async with self._write() as session:
            await session.execute(stmt, [{"scope": scope, "level": level, "updated_at": utcnow()}])

    async def load_verbosity(self) -> dict[str, str]:
        async with self._read() as session:
            return {row.scope: row.level for row in (await session.execute(select(AlertVerbosity))).scalars()}


class TokensRepository(Store):
    """The inline buttons' one-time tokens (handlers/tokens.py): written as issued, deleted as used."""

    async def save_tokens(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """Add tokens (token, action, arg, chat_id, token_group, role, expires_at) in one write."""
        wanted = [dict(row) for row in rows]
        if wanted:
            async with self._write() as session:
                await session.execute(insert(_table(ButtonToken)), wanted)

    async def delete_tokens(self, tokens: Iterable[str] = (), *, expired_before: dt.datetime | None = None) -> None:
        """Forget these tokens, and (``expired_before``) every token that expired before then."""
        table = _table(ButtonToken)
        wanted = list(tokens)
        async with self._write() as session:
            if wanted:
                await session.execute(delete(table).where(table.c.token.in_(wanted)))
            if expired_before is not None:
                await session.execute(delete(table).where(table.c.expires_at < expired_before))

    async def load_tokens(self) -> list[ButtonToken]:
        async with self._read() as session:
            return list((await session.execute(select(ButtonToken))).scalars())


class LeasesRepository(Store):
    """Bot leases: which running desk owns which bot (orchestrator/lease.py). Times come from the
    caller's clock; each statement is one atomic conditional write, the same SQL on both backends.
    Every statement takes its rows in bot name order, as the fenced writes do (engine.py): on
    PostgreSQL two transactions never wait for each other's rows both ways (no deadlock)."""

    @staticmethod
    def _owned(owner: str, bots: Sequence[str] | None = None) -> Any:
        """The names of ``owner``'s leases (of ``bots``), locked in name order on PostgreSQL."""
        table = _table(BotLease)
        q = select(table.c.bot_name).where(table.c.owner == owner)
        if bots is not None:
            q = q.where(table.c.bot_name.in_(list(bots)))
        return q.order_by(table.c.bot_name).with_for_update()

    async def acquire_leases(self, bots: Sequence[str], owner: str, now: dt.datetime, expires_at: dt.datetime,
                             *, process_space: str | None = None, dead: Sequence[str] = ()) -> list[BotLease]:
        """Take each bot's lease unless another owner's is still valid at ``now`` (an upsert whose
        update applies only to a free, expired or own lease, or one of an owner known ``dead``);
        returns every bot's lease after it, whoever holds it. A lease that changes hands (or is
        new) gets a new fencing token; one the owner already held keeps its own."""
        if not bots:
            return []
        table = _table(BotLease)
        stmt = self._upsert(table)
        same_owner = table.c.owner == stmt.excluded.owner
        takeable = same_owner | (table.c.expires_at < stmt.excluded.acquired_at)
        stmt = stmt.on_conflict_do_update(
            index_elements=["bot_name"],
            set_={"owner": stmt.excluded.owner, "process_space": stmt.excluded.process_space,
                  "acquired_at": stmt.excluded.acquired_at, "expires_at": stmt.excluded.expires_at,
                  "token": case((same_owner, table.c.token), else_=stmt.excluded.token)},
            where=or_(takeable, *(table.c.owner == d for d in dead)))  # not in_(): executemany refuses it
        token = secrets.token_hex(8)
        async with self._write() as session:
            await session.execute(stmt, [{"bot_name": b, "owner": owner, "process_space": process_space,
                                          "acquired_at": now, "expires_at": expires_at, "token": token}
                                         for b in sorted(set(bots))])
            q = select(BotLease).where(BotLease.bot_name.in_(list(bots))).order_by(BotLease.bot_name)
            return list((await session.execute(q)).scalars())

    async def renew_leases(self, owner: str, expires_at: dt.datetime) -> list[str]:
        """Extend every lease ``owner`` still holds (expired or not, as long as nobody took it over);
        returns the names of those bots."""
        table = _table(BotLease)
        async with self._write() as session:
            await session.execute(update(table).where(table.c.bot_name.in_(self._owned(owner)))
                                  .values(expires_at=expires_at))
            q = select(table.c.bot_name).where(table.c.owner == owner).order_by(table.c.bot_name)
            return list((await session.execute(q)).scalars())

    async def lease_holders(self, bots: Sequence[str]) -> list[BotLease]:
        async with self._read() as session:
            q = select(BotLease).where(BotLease.bot_name.in_(list(bots))).order_by(BotLease.bot_name)
            return list((await session.execute(q)).scalars())

    async def leases_named(self, prefix: str) -> list[BotLease]:
        """Every lease whose name starts with ``prefix`` (the workers' slots, ``@worker/``)."""
        async with self._read() as session:
            q = select(BotLease).where(BotLease.bot_name.startswith(prefix, autoescape=True)).order_by(BotLease.bot_name)
            return list((await session.execute(q)).scalars())

    async def release_leases(self, owner: str, bots: Sequence[str] | None = None) -> None:
        """Give up ``owner``'s leases (of ``bots``, default all): another desk may take them at once."""
        table = _table(BotLease)
        async with self._write() as session:
            await session.execute(delete(table).where(table.c.bot_name.in_(self._owned(owner, bots))))


class CommandsRepository(Store):
    """Commands from the console to the desk workers (traderagent/fleet/bus.py). Every change tells its
    channel in its own transaction, so a listener woken by it finds the row committed."""

    async def add_command(self, target: str, operation: str, arguments: Mapping[str, Any], by: str,
                          deadline: dt.datetime, *, notify: str) -> int:
        row = DeskCommand(target=target, operation=operation, arguments=dict(arguments), by=by, status="pending",
                          created_at=utcnow(), deadline=deadline)
        async with self._write() as session:
            session.add(row)
            await session.flush()
            await _notify(session, notify, str(row.id))
        return row.id

    async def claim_commands(self, owner: str, now: dt.datetime) -> list[DeskCommand]:
        """Take every pending command, not past its deadline, whose target's lease ``owner`` holds. One
        conditional UPDATE: of two claimants, the second finds the row no longer pending."""
        held = select(BotLease.bot_name).where(BotLease.owner == owner).scalar_subquery()
        stmt = (update(DeskCommand)
                .where(DeskCommand.status == "pending", DeskCommand.deadline > now, DeskCommand.target.in_(held))
                .values(status="running", claimed_by=owner, claimed_at=now)
                .returning(DeskCommand).execution_options(synchronize_session=False))
        async with self._write() as session:
            return sorted((await session.scalars(stmt)).all(), key=lambda c: c.id)

    async def finish_command(self, command_id: int, status: str, result: Mapping[str, Any], *, notify: str) -> None:
        async with self._write() as session:
            await session.execute(update(DeskCommand).where(DeskCommand.id == command_id)
                                  .values(status=status, result=dict(result), finished_at=utcnow()))
            await _notify(session, notify, str(command_id))

    async def expire_command(self, command_id: int) -> bool:
        """Mark an unclaimed command expired (it never runs then); False when a worker claimed it first."""
        async with self._write() as session:
            done = await session.execute(update(DeskCommand).where(DeskCommand.id == command_id,
                                                                   DeskCommand.status == "pending")
                                         .values(status="expired", finished_at=utcnow()))
            return cast(CursorResult[Any], done).rowcount == 1

    async def prune_commands(self, before: dt.datetime) -> int:
        """Delete the commands created before ``before`` that are over (done, refused, failed, expired)."""
        async with self._write() as session:
            done = await session.execute(delete(DeskCommand).where(DeskCommand.created_at < before,
                                                                   DeskCommand.status.not_in(("pending", "running"))))
            return cast(CursorResult[Any], done).rowcount

    async def get_command(self, command_id: int) -> DeskCommand | None:
        async with self._read() as session:
            return await session.get(DeskCommand, command_id)


class FleetRiskRepository(Store):
    """A fleet's desk-wide risk (orchestrator/risk.py ``FleetRails``): the marks each worker writes of its bots
    (results.BotMark: the leader's rail and the console read them), and the desk rails the leader trips."""

    async def save_marks(self, marks: Mapping[str, BotMark]) -> None:
        """Upsert each bot's mark."""
        if not marks:
            return
        stmt = self._upsert(_table(BotMarkRow))
        stmt = stmt.on_conflict_do_update(index_elements=["bot_name"], set_={
            column: getattr(stmt.excluded, column) for column in _MARK_COLUMNS})
        async with self._write() as session:
            await session.execute(stmt, [{"bot_name": name, **{c: getattr(mark, c) for c in _MARK_COLUMNS}}
                                         for name, mark in sorted(marks.items())])

    async def bot_marks(self) -> dict[str, BotMark]:
        """bot name -> its mark as its worker last wrote it (the bots that have one)."""
        async with self._read() as session:
            rows = (await session.execute(select(BotMarkRow))).scalars()
            return {row.bot_name: BotMark(**{c: getattr(row, c) for c in _MARK_COLUMNS}) for row in rows}

    async def fleet_unrealized(self) -> Decimal:
        """The unrealised PnL of every bot, as their workers last wrote it."""
        async with self._read() as session:
            total = (await session.execute(select(exact_sum(BotMarkRow.unrealized_pnl)))).scalar_one()
        return total if total is not None else Decimal("0")

    async def prune_marks(self, keep: Collection[str]) -> int:
        """Delete the marks of the bots not in ``keep`` (removed from the bots file); how many."""
        async with self._write() as session:
            done = await session.execute(delete(BotMarkRow).where(BotMarkRow.bot_name.not_in(list(keep))))
            return cast(CursorResult[Any], done).rowcount

    async def running_bots(self) -> int:
        """How many bots the workers last stored as RUNNING."""
        async with self._read() as session:
            q = select(func.count()).select_from(BotModel).where(BotModel.state == "RUNNING")
            return int((await session.execute(q)).scalar_one())

    async def trip_rail(self, rail: str, day: dt.date) -> bool:
        """Mark ``rail`` tripped on ``day``; True only for the call that changed it (of two, one)."""
        table = _table(DeskRail)
        stmt = self._upsert(table).values(rail=rail, day=day, updated_at=utcnow())
        stmt = stmt.on_conflict_do_update(
            index_elements=["rail"], set_={"day": stmt.excluded.day, "updated_at": stmt.excluded.updated_at},
            where=or_(table.c.day.is_(None), table.c.day != stmt.excluded.day)).returning(table.c.rail)
        async with self._write() as session:
            return (await session.execute(stmt)).first() is not None

    async def clear_rail(self, rail: str) -> None:
        table = _table(DeskRail)
        async with self._write() as session:
            await session.execute(update(table).where(table.c.rail == rail, table.c.day.is_not(None))
                                  .values(day=None, updated_at=utcnow()))

    async def rail_day(self, rail: str) -> dt.date | None:
        """The UTC day ``rail`` was tripped on (None: it holds)."""
        async with self._read() as session:
            row = await session.get(DeskRail, rail)
            return None if row is None else row.day

    async def notify(self, channel: str) -> None:
        """Wake the listeners of ``channel`` (PostgreSQL; elsewhere nobody listens)."""
        async with self._write() as session:
            await _notify(session, channel, "")
