"""`traderagent db copy`: a SQLite installation filled through the real repositories is copied to
another database (SQLite, and PostgreSQL in a schema of its own: the `target` fixture) and read back
through the repositories, equal; a non-empty target, an old source and bad URLs are refused."""

from __future__ import annotations

import asyncio
import datetime as dt
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from tests.database.conftest import MASTER_KEY, Target
from traderagent.cli import main
from traderagent.database.db_copy import CopyRefused, copy_database, tables
from traderagent.database.manager import DatabaseManager

UTC = dt.UTC
OPENED = dt.datetime(2026, 3, 1, 12, 30, 15, 123456, tzinfo=UTC)


async def _fill(db: DatabaseManager) -> None:
    """One row or more in every table, written the way the desk writes them."""
    await db.save_credentials("live", "LIVE-KEY-123456", "LIVE-SECRET-abcdef")
    await db.save_credentials("demo", "DEMO-KEY-123456", "DEMO-SECRET-abcdef", testnet=True)
    await db.create_bot("grid-btc", "grid", "BTCUSDT", "linear", {"levels": 3, "lower": Decimal("0.00000001")},
                        "1000.50")
    await db.create_bot("dca-eth", "dca", "ETHUSDT", "spot", {}, 250, state="RUNNING")
    [trade_id] = await db.save_bot_progress(
        "grid-btc",
        new_orders=[{"client_order_id": "ta-1", "symbol": "BTCUSDT", "side": "Buy", "order_type": "Limit",
                     "qty": "0.001", "price": "60000.10", "status": "OPEN", "exchange_order_id": "x-1"},
                    {"client_order_id": "ta-2", "symbol": "BTCUSDT", "side": "Sell", "order_type": "Market",
                     "qty": "0.00100000", "status": "FILLED", "filled_qty": "0.001", "avg_price": "61000.5",
                     "fee": "0.0335500", "reduce_only": True, "tag": "tp"}],
        runtime={"cycle": 2, "avg": Decimal("60123.456789")},
        grid=[{"index": 0, "price": "59000", "side": "Buy", "qty": "0.001", "status": "OPEN",
               "client_order_id": "ta-1"},
              {"index": 1, "price": "61000.5", "side": "Sell"}],
        new_trades=[{"symbol": "BTCUSDT", "side": "long", "qty": "0.001", "entry_price": "60000.10",
                     "opened_at": OPENED}])
    await db.save_bot_progress("grid-btc", trade_closes=[(trade_id, {"exit_price": "61000.5", "pnl": "0.9671",
                                                                     "fees": "0.0335500"})])
    await db.record_trade("dca-eth", "ETHUSDT", "long", "0.5", "3000", "3100.25", "50.125", fees="0.1",
                          opened_at=OPENED, closed_at=OPENED + dt.timedelta(hours=5), tag="funding:x")
    await db.add_logs([("grid-btc", "INFO", "placed ta-1", {"price": Decimal("60000.10")}),
                       (None, "WARNING", "system line", None)])
    await db.save_capital_state({"phase": "phase_1_5pct", "equity": Decimal("10000.00")})
    await db.record_approval("approve", "phase_1_5pct", "phase_2_10pct", 42, {"equity": "12000"})
    await db.add_audit(user_id=42, user_name="ops", chat_id=-100123, role="admin", action="/stop",
                       args="grid-btc", outcome="ok")
    await db.add_outbox([{"chat_id": -100123, "kind": "ORDER_FILLED", "bot_name": "grid-btc",
                          "text": "<b>filled</b>", "line": "filled", "created_at": OPENED}])
    await db.save_verbosity("bot:grid-btc", "quiet")


def _plain(row: Any) -> dict[str, Any]:
    """A model's columns (and bot name); Decimals as text, so a changed scale shows."""
    fields = {c.key: getattr(row, c.key) for c in row.__table__.columns}
    if hasattr(row, "bot_name"):
        fields["bot_name"] = row.bot_name
    return {k: str(v) if isinstance(v, Decimal) else v for k, v in fields.items()}


async def _read_back(db: DatabaseManager) -> dict[str, Any]:
    """Everything the desk reads, through the repositories."""
    return {
        "credentials": [await db.load_credentials(name) for name in await db.list_credentials()],
        "bots": [_plain(b) for b in await db.list_bots()],
        "orders": [_plain(o) for o in await db.list_orders(limit=1000)],
        "trades": [_plain(t) for t in await db.list_trades(limit=1000)],
        "grid": [_plain(g) for g in await db.get_grid_levels("grid-btc")],
        "runtime": await db.load_bot_runtime("grid-btc"),
        "logs": [_plain(line) for line in await db.get_logs(None, limit=1000)],
        "capital": await db.load_capital_state(),
        "approvals": [_plain(a) for a in await db.list_approvals()],
        "audit": [_plain(a) for a in await db.list_audit()],
        "outbox": [_plain(o) for o in await db.pending_outbox([-100123])],
        "verbosity": await db.load_verbosity(),
        "pnl": (await db.realized_pnl(), await db.daily_pnl(days=400)),
    }


async def _raw(db: DatabaseManager) -> dict[str, list[tuple[Any, ...]]]:
    """Every table's rows as stored (ids and credential ciphertext included)."""
    async with db._read() as session:
        return {t.name: [tuple(r) for r in await session.execute(select(t).order_by(*t.primary_key.columns))]
                for t in tables()}


@pytest.fixture
async def source(tmp_path: Path) -> Any:
    db = DatabaseManager(f"sqlite+aiosqlite:///{tmp_path / 'source.db'}", master_key=MASTER_KEY)
    await db.initialize()
    await _fill(db)
    yield db
    await db.close()


@pytest.fixture
async def copied(target: Target) -> Any:
    db = target.manager(master_key=MASTER_KEY)
    yield db
    await db.close()


async def test_every_row_is_copied_and_reads_back_equal(source: DatabaseManager, copied: DatabaseManager) -> None:
    report = await copy_database(source, copied)

    assert list(report.counts) == [t.name for t in tables()]
    assert report.counts["orders"] == 2 and report.counts["credentials"] == 2 and report.counts["bot_logs"] == 2
    assert await _raw(copied) == await _raw(source)  # same ids, same ciphertext
    assert await _read_back(copied) == await _read_back(source)
    # the ids continue after the copied ones (PostgreSQL sequences were moved)
    await copied.create_bot("trend-sol", "trend_follower", "SOLUSDT", "linear", {}, 100)
    assert (await copied.get_bot("trend-sol")).id == 3  # type: ignore[union-attr]
    await copied.add_outbox([{"chat_id": 1, "kind": "K", "bot_name": "b", "text": "t", "line": "l"}])


async def test_a_round_trip_through_the_target_in_small_batches_changes_nothing(
        source: DatabaseManager, copied: DatabaseManager, tmp_path: Path) -> None:
    back = DatabaseManager(f"sqlite+aiosqlite:///{tmp_path / 'back.db'}", master_key=MASTER_KEY)
    try:
        await copy_database(source, copied, batch_size=1)
        await copy_database(copied, back, batch_size=1)  # PostgreSQL -> SQLite too
        assert await _raw(back) == await _raw(source)
        assert await _read_back(back) == await _read_back(source)
    finally:
        await back.close()


@pytest.mark.parametrize("target", ["postgresql"], indirect=True)
async def test_a_row_the_target_rejects_undoes_the_whole_copy(source: DatabaseManager,
                                                               copied: DatabaseManager) -> None:
    await copied.initialize()
    await copied.create_bot("mine", "dca", "ETHUSDT", "spot", {}, 1)
    await source.add_log("x" * 65, "INFO", "SQLite keeps a name longer than its column; PostgreSQL does not")

    with pytest.raises(CopyRefused, match=r"copying table bot_logs failed \(.*too long.*left unchanged"):
        await copy_database(source, copied, force=True)
    assert [b.name for b in await copied.list_bots()] == ["mine"]  # the deletion of --force was undone too
    assert await copied.list_orders() == []


async def test_credentials_are_copied_without_the_master_key(source: DatabaseManager, target: Target) -> None:
    keyless = target.manager()  # no master key: the ciphertext is copied as it is
    try:
        await copy_database(source, keyless)
    finally:
        await keyless.close()
    reader = target.manager(master_key=MASTER_KEY)
    try:
        assert await reader.load_credentials("live") == ("LIVE-KEY-123456", "LIVE-SECRET-abcdef", False)
    finally:
        await reader.close()


async def test_a_non_empty_target_is_refused_and_force_replaces_it(source: DatabaseManager,
                                                                   copied: DatabaseManager) -> None:
    await copied.initialize()
    await copied.create_bot("mine", "dca", "ETHUSDT", "spot", {}, 1)

    with pytest.raises(CopyRefused, match=r"already holds rows \(bots: 1\).*--force"):
        await copy_database(source, copied)
    assert [b.name for b in await copied.list_bots()] == ["mine"]  # nothing merged

    await copy_database(source, copied, force=True)
    assert await _raw(copied) == await _raw(source)


async def test_a_source_behind_head_is_refused_and_left_alone(tmp_path: Path, copied: DatabaseManager) -> None:
    old = DatabaseManager(f"sqlite+aiosqlite:///{tmp_path / 'old.db'}")
    try:
        await old.upgrade("0002")
        with pytest.raises(CopyRefused, match=r"revision 0002.*traderagent db upgrade"):
            await copy_database(old, copied)
        assert await old.current_revision() == "0002"
    finally:
        await old.close()


# --- the command line ----------------------------------------------------------------------------------


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["db", "copy", *args])
    out, err = capsys.readouterr()
    return code, out, err


def _sqlite_file(path: Path, *, filled: bool) -> str:
    """A SQLite database at head (filled or empty), closed: the command opens it itself."""
    url = f"sqlite:///{path}"

    async def make() -> None:
        async with DatabaseManager(url, master_key=MASTER_KEY) as db:
            if filled:
                await _fill(db)

    asyncio.run(make())
    return url


def test_cli_copies_and_prints_the_counts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = _sqlite_file(tmp_path / "source.db", filled=True)
    code, out, err = _cli(capsys, "--from", source, "--to", f"sqlite:///{tmp_path / 'new.db'}")
    assert (code, err) == (0, "")
    assert "new.db (revision " in out.splitlines()[0]
    assert any(line.split() == ["orders", "2"] for line in out.splitlines())
    assert "counts equal in both databases" in out

    code, out, err = _cli(capsys, "--from", source, "--to", f"sqlite:///{tmp_path / 'new.db'}")
    assert (code, out) == (2, "") and err.count("\n") == 1 and "--force" in err


@pytest.mark.parametrize(("args", "says"), [
    (["--from", "sqlite:///{tmp}/none.db", "--to", "sqlite:///{tmp}/b.db"], "none.db does not exist"),
    (["--from", "sqlite:///{tmp}/a.db"], "needs --to"),
    (["--from", "sqlite:///{tmp}/a.db", "--to", "not a url :s3cret@"], "--to is not a database URL"),
    (["--from", "sqlite:///{tmp}/a.db", "--to", "mysql://u:s3cret@h/db"], "unsupported database URL"),  # audit: allow (a fake password)
    (["--from", "sqlite:///{tmp}/a.db", "--to", "postgresql://u:s3cret@127.0.0.1:1/db"], "unreachable"),  # audit: allow (a fake password)
])
def test_cli_errors_are_one_line_without_the_password(args: list[str], says: str, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    _sqlite_file(tmp_path / "a.db", filled=False)
    code, out, err = _cli(capsys, *(a.format(tmp=tmp_path) for a in args))
    assert (code, out) == (2, "")
    assert err.startswith("error: ") and err.count("\n") == 1 and says in err
    assert "s3cret" not in err
