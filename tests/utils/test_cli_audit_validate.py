"""`traderagent audit` and `traderagent validate`: exit codes, human and --json output."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tests import forkserver
from traderagent.cli import main

REPO = Path(__file__).resolve().parents[2]
ENV_VARS = ("TRADERAGENT_MODE", "DEBUG", "DATABASE_URL", "REDIS_URL", "RISK_PER_TRADE", "MAX_EXPOSURE",
            "MAX_DAILY_LOSS", "TRADERAGENT_BOTS_FILE", "TRADERAGENT_TOTAL_CAPITAL", "TELEGRAM_BOT_TOKEN",
            "TRADERAGENT_MASTER_KEY", "BYBIT_API_KEY", "BYBIT_API_SECRET")
LEAK = "Qm4" + "Zt7Wk2Rp9Xs5Lv8Nb"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)


def project(root: Path, leak: bool) -> Path:
    root.mkdir(exist_ok=True)
    (root / ".gitignore").write_text(".env\n.env.*\n__pycache__/\n*.pyc\n*.db\n*.log\n")
    (root / "app.py").write_text(f'api_key = "{LEAK}"\n' if leak else "x = 1\n")
    return root


def test_audit_clean_exits_0(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["audit", str(project(tmp_path / "p", leak=False))]) == 0
    out = capsys.readouterr().out
    assert "PASS" in out and "no_hardcoded_secrets" in out


def test_audit_leak_exits_1_with_masked_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["audit", str(project(tmp_path / "p", leak=True)), "--json"]) == 1
    out = capsys.readouterr().out
    data = json.loads(out)
    assert data["passed"] is False and data["summary"]["overall_status"] == "FAIL"
    assert data["summary"]["critical_failures"] == 1
    finding = next(r for r in data["results"] if r["check_name"] == "no_hardcoded_secrets")["details"]["findings"][0]
    assert finding == {"file": "app.py", "line": 1, "kind": "bybit_key", "masked": LEAK[:4] + "***"}
    assert LEAK not in out


def test_audit_human_output_shows_remedy(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["audit", str(project(tmp_path / "p", leak=True))]) == 1
    out = capsys.readouterr().out
    assert "[FAIL] no_hardcoded_secrets (critical)" in out and "fix:" in out and LEAK not in out


def test_audit_warning_only_still_exits_0(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEBUG", "true")
    assert main(["audit", str(project(tmp_path / "p", leak=False))]) == 0


def test_audit_bad_path_exits_2(tmp_path: Path) -> None:
    assert main(["audit", str(tmp_path / "missing")]) == 2


GOOD = """
[[bots]]
name = "btc-grid"
strategy = "grid"
symbol = "BTCUSDT"
timeframe = "5m"
capital = "1000"
[bots.params]
num_levels = 10
range_pct = "0.05"

[[bots]]
name = "eth-dca"
strategy = "dca"
symbol = "ETHUSDT"
timeframe = "5m"
capital = "1000"
[bots.params]
max_safety_orders = 4
"""


def test_validate_good_file_exits_0(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bots.toml"
    path.write_text(GOOD)
    assert main(["validate", str(path)]) == 0
    assert "PASS" in capsys.readouterr().out


def test_validate_bad_file_exits_1_with_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bots.toml"
    path.write_text(GOOD.replace("num_levels = 10", "grid_levels = 500"))
    assert main(["validate", str(path), "--json"]) == 1
    data = json.loads(capsys.readouterr().out)
    failed = [r for r in data["results"] if not r["passed"]]
    assert [(r["field"], r["value"]) for r in failed] == [("bots[btc-grid].params.num_levels", "500")]
    assert data["summary"]["overall_status"] == "FAIL"


def test_validate_fails_what_run_refuses_with_the_same_messages(tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    from traderagent.bots import load_bots_file

    path = tmp_path / "bots.toml"
    path.write_text(GOOD.replace('range_pct = "0.05"', 'grid_range = "0.9"').replace(
        'capital = "1000"\n[bots.params]\nmax_safety_orders', 'share = "-0.2"\n[bots.params]\nmax_safety_orders'))
    assert main(["validate", str(path)]) == 1
    out = capsys.readouterr().out
    refused = dict(load_bots_file(path).refused)
    assert refused == {"bots[btc-grid]": "bots[btc-grid].params.range_pct = '0.9': out of range (allowed > 0 and <= 0.5)",
                       "bots[eth-dca]": "bots[eth-dca].share = '-0.2': out of range (allowed > 0 and <= 1; or none)"}
    assert all(f"[FAIL] critical {check}: {message}" in out
               for check, message in zip(("grid_range", "bots_share"), refused.values(), strict=True))


def test_validate_names_an_unknown_parameter(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bots.toml"
    path.write_text(GOOD.replace("range_pct", "rnage_pct"))
    assert main(["validate", str(path), "--json"]) == 1
    (failed,) = [r for r in json.loads(capsys.readouterr().out)["results"] if not r["passed"]]
    assert failed["message"].startswith("bots[btc-grid].params.rnage_pct: unknown parameter of grid (known: ")


def test_validate_stops_at_an_out_of_range_risk_variable(monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("RISK_PER_TRADE", "0.2")
    assert main(["validate", "--json"]) == 1
    (failed,) = [r for r in json.loads(capsys.readouterr().out)["results"] if not r["passed"]]
    assert failed["message"] == "RISK_PER_TRADE='0.2': out of range (allowed > 0 and <= 0.05)"


def test_validate_without_a_bots_file_says_so_and_checks_the_demo_set_only_if_asked(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate"]) == 1
    out = capsys.readouterr().out
    assert "FAIL" in out and "no bots file" in out and "--demo" in out
    assert main(["validate", "--demo"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Paper demo set: PASS") and "bots.toml" not in out


def test_validate_prints_the_bounds_table(capsys: pytest.CaptureFixture[str]) -> None:
    from traderagent.utils.config_validator import render_bounds_markdown

    assert main(["validate", "--bounds-table"]) == 0
    assert capsys.readouterr().out == render_bounds_markdown() + "\n"


@pytest.mark.parametrize(("text", "why"), [(None, "no such file"), ("[[bots]\nname=", "bots.toml")])
def test_validate_missing_or_broken_file_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                 text: str | None, why: str) -> None:
    path = tmp_path / "bots.toml"
    if text is not None:
        path.write_text(text)
    assert main(["validate", str(path)]) == 1
    assert why in capsys.readouterr().out


def test_cli_subprocess_exit_codes(tmp_path: Path) -> None:
    root = project(tmp_path / "p", leak=True)
    proc = forkserver.run([sys.executable, "-m", "traderagent", "audit", str(root), "--json"],
                          capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert proc.returncode == 1 and json.loads(proc.stdout)["passed"] is False and LEAK not in proc.stdout
