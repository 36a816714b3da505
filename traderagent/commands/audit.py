"""`traderagent audit [PATH] [--json]`: the security audit of a project folder, printed for a person or as JSON.

Exit code 0 when every critical check passes, 1 otherwise, 2 when PATH is not a directory.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from traderagent.utils.security_audit import AuditReport, SecurityAuditor


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
