"""A paper run with secrets in the environment: none of them may appear in stdout, stderr or log files."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from tests import forkserver

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow(27)

# Assembled at run time so that `traderagent audit` of this repository stays clean.
FAKE = {
    "BYBIT_API_KEY": "Pz6" + "Lq2Wm8Rt4Yx1Nc7Vb",
    "BYBIT_API_SECRET": "Tg3" + "Hy7Uj2Ik9Ol4Pm6Nb1Vc5Xz8As0Dq",
    "TELEGRAM_BOT_TOKEN": "598765432" + ":" + "AAE" + "r5Tg8Yh2Uj6Ik9Ol3Pm7Nb1Vc4Xz0Asd",
    "DB_PASSWORD": "Pg" + "Secr3tValue77",
}


def test_paper_run_leaks_no_secret(tmp_path: Path) -> None:
    from cryptography.fernet import Fernet

    master = Fernet.generate_key().decode()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRADERAGENT_", "BYBIT_", "TELEGRAM_"))}
    env.update({
        "TRADERAGENT_MODE": "paper",
        "BYBIT_API_KEY": FAKE["BYBIT_API_KEY"],
        "BYBIT_API_SECRET": FAKE["BYBIT_API_SECRET"],
        "TRADERAGENT_MASTER_KEY": master,
        "TELEGRAM_BOT_TOKEN": FAKE["TELEGRAM_BOT_TOKEN"],
        "TELEGRAM_CHAT_IDS": "1",
        "TELEGRAM_API_BASE_URL": "http://127.0.0.1:9/bot",  # closed local port: Telegram calls fail fast
        "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'desk.db'}",
        "REDIS_URL": f"redis://desk:{FAKE['DB_PASSWORD']}@127.0.0.1:9/0",
        "TRADERAGENT_PAPER_SPEED": "50",
        "LOG_LEVEL": "debug",
        "DEBUG": "true",  # the most verbose logging is where leaks hide
    })
    proc = forkserver.run([sys.executable, "-m", "traderagent", "run", "--ticks", "5"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=240)
    logs = "".join(p.read_text(errors="replace") for p in tmp_path.rglob("*.log"))
    everything = proc.stdout + proc.stderr + logs
    assert everything.strip(), "the run printed nothing: the check would prove nothing"
    for name, secret in [*FAKE.items(), ("TRADERAGENT_MASTER_KEY", master)]:
        assert secret not in everything, f"{name} leaked into the output of `traderagent run`"
