"""The secret scan against a corpus: each kind of secret planted in each file type and position a
careless commit leaks it in, and the placeholders that must pass, each with its expected verdict.

The corpus is one git repository built at run time from seeded random secrets (so that auditing this
repository stays clean): tracked files, force-added ignored files, untracked files, an ignored `.env`.
"""

from __future__ import annotations

import json
import random
import shutil
import string
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from traderagent.commands.audit import format_report
from traderagent.utils.security_audit import AuditReport, SecurityAuditor, mask_secret

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="git not installed")

_rng = random.Random(19)
_ALNUM = string.ascii_letters + string.digits


def _random(n: int, alphabet: str = _ALNUM) -> str:
    return _rng.choice(string.ascii_letters) + "".join(_rng.choice(alphabet) for _ in range(n - 1))


KEY = _random(18)  # a ByBit API key
SECRET = _random(36)  # a ByBit API secret
TG = "".join(_rng.choice(string.digits[1:]) for _ in range(10)) + ":" + _random(35, _ALNUM + "_-")
FERNET = Fernet.generate_key().decode()
PASSWORD = _random(16, _ALNUM + "!^&*+")
GENERIC = _random(28, _ALNUM + "-_+!")  # any other credential (an app secret, a service token)
NAMED = [_random(10) + "-" + _random(10) for _ in range(4)]  # not all alphanumeric: no ByBit shape
GITIGNORE = ".env\n.env.*\n!.env.example\n__pycache__/\n*.pyc\n*.db\n*.log\n"


def _notebook() -> str:
    cell_code = {"cell_type": "code", "execution_count": 1, "metadata": {},
                 "source": ["import os\n", f'api_key = "{KEY}"\n', f'client_secret = "{GENERIC}"\n', "print(os.getcwd())"],
                 "outputs": [{"name": "stdout", "output_type": "stream", "text": [f"token {TG}\n"]}]}
    cell_md = {"cell_type": "markdown", "metadata": {}, "source": ["# analysis"]}
    return json.dumps({"cells": [cell_md, cell_code], "metadata": {}, "nbformat": 4, "nbformat_minor": 5},
                      indent=1) + "\n"


@dataclass(frozen=True)
class Case:
    rel: str
    text: str
    found: tuple[tuple[str, str], ...] = ()  # (secret, kind) the audit must report, on the line holding it
    git: str = "add"  # "add", "force" (git add -f an ignored file), "untracked"


LEAKS = [
    # env files git tracks: only `.env` was looked at before
    Case(".env.production", f"BYBIT_API_KEY={KEY}\nBYBIT_API_SECRET={SECRET}\n",
         ((KEY, "bybit_key"), (SECRET, "bybit_key")), git="force"),
    Case(".env.example", f"TRADERAGENT_MODE=paper\nTRADERAGENT_MASTER_KEY={FERNET}\n", ((FERNET, "fernet_key"),)),
    Case("conf/app.env", f"TELEGRAM_BOT_TOKEN={TG}\n", ((TG, "telegram_token"),)),
    # generic names in every language
    Case("settings.toml", f'[bybit]\nkey = "{KEY}"\nsecret = "{SECRET}"\n',
         ((KEY, "bybit_key"), (SECRET, "bybit_key"))),
    Case("settings.yaml", f"bybit:\n  key: {KEY}\n  secret: '{SECRET}'\ndb:\n  password: {PASSWORD}\n",
         ((KEY, "bybit_key"), (SECRET, "bybit_key"), (PASSWORD, "password"))),
    Case("app_config.py", f'SECRET = "{GENERIC}"\nkey = "{KEY}"\n', ((GENERIC, "secret"), (KEY, "bybit_key"))),
    Case("defaults.py", f'import os\nAPI_SECRET = os.getenv("BYBIT_API_SECRET", "{SECRET}")\n',
         ((SECRET, "bybit_key"),)),
    Case("accounts.py", f'ACCOUNTS = {{"main": ("{KEY}", "{SECRET}")}}\n', ((KEY, "bybit_key"), (SECRET, "bybit_key"))),
    Case("creds.json", json.dumps({"service": {"token": GENERIC}}, indent=2) + "\n", ((GENERIC, "secret"),)),
    Case("db.ini", f"[db]\nuser = trader\npassword = {PASSWORD}\n", ((PASSWORD, "password"),)),
    Case("deploy.sh", f"#!/bin/sh\nexport API_TOKEN={GENERIC}\n", ((GENERIC, "secret"),)),
    Case("scripts/run", f"SECRET_KEY={GENERIC} python -m app\n", ((GENERIC, "secret"),)),
    # notebooks: the code cell and the output cell
    Case("analysis.ipynb", _notebook(), ((KEY, "bybit_key"), (GENERIC, "secret"), (TG, "telegram_token"))),
    # known formats with nothing before them, in prose, a hidden folder, odd names, an ignored-but-tracked log
    Case("docs/notes.md", f"The bot answers to {TG}.\nDSN postgresql://trader:{PASSWORD}@db.example.com/t\n",
         ((TG, "telegram_token"), (PASSWORD, "url_credentials"))),
    Case(".config/local.py", f'token = "{GENERIC}"\n', ((GENERIC, "secret"),)),
    Case("data.bin", f"key: {KEY}\n", ((KEY, "bybit_key"),)),
    Case("debug.log", f"2026-01-01 12:00 using\n{SECRET}\n", ((SECRET, "bybit_key"),), git="force"),
    Case("scratch.py", f"api_secret = '{SECRET}'\n", ((SECRET, "bybit_key"),), git="untracked"),
]

# the known formats after `=`, after `:`, in quotes, or with nothing before them, under names that say nothing
POSITIONS = {"equals": "value{i}={s}", "colon": "value{i}: {s}", "json": '"value{i}": "{s}",',
             "quotes": "value{i} = '{s}'", "prose": "it is {s} here"}
LEAKS += [Case(f"positions/{name}.txt", "".join(form.format(i=i, s=s) + "\n" for i, (s, _) in enumerate(known)), known)
          for name, form in POSITIONS.items()
          for known in [((KEY, "bybit_key"), (SECRET, "bybit_key"), (TG, "telegram_token"), (FERNET, "fernet_key"))]]
# a human password: words and digits run together are not a label
WEAK = "Summer2024!"
LEAKS.append(Case("weak.cfg", f"[db]\npassword = {WEAK}\n", ((WEAK, "password"),)))
# names in any case and spelling
LEAKS.append(Case("names.yaml", f"apiKey: {NAMED[0]}\nClientSecret: '{NAMED[1]}'\nDB_PASSWD: {NAMED[2]}\n"
                                f"Auth-Token: \"{NAMED[3]}\"\n",
                  ((NAMED[0], "secret"), (NAMED[1], "secret"), (NAMED[2], "password"), (NAMED[3], "secret"))))

PASSING = [
    Case(".env.staging", "BYBIT_API_KEY=\nBYBIT_API_SECRET=changeme\nTELEGRAM_BOT_TOKEN=<your-token>\n"
                         "TRADERAGENT_MASTER_KEY=${MASTER_KEY}\n", git="force"),
    Case("placeholders.py", 'api_key = "your_api_key"\nSECRET = "xxx"\ntoken = ""\npassword = "changeme"\n'
                            'key = "<bybit key>"\nsecret = os.getenv("BYBIT_API_SECRET", "")\n'
                            'DSN = "postgresql://user:${DB_PASSWORD}@db/x"\nsort_key = "created_at"\n'),
    Case("placeholders.yaml", "key: xxx\nsecret: ${BYBIT_SECRET}\ntoken: <token>\npassword: changeme\n"),
    Case("placeholders.toml", '[bybit]\nkey = "your_key"\nsecret = ""\n'),
    Case("references.py", "api_key = settings.bybit_api_key.get()\nclient = Client(api_key=api_key, "
                          "api_secret=secret)\nPAPER_KEY = \"paper-key\"\n"),
    Case("cli_args.py", 'ARGS = ["--api-key", "cli-key", "--api-secret", "cli-secret"]\n'),
    Case("identifiers.py", 'FIELDS = ["lastPriceOnCreated", "CancelByReduceOnly"]\n'),
    Case("labels.py", 'KEY, SECRET = "stored-key-123", "stored-secret-456"\n'),
    Case("blob.txt", "\0binary\0" + f"api_key = {KEY}\n"),  # binary by content, whatever its name
    Case(".env", f"BYBIT_API_KEY={KEY}\n", git="untracked"),  # the real, ignored .env is not a leak
    Case("node_modules/pkg/index.js", f'const key = "{KEY}";\n', git="untracked"),  # vendored, untracked
]


def _build(root: Path) -> None:
    root.mkdir()
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    (root / ".gitignore").write_text(GITIGNORE)
    for case in LEAKS + PASSING:
        path = root / case.rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(case.text)
    (root / ".env").chmod(0o600)
    git = ["git", "-C", str(root), "add"]
    subprocess.run([*git, ".gitignore", *(c.rel for c in LEAKS + PASSING if c.git == "add")], check=True)
    subprocess.run([*git, "-f", *(c.rel for c in LEAKS + PASSING if c.git == "force")], check=True)


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> AuditReport:
    root = tmp_path_factory.mktemp("corpus") / "repo"
    _build(root)
    return SecurityAuditor(root, env={}).run_full_audit()


def _expected(case: Case) -> list[dict]:
    lines = case.text.splitlines()
    return sorted(({"file": case.rel, "line": next(i for i, ln in enumerate(lines, 1) if secret in ln),
                    "kind": kind, "masked": mask_secret(secret)} for secret, kind in case.found),
                  key=lambda f: (f["line"], f["masked"]))


def _findings(report: AuditReport, rel: str) -> list[dict]:
    found = [f for f in report.result("no_hardcoded_secrets").details["findings"] if f["file"] == rel]
    return sorted(found, key=lambda f: (f["line"], f["masked"]))


@pytest.mark.parametrize("case", LEAKS + PASSING, ids=[c.rel for c in LEAKS + PASSING])
def test_each_planted_secret_and_placeholder_gets_its_verdict(report: AuditReport, case: Case) -> None:
    assert _findings(report, case.rel) == _expected(case)


def test_the_corpus_fails_the_audit_with_every_secret_masked(report: AuditReport) -> None:
    assert not report.passed
    assert not report.result("no_hardcoded_secrets").passed
    everything = json.dumps(report.to_dict()) + format_report(report)
    for secret in (KEY, SECRET, TG, FERNET, PASSWORD, GENERIC):
        assert secret not in everything


def test_tracked_env_files_holding_secrets_fail_on_their_own(report: AuditReport) -> None:
    result = report.result("env_file_protected")
    assert not result.passed and result.severity == "critical"
    assert "git tracks env file(s) holding secrets: .env.example, .env.production, conf/app.env" in result.message
    assert ".env.staging" not in result.message  # tracked too, but holds only placeholders
    assert "git rm --cached" in result.remedy and "rotate" in result.remedy


def test_a_tracked_env_file_alone_fails_a_clean_tree(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    root.mkdir()
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    (root / ".gitignore").write_text(GITIGNORE)
    (root / "app.py").write_text("print('hi')\n")
    (root / ".env.production").write_text(f"BYBIT_API_SECRET={SECRET}\n")
    report = SecurityAuditor(root, env={}).run_full_audit()
    assert report.passed  # ignored and untracked: the operator's own settings file
    subprocess.run(["git", "-C", str(root), "add", "-f", ".env.production"], check=True)
    report = SecurityAuditor(root, env={}).run_full_audit()
    assert not report.passed
    assert ".env.production" in report.result("env_file_protected").message
