"""SecurityAuditor: seven checks that gate a live start, and the review of what an exchange key may do.

Entry points
------------
    SecurityAuditor(project_root, env: dict | None = None).run_full_audit() -> AuditReport
        report.passed (all critical checks pass), report.results (AuditResult per check),
        report.summary() -> {total_checks, passed, failed, critical_failures, warnings, overall_status},
        report.to_dict() (JSON-safe; secrets appear masked only)
    SecurityAuditor(...).scan_secrets() -> (findings, allowed_count)   # the no_hardcoded_secrets scan
    scan_text(text, suffix) / find_secrets_in_line(line)                 # the scan of one text / line
    review_api_key(read_only, ips, permissions) -> [KeyProblem]          # ByBit's GET /v5/user/query-api
The `traderagent audit` command prints the report (traderagent/commands/audit.py).

Settings come from `Settings.load(env_file=<root>/.env)` (the project's .env overlaid by os.environ);
tests pass `env=` instead of os.environ (it is overlaid on the .env values the same way).

| check | severity | passes when |
|---|---|---|
| env_file_protected | critical | git tracks no env file (.env, .env.*, *.env) holding a secret; a .env is git-ignored, not tracked, and (holding secrets) not world-readable |
| no_hardcoded_secrets | critical | the scan below finds nothing outside the allow-list |
| gitignore_complete | warning | .gitignore ignores .env, .env.*, __pycache__/, *.pyc, *.db, *.log |
| debug_disabled | warning | DEBUG is off |
| env_vars_set | warning | settings load; demo/live have BYBIT_API_KEY+SECRET; a Telegram token has TELEGRAM_CHAT_IDS; TRADERAGENT_MASTER_KEY, if set, is a Fernet key |
| database_url_secure | warning | SQLite, a unix socket or a local host; a remote host needs sslmode/ssl=require (or verify-*) |
| redis_url_secure | info | unset, unix socket or local host; a remote host needs rediss:// |

Secret scan: every file git tracks and every untracked file it does not ignore (untracked ones inside
SKIP_DIRS excepted), whatever its name, hidden folders included; without git, every file under the root
that .gitignore does not ignore. Binary files (a NUL byte in the first 8 KB) are skipped; notebooks'
cells and outputs are decoded from their JSON strings. Kinds, anywhere on a line:
`telegram_token` (digits:35 chars), `fernet_key` (44-char urlsafe base64 ending in '='),
`url_credentials` (scheme://user:password@host), `bybit_key` (18 or 36 random-looking alphanumerics);
and `name = literal` (also `name: literal`, `"name": "literal"`, `getenv("NAME", "literal")`) whose name
says key, secret, token or password (`password`, `secret`, or `bybit_key` for a long alphanumeric value),
in every language of the tree. In code files a bare word after `=` is a variable, so only quoted
literals count there. Placeholders pass: empty, changeme, your_..., xxx, ***, <...>, ${VAR}, plain words
and separate numbers (`paper-secret`, `stored-key-123`), numbers, file paths, values under 8 characters.
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
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from dotenv import dotenv_values

from traderagent.utils.checks import CRITICAL, INFO, WARNING, all_critical_passed, summarise

# vendored or generated trees: skipped when git does not track them (a tracked file is always scanned)
SKIP_DIRS = frozenset({".git", ".hg", ".svn", ".venv", "venv", "node_modules", "__pycache__", "build", "dist",
                       ".tox", ".nox", ".mypy_cache", ".pytest_cache", ".ruff_cache", ".hypothesis", "htmlcov",
                       "site-packages", ".eggs"})
# in these a bare word after `name =` is code (a variable), not a literal
CODE_SUFFIXES = frozenset({".py", ".pyi", ".ipynb", ".js", ".mjs", ".cjs", ".ts", ".tsx", ".jsx", ".go", ".rs",
                           ".java", ".kt", ".scala", ".rb", ".php", ".c", ".h", ".cc", ".cpp", ".hpp", ".cs",
                           ".swift"})
MAX_SCAN_BYTES = 5_000_000  # only the first 5 MB of a larger file are read
ALLOW_FILE = ".secretsallow"
ALLOW_MARKER = "audit: allow"
GITIGNORE_REQUIRED = {".env": ".env", ".env.*": ".env.local", "__pycache__/": "pkg/__pycache__/x.pyc",
                      "*.pyc": "pkg/x.pyc", "*.db": "traderagent.db", "*.log": "traderagent.log"}

# known formats, wherever they stand on a line
_TELEGRAM = re.compile(r"(?<![0-9])(?P<secret>\d{8,10}:[A-Za-z0-9_-]{35})(?![A-Za-z0-9_-])")
_FERNET = re.compile(r"(?<![A-Za-z0-9_+/-])(?P<secret>[A-Za-z0-9_-]{43}=)(?![A-Za-z0-9_+/=-])")
_URL_CREDS = re.compile(r"(?i)\b[a-z][a-z0-9+.-]*://(?P<user>[^\s:/@'\"<>]*):(?P<secret>[^\s@'\"/<>]+)@")
_BYBIT_SHAPE = re.compile(r"(?<![A-Za-z0-9_+/.-])(?P<secret>[A-Za-z0-9]{36}|[A-Za-z0-9]{18})(?![A-Za-z0-9_+/=-])")
# `name = literal` in Python, TOML, YAML, JSON, INI, shell and .env files; also getenv("NAME", "literal")
_NAMED = re.compile(
    r"""(?<![\w.-])(?P<nq>["']?)(?P<name>[A-Za-z_][\w.-]*)(?P=nq)"""
    r"""(?:\s*:\s*[A-Za-z_][\w\[\], |.]{0,40}?)?"""  # a Python annotation (`key: str = ...`)
    r"""\s*(?P<op>:=|=>|==|=|:|,)\s*"""
    r"""(?P<value>"[^"\n]*"|'[^'\n]*'|[^\s"',;#}\])]+)""")
_NAME_HINTS = ("key", "secret", "token", "pass", "pwd")  # every word below contains one
_NAME_WORDS = re.compile(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|\d+")
_PASSWORD_WORDS = frozenset({"password", "passwd", "pwd", "pass", "passphrase"})
_SECRET_WORDS = frozenset({"key", "keys", "secret", "secrets", "token", "tokens", "apikey", "secretkey",
                           "privatekey", "accesskey", "authtoken"}) | _PASSWORD_WORDS
# words (snake, kebab, dotted, CamelCase), with separate numbers: labels such as `paper-secret` or
# `stored-key-123`, not secrets
_WORD = r"(?:[a-z]+|[A-Z]+|[a-z]*(?:[A-Z][a-z]+)+)"
_WORDY = re.compile(rf"-*{_WORD}(?:[-_.:/ ](?:{_WORD}|\d+))*")
_FILE_PATH = re.compile(r"[\w./~-]*/[\w.-]+\.\w{1,5}")
_PLACEHOLDER_WORDS = ("your", "example", "placeholder", "changeme", "change_me", "change-me", "xxx", "dummy",
                      "sample", "redacted", "replace", "insert", "fixme", "todo")
_PLACEHOLDER_VALUES = frozenset({"pass", "password", "passwd", "pwd", "secret", "pw", "user", "none", "null",
                                 "true", "false"})
_JSON_STRING = re.compile(r'"(?:[^"\\\n]|\\.)*"')
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
        return all_critical_passed(self.results)

    def result(self, check_name: str) -> AuditResult:
        return next(r for r in self.results if r.check_name == check_name)

    def summary(self) -> dict[str, Any]:
        return summarise(self.results)

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


def _placeholder(value: str) -> bool:
    """changeme, your_key, xxx, ***, <...>, ${VAR}, $VAR, {x}, %(x)s, empty, or too few distinct characters."""
    low = value.strip().lower()
    return (not low or low in _PLACEHOLDER_VALUES or any(w in low for w in _PLACEHOLDER_WORDS)
            or value[:1] in "$<{%*." or "${" in value or len(set(value)) < 5)


def _fernet_like(secret: str) -> bool:
    try:
        return len(base64.urlsafe_b64decode(secret)) == 32 and len(set(secret)) >= 12
    except (binascii.Error, ValueError):
        return False


def _bybit_like(secret: str) -> bool:
    """Random-looking mixed case (ByBit keys are 18, secrets 36 characters), not a CamelCase identifier."""
    words = _NAME_WORDS.findall(secret)  # an identifier splits into few long words, a random string into many
    return any(c.isupper() for c in secret) and any(c.islower() for c in secret) and len(words) > len(secret) / 4


def secret_name_kind(name: str) -> str | None:
    """`password` or `secret` when a variable name says key, secret, token or password (any case), else None."""
    words = {w.lower() for w in _NAME_WORDS.findall(name)}
    if words & _PASSWORD_WORDS:
        return "password"
    return "secret" if words & _SECRET_WORDS else None


def _secret_literal(value: str) -> bool:
    """A literal that could be a credential: 8+ characters without spaces, and neither a placeholder nor
    plain words, a number or a file path."""
    return (len(value) >= 8 and not any(c.isspace() for c in value) and not _placeholder(value)
            and not _WORDY.fullmatch(value) and not value.isdigit() and not _FILE_PATH.fullmatch(value))


def find_secrets_in_line(line: str, *, code: bool = False) -> Iterator[tuple[str, str]]:
    """(kind, secret) for each secret in one line of text, each secret once (placeholders skipped).

    `code`: the line is program code, where a bare word after `name =` is a variable, not a literal."""
    seen: set[str] = set()
    for kind, secret in (*_known_formats(line), *_named_literals(line, code)):
        if secret not in seen:
            seen.add(secret)
            yield kind, secret


def _known_formats(line: str) -> Iterator[tuple[str, str]]:
    for kind, pattern, fits in (("telegram_token", _TELEGRAM, None), ("fernet_key", _FERNET, _fernet_like),
                                ("url_credentials", _URL_CREDS, lambda s: not _placeholder(s)),
                                ("bybit_key", _BYBIT_SHAPE, _bybit_like)):
        for m in pattern.finditer(line):
            if fits is None or fits(m["secret"]):
                yield kind, m["secret"]


def _named_literals(line: str, code: bool) -> Iterator[tuple[str, str]]:
    low = line.lower()
    if not any(hint in low for hint in _NAME_HINTS):
        return  # cheap: most lines name nothing secret
    for m in _NAMED.finditer(line):
        value, quoted = m["value"], m["value"][:1] in "\"'"
        if m["op"] == "==" or (m["op"] == "," and not (m["nq"] and quoted)) or (code and not quoted):
            continue  # a comparison, a plain argument list, or a variable in code
        value = value[1:-1] if quoted else value
        name_kind = secret_name_kind(m["name"])
        if name_kind is not None and _secret_literal(value):
            yield ("bybit_key" if name_kind == "secret" and value.isalnum() and len(value) >= 16 else name_kind), value


def scan_text(text: str, suffix: str = "") -> Iterator[tuple[int, str, str, str]]:
    """(line number, line, kind, secret) for each secret in a file's text; `suffix` (".py") says if it is code.

    A notebook keeps its code and output cells as JSON strings: each is decoded and scanned on its line."""
    code, notebook = suffix in CODE_SUFFIXES, suffix == ".ipynb"
    for number, line in enumerate(text.splitlines(), 1):
        texts = [line]
        if notebook:
            texts += [part for m in _JSON_STRING.finditer(line) for part in _json_string(m.group()).splitlines()]
        seen: set[str] = set()
        for part in texts:
            for kind, secret in find_secrets_in_line(part, code=code):
                if secret not in seen:
                    seen.add(secret)
                    yield number, line, kind, secret


def _json_string(literal: str) -> str:
    try:
        value = json.loads(literal)
    except ValueError:
        return ""
    return value if isinstance(value, str) else ""


def env_named(rel: str) -> bool:
    """.env, .env.* and *.env: files whose name says they hold environment settings."""
    name = rel.rsplit("/", 1)[-1]
    return name == ".env" or name.startswith(".env.") or name.endswith(".env")


class SecurityAuditor:
    """Runs the audit of one project folder. Reads files only; changes nothing."""

    def __init__(self, project_root: str | Path = ".", env: dict[str, str] | None = None) -> None:
        self.root = Path(project_root).resolve()
        self.env = env
        self._settings: Any = None
        self._settings_error = ""
        self._files: dict[str, bool] | None = None  # cached per run: relative path -> tracked by git
        self._scan: tuple[list[SecretFinding], int] | None = None

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
        self._files = self._scan = None
        report = AuditReport(str(self.root))
        for check in (self.check_env_file_protected, self.check_no_hardcoded_secrets, self.check_gitignore_complete,
                      self.check_debug_disabled, self.check_env_vars_set, self.check_database_url_secure,
                      self.check_redis_url_secure):
            report.results.append(check())
        return report

    def check_env_file_protected(self) -> AuditResult:
        name, env_path = "env_file_protected", self.root / ".env"
        problems, remedies = [], []
        leaked = self._tracked_env_leaks()
        if leaked:
            problems.append("git tracks env file(s) holding secrets: " + ", ".join(leaked))
            remedies.append(f"`git rm --cached {' '.join(leaked)}`, commit, and rotate every key they held")
        if env_path.is_file():
            if not self._gitignore_matches(".env"):
                problems.append(".env is not in .gitignore")
                remedies.append("add a line `.env` to .gitignore")
            if self._listed_files().get(".env") and ".env" not in leaked:
                problems.append(".env is tracked by git")
                remedies.append("`git rm --cached .env`, commit, and rotate every key it held")
            mode = env_path.stat().st_mode
            holds_secrets = any(v and secret_name_kind(k) and not _placeholder(v) for k, v in self._dotenv().items())
            if os.name == "posix" and holds_secrets and mode & stat.S_IROTH:
                problems.append(f".env holds secrets and is world-readable (mode {stat.filemode(mode)})")
                remedies.append("`chmod 600 .env`")
        if problems:
            return AuditResult(name, CRITICAL, False, "; ".join(problems), "; ".join(remedies))
        if not env_path.is_file():
            return AuditResult(name, CRITICAL, True, "no .env file (settings come from the environment)")
        return AuditResult(name, CRITICAL, True, ".env is git-ignored and not tracked")

    def _tracked_env_leaks(self) -> list[str]:
        """Env files (.env, .env.*, *.env) that git tracks and that hold a secret: a leak on their own."""
        files = self._listed_files()
        return sorted({f.file for f in self.scan_secrets()[0] if env_named(f.file) and files.get(f.file)})

    def check_no_hardcoded_secrets(self) -> AuditResult:
        name = "no_hardcoded_secrets"
        findings, allowed = self.scan_secrets()
        files = len(self._listed_files())
        details = {"findings": [asdict(f) for f in findings], "allowed": allowed, "files": files}
        if not findings:
            note = f" ({allowed} allowed by {ALLOW_FILE} or `{ALLOW_MARKER}`)" if allowed else ""
            return AuditResult(name, CRITICAL, True, f"no secrets found in {files} files{note}", details=details)
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
        if self._scan is None:
            self._scan = self._scan_secrets()
        return self._scan

    def _scan_secrets(self) -> tuple[list[SecretFinding], int]:
        globs = self._allow_globs()
        findings: list[SecretFinding] = []
        allowed = 0
        for rel in sorted(self._listed_files()):
            text = self._read_text(rel)
            if text is None:
                continue
            file_allowed = any(_glob_match(rel, g) for g in globs)
            for number, line, kind, secret in scan_text(text, Path(rel).suffix.lower()):
                if file_allowed or ALLOW_MARKER in line:
                    allowed += 1
                else:
                    findings.append(SecretFinding(rel, number, kind, mask_secret(secret)))
        return findings, allowed

    def _listed_files(self) -> dict[str, bool]:
        """Files to scan (relative posix path -> tracked by git): what git tracks plus its untracked,
        non-ignored files outside vendored trees; without git, every file the .gitignore does not ignore."""
        if self._files is None:
            self._files = self._git_files()
            if self._files is None:
                self._files = dict.fromkeys(self._walk(), False)
        return self._files

    def _git_files(self) -> dict[str, bool] | None:
        out = self._git("ls-files", "-z", "-t", "--cached", "--others", "--exclude-standard")
        if out is None:
            return None
        files: dict[str, bool] = {}
        for entry in out.split("\0"):
            tag, rel = entry[:1], entry[2:]
            if not rel or (tag == "?" and _vendored(rel)):
                continue
            files[rel] = files.get(rel, False) or tag != "?"
        return files

    def _walk(self) -> Iterator[str]:
        ignore = self._gitignore_lines()
        for dirpath, dirnames, filenames in os.walk(self.root):
            dirnames[:] = sorted(d for d in dirnames if not _vendored(d + "/"))
            prefix = Path(dirpath).relative_to(self.root).as_posix() + "/"
            for filename in sorted(filenames):
                rel = (prefix + filename).removeprefix("./")
                if not gitignore_ignores(ignore, rel):
                    yield rel

    def _read_text(self, rel: str) -> str | None:
        """The file's text, or None for a binary (a NUL byte in its first 8 KB, as git judges) or unreadable one."""
        path = self.root / rel
        if path.is_symlink() or not path.is_file():
            return None
        try:
            with path.open("rb") as fh:
                data = fh.read(MAX_SCAN_BYTES)
        except OSError:
            return None
        return None if b"\0" in data[:8192] else data.decode("utf-8", errors="replace")

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

    def _gitignore_lines(self) -> list[str]:
        path = self.root / ".gitignore"
        return path.read_text(encoding="utf-8", errors="replace").splitlines() if path.is_file() else []

    def _gitignore_matches(self, rel_path: str) -> bool:
        return gitignore_ignores(self._gitignore_lines(), rel_path)

    def _git(self, *args: str) -> str | None:
        """git's output in the project root (None when git or the repository is absent)."""
        try:
            proc = subprocess.run(["git", "-C", str(self.root), *args], capture_output=True, timeout=30, check=False)
        except (OSError, subprocess.SubprocessError):
            return None
        return proc.stdout.decode("utf-8", errors="surrogateescape") if proc.returncode == 0 else None


def _truthy(raw: str | None) -> bool:
    return (raw or "").strip().lower() in ("1", "true", "yes", "on")


def _vendored(rel: str) -> bool:
    """Inside a virtualenv, dependency, cache or build folder (by one of its folder names)."""
    return any(d in SKIP_DIRS or d.endswith(".egg-info") for d in rel.split("/")[:-1])


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


# -- the exchange key ---------------------------------------------------------------------------------
_TRANSFER_PERMISSIONS = ("AccountTransfer", "SubMemberTransfer", "SubMemberTransferList")
_BYBIT_KEY_PAGE = "in ByBit's API management, edit the key"


@dataclass(frozen=True)
class KeyProblem:
    """One thing the desk's ByBit key may do (or lacks) that it should not; `message` names the setting to change."""

    code: str  # "withdraw", "transfer", "ip_unbound" or "read_only"
    message: str


def review_api_key(read_only: bool, ips: Sequence[str], permissions: Mapping[str, Sequence[str]]) -> list[KeyProblem]:
    """What GET /v5/user/query-api says is wrong with a trading key: it may withdraw or move funds, it is
    bound to no IP address (ByBit reports "*"), or it is read-only."""
    wallet = set(permissions.get("Wallet") or ())
    problems = []
    if "Withdraw" in wallet:
        problems.append(KeyProblem("withdraw", f"the API key may withdraw funds: {_BYBIT_KEY_PAGE} and untick "
                                               "Wallet > Withdrawal"))
    transfers = [p for p in _TRANSFER_PERMISSIONS if p in wallet]
    if transfers:
        problems.append(KeyProblem("transfer", f"the API key may move funds ({', '.join(transfers)}): "
                                               f"{_BYBIT_KEY_PAGE} and untick Wallet > Account Transfer and "
                                               "Subaccount Transfer"))
    if not [ip for ip in ips if ip.strip() not in ("", "*")]:
        problems.append(KeyProblem("ip_unbound", "the API key is not bound to an IP address: "
                                                 f"{_BYBIT_KEY_PAGE}, choose \"Only IPs with permissions granted "
                                                 "are allowed to access the OpenAPI\" and enter this server's IP"))
    if read_only:
        problems.append(KeyProblem("read_only", "the API key is read-only and cannot place orders: "
                                                f"{_BYBIT_KEY_PAGE} and set it to Read-Write with Orders and "
                                                "Positions (contracts) or SpotTrade (spot)"))
    return problems


def api_key_verdict(problems: Sequence[KeyProblem], *, live: bool,
                    allow_unbound: bool = False) -> tuple[list[str], list[str]]:
    """(refusals, warnings). Live refuses every problem except a missing IP binding the operator accepted
    with TRADERAGENT_ALLOW_UNBOUND_KEY=true (then a warning); withdrawal is never accepted. Demo only warns."""
    refusals, warnings = [], []
    for p in problems:
        if not live:
            warnings.append(p.message)
        elif p.code == "ip_unbound" and allow_unbound:
            warnings.append("TRADERAGENT_ALLOW_UNBOUND_KEY=true accepts an API key bound to no IP address: "
                            "whoever obtains the key and secret can trade this account from anywhere")
        else:
            refusals.append(p.message)
    return refusals, warnings
