"""SecurityAuditor on temporary project trees.

Fake secrets are assembled at run time (never written as one literal) so that auditing this
repository itself stays clean.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from traderagent.commands.audit import format_report
from traderagent.utils.security_audit import (
    CRITICAL,
    INFO,
    WARNING,
    SecurityAuditor,
    api_key_verdict,
    database_url_secure,
    gitignore_ignores,
    mask_secret,
    redis_url_secure,
    review_api_key,
)

REPO = Path(__file__).resolve().parents[2]
GOOD_GITIGNORE = ".env\n.env.*\n!.env.example\n__pycache__/\n*.pyc\n*.db\n*.log\n"
BYBIT_KEY = "Xk7" + "pQ2mN9vR4tL8sW1z"  # 19 alphanumerics
BYBIT_SECRET = "Zr5" + "Yb8Kc3Jd6Hf9Gg2Ln4Mp7Qs1Tv0Wx3Ay5"
TG_TOKEN = "7123456789" + ":" + "AAH" + "kq3Zx9Lm2Np5Rt8Vw1Yb4Cd7Fg0Hj6Ks"  # 10 digits : 35 chars
DB_PASSWORD = "Sup3r" + "Secr3tPw"
FERNET = Fernet.generate_key().decode()
SECRETS = (BYBIT_KEY, BYBIT_SECRET, TG_TOKEN, DB_PASSWORD, FERNET)


def make_project(root: Path, files: dict[str, str] | None = None, gitignore: str | None = GOOD_GITIGNORE) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    if gitignore is not None:
        (root / ".gitignore").write_text(gitignore)
    for rel, text in (files or {}).items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def audit(root: Path, env: dict[str, str] | None = None):
    return SecurityAuditor(root, env=env or {}).run_full_audit()


def test_clean_project_passes_all_seven_checks(tmp_path: Path) -> None:
    report = audit(make_project(tmp_path, {"app.py": "print('hi')\n"}))
    names = [r.check_name for r in report.results]
    assert names == ["env_file_protected", "no_hardcoded_secrets", "gitignore_complete", "debug_disabled",
                     "env_vars_set", "database_url_secure", "redis_url_secure"]
    severities = {r.check_name: r.severity for r in report.results}
    assert severities == {"env_file_protected": CRITICAL, "no_hardcoded_secrets": CRITICAL,
                          "gitignore_complete": WARNING, "debug_disabled": WARNING, "env_vars_set": WARNING,
                          "database_url_secure": WARNING, "redis_url_secure": INFO}
    assert report.passed
    assert report.summary() == {"total_checks": 7, "passed": 7, "failed": 0, "critical_failures": 0,
                                "warnings": 0, "overall_status": "PASS"}


def test_this_repository_passes_its_own_secret_scan() -> None:
    report = SecurityAuditor(REPO, env={}).run_full_audit()
    assert report.result("no_hardcoded_secrets").details["findings"] == []
    assert "git tracks env file" not in report.result("env_file_protected").message
    assert report.result("gitignore_complete").passed


# -- env_file_protected -----------------------------------------------------------------------------
def test_env_file_ignored_and_private_passes(tmp_path: Path) -> None:
    root = make_project(tmp_path, {".env": f"BYBIT_API_KEY={BYBIT_KEY}\n"})
    (root / ".env").chmod(0o600)
    result = audit(root).result("env_file_protected")
    assert result.passed and result.severity == CRITICAL


def test_env_file_not_in_gitignore_fails_critical(tmp_path: Path) -> None:
    root = make_project(tmp_path, {".env": "DEBUG=false\n"}, gitignore="__pycache__/\n")
    report = audit(root)
    result = report.result("env_file_protected")
    assert not result.passed
    assert ".gitignore" in result.message and ".env" in result.remedy
    assert not report.passed and report.summary()["overall_status"] == "FAIL"
    assert report.summary()["critical_failures"] == 1


def test_env_file_negated_in_gitignore_fails(tmp_path: Path) -> None:
    root = make_project(tmp_path, {".env": "DEBUG=false\n"}, gitignore=".env\n!.env\n")
    assert not audit(root).result("env_file_protected").passed


@pytest.mark.skipif(os.name != "posix", reason="file modes")
def test_world_readable_env_with_secrets_fails(tmp_path: Path) -> None:
    root = make_project(tmp_path, {".env": f"BYBIT_API_SECRET={BYBIT_SECRET}\n"})
    (root / ".env").chmod(0o644)
    result = audit(root).result("env_file_protected")
    assert not result.passed and "world-readable" in result.message and "chmod 600" in result.remedy
    assert BYBIT_SECRET not in result.message


@pytest.mark.skipif(shutil.which("git") is None, reason="git not installed")
def test_env_file_tracked_by_git_fails(tmp_path: Path) -> None:
    root = make_project(tmp_path, {".env": "DEBUG=false\n"})
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    subprocess.run(["git", "-C", str(root), "add", "-f", ".env"], check=True)
    result = audit(root).result("env_file_protected")
    assert not result.passed and "tracked" in result.message and "rotate" in result.remedy


# -- no_hardcoded_secrets ---------------------------------------------------------------------------
SECRET_CASES = [
    ("config.py", f'api_key = "{BYBIT_KEY}"\n', "bybit_key", BYBIT_KEY),
    ("client.py", f"client = Client(api_secret='{BYBIT_SECRET}')\n", "bybit_key", BYBIT_SECRET),
    ("deploy/.env.example", f"BYBIT_API_KEY={BYBIT_KEY}\n", "bybit_key", BYBIT_KEY),
    ("settings.yaml", f"bybit:\n  api_secret: {BYBIT_SECRET}\n", "bybit_key", BYBIT_SECRET),
    ("creds.json", json.dumps({"api_key": BYBIT_KEY}) + "\n", "bybit_key", BYBIT_KEY),
    ("docs/setup.md", f"Use the token {TG_TOKEN} for the bot\n", "telegram_token", TG_TOKEN),
    ("bots.toml", f'master_key = "{FERNET}"\n', "fernet_key", FERNET),
    ("compose.yml", f"DATABASE_URL: postgresql+asyncpg://trader:{DB_PASSWORD}@db.example.com/t\n", "url_credentials", DB_PASSWORD),
    ("cache.py", f'URL = "redis://:{DB_PASSWORD}@cache.example.com:6379/0"\n', "url_credentials", DB_PASSWORD),
    ("setup.cfg", f"[db]\npassword = '{DB_PASSWORD}'\n", "password", DB_PASSWORD),
]


@pytest.mark.parametrize(("rel", "text", "kind", "secret"), SECRET_CASES, ids=[c[0] for c in SECRET_CASES])
def test_secret_scan_finds_each_kind_masked(tmp_path: Path, rel: str, text: str, kind: str, secret: str) -> None:
    root = make_project(tmp_path, {"ok.py": "x = 1\n", rel: "# header\n" + text})
    report = audit(root)
    result = report.result("no_hardcoded_secrets")
    assert not result.passed and not report.passed
    findings = result.details["findings"]
    assert any(f["file"] == rel and f["kind"] == kind for f in findings), findings
    found = next(f for f in findings if f["file"] == rel and f["kind"] == kind)
    assert found["line"] == text.count("\n", 0, text.index(secret)) + 2  # +1 header, +1 one-based
    assert found["masked"] == secret[:4] + "***"
    everything = json.dumps(report.to_dict()) + format_report(report)
    assert secret not in everything
    assert f"{rel}:{found['line']}" in result.message


def test_placeholders_and_code_references_are_not_secrets(tmp_path: Path) -> None:
    text = (
        'api_key = "your_api_key_here_0123456"\n'
        "api_key = settings.bybit_api_key.get()\n"
        'client = Client(api_key=api_key, api_secret=self.api_secret)\n'
        "DATABASE_URL=postgresql+asyncpg://user:pass@host:5432/db?ssl=require\n"
        'password = "********"\n'
        "BYBIT_API_KEY=\n"
    )
    root = make_project(tmp_path, {"app.py": text, ".env.example": (REPO / ".env.example").read_text()})
    result = audit(root).result("no_hardcoded_secrets")
    assert result.passed, result.details


def test_secrets_in_skipped_folders_and_real_env_are_not_scanned(tmp_path: Path) -> None:
    line = f'api_key = "{BYBIT_KEY}"\n'
    files = {f"{d}/mod.py": line for d in (".git", ".venv/lib", "node_modules/x", "pkg/__pycache__", "build", "dist")}
    files[".env"] = f"BYBIT_API_KEY={BYBIT_KEY}\n"
    files[".env.local"] = f"BYBIT_API_KEY={BYBIT_KEY}\n"
    root = make_project(tmp_path, files)
    (root / ".env").chmod(0o600)
    (root / ".env.local").chmod(0o600)
    assert audit(root).result("no_hardcoded_secrets").passed


def test_without_git_every_unignored_file_is_scanned_whatever_its_name(tmp_path: Path) -> None:
    line = f"BYBIT_API_SECRET={BYBIT_SECRET}\n"
    root = make_project(tmp_path, {".hidden/conf": line, "deploy/prod.env": line, "notes.weird-ext": line,
                                   "img.png.txt": "\0\0" + line, ".env.production": line},
                       gitignore=".env\n__pycache__/\n*.pyc\n*.db\n*.log\n")  # does not ignore .env.*
    findings = audit(root).result("no_hardcoded_secrets").details["findings"]
    assert sorted(f["file"] for f in findings) == [".env.production", ".hidden/conf", "deploy/prod.env",
                                                   "notes.weird-ext"]


def test_allow_list_file_and_inline_marker(tmp_path: Path) -> None:
    line = f'api_key = "{BYBIT_KEY}"\n'
    root = make_project(tmp_path, {
        "tests/fixtures/creds.py": line,
        "tests/test_x.py": line.rstrip("\n") + "  # audit: allow\n",
        ".secretsallow": "# fixtures\ntests/fixtures/*\n",
    })
    result = audit(root).result("no_hardcoded_secrets")
    assert result.passed and result.details["allowed"] == 2
    (root / "src").mkdir()
    (root / "src" / "leak.py").write_text(line)
    result = audit(root).result("no_hardcoded_secrets")
    assert not result.passed
    assert [f["file"] for f in result.details["findings"]] == ["src/leak.py"]


# -- gitignore_complete -----------------------------------------------------------------------------
def test_gitignore_missing_fails_warning(tmp_path: Path) -> None:
    report = audit(make_project(tmp_path, gitignore=None))
    result = report.result("gitignore_complete")
    assert not result.passed and result.severity == WARNING and "create .gitignore" in result.remedy
    assert report.passed  # a warning does not fail the audit


def test_gitignore_incomplete_names_missing_patterns(tmp_path: Path) -> None:
    result = audit(make_project(tmp_path, gitignore=".env\n__pycache__/\n")).result("gitignore_complete")
    assert not result.passed
    assert result.details["missing"] == [".env.*", "*.pyc", "*.db", "*.log"]


def test_gitignore_matcher_rules() -> None:
    assert gitignore_ignores([".env"], ".env")
    assert gitignore_ignores(["/.env"], ".env") and not gitignore_ignores(["/.env"], "sub/.env")
    assert gitignore_ignores(["__pycache__/"], "a/__pycache__/m.pyc")
    assert not gitignore_ignores(["__pycache__/"], "__pycache__")  # a file of that name is not a dir
    assert not gitignore_ignores([".env.*", "!.env.example"], ".env.example")
    assert not gitignore_ignores(["# .env"], ".env")


# -- debug_disabled, env_vars_set --------------------------------------------------------------------
def test_debug_on_fails_warning(tmp_path: Path) -> None:
    root = make_project(tmp_path)
    assert audit(root, {"DEBUG": "false"}).result("debug_disabled").passed
    report = audit(root, {"DEBUG": "true"})
    assert not report.result("debug_disabled").passed and report.passed


def test_debug_read_from_project_env_file(tmp_path: Path) -> None:
    root = make_project(tmp_path, {".env": "DEBUG=yes\n"})
    assert not audit(root).result("debug_disabled").passed


def test_env_vars_demo_without_keys_fails_naming_them(tmp_path: Path) -> None:
    result = audit(make_project(tmp_path), {"TRADERAGENT_MODE": "demo"}).result("env_vars_set")
    assert not result.passed and result.severity == WARNING
    assert "BYBIT_API_KEY" in result.message


def test_env_vars_demo_with_keys_passes_without_leaking(tmp_path: Path) -> None:
    env = {"TRADERAGENT_MODE": "demo", "BYBIT_API_KEY": BYBIT_KEY, "BYBIT_API_SECRET": BYBIT_SECRET,
           "TRADERAGENT_MASTER_KEY": FERNET}
    report = audit(make_project(tmp_path), env)
    assert report.result("env_vars_set").passed
    dumped = json.dumps(report.to_dict())
    assert not any(s in dumped for s in (BYBIT_KEY, BYBIT_SECRET, FERNET))


def test_env_vars_telegram_token_needs_chat_ids(tmp_path: Path) -> None:
    root = make_project(tmp_path)
    result = audit(root, {"TELEGRAM_BOT_TOKEN": TG_TOKEN}).result("env_vars_set")
    assert not result.passed and "TELEGRAM_CHAT_IDS" in result.message and TG_TOKEN not in result.message
    assert audit(root, {"TELEGRAM_BOT_TOKEN": TG_TOKEN, "TELEGRAM_CHAT_IDS": "42"}).result("env_vars_set").passed


def test_env_vars_bad_master_key_fails(tmp_path: Path) -> None:
    result = audit(make_project(tmp_path), {"TRADERAGENT_MASTER_KEY": "not-a-fernet-key"}).result("env_vars_set")
    assert not result.passed and "TRADERAGENT_MASTER_KEY" in result.message
    assert "not-a-fernet-key" not in result.message


# -- database_url_secure, redis_url_secure -----------------------------------------------------------
@pytest.mark.parametrize(("url", "ok"), [
    ("", True),
    ("sqlite+aiosqlite:///traderagent.db", True),
    ("postgresql+asyncpg://u:p@localhost:5432/db", True),
    ("postgresql://u:p@127.0.0.1/db", True),
    ("postgresql://u:p@[::1]:5432/db", True),
    ("postgresql://u@/db?host=/var/run/postgresql", True),
    ("postgresql+asyncpg://u:p@db.example.com:5432/db", False),
    ("postgresql+asyncpg://u:p@db.example.com/db?sslmode=prefer", False),
    ("postgresql+asyncpg://u:p@db.example.com/db?ssl=disable", False),
    ("postgresql://u:p@db.example.com/db?sslmode=require", True),
    ("postgresql+asyncpg://u:p@db.example.com/db?ssl=require", True),
    ("postgresql+asyncpg://u:p@10.1.2.3/db?ssl=true", True),
    ("postgresql://u:p@db.example.com/db?sslmode=verify-full", True),
])
def test_database_url_secure(tmp_path: Path, url: str, ok: bool) -> None:
    assert database_url_secure(url)[0] is ok
    result = audit(make_project(tmp_path), {"DATABASE_URL": url} if url else {}).result("database_url_secure")
    assert result.passed is ok and result.severity == WARNING
    assert ok or "ssl" in result.remedy


@pytest.mark.parametrize(("url", "ok"), [
    ("", True),
    ("redis://localhost:6379/0", True),
    ("redis://127.0.0.1:6379", True),
    ("unix:///run/redis.sock", True),
    ("redis://cache.example.com:6379/0", False),
    ("rediss://cache.example.com:6380/0", True),
])
def test_redis_url_secure(tmp_path: Path, url: str, ok: bool) -> None:
    assert redis_url_secure(url)[0] is ok
    report = audit(make_project(tmp_path), {"REDIS_URL": url} if url else {})
    result = report.result("redis_url_secure")
    assert result.passed is ok and result.severity == INFO
    assert report.passed  # info never fails the audit


def test_mask_secret() -> None:
    assert mask_secret(BYBIT_KEY) == BYBIT_KEY[:4] + "***"
    assert mask_secret("short") == "***"


# -- what the exchange key may do ------------------------------------------------------------------
TRADE = {"ContractTrade": ("Order", "Position"), "Spot": ("SpotTrade",)}


@pytest.mark.parametrize(("read_only", "ips", "wallet", "codes"), [
    (False, ("1.2.3.4",), (), []),
    (False, ("1.2.3.4", "5.6.7.8"), (), []),
    (False, ("*",), (), ["ip_unbound"]),
    (False, (), (), ["ip_unbound"]),
    (False, ("",), (), ["ip_unbound"]),
    (False, ("1.2.3.4",), ("Withdraw",), ["withdraw"]),
    (False, ("1.2.3.4",), ("SubMemberTransfer",), ["transfer"]),
    (True, ("*",), ("Withdraw", "AccountTransfer"), ["withdraw", "transfer", "ip_unbound", "read_only"]),
])
def test_review_api_key(read_only: bool, ips: tuple[str, ...], wallet: tuple[str, ...], codes: list[str]) -> None:
    problems = review_api_key(read_only, ips, {**TRADE, "Wallet": wallet})
    assert [p.code for p in problems] == codes


def test_api_key_verdict_live_refuses_demo_warns_unbound_waivable() -> None:
    problems = review_api_key(False, ("*",), {**TRADE, "Wallet": ("Withdraw",)})
    refusals, warnings = api_key_verdict(problems, live=True)
    assert len(refusals) == 2 and warnings == []
    refusals, warnings = api_key_verdict(problems, live=True, allow_unbound=True)
    assert refusals == [problems[0].message] and "TRADERAGENT_ALLOW_UNBOUND_KEY=true" in warnings[0]
    assert api_key_verdict(problems, live=False) == ([], [p.message for p in problems])
