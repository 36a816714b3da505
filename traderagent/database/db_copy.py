"""`traderagent db copy`: move an installation to another database (SQLite -> PostgreSQL, or any
supported URL to another) without losing history.

- The source is only read, in one snapshot transaction, and must be at the head revision: copying
  never changes it (an older source is refused with the `traderagent db upgrade` line to run first).
- The target is migrated to head, then must hold no rows (``force``: its rows are deleted first,
  never merged), and is written in ONE transaction: a failed copy leaves it as it was.
- Tables come from the models' metadata in dependency order (parents first), so a table added
  later is copied with no change here. Rows pass through the column types: Decimals stay exact,
  times aware UTC, and credentials stay Fernet ciphertext (never decrypted; no master key needed).
- PostgreSQL sequences are moved past the copied ids; each table's row count is then checked
  against the source's.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import JSON, Table, delete, func, insert, null, select, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection

from traderagent.database.engine import Store
from traderagent.database.exceptions import DatabaseError
from traderagent.database.models import Base
from traderagent.results import CopyReport


class CopyRefused(DatabaseError):
    """The copy cannot start (or was undone): the message says why and what to do."""


def tables() -> list[Table]:
    """Every table of the models, parents before the tables that refer to them."""
    return list(Base.metadata.sorted_tables)


async def copy_database(source: Store, target: Store, *, force: bool = False,
                        batch_size: int = 1000) -> CopyReport:
    """Copy every row of `source` into `target` (see the module docstring); CopyRefused or
    another DatabaseError (one line, no password) when it cannot."""
    if (source.url, source.schema) == (target.url, target.schema):
        raise CopyRefused("source and target are the same database")
    revision = await _source_revision(source)
    await target.upgrade("head")
    async with _snapshot(source) as reader, _writing(target) as writer:
        await _make_room(writer, force)
        counts = {table.name: await _copy_table(reader, writer, table, batch_size) for table in tables()}
        if target.backend == "postgresql":
            await _reset_sequences(writer)
        await _verify(reader, writer, counts)
    return CopyReport(revision, counts)


def _missing_file(store: Store) -> bool:
    return store.backend == "sqlite" and not Path(str(store.url.database)).is_file()


async def _source_revision(source: Store) -> str:
    if _missing_file(source):  # opening it would create an empty one
        raise CopyRefused(f"source SQLite database {source.url.database} does not exist")
    current, head = await source.current_revision(), source.head_revision()
    if current is None:
        raise CopyRefused("the source holds no TraderAgent schema (no migration revision)")
    if current != head:
        raise CopyRefused(f"the source is at revision {current}, this TraderAgent's is {head}: run "
                          "`traderagent db upgrade --url SOURCE` first (copying never changes the source)")
    return current


@contextlib.asynccontextmanager
async def _snapshot(store: Store) -> AsyncIterator[AsyncConnection]:
    """One read transaction: every table is read from the same moment of the source."""
    engine = store._engine
    if store.backend == "postgresql":
        engine = engine.execution_options(isolation_level="REPEATABLE READ")
    async with store._guard(), engine.connect() as conn, conn.begin():
        yield conn


@contextlib.asynccontextmanager
async def _writing(store: Store) -> AsyncIterator[AsyncConnection]:
    async with store._guard(), store._write_lock or contextlib.nullcontext():
        async with store._write_engine.begin() as conn:
            yield conn


async def _count(conn: AsyncConnection, table: Table) -> int:
    return int((await conn.execute(select(func.count()).select_from(table))).scalar_one())


async def _make_room(writer: AsyncConnection, force: bool) -> None:
    if force:
        for table in reversed(tables()):
            await writer.execute(delete(table))
        return
    held = [f"{table.name}: {n}" for table in tables() if (n := await _count(writer, table))]
    if held:
        raise CopyRefused(f"the target already holds rows ({', '.join(held)}); point it at an empty "
                          "database, or pass --force to replace its contents")


async def _copy_table(reader: AsyncConnection, writer: AsyncConnection, table: Table, batch_size: int) -> int:
    json_columns = [column.key for column in table.columns if isinstance(column.type, JSON)]
    copied = 0
    try:
        result = await reader.stream(select(table).order_by(*table.primary_key.columns))
        async for rows in result.partitions(batch_size):
            await writer.execute(insert(table), [_params(row._asdict(), json_columns) for row in rows])
            copied += len(rows)
    except SQLAlchemyError as exc:  # one line: the table and the driver's first line, never the SQL or rows
        cause = getattr(exc, "orig", None) or exc
        reason = str(cause).strip().splitlines()[0][:160] if str(cause).strip() else type(cause).__name__
        raise CopyRefused(f"copying table {table.name} failed ({reason}); the target was left unchanged") from None
    return copied


def _params(row: dict[str, Any], json_columns: Sequence[str]) -> dict[str, Any]:
    # A JSON column's None is SQL NULL in the source: keep it NULL, not the JSON text 'null'.
    for key in json_columns:
        if row[key] is None:
            row[key] = null()
    return row


async def _reset_sequences(writer: AsyncConnection) -> None:
    """Rows were inserted with their ids: move each id sequence past the largest one."""
    for table in tables():
        column = table.autoincrement_column
        if column is None:
            continue
        await writer.execute(
            text(f'SELECT setval(pg_get_serial_sequence(:table, :column), COALESCE(MAX("{column.name}"), 0) + 1, '
                 f'false) FROM "{table.name}"'),
            {"table": f'"{table.name}"', "column": column.name},
        )


async def _verify(reader: AsyncConnection, writer: AsyncConnection, copied: dict[str, int]) -> None:
    for table in tables():
        source, target = await _count(reader, table), await _count(writer, table)
        if not source == target == copied[table.name]:
            raise CopyRefused(f"row counts differ for {table.name} (source {source}, copied {copied[table.name]}, "
                              f"target {target}); the target was left unchanged")


__all__ = ["CopyRefused", "CopyReport", "copy_database", "tables"]
