"""Start-up failures an operator can fix: exit code 2 and one line naming what to fix, no traceback
(the traceback only at LOG_LEVEL=debug)."""

from __future__ import annotations

import socket
import sqlite3
import subprocess
from pathlib import Path

import pytest

from tests import forkserver

from .desk_procs import BOTS_TOML, GITIGNORE, PY, desk_env


def _run(tmp: Path, *args: str, **extra: str) -> subprocess.CompletedProcess:
    env = desk_env("", tmp / "desk.db", tmp / "none.toml", LOG_LEVEL="info")
    for key in ("BYBIT_BASE_URL", "BYBIT_API_KEY", "BYBIT_API_SECRET"):
        env.pop(key)
    env.update(extra)
    (tmp / ".gitignore").write_text(GITIGNORE)
    return forkserver.run([PY, "-m", "traderagent", *args], env=env, cwd=tmp, capture_output=True, text=True,
                          timeout=120)


def _one_line(out: subprocess.CompletedProcess) -> str:
    """The failure's single line; every other stderr line must be a log record below ERROR."""
    assert out.returncode == 2, out.stderr[-3000:]
    assert "Traceback" not in out.stderr, out.stderr[-3000:]
    records = [line for line in out.stderr.splitlines() if line[:4].isdigit()]  # "2026-... LEVEL name: ..."
    assert not [r for r in records if " ERROR " in r or " CRITICAL " in r], records
    (line,) = [line for line in out.stderr.splitlines() if line and line not in records]
    return line


def _busy_port() -> socket.socket:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen()
    return s


def _newer_schema(tmp: Path) -> str:
    with sqlite3.connect(tmp / "newer.db") as con:
        con.execute("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL PRIMARY KEY)")
        con.execute("INSERT INTO alembic_version VALUES ('9999_from_the_future')")
    return f"sqlite+aiosqlite:///{tmp / 'newer.db'}"


CASES = {
    "garbage url": ({"DATABASE_URL": "garbage"}, "DATABASE_URL"),
    "mysql url": ({"DATABASE_URL": "mysql://u:pw@db.example/x"}, "DATABASE_URL"),
    "postgres down": ({"DATABASE_URL": "postgresql+asyncpg://u:pw@127.0.0.1:9/x"}, "DATABASE_URL"),
    "text file": ({"DATABASE_URL": "sqlite+aiosqlite:///notes.txt"}, "DATABASE_URL"),
    "missing folder": ({"DATABASE_URL": "sqlite+aiosqlite:///no/such/folder/x.db"}, "DATABASE_URL"),
    "paper port": ({"TRADERAGENT_PAPER_PORT": "99999"}, "TRADERAGENT_PAPER_PORT"),
    "master key": ({"TRADERAGENT_MASTER_KEY": "notakey"}, "TRADERAGENT_MASTER_KEY"),
    "negative balance": ({"TRADERAGENT_PAPER_BALANCE": "-1"}, "TRADERAGENT_PAPER_BALANCE"),
    "zero balance": ({"TRADERAGENT_PAPER_BALANCE": "0"}, "TRADERAGENT_PAPER_BALANCE"),
    "lease timeout": ({"TRADERAGENT_LEASE_TIMEOUT": "15"}, "TRADERAGENT_LEASE_TIMEOUT"),
    "lease heartbeat": ({"TRADERAGENT_LEASE_HEARTBEAT": "0"}, "TRADERAGENT_LEASE_HEARTBEAT"),
}


@pytest.mark.parametrize("case", CASES)
def test_a_bad_setting_gives_one_line_naming_it(tmp_path, case):
    settings, variable = CASES[case]
    (tmp_path / "notes.txt").write_text("not a database\n")
    line = _one_line(_run(tmp_path, "run", "--ticks", "1", **settings))
    assert line.startswith("traderagent: ") and variable in line, line
    assert "pw" not in line  # a database password never shows


def test_unknown_schema_revision(tmp_path):
    line = _one_line(_run(tmp_path, "run", "--ticks", "1", DATABASE_URL=_newer_schema(tmp_path)))
    assert "9999_from_the_future" in line and "DATABASE_URL" in line


def test_paper_port_in_use(tmp_path):
    with _busy_port() as busy:
        port = busy.getsockname()[1]
        line = _one_line(_run(tmp_path, "run", "--ticks", "1", TRADERAGENT_PAPER_PORT=str(port)))
    assert f"TRADERAGENT_PAPER_PORT={port}" in line and "free port" in line


def test_unreachable_exchange_names_the_address(tmp_path):
    (tmp_path / "bots.toml").write_text(BOTS_TOML.format(tick=5))
    line = _one_line(_run(tmp_path, "run", "--ticks", "1", TRADERAGENT_MODE="demo", BYBIT_API_KEY="k" * 18,
                          BYBIT_API_SECRET="s" * 18, BYBIT_BASE_URL="http://127.0.0.1:9",
                          TRADERAGENT_BOTS_FILE=str(tmp_path / "bots.toml")))
    assert "http://127.0.0.1:9" in line and "BYBIT_BASE_URL" in line


@pytest.mark.parametrize("port", ["99999", "busy"])
def test_sim_port_refused_in_one_line(tmp_path, port):
    with _busy_port() as busy:
        port = str(busy.getsockname()[1]) if port == "busy" else port
        line = _one_line(_run(tmp_path, "sim", "--port", port))
    assert f"127.0.0.1:{port}" in line and "--port" in line


def test_the_traceback_is_there_at_debug_level(tmp_path):
    out = _run(tmp_path, "run", "--ticks", "1", DATABASE_URL=_newer_schema(tmp_path), LOG_LEVEL="debug")
    assert out.returncode == 2
    assert "Traceback" in out.stderr and out.stderr.rstrip().splitlines()[-1].startswith("traderagent: ")


def _grid(name: str, symbol: str, share: str, **params: str) -> str:
    extra = "".join(f"{k} = {v}\n" for k, v in params.items())
    return (f'[[bots]]\nname = "{name}"\nstrategy = "grid"\nsymbol = "{symbol}"\ntimeframe = "1m"\nshare = "{share}"\n'
            f'[bots.params]\nnum_levels = 9\nrange_pct = "0.015"\n{extra}\n')


def test_a_bot_that_cannot_trade_its_symbol_is_refused_at_start(tmp_path):
    bots = tmp_path / "bots.toml"
    bots.write_text(_grid("btc-tiny", "BTCUSDT", "0.001") + _grid("xrp-dust", "XRPUSDT", "0.3", qty_per_level='"1"')
                    + _grid("xrp-grid", "XRPUSDT", "0.3"))
    out = _run(tmp_path, "run", "--ticks", "1", TRADERAGENT_BOTS_FILE=str(bots))
    assert out.returncode == 0, out.stderr[-3000:]
    assert "Traceback" not in out.stderr
    (refused,) = [line for line in out.stdout.splitlines() if line.lstrip().startswith("refused")]
    assert "refused   2 bot(s)" in refused
    assert "btc-tiny: cannot trade BTCUSDT at" in refused and "rounds to 0 with qty_step 0.001" in refused
    assert "level 0 (price" in refused
    assert "xrp-dust: its order" in refused and "is worth 1." in refused and "5 USDT" in refused
    assert "desk: 1 bot(s)" in out.stdout and "xrp-grid" in out.stdout


def test_run_fails_when_every_bot_is_refused(tmp_path):
    bots = tmp_path / "bots.toml"
    bots.write_text(_grid("btc-tiny", "BTCUSDT", "0.001"))
    line = _one_line(_run(tmp_path, "run", "--ticks", "1", TRADERAGENT_BOTS_FILE=str(bots)))
    assert "no bot could be built" in line and "btc-tiny" in line and "rounds to 0" in line
