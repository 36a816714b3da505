"""`traderagent credentials set|list|delete` and demo mode reading its keys from the database, through the real CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests import forkserver
from traderagent.database.crypto import generate_key

PY = sys.executable
REPO = Path(__file__).resolve().parents[2]
KEY, SECRET = "stored-key-123", "stored-secret-456"  # the simulator account the stored keys must open
BOTS_TOML = '[[bots]]\nname = "xrp-grid"\nstrategy = "grid"\nsymbol = "XRPUSDT"\ntimeframe = "1m"\ntick_seconds = 1\n'


def _env(tmp: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRADERAGENT_", "BYBIT_", "TELEGRAM_"))}
    env.update({"DATABASE_URL": f"sqlite+aiosqlite:///{tmp / 'desk.db'}", "PYTHONPATH": str(REPO),
                "LOG_LEVEL": "warning", "TRADERAGENT_BOTS_FILE": str(tmp / "bots.toml")})
    env.update(extra)
    return env


def _cli(tmp: Path, *args: str, stdin: str = "", **env: str) -> subprocess.CompletedProcess[str]:
    return forkserver.run([PY, "-m", "traderagent", *args], input=stdin, env=_env(tmp, **env), cwd=tmp,
                          capture_output=True, text=True, timeout=60)


@pytest.fixture
def master() -> str:
    return generate_key()


def test_set_list_delete_keep_secrets_out_of_output_and_file(tmp_path: Path, master: str) -> None:
    out = _cli(tmp_path, "credentials", "set", "demo", stdin=f"{KEY}-long\n{SECRET}\n", TRADERAGENT_MASTER_KEY=master)
    assert out.returncode == 0, out.stderr
    assert "stored the demo keys" in out.stdout and SECRET not in out.stdout + out.stderr
    listed = _cli(tmp_path, "credentials", "list", TRADERAGENT_MASTER_KEY=master)
    assert listed.returncode == 0 and listed.stdout.strip() == "demo: API key stor…, secret stored"
    raw = (tmp_path / "desk.db").read_bytes()
    assert SECRET.encode() not in raw and f"{KEY}-long".encode() not in raw
    assert _cli(tmp_path, "credentials", "delete", "demo", TRADERAGENT_MASTER_KEY=master).returncode == 0
    assert _cli(tmp_path, "credentials", "list", TRADERAGENT_MASTER_KEY=master).stdout.strip() == "no stored keys"
    gone = _cli(tmp_path, "credentials", "delete", "demo", TRADERAGENT_MASTER_KEY=master)
    assert gone.returncode == 1 and gone.stderr.strip() == "error: no stored keys named 'demo'"


def test_secret_never_from_argv_and_bad_input_is_one_line(tmp_path: Path, master: str) -> None:
    argv = _cli(tmp_path, "credentials", "set", "demo", SECRET, TRADERAGENT_MASTER_KEY=master)
    assert argv.returncode == 2 and "unrecognized arguments" in argv.stderr  # no place for a secret on argv
    empty = _cli(tmp_path, "credentials", "set", "demo", stdin=f"{KEY}\n", TRADERAGENT_MASTER_KEY=master)
    assert empty.returncode == 1 and empty.stderr.count("\n") == 1 and "no API secret given" in empty.stderr
    keyless = _cli(tmp_path, "credentials", "set", "live", stdin=f"{KEY}\n{SECRET}\n")
    assert keyless.returncode == 1 and keyless.stderr.count("\n") == 1
    assert "TRADERAGENT_MASTER_KEY is not set" in keyless.stderr and "Traceback" not in keyless.stderr


def test_wrong_master_key_gives_one_clear_line(tmp_path: Path, master: str) -> None:
    assert _cli(tmp_path, "credentials", "set", "demo", stdin=f"{KEY}\n{SECRET}\n",
                TRADERAGENT_MASTER_KEY=master).returncode == 0
    other = generate_key()
    listed = _cli(tmp_path, "credentials", "list", TRADERAGENT_MASTER_KEY=other)
    assert listed.returncode == 1 and listed.stderr.count("\n") == 1
    assert "TRADERAGENT_MASTER_KEY is not the key it was saved with" in listed.stderr
    (tmp_path / "bots.toml").write_text(BOTS_TOML)
    run = _cli(tmp_path, "run", "--ticks", "1", TRADERAGENT_MODE="demo", TRADERAGENT_MASTER_KEY=other,
               BYBIT_BASE_URL="http://127.0.0.1:9")
    assert run.returncode == 2, run.stderr[-2000:]
    assert "cannot decrypt credentials 'demo'" in run.stderr and "Traceback" not in run.stderr
    assert other not in run.stderr and SECRET not in run.stderr


def test_demo_mode_without_environment_keys_names_both_ways(tmp_path: Path, master: str) -> None:
    (tmp_path / "bots.toml").write_text(BOTS_TOML)
    run = _cli(tmp_path, "run", "--ticks", "1", TRADERAGENT_MODE="demo", TRADERAGENT_MASTER_KEY=master)
    assert run.returncode == 2, run.stderr[-2000:]
    assert "BYBIT_API_KEY" in run.stderr and "traderagent credentials set demo" in run.stderr


def test_demo_mode_trades_with_the_stored_keys(tmp_path: Path, master: str) -> None:
    """The simulator accepts only KEY/SECRET; the environment has none, so the desk got them from the database."""
    assert _cli(tmp_path, "credentials", "set", "demo", stdin=f"{KEY}\n{SECRET}\n",
                TRADERAGENT_MASTER_KEY=master).returncode == 0
    (tmp_path / "bots.toml").write_text(BOTS_TOML)
    sim = forkserver.popen([PY, "-m", "traderagent", "sim", "--port", "0", "--api-key", KEY, "--api-secret", SECRET],
                           env=_env(tmp_path), cwd=tmp_path, stdout=subprocess.PIPE, text=True)
    try:
        ready = sim.stdout.readline() if sim.stdout else ""
        assert "simulator listening on" in ready, ready
        run = _cli(tmp_path, "run", "--ticks", "1", TRADERAGENT_MODE="demo", TRADERAGENT_MASTER_KEY=master,
                   BYBIT_BASE_URL=ready.split()[-1], LOG_LEVEL="info")
    finally:
        sim.terminate()
        sim.wait(10)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "[xrp-grid] ORDER_PLACED" in run.stdout  # the simulator took orders signed with the stored keys
    assert SECRET not in run.stdout + run.stderr
