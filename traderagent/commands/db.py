"""`traderagent db` (upgrade, current, copy), `keygen` and `credentials`, and the start-up read of exchange keys stored in the database.

Exchange keys stored with ``traderagent credentials set demo|live`` are encrypted under
``TRADERAGENT_MASTER_KEY`` (Fernet, see database/crypto.py). The key and secret are read from a prompt
(or from stdin, one per line, when stdin is not a terminal), never from the command line, where they
would stay in the shell history and the process list. ``list`` shows names and a masked key only.
Demo and live mode use the stored keys of their mode when the environment has no ``BYBIT_API_KEY``.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
from collections.abc import Callable, Coroutine
from typing import Any

from sqlalchemy.exc import ArgumentError

from traderagent.config import Settings, SettingsError
from traderagent.database.crypto import ENV_NAME, generate_key
from traderagent.database.db_copy import copy_database
from traderagent.database.engine import Store
from traderagent.database.exceptions import DatabaseError
from traderagent.database.manager import DatabaseManager


class _Refused(Exception):
    """A user error; the message is printed as one line."""


def _run(work: Callable[[], Coroutine[Any, Any, str]], failure: int = 1) -> int:
    try:
        print(asyncio.run(work()))
    except (_Refused, SettingsError, DatabaseError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return failure
    return 0


def _open(url: str, master_key: Any = None) -> DatabaseManager:
    return DatabaseManager(url, master_key=master_key or None)


# --- `traderagent db upgrade|current` ------------------------------------------------------------------


async def _db_command(action: str, url: str) -> str:
    db = _open(url)
    where = _shown(db)
    try:
        if action == "upgrade":
            before = await db.current_revision()
            await db.upgrade("head")
            after = await db.current_revision()
            if before == after:
                return f"{where}: already at revision {after} (head)"
            return f"{where}: upgraded {before or '<empty>'} -> {after} (head)"
        current = await db.current_revision()
        head = db.head_revision()
        note = "(head)" if current == head else f"(head is {head}; run `traderagent db upgrade`)"
        return f"{where}: revision {current or '<none>'} {note}"
    finally:
        await db.close()


def main_db(args: argparse.Namespace) -> int:
    if args.action == "copy":
        return _run(lambda: _copy(args), failure=2)

    async def work() -> str:
        return await _db_command(args.action, args.url or Settings.load().database_url)

    return _run(work)


# --- `traderagent db copy --from URL --to URL [--force]` -------------------------------------------------


def _store(url: str, option: str) -> Store:
    try:
        return Store(url)
    except ArgumentError:  # its message quotes the URL, password included
        raise _Refused(f"{option} is not a database URL (sqlite+aiosqlite:///file.db or "
                       "postgresql+asyncpg://user@host:port/dbname)") from None


async def _copy(args: argparse.Namespace) -> str:
    if not args.target:
        raise _Refused("db copy needs --to URL (the database to fill)")
    source = _store(args.source or Settings.load().database_url, "--from")
    target = _store(args.target, "--to")
    try:
        report = await copy_database(source, target, force=args.force)
    finally:
        await source.close()
        await target.close()
    width = max(map(len, report.counts))
    lines = [f"copied {_shown(source)} -> {_shown(target)} (revision {report.revision})"]
    lines += [f"  {name:<{width}}  {count:>9}" for name, count in report.counts.items()]
    lines.append(f"{sum(report.counts.values())} rows in {len(report.counts)} tables; counts equal in both databases")
    return "\n".join(lines)


def _shown(store: Store) -> str:
    return store.url.render_as_string(hide_password=True)


# --- `traderagent keygen` ------------------------------------------------------------------------------


def main_keygen(args: argparse.Namespace) -> int:
    """Print a new master key (stdout) and how to use it (stderr)."""
    print(generate_key())
    print(f"# set it as {ENV_NAME} (in .env); keep it secret and backed up:", file=sys.stderr)
    print("# credentials saved under one key cannot be read with another.", file=sys.stderr)
    return 0


# --- `traderagent credentials set|list|delete` ---------------------------------------------------------


def _read_secret(what: str) -> str:
    if sys.stdin.isatty():
        value = getpass.getpass(f"{what}: ")
    else:
        value = sys.stdin.readline()
    value = value.strip()
    if not value:
        raise _Refused(f"no {what} given (type it at the prompt, or pipe it on its own line)")
    return value


def _masked(api_key: str) -> str:
    return api_key[:4] + "…" if len(api_key) > 8 else "…"


async def _credentials(args: argparse.Namespace) -> str:
    settings = Settings.load()
    if args.action == "set":  # read before opening the database: a refused input touches nothing
        api_key, api_secret = _read_secret("API key"), _read_secret("API secret")
    db = _open(settings.database_url, settings.master_key)
    try:
        await db.initialize()
        if args.action == "set":
            await db.save_credentials(args.name, api_key, api_secret, testnet=args.name == "demo")
            return f"stored the {args.name} keys (API key {_masked(api_key)}), encrypted under {ENV_NAME}"
        if args.action == "delete":
            if not await db.delete_credentials(args.name):
                raise _Refused(f"no stored keys named {args.name!r}")
            return f"deleted the {args.name} keys"
        lines = []
        for name in await db.list_credentials():
            stored = await db.load_credentials(name)
            assert stored is not None  # listed a moment ago; nothing else deletes
            lines.append(f"{name}: API key {_masked(stored[0])}, secret stored")
        return "\n".join(lines) or "no stored keys"
    finally:
        await db.close()


def main_credentials(args: argparse.Namespace) -> int:
    return _run(lambda: _credentials(args))
