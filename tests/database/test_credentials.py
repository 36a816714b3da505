"""Credentials are encrypted at rest; key problems give MasterKeyError naming TRADERAGENT_MASTER_KEY."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import text

from traderagent.commands.db import main_keygen
from traderagent.database.crypto import generate_key
from traderagent.database.exceptions import MasterKeyError
from traderagent.database.manager import DatabaseManager
from traderagent.database.models import Credential

API_KEY = "AbCdEfGhIjKlMnOp12"  # audit: allow (test fixture)
API_SECRET = "sEcReT-9f8e7d6c5b4a3210-zz"  # audit: allow (test fixture)


async def test_round_trip_and_ciphertext_only(db: DatabaseManager) -> None:
    await db.save_credentials("bybit-demo", API_KEY, API_SECRET, testnet=True)
    assert await db.load_credentials("bybit-demo") == (API_KEY, API_SECRET, True)
    await db.save_credentials("bybit-demo", API_KEY + "2", API_SECRET + "2", testnet=False)  # replace
    assert await db.load_credentials("bybit-demo") == (API_KEY + "2", API_SECRET + "2", False)
    assert await db.load_credentials("missing") is None
    assert await db.list_credentials() == ["bybit-demo"]

    async with db._engine.connect() as conn:  # the raw row, as anyone with the file would see it
        rows = (await conn.execute(text("SELECT * FROM credentials"))).all()
    raw = repr(rows)
    assert API_SECRET not in raw and API_KEY not in raw and "sEcReT" not in raw
    assert rows[0].api_secret_encrypted.startswith("gAAAA")  # a Fernet token
    assert await db.delete_credentials("bybit-demo") is True
    assert await db.load_credentials("bybit-demo") is None


async def test_repr_masks_secrets(db: DatabaseManager) -> None:
    cred = Credential(name="x", api_key_encrypted="gAAAAkey", api_secret_encrypted="gAAAAsecret", testnet=False)
    assert "gAAAA" not in repr(cred) and "***" in repr(cred)
    assert db._cipher is not None and "key hidden" in repr(db._cipher)


async def test_wrong_key(db: DatabaseManager, make_db: Callable[..., DatabaseManager]) -> None:
    await db.save_credentials("main", API_KEY, API_SECRET)
    other_key = generate_key()
    wrong = make_db(master_key=other_key)
    with pytest.raises(MasterKeyError, match="TRADERAGENT_MASTER_KEY") as info:
        await wrong.load_credentials("main")
    message = str(info.value)
    assert "main" in message and API_SECRET not in message and other_key not in message
    assert info.value.__cause__ is None and info.value.__suppress_context__


async def test_missing_key(db: DatabaseManager, make_db: Callable[..., DatabaseManager]) -> None:
    await db.save_credentials("main", API_KEY, API_SECRET)
    keyless = make_db(master_key=None)
    await keyless.create_bot("b", "grid", "BTCUSDT", "linear", {}, 1)  # everything else works without a key
    with pytest.raises(MasterKeyError, match="TRADERAGENT_MASTER_KEY is not set"):
        await keyless.load_credentials("main")
    with pytest.raises(MasterKeyError, match="TRADERAGENT_MASTER_KEY"):
        await keyless.save_credentials("x", "k", "s")


async def test_malformed_key(make_db: Callable[..., DatabaseManager]) -> None:
    with pytest.raises(MasterKeyError, match="TRADERAGENT_MASTER_KEY is not a valid key") as info:
        make_db(master_key="not-a-fernet-key-but-a-password")
    assert "not-a-fernet-key-but-a-password" not in str(info.value)


async def test_secret_object_accepted(make_db: Callable[..., DatabaseManager]) -> None:
    from traderagent.config import Secret

    db = make_db(master_key=Secret(generate_key()))
    await db.initialize()
    await db.create_bot("b", "grid", "BTCUSDT", "linear", {}, 1)
    await db.save_credentials("main", API_KEY, API_SECRET)
    assert await db.load_credentials("main") == (API_KEY, API_SECRET, False)


def test_keygen_prints_a_usable_key(capsys: pytest.CaptureFixture[str]) -> None:
    assert main_keygen(argparse.Namespace()) == 0
    out, err = capsys.readouterr()
    key = out.strip()
    Fernet(key.encode())  # valid
    assert "TRADERAGENT_MASTER_KEY" in err
    assert main_keygen(argparse.Namespace()) == 0
    assert capsys.readouterr().out.strip() != key


async def test_secret_absent_from_sql_logs(make_db: Callable[..., DatabaseManager],
                                           caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.INFO, logger="sqlalchemy.engine")  # logs every statement with its parameters
    db = make_db()
    await db.initialize()
    await db.save_credentials("main", API_KEY, API_SECRET)
    assert await db.load_credentials("main") == (API_KEY, API_SECRET, False)
    assert "INSERT INTO credentials" in caplog.text  # the statements were logged...
    assert API_SECRET not in caplog.text and API_KEY not in caplog.text  # ...with ciphertext only
