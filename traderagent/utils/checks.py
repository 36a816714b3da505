"""What the bots-file validator (config_validator.py) and the security audit (security_audit.py) share:
the severities of a check and how a list of check results adds up."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

CRITICAL, WARNING, INFO = "critical", "warning", "info"


class CheckResult(Protocol):
    @property
    def passed(self) -> bool: ...

    @property
    def severity(self) -> str: ...


def all_critical_passed(results: Sequence[CheckResult]) -> bool:
    """A failed warning does not block; a failed critical check does."""
    return all(r.passed for r in results if r.severity == CRITICAL)


def summarise(results: Sequence[CheckResult], **extra: Any) -> dict[str, Any]:
    """Counts of passed and failed checks by severity; ``extra`` keys go before ``overall_status``."""
    failed = [r for r in results if not r.passed]
    return {
        "total_checks": len(results),
        "passed": len(results) - len(failed),
        "failed": len(failed),
        "critical_failures": sum(r.severity == CRITICAL for r in failed),
        "warnings": sum(r.severity == WARNING for r in failed),
        **extra,
        "overall_status": "PASS" if all_critical_passed(results) else "FAIL",
    }
