"""`traderagent validate [BOTS_FILE] [--demo] [--json] [--bounds-table]`: 0 when no critical failure, else 1.

Checks the environment's settings (a bad risk rail is reported by its variable) and the bots file with
the same ``ConfigValidator.check_bots_file`` that ``traderagent run`` uses. Without a bots file there is
nothing to check: it says so and fails; ``--demo`` checks the paper desk's demo set instead.
``--bounds-table`` prints the README's bounds tables, generated from the declarations.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

from traderagent.utils.config_validator import (
    ConfigValidator,
    ValidationReport,
    ValidationResult,
    parse_bots_toml,
    render_bounds_markdown,
)


def main_validate(args: Any) -> int:
    if getattr(args, "bounds_table", False):
        print(render_bounds_markdown())
        return 0
    report, title = check(getattr(args, "bots_file", None), demo=getattr(args, "demo", False))
    if getattr(args, "json", False):
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print(format_report(report, title))
    return 0 if report.passed else 1


def check(bots_file: str | None, *, demo: bool = False) -> tuple[ValidationReport, str]:
    """(report, title) for the settings and the bots file (or the demo set)."""
    from traderagent.bots import DEMO_BOTS
    from traderagent.config import Settings, SettingsError

    try:
        settings = Settings.load()
    except SettingsError as exc:
        return ValidationReport([ValidationResult("settings", False, str(exc), "risk")]), "Settings"
    validator = ConfigValidator()
    if demo:
        return validator.validate_bots_config(DEMO_BOTS, total_capital=settings.total_capital), "Paper demo set"
    path = Path(bots_file) if bots_file else settings.bots_file
    title = f"Validation of {path}"
    if not path.is_file():
        why = "no such file" if bots_file else (
            "no bots file (TRADERAGENT_BOTS_FILE), nothing to validate; paper mode would run its demo set "
            "(check it with --demo)")
        return _file_failure(path, why), title
    try:
        doc = parse_bots_toml(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError, OSError) as exc:
        return _file_failure(path, str(exc)), title
    return validator.validate_bots_config(doc, total_capital=settings.total_capital), title


def _file_failure(path: Path, why: str) -> ValidationReport:
    return ValidationReport([ValidationResult("bots_file", False, f"{path}: {why}", "bots", "bots_file", str(path))])


def format_report(report: ValidationReport, title: str) -> str:
    s = report.summary()
    lines = [f"{title}: {s['overall_status']} ({s['total_checks']} checks: {s['passed']} passed, "
             f"{s['failed']} failed, {s['critical_failures']} critical)"]
    lines += [f"  [FAIL] {r.severity:8} {r.check_name}: {r.message}" for r in report.failures]
    return "\n".join(lines)
