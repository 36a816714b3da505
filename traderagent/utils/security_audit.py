"""SecurityAuditor: seven checks that gate a live start.

Entry points
------------
    SecurityAuditor(project_root, env: dict | None = None).run_full_audit() -> AuditReport
        report.passed (all critical checks pass), report.results (AuditResult per check),
        report.summary() -> {total_checks, passed, failed, critical_failures, warnings, overall_status},
        report.to_dict() (JSON-safe; secrets appear masked only)
    SecurityAuditor(...).scan_secrets() -> (findings, allowed_count)   # the no_hardcoded_secrets scan
    main_audit(args) -> int    # `traderagent audit [PATH] [--json]`: 0 when every critical check passes, else 1

Settings come from `Settings.load(env_file=<root>/.env)` (the project's .env overlaid by os.environ);
tests pass `env=` instead of os.environ (it is overlaid on the .env values the same way).

| check | severity | passes when |
|---|---|---|
| env_file_protected | critical | no .env, or .env is git-ignored, not tracked by git, and (holding secrets) not world-readable |
| no_hardcoded_secrets | critical | the scan below finds nothing outside the allow-list |
| gitignore_complete | warning | .gitignore ignores .env, .env.*, __pycache__/, *.pyc, *.db, *.log |
| debug_disabled | warning | DEBUG is off |
| env_vars_set | warning | settings load; demo/live have BYBIT_API_KEY+SECRET; a Telegram token has TELEGRAM_CHAT_IDS; TRADERAGENT_MASTER_KEY, if set, is a Fernet key |
| database_url_secure | warning | SQLite, a unix socket or a local host; a remote host needs sslmode/ssl=require (or verify-*) |
| redis_url_secure | info | unset, unix socket or local host; a remote host needs rediss:// |

Secret scan: files with the suffixes in SCAN_SUFFIXES (and .env.example-like templates, Dockerfile,
Procfile) under the root, skipping SKIP_DIRS, the real .env / .env.* files (protected by the first
check), and files over 1 MB. Kinds: `bybit_key` (api_key / api_secret / secret_key / BYBIT_API_KEY ...
assigned an 18+ character alphanumeric value), `telegram_token` (digits:35 chars), `fernet_key`
(44-char urlsafe base64 ending in '='), `url_credentials` (scheme://user:password@host),
`password` (password = "8+ chars"). Obvious placeholders (your_..., xxx, changeme, user:pass) are ignored.
Findings give file, line and the secret masked as its first 4 characters + '***'.

Allow-list (test fixtures, documentation samples):
- a `.secretsallow` file in the project root: one path glob per line, relative to the root
  (`tests/fixtures/*`, `docs/**/*.md`; `#` starts a comment); matching files are not reported;
- an inline marker `audit: allow` on the same line as the secret (e.g. `# audit: allow`).
Allowed findings are counted (details.allowed) but not listed.
"""

from __future__ import annotations

import base64
import binascii
import fnmatch
import ipaddress
import json
import os
import re
import stat
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from dotenv import dotenv_values

CRITICAL, WARNING, INFO = "critical", "warning", "info"
SKIP_DIRS = frozenset({".git", ".hg", ".svn", ".venv", "venv", "node_modules", "__pycache__", "build", "dist",
                       ".tox", ".nox", ".mypy_cache", ".pytest_cache", ".ruff_cache", ".hypothesis", "htmlcov",
                       "site-packages", ".eggs"})
SCAN_SUFFIXES = frozenset({".py", ".toml", ".yaml", ".yml", ".json", ".cfg", ".ini", ".txt", ".md", ".sh",
                           ".conf", ".service", ".example", ".sample", ".template", ".dist"})
SCAN_NAMES = frozenset({"Dockerfile", "Procfile", "Makefile"})
MAX_SCAN_BYTES = 1_000_000
ALLOW_FILE = ".secretsallow"
ALLOW_MARKER = "audit: allow"
GITIGNORE_REQUIRED = {".env": ".env", ".env.*": ".env.local", "__pycache__/": "pkg/__pycache__/x.pyc",
                      "*.pyc": "pkg/x.pyc", "*.db": "traderagent.db", "*.log": "traderagent.log"}

_NAME = r"(?:[A-Za-z0-9_]*(?:api[_-]?key|api[_-]?secret|secret[_-]?key|bybit[_-]?(?:api[_-]?)?(?:key|secret)))"
_BYBIT = re.compile(
    rf"(?i)(?<![A-Za-z0-9]){_NAME}[\"']?\s*(?:=|:)\s*(?P<q>[\"']?)(?P<secret>[A-Za-z0-9]{{18,}})(?P=q)(?![A-Za-z0-9_.(\[])")
_TELEGRAM = re.compile(r"(?<![0-9])(?P<secret>\d{8,10}:[A-Za-z0-9_-]{35})(?![A-Za-z0-9_-])")
_FERNET = re.compile(r"(?<![A-Za-z0-9_=-])(?P<secret>[A-Za-z0-9_-]{43}=)(?![A-Za-z0-9_=-])")
_URL_CREDS = re.compile(
    r"(?i)\b(?:postgres(?:ql)?|mysql|mariadb|redis|rediss|mongodb(?:\+srv)?|amqps?|mssql|oracle|cockroachdb)"
    r"(?:\+[a-z0-9]+)?://(?P<user>[^\s:/@'\"]*):(?P<secret>[^\s@'\"/]+)@")
_PASSWORD = re.compile(r"(?i)\b(?:password|passwd|pwd)[\"']?\s*(?:=|:)\s*[\"'](?P<secret>[^\"'\s]{8,})[\"']")
_PLACEHOLDER_WORDS = ("your", "example", "placeholder", "changeme", "change_me", "xxxx", "dummy", "sample", "redacted")
_PLACEHOLDER_VALUES = frozenset({"pass", "password", "passwd", "pwd", "secret", "pw", "***", "user", "changeme"})
_LOCAL_HOSTS = frozenset({"localhost", "localhost.localdomain", ""})


@dataclass
class AuditResult:
    check_name: str
    severity: str
    passed: bool
    message: str
    remedy: str = ""
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SecretFinding:
    file: str  # relative to the project root, posix
    line: int
    kind: str
    masked: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.kind} {self.masked}"


@dataclass
class AuditReport:
    project_root: str
    results: list[AuditResult] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """True when every critical check passed."""
        return all(r.passed for r in self.results if r.severity == CRITICAL)

    def result(self, check_name: str) -> AuditResult:
        return next(r for r in self.results if r.check_name == check_name)

    def summary(self) -> dict[str, Any]:
        failed = [r for r in self.results if not r.passed]
        return {
            "total_checks": len(self.results),
            "passed": len(self.results) - len(failed),
            "failed": len(failed),
            "critical_failures": sum(r.severity == CRITICAL for r in failed),
            "warnings": sum(r.severity == WARNING for r in failed),
            "overall_status": "PASS" if self.passed else "FAIL",
        }

    def to_dict(self) -> dict[str, Any]:
        return {"project_root": self.project_root, "passed": self.passed, "summary": self.summary(),
                "results": [asdict(r) for r in self.results]}


def mask_secret(value: str) -> str:
    """First 4 characters + '***' (just '***' when the value is too short to show any of it)."""
    return value[:4] + "***" if len(value) >= 12 else "***"


def is_local_host(host: str | None) -> bool:
    """localhost, loopback addresses and unix sockets (empty host or a path)."""
    host = (host or "").strip("[]").lower()
    if host in _LOCAL_HOSTS or host.startswith("/"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _placeholder(secret: str) -> bool:
    low = secret.lower()
    return (low in _PLACEHOLDER_VALUES or len(set(secret)) < 5 or any(w in low for w in _PLACEHOLDER_WORDS)
            or secret[:1] in "$<{%")


def _fernet_like(secret: str) -> bool:
    try:
        return len(base64.urlsafe_b64decode(secret)) == 32 and len(set(secret)) >= 12
    except (binascii.Error, ValueError):
        return False


def find_secrets_in_line(line: str) -> Iterator[tuple[str, str]]:
    """(kind, secret) for each secret in one line of text (placeholders skipped)."""
    for kind, pattern in (("bybit_key", _BYBIT), ("telegram_token", _TELEGRAM), ("fernet_key", _FERNET),
                          ("url_credentials", _URL_CREDS), ("password", _PASSWORD)):
        for m in pattern.finditer(line):
            secret = m["secret"]
            if kind == "fernet_key" and not _fernet_like(secret):
                continue
            if kind in ("bybit_key", "url_credentials", "password") and _placeholder(secret):
                continue
            yield kind, secret


class SecurityAuditor:
    """Runs the audit of one project folder. Reads files only; changes nothing."""

    def __init__(self, project_root: str | Path = ".", env: dict[str, str] | None = None) -> None:
        self.root = Path(project_root).resolve()
        self.env = env
        self._settings: Any = None
        self._settings_error = ""

    # -- settings -------------------------------------------------------------------------------
    def _load_settings(self) -> None:
        from traderagent.config import Settings, SettingsError

        env_file = self.root / ".env"
        try:
            if self.env is None:
                self._settings = Settings.load(env_file=env_file)
            else:
                merged = {k: v for k, v in self._dotenv().items() if v is not None}
                merged.update(self.env)
                self._settings = Settings.load(env=merged, env_file=None)
        except SettingsError as exc:
            self._settings, self._settings_error = None, str(exc)

    def _dotenv(self) -> dict[str, str | None]:
        path = self.root / ".env"
        return dict(dotenv_values(path)) if path.is_file() else {}

    # -- the audit ------------------------------------------------------------------------------
    def run_full_audit(self) -> AuditReport:
        self._load_settings()
        report = AuditReport(str(self.root))
        for check in (self.check_env_file_protected, self.check_no_hardcoded_secrets, self.check_gitignore_complete,
                      self.check_debug_disabled, self.check_env_vars_set, self.check_database_url_secure,
                      self.check_redis_url_secure):
            report.results.append(check())
        return report

    def check_env_file_protected(self) -> AuditResult:
        name, env_path = "env_file_protected", self.root / ".env"
        if not env_path.is_file():
            return AuditResult(name, CRITICAL, True, "no .env file (settings come from the environment)")
        problems, remedies = [], []
        if not self._gitignore_matches(".env"):
            problems.append(".env is not in .gitignore")
            remedies.append("add a line `.env` to .gitignore")
        if self._git_tracks(".env"):
            problems.append(".env is tracked by git")
            remedies.append("`git rm --cached .env`, commit, and rotate every key it held")
        mode = env_path.stat().st_mode
        holds_secrets = any(v for k, v in self._dotenv().items() if _is_secret_var(k))
        if os.name == "posix" and holds_secrets and mode & stat.S_IROTH:
            problems.append(f".env holds secrets and is world-readable (mode {stat.filemode(mode)})")
            remedies.append("`chmod 600 .env`")
        if problems:
            return AuditResult(name, CRITICAL, False, "; ".join(problems), "; ".join(remedies))
        return AuditResult(name, CRITICAL, True, ".env is git-ignored and not tracked")

    def check_no_hardcoded_secrets(self) -> AuditResult:
        name = "no_hardcoded_secrets"
        findings, allowed = self.scan_secrets()
        details = {"findings": [asdict(f) for f in findings], "allowed": allowed}
        if not findings:
            note = f" ({allowed} allowed by {ALLOW_FILE} or `{ALLOW_MARKER}`)" if allowed else ""
            return AuditResult(name, CRITICAL, True, f"no secrets found in source or config files{note}", details=details)
        shown = "; ".join(str(f) for f in findings[:5]) + (f"; ... {len(findings) - 5} more" if len(findings) > 5 else "")
        return AuditResult(
            name, CRITICAL, False, f"{len(findings)} hard-coded secret(s): {shown}",
            "move each value to .env / the environment (see .env.example) and rotate it; a test fixture may be "
            f"allowed with a path glob in {ALLOW_FILE} or `# {ALLOW_MARKER}` on its line", details)

    def check_gitignore_complete(self) -> AuditResult:
        name, path = "gitignore_complete", self.root / ".gitignore"
        if not path.is_file():
            return AuditResult(name, WARNING, False, "no .gitignore", "create .gitignore with: " + ", ".join(GITIGNORE_REQUIRED))
        missing = [pat for pat, sample in GITIGNORE_REQUIRED.items() if not self._gitignore_matches(sample)]
        if missing:
            return AuditResult(name, WARNING, False, ".gitignore does not ignore: " + ", ".join(missing),
                               "add these lines to .gitignore: " + " ".join(missing), {"missing": missing})
        return AuditResult(name, WARNING, True, ".gitignore covers " + ", ".join(GITIGNORE_REQUIRED))

    def check_debug_disabled(self) -> AuditResult:
        name = "debug_disabled"
        debug = self._settings.debug if self._settings else _truthy(self._raw("DEBUG"))
        if debug:
            return AuditResult(name, WARNING, False, "DEBUG is on (verbose logs, request payloads)",
                               "set DEBUG=false in .env / the environment")
        return AuditResult(name, WARNING, True, "DEBUG is off")

    def check_env_vars_set(self) -> AuditResult:
        name = "env_vars_set"
        if self._settings is None:
            return AuditResult(name, WARNING, False, f"settings do not load: {self._settings_error}",
                               "fix the variable named above (see .env.example)")
        s, missing, problems = self._settings, [], []
        if s.mode in ("demo", "live"):
            missing += [v for v, ok in (("BYBIT_API_KEY", s.bybit_api_key), ("BYBIT_API_SECRET", s.bybit_api_secret)) if not ok]
        if s.telegram_bot_token and not s.telegram_chat_ids:
            missing.append("TELEGRAM_CHAT_IDS")
        if s.master_key and not _fernet_like(s.master_key.get()):
            problems.append("TRADERAGENT_MASTER_KEY is not a Fernet key")
        optional = {v: bool(x) for v, x in (("TELEGRAM_BOT_TOKEN", s.telegram_bot_token),
                                             ("TRADERAGENT_MASTER_KEY", s.master_key), ("REDIS_URL", s.redis_url))}
        details = {"mode": s.mode, "missing": missing, "optional_set": optional}
        if missing or problems:
            msg = "; ".join(([f"missing for mode {s.mode}: " + ", ".join(missing)] if missing else []) + problems)
            return AuditResult(name, WARNING, False, msg,
                               "set the missing variables (see .env.example); create a master key with `traderagent keygen`",
                               details)
        return AuditResult(name, WARNING, True, f"required variables for mode {s.mode} are set", details=details)

    def check_database_url_secure(self) -> AuditResult:
        name = "database_url_secure"
        url = self._settings.database_url if self._settings else (self._raw("DATABASE_URL") or "")
        ok, why = database_url_secure(url)
        remedy = "" if ok else "use TLS: append ?sslmode=require (psycopg) or ?ssl=require (asyncpg) to DATABASE_URL"
        return AuditResult(name, WARNING, ok, why, remedy)

    def check_redis_url_secure(self) -> AuditResult:
        name = "redis_url_secure"
        url = self._settings.redis_url if self._settings else (self._raw("REDIS_URL") or "")
        ok, why = redis_url_secure(url)
        return AuditResult(name, INFO, ok, why, "" if ok else "use rediss:// (TLS) for a remote Redis")

    # -- secret scan ------------------------------------------------------------------------------
    def scan_secrets(self) -> tuple[list[SecretFinding], int]:
        """Findings outside the allow-list, and how many were allowed."""
        globs = self._allow_globs()
        findings: list[SecretFinding] = []
        allowed = 0
        for path in self._scan_files():
            rel = path.relative_to(self.root).as_posix()
            file_allowed = any(_glob_match(rel, g) for g in globs)
            try:
                text = path.read_text(encoding="utf-8", errors="replace")
            except OSError:
                continue
            for number, line in enumerate(text.splitlines(), 1):
                for kind, secret in find_secrets_in_line(line):
                    if file_allowed or ALLOW_MARKER in line:
                        allowed += 1
                    else:
                        findings.append(SecretFinding(rel, number, kind, mask_secret(secret)))
        return findings, allowed

    def _scan_files(self) -> Iterator[Path]:
        for dirpath, dirnames, filenames in os.walk(self.root):
            dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS and not d.endswith(".egg-info"))
            for filename in sorted(filenames):
                path = Path(dirpath) / filename
                if _scannable(filename) and path.is_file() and path.stat().st_size <= MAX_SCAN_BYTES:
                    yield path

    def _allow_globs(self) -> list[str]:
        path = self.root / ALLOW_FILE
        if not path.is_file():
            return []
        lines = (ln.split("#", 1)[0].strip() for ln in path.read_text(encoding="utf-8", errors="replace").splitlines())
        return [ln.lstrip("/") for ln in lines if ln]

    # -- helpers ----------------------------------------------------------------------------------
    def _raw(self, name: str) -> str | None:
        """A raw value when Settings failed to load: `env` (tests) over the .env file."""
        if self.env is not None and name in self.env:
            return self.env[name]
        return self._dotenv().get(name)

    def _gitignore_matches(self, rel_path: str) -> bool:
        path = self.root / ".gitignore"
        if not path.is_file():
            return False
        return gitignore_ignores(path.read_text(encoding="utf-8", errors="replace").splitlines(), rel_path)

    def _git_tracks(self, rel_path: str) -> bool:
        """True when git lists the file as tracked (False when git or the repo is absent)."""
        if not (self.root / ".git").exists():
            return False
        try:
            proc = subprocess.run(["git", "-C", str(self.root), "ls-files", "--error-unmatch", "--", rel_path],
                                  capture_output=True, timeout=10, check=False)
        except (OSError, subprocess.SubprocessError):
            return False
        return proc.returncode == 0


def _is_secret_var(name: str) -> bool:
    return any(w in name.upper() for w in ("SECRET", "API_KEY", "TOKEN", "MASTER_KEY", "PASSWORD"))


def _truthy(raw: str | None) -> bool:
    return (raw or "").strip().lower() in ("1", "true", "yes", "on")


def _scannable(filename: str) -> bool:
    if filename == ".env" or (filename.startswith(".env.") and not filename.endswith(
            (".example", ".sample", ".template", ".dist"))):
        return False  # real env files hold secrets by design; env_file_protected guards them
    return filename in SCAN_NAMES or Path(filename).suffix.lower() in SCAN_SUFFIXES


def _glob_match(rel: str, pattern: str) -> bool:
    """fnmatch on the relative path; `dir/` or `dir/**` matches everything below dir; `**/` any depth."""
    if pattern.endswith("/"):
        pattern += "**"
    if fnmatch.fnmatch(rel, pattern) or (pattern.startswith("**/") and fnmatch.fnmatch(rel, pattern[3:])):
        return True
    return "/" not in pattern and fnmatch.fnmatch(rel.rsplit("/", 1)[-1], pattern)


def gitignore_ignores(lines: list[str], rel_path: str) -> bool:
    """Whether .gitignore `lines` ignore `rel_path` (a subset of git's rules: globs, dirs/, !negation, /anchors)."""
    parts = rel_path.split("/")
    ignored = False
    for raw in lines:
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = line[1:] if negate else line
        dir_only = pattern.endswith("/")
        anchored = "/" in pattern.rstrip("/")  # a leading or inner slash anchors to the root
        pattern = pattern.strip("/")
        # candidates: the path itself and each parent directory (a dir pattern ignores what is inside)
        for depth in range(1, len(parts) + 1):
            is_dir = depth < len(parts)
            if dir_only and not is_dir:
                continue
            candidate = "/".join(parts[:depth])
            target = candidate if anchored else parts[depth - 1]
            if fnmatch.fnmatchcase(target, pattern):
                ignored = not negate
                break
    return ignored


def database_url_secure(url: str) -> tuple[bool, str]:
    """(ok, why) for DATABASE_URL: local/sqlite/unix socket pass; a remote host needs TLS."""
    if not url:
        return True, "DATABASE_URL unset (SQLite default)"
    if url.lower().startswith("sqlite"):
        return True, "SQLite file database (local)"
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:
        return False, "DATABASE_URL cannot be parsed"
    query = {k.lower(): [v.lower() for v in vs] for k, vs in parse_qs(parts.query).items()}
    if is_local_host(host) or any(v.startswith("/") for v in query.get("host", [])):
        return True, f"database on a local host ({host or 'unix socket'})"
    tls = set(query.get("sslmode", []) + query.get("ssl", []))
    if tls & {"require", "verify-ca", "verify-full", "true", "1"}:
        return True, f"remote database {host} uses TLS"
    return False, f"remote database {host} without TLS (no sslmode=require / ssl=require)"


def redis_url_secure(url: str) -> tuple[bool, str]:
    """(ok, why) for REDIS_URL: unset/local/unix socket pass; a remote host needs rediss://."""
    if not url:
        return True, "REDIS_URL unset (Redis not used)"
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:
        return False, "REDIS_URL cannot be parsed"
    scheme = parts.scheme.lower()
    if scheme == "unix" or is_local_host(host):
        return True, f"Redis on a local host ({host or 'unix socket'})"
    if scheme == "rediss":
        return True, f"remote Redis {host} uses TLS (rediss://)"
    return False, f"remote Redis {host} without TLS ({scheme}://)"


# -- CLI ----------------------------------------------------------------------------------------------
def format_report(report: AuditReport) -> str:
    s = report.summary()
    lines = [f"Security audit of {report.project_root}: {s['overall_status']} ({s['total_checks']} checks: "
             f"{s['passed']} passed, {s['failed']} failed, {s['critical_failures']} critical)"]
    for r in report.results:
        lines.append(f"  [{'PASS' if r.passed else 'FAIL'}] {r.check_name} ({r.severity}): {r.message}")
        if not r.passed and r.remedy:
            lines.append(f"         fix: {r.remedy}")
    return "\n".join(lines)


def main_audit(args: Any) -> int:
    """`traderagent audit [PATH] [--json]`: 0 when every critical check passes, 1 otherwise, 2 on a bad path."""
    root = Path(getattr(args, "path", ".") or ".")
    if not root.is_dir():
        print(f"traderagent audit: {root} is not a directory", file=sys.stderr)
        return 2
    report = SecurityAuditor(root).run_full_audit()
    if getattr(args, "json", False):
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print(format_report(report))
    return 0 if report.passed else 1
