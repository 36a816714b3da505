"""The database engine under every repository: connections, dialect hooks, errors, migrations.

- SQLite via aiosqlite, PostgreSQL via asyncpg; the sync URL spellings are accepted too.
- Schema: Alembic migrations in `migrations/`, applied by `initialize()` and `traderagent db upgrade`.
- Concurrency on SQLite: WAL + busy_timeout + `BEGIN IMMEDIATE` for write transactions (a writer
  takes the write lock up front, so a read-then-write can never fail with SQLITE_BUSY midway),
  and one in-process writer at a time (SQLite allows only one anyway; this keeps it fair).
- Durability on SQLite: WAL with `synchronous=NORMAL`, except a *durable* write transaction
  (`_write(durable=True)`: the orders' write-ahead rows) which runs with `synchronous=FULL`, so
  its commit is on disk (WAL fsynced) before the order is sent. PostgreSQL commits are durable
  by default (`synchronous_commit=on`).
- Driver failures become the specific DatabaseErrors of exceptions.py, never showing a password;
  a database that cannot take writes any more (disk full, I/O error, read-only, its tables gone)
  is DatabaseUnavailableError, which the desk treats as storage lost (orchestrator/storage.py).
- A deleted SQLite file (docs/architecture.md, "Storage faults"): open connections go on writing
  to the unlinked file without an error, so `check_storage()` compares the path's inode with the
  one opened, and `restore_storage()` writes the file back at its path from a connection that
  still holds it (the "keeper", opened with the file): nothing written before the loss is lost.
- Lease fencing (orchestrator/lease.py, Fencing): once a desk calls `fence_writes`, every write
  of a bot's rows checks, first in its own transaction, that the bot's lease row still carries the
  token of the lease the write was made under (`_check_fences`), or rolls back with LeaseLapsed.
  On PostgreSQL that read locks the rows (FOR SHARE) until the commit, and a connection idle inside
  a transaction longer than PG_IDLE_IN_TRANSACTION_MS is closed by the server, so a frozen desk
  cannot hold such a lock for longer than that.
- Returned ORM objects are detached snapshots (expire_on_commit=False): read them, don't mutate.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Iterable
from pathlib import Path
from typing import Any, Self

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import Connection, event, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.pool import StaticPool
from sqlalchemy.util import await_

from traderagent.database.exceptions import (
    BotNotFoundError,
    DatabaseError,
    DatabaseUnavailableError,
    LeaseLapsed,
    NotADatabaseError,
)
from traderagent.database.group_commit import GroupCommit
from traderagent.database.models import (
    BotLease,
    BotModel,
)
from traderagent.database.types import (
    json_dumps,
    register_sqlite_functions,
)

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
PG_MIGRATION_LOCK = 0x7472_6164_6572  # the advisory lock a PostgreSQL migration holds (any bigint, ours)
# PostgreSQL SQLSTATEs meaning "could not get a usable connection", and those of a server that takes
# no writes: insufficient resources (53100 disk full, 53200 out of memory), a read-only transaction
_PG_UNAVAILABLE_STATES = ("08", "28", "3D000", "53300", "57P01", "57P02", "57P03")
_PG_NO_WRITES_STATES = ("53100", "53200", "25006")
# a desk frozen inside a transaction (SIGSTOP, a stalled VM) loses it, and the lease rows it locked,
# after this: well within the lease fence (orchestrator/lease.py; 11 s by default), so another desk's
# takeover of its bots waits for it at most this long
PG_IDLE_IN_TRANSACTION_MS = 5_000
# Connections a process keeps to PostgreSQL, all kept open: connections over a pool's size would be
# closed at check-in and opened again (a server process forked each time), which made a 1,000-bot
# start-up (32 recoveries at once) open 3,600 connections.
PG_POOL_SIZE = 30
PG_PING_IDLE_S = 1.0  # a pooled connection idle longer than this is pinged before use (see _ping_when_idle)
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
# SQLite errors meaning the database cannot take writes any more (-> DatabaseUnavailableError)
_SQLITE_LOST = {
    "database or disk is full": "is full (no space left on its disk?)",
    "disk i/o error": "had a disk I/O error",
    "readonly database": "is read-only",
    "no such table": "has lost its tables (file deleted or replaced?)",
}


def normalise_url(database_url: str) -> URL:
    """Accept the sync spellings too (sqlite://, postgresql://, postgres://) and pick the async driver."""
    raw = database_url.strip()
    if raw.startswith("postgres://"):
        raw = "postgresql://" + raw[len("postgres://"):]
    url = make_url(raw)
    if url.drivername in ("sqlite", "sqlite+pysqlite"):
        url = url.set(drivername="sqlite+aiosqlite")
    elif url.drivername in ("postgresql", "postgresql+psycopg2", "postgresql+psycopg"):
        url = url.set(drivername="postgresql+asyncpg")
    if url.drivername not in ("sqlite+aiosqlite", "postgresql+asyncpg"):
        raise DatabaseError(
            f"unsupported database URL scheme {url.drivername!r}: use sqlite+aiosqlite:///file.db "
            "or postgresql+asyncpg://user@host:port/dbname"
        )
    return url


def _ping_when_idle(engine: AsyncEngine) -> None:
    """Ping a pooled PostgreSQL connection before use only when it sat idle for PG_PING_IDLE_S: one that
    died meanwhile (server restarted, or it closed one idle in a transaction of a frozen desk) is replaced
    before a statement fails on it. A ping is three round trips (asyncpg: begin, ';', rollback), which
    SQLAlchemy's pre_ping paid on every checkout: 74,000 round trips in a 1,000-bot start-up."""

    @event.listens_for(engine.sync_engine, "connect")
    @event.listens_for(engine.sync_engine, "checkin")
    def _idle_from_now(_dbapi_conn: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine.sync_engine, "checkout")
    def _ping_if_idle(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        if time.monotonic() - record.info.get("idle_since", 0.0) <= PG_PING_IDLE_S:
            return
        try:
            engine.dialect.do_ping(dbapi_conn)
        except Exception as exc:  # the pool opens a new connection instead
            raise DisconnectionError(f"idle connection is gone: {exc!r}") from exc


class Store:
    """One database: engine, sessions, migrations and the bot-id cache the repositories share."""

    _group: GroupCommit  # the hot writes of the tick loop share transactions (set by DatabaseManager)

    def __init__(self, database_url: str, *, schema: str | None = None, connect_timeout: float = 5.0,
                 busy_timeout_ms: int = 30_000, echo: bool = False) -> None:
        self.url = normalise_url(database_url)
        self.backend = "postgresql" if self.url.drivername.startswith("postgresql") else "sqlite"
        if schema is not None and not _IDENT.match(schema):
            raise ValueError(f"schema {schema!r} is not a plain identifier")
        self.schema = schema
        self._memory = self.backend == "sqlite" and (self.url.database in (None, "", ":memory:"))
        self._engine = self._make_engine(connect_timeout, busy_timeout_ms, echo)
        # Write transactions on SQLite begin IMMEDIATE (see module docstring).
        self._write_engine = self._engine.execution_options(ta_begin="IMMEDIATE")
        self._reads = async_sessionmaker(self._engine, expire_on_commit=False)
        self._writes = async_sessionmaker(self._write_engine, expire_on_commit=False)
        self._durable_writes = async_sessionmaker(self._write_engine.execution_options(ta_sync="FULL"),
                                                  expire_on_commit=False)
        self._write_lock: asyncio.Lock | None = asyncio.Lock() if self.backend == "sqlite" else None
        self._bot_ids: dict[str, int] = {}
        self._bot_id_lookups: dict[str, asyncio.Future[int]] = {}
        self._keeper: sqlite3.Connection | None = None  # holds the SQLite file open (check_storage)
        self._inode: tuple[int, int] | None = None
        self._token_of: Callable[[str], str | None] | None = None  # see fence_writes

    # --- engine and sessions -------------------------------------------------------------------

    def _make_engine(self, connect_timeout: float, busy_timeout_ms: int, echo: bool) -> AsyncEngine:
        common: dict[str, Any] = {"echo": echo, "json_serializer": json_dumps}
        if self.backend == "postgresql":
            server_settings = {"application_name": f"traderagent:{os.getpid()}",  # whose connection it is
                               "idle_in_transaction_session_timeout": str(PG_IDLE_IN_TRANSACTION_MS)}
            if self.schema:
                server_settings["search_path"] = self.schema
            engine = create_async_engine(
                self.url,
                pool_size=PG_POOL_SIZE,
                max_overflow=0,
                connect_args={"timeout": connect_timeout, "server_settings": server_settings},
                **common,
            )
            _ping_when_idle(engine)
            return engine
        if self._memory:
            engine = create_async_engine(self.url, poolclass=StaticPool, **common)
        else:
            engine = create_async_engine(self.url, pool_size=5, max_overflow=10, **common)
        self._install_sqlite_hooks(engine, busy_timeout_ms)
        return engine

    def _install_sqlite_hooks(self, engine: AsyncEngine, busy_timeout_ms: int) -> None:
        memory = self._memory

        @event.listens_for(engine.sync_engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None  # we emit BEGIN ourselves (below)
            try:
                cursor = dbapi_conn.cursor()
                cursor.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
                cursor.execute("PRAGMA foreign_keys = ON")
                if not memory:
                    cursor.execute("PRAGMA journal_mode = WAL")  # first read: fails here if not a database
                    cursor.execute("PRAGMA synchronous = NORMAL")  # see the module docstring
                cursor.close()
            except Exception:
                # the pool does not close a connection whose connect hook failed; its worker thread
                # would outlive the event loop
                with contextlib.suppress(Exception):
                    dbapi_conn.close()
                raise
            # aiosqlite exposes create_function but not create_aggregate: run the registration on
            # the connection's own worker thread through its (internal, long-stable) _execute.
            driver = dbapi_conn.driver_connection
            await_(driver._execute(register_sqlite_functions, driver._conn))

        @event.listens_for(engine.sync_engine, "begin")
        def _on_begin(conn: Connection) -> None:
            options = conn.get_execution_options()
            mode = options.get("ta_begin", "DEFERRED")
            if mode == "IMMEDIATE" and not memory:  # SQLite refuses to change it inside a transaction
                sync = options.get("ta_sync", "NORMAL")
                if conn.info.get("ta_sync", "NORMAL") != sync:
                    conn.exec_driver_sql(f"PRAGMA synchronous = {sync}")
                    conn.info["ta_sync"] = sync
            conn.exec_driver_sql(f"BEGIN {mode}")

    @contextlib.asynccontextmanager
    async def _guard(self) -> AsyncIterator[None]:
        """Turn driver-level failures into the specific DatabaseErrors (never leaking a password)."""
        try:
            yield
        except DatabaseError:
            raise
        except Exception as exc:
            translated = self._translate(exc)
            if translated is None:
                raise
            raise translated from None

    def _where(self) -> str:
        if self.backend == "sqlite":
            return "SQLite database :memory:" if self._memory else f"SQLite database {self.url.database}"
        return f"PostgreSQL at {self.url.host or 'localhost'}:{self.url.port or 5432}"

    def _translate(self, exc: BaseException) -> DatabaseError | None:
        chain: list[BaseException] = []
        cur: BaseException | None = exc
        while cur is not None and len(chain) < 8:
            chain.append(cur)
            cur = getattr(cur, "orig", None) or cur.__cause__ or cur.__context__
        text = " | ".join(str(e) for e in chain).lower()
        if self.backend == "sqlite":
            if "file is not a database" in text or "file is encrypted" in text:
                return NotADatabaseError(str(self.url.database))
            if "unable to open database file" in text:
                return DatabaseUnavailableError(
                    f"cannot open {self._where()} (does the folder exist and is it writable?)"
                )
            for needle, what in _SQLITE_LOST.items():
                if needle in text:
                    return DatabaseUnavailableError(f"{self._where()} {what}")
            return None
        for err in chain:
            state = getattr(err, "sqlstate", None) or getattr(err, "pgcode", None)
            if isinstance(state, str) and state.startswith(_PG_UNAVAILABLE_STATES):
                return DatabaseUnavailableError(f"{self._where()} refused the connection: {self._reason(err)}")
            if isinstance(state, str) and state.startswith(_PG_NO_WRITES_STATES):
                return DatabaseUnavailableError(f"{self._where()} takes no writes: {self._reason(err)}")
            if isinstance(err, OSError | TimeoutError | asyncio.TimeoutError) or type(err).__name__ in (
                "ConnectionDoesNotExistError",
                "ConnectionFailureError",
                "InternalClientError",  # asyncpg's protocol broken mid-operation, e.g. the session ended under it
            ) or str(err) == "connection is closed":  # e.g. by the server: idle in a transaction too long
                return DatabaseUnavailableError(f"{self._where()} is unreachable ({self._reason(err)})")
        return None

    def _reason(self, err: BaseException) -> str:
        first = str(err).splitlines()[0] if str(err) else ""
        reason = f"{type(err).__name__}: {first}" if first else type(err).__name__
        return reason.replace(self.url.password, "***") if self.url.password else reason

    @contextlib.asynccontextmanager
    async def _read(self) -> AsyncIterator[AsyncSession]:
        async with self._guard():
            lock = self._write_lock if self._memory else None  # one shared connection: serialise all
            async with lock or contextlib.nullcontext(), self._reads() as session:
                yield session

    @contextlib.asynccontextmanager
    async def _write(self, durable: bool = False) -> AsyncIterator[AsyncSession]:
        """One write transaction; ``durable``: on disk when it commits (see the module docstring)."""
        sessions = self._durable_writes if durable else self._writes
        async with self._guard(), self._write_lock or contextlib.nullcontext():
            async with sessions() as session, session.begin():
                yield session

    # --- lease fencing (orchestrator/lease.py) ---------------------------------------------------

    def fence_writes(self, token_of: Callable[[str], str | None]) -> None:
        """From now on a write of a bot's rows commits only while the bot's lease row carries the
        token ``token_of(bot)`` gave when the write was made (None: no lease held, LeaseLapsed at once)."""
        self._token_of = token_of

    def _fence(self, bot: str) -> tuple[str, str] | None:
        """What a write of ``bot`` must find in its lease row: (bot, token); None when not fenced."""
        if self._token_of is None:
            return None
        token = self._token_of(bot)
        if token is None:
            raise LeaseLapsed(f"this desk holds no lease of {bot}: nothing written")
        return bot, token

    async def _check_fences(self, session: AsyncSession, fences: Iterable[tuple[str, str]]) -> None:
        """First in a write transaction: LeaseLapsed (so it all rolls back) unless every (bot, token)
        is still in the lease table. SQLite serialises writers, so nothing comes between this read and
        the commit; PostgreSQL locks the rows read (FOR SHARE, in name order as every lease write
        does: no deadlock), so a takeover, an UPDATE of the row, waits for the commit, and a write
        after a takeover reads the new token."""
        wanted = sorted(set(fences))
        if not wanted:
            return
        q = (select(BotLease.bot_name, BotLease.token).where(BotLease.bot_name.in_({b for b, _ in wanted}))
             .order_by(BotLease.bot_name).with_for_update(read=True))
        held = {(row.bot_name, row.token) for row in await session.execute(q)}
        lapsed = sorted({bot for bot, token in wanted if (bot, token) not in held})
        if lapsed:
            raise LeaseLapsed(f"this desk's lease of {', '.join(lapsed)} is gone (another desk took it over): "
                              "nothing written")

    @contextlib.asynccontextmanager
    async def _bot_write(self, bot: str) -> AsyncIterator[AsyncSession]:
        """A write transaction of ``bot``'s rows, fenced by its lease (``_check_fences``)."""
        fence = self._fence(bot)
        async with self._write() as session:
            if fence is not None:
                await self._check_fences(session, [fence])
            yield session

    # --- lifecycle and migrations -------------------------------------------------------------

    async def initialize(self) -> None:
        """Connect and bring the schema to the latest migration (fresh or existing database)."""
        await self.upgrade("head")
        self._open_keeper()

    async def close(self) -> None:
        self._close_keeper()
        await self._engine.dispose()

    # --- storage health (a deleted SQLite file) --------------------------------------------------

    def _file(self) -> Path | None:
        return None if self.backend != "sqlite" or self._memory else Path(str(self.url.database))

    def _open_keeper(self) -> None:
        path = self._file()
        if path is None or self._keeper is not None:
            return
        keeper = sqlite3.connect(path, check_same_thread=False)
        keeper.execute("SELECT count(*) FROM sqlite_master").fetchall()  # opens the file: it holds this inode
        self._keeper, self._inode = keeper, _inode(path)

    def _close_keeper(self) -> None:
        if self._keeper is not None:
            self._keeper.close()
            self._keeper = self._inode = None

    async def check_storage(self) -> None:
        """Raise DatabaseUnavailableError when the SQLite file at the path is not the one opened
        (deleted, or replaced): a cheap stat, run every second by the desk."""
        path = self._file()
        if path is not None and self._keeper is not None and _inode(path) != self._inode:
            raise DatabaseUnavailableError(f"{self._where()} was deleted or replaced while the desk ran")

    async def restore_storage(self) -> str | None:
        """Put a deleted (or replaced) SQLite file back at its path, copied from the keeper
        connection that still holds it, with every row written before; the path when it did. Raises
        DatabaseUnavailableError when the copy cannot be written (the desk tries again later)."""
        path = self._file()
        keeper = self._keeper
        if path is None or keeper is None or _inode(path) == self._inode:
            return None
        copy = path.with_name(path.name + ".restoring")
        async with self._write_lock or contextlib.nullcontext():
            try:
                await asyncio.to_thread(_copy_database, keeper, copy)
            except (OSError, sqlite3.Error) as exc:
                raise DatabaseUnavailableError(f"{self._where()} was deleted and could not be written back "
                                               f"({type(exc).__name__}: {exc})") from None
            await self._engine.dispose()  # the pooled connections hold the deleted file
            self._close_keeper()
            for stale in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):  # the deleted file's journal, or a stranger
                stale.unlink(missing_ok=True)
            os.replace(copy, path)
            self._open_keeper()
        return str(path)

    async def __aenter__(self) -> Self:
        await self.initialize()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @staticmethod
    def _alembic_config() -> Config:
        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
        return cfg

    @classmethod
    def head_revision(cls) -> str:
        head = ScriptDirectory.from_config(cls._alembic_config()).get_current_head()
        assert head is not None
        return head

    async def upgrade(self, revision: str = "head") -> None:
        """Apply migrations up to `revision` (e.g. "0001", "head") in one transaction."""
        cfg = self._alembic_config()

        def _run(sync_conn: Connection) -> None:
            cfg.attributes["connection"] = sync_conn
            try:
                command.upgrade(cfg, revision)
            except CommandError as exc:  # e.g. a schema revision written by a newer TraderAgent
                raise DatabaseError(f"{self._where()}: {exc} (a newer TraderAgent's schema? run that version, "
                                    "or point DATABASE_URL at another database)") from None

        async with self._guard(), self._write_lock or contextlib.nullcontext():
            async with self._write_engine.begin() as conn:
                if self.backend == "postgresql":
                    # desks starting together on a fresh database (a fleet's workers) migrate one after the
                    # other, the later ones finding it at head: two would both create alembic_version
                    await conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({PG_MIGRATION_LOCK})")
                if self.schema:
                    await conn.exec_driver_sql(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')
                await conn.run_sync(_run)

    async def current_revision(self) -> str | None:
        def _current(sync_conn: Connection) -> str | None:
            return MigrationContext.configure(sync_conn).get_current_revision()

        async with self._guard(), self._engine.connect() as conn:
            return await conn.run_sync(_current)

    # --- bots by name ----------------------------------------------------------------------------

    @staticmethod
    def _bot_id_subquery(name: str) -> Any:
        return select(BotModel.id).where(BotModel.name == name).scalar_subquery()

    async def _bot(self, session: AsyncSession, name: str) -> BotModel:
        bot = (await session.execute(select(BotModel).where(BotModel.name == name))).scalar_one_or_none()
        if bot is None:
            raise BotNotFoundError(name)
        return bot

    async def _bot_id(self, name: str) -> int:
        """A bot's id, cached (an id never changes; bots are not deleted). Concurrent first
        lookups share one query, so their callers resume, and queue their writes, in call order."""
        bot_id = self._bot_ids.get(name)
        if bot_id is not None:
            return bot_id
        lookup = self._bot_id_lookups.get(name)
        if lookup is None:
            lookup = self._bot_id_lookups[name] = asyncio.ensure_future(self._lookup_bot_id(name))
            lookup.add_done_callback(lambda _: self._bot_id_lookups.pop(name, None))
        return await asyncio.shield(lookup)

    async def _lookup_bot_id(self, name: str) -> int:
        async with self._read() as session:
            bot_id = (await self._bot(session, name)).id
        self._bot_ids[name] = bot_id
        return bot_id

    def _upsert(self, table: Any) -> Any:
        return (pg_insert if self.backend == "postgresql" else sqlite_insert)(table)


def _inode(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return st.st_dev, st.st_ino


def _copy_database(source: sqlite3.Connection, target: Path) -> None:
    """A consistent copy of ``source``'s database (its journal included) as one plain file."""
    target.unlink(missing_ok=True)
    out = sqlite3.connect(target)
    try:
        source.backup(out)
        out.execute("PRAGMA journal_mode = DELETE")  # all in the file: nothing left in a -wal beside it
    finally:
        out.close()
