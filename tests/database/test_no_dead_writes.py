"""Every public DatabaseManager method is called by the service (or its benchmarks): no write path only tests use."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

from traderagent.database.manager import DatabaseManager

REPO = Path(__file__).resolve().parents[2]
# reads kept for inspecting what the desk wrote (tests, operators at a Python prompt); they write nothing
INSPECTION = {"get_grid_levels", "list_approvals"}


def _called_names() -> set[str]:
    names: set[str] = set()
    for folder in ("traderagent", "handlers", "bench"):
        for path in (REPO / folder).rglob("*.py"):
            if path.name == "manager.py" and path.parent.name == "database":
                continue  # the class calling itself does not make a method used
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Attribute):
                    names.add(node.attr)
    return names


def test_every_public_method_has_a_caller_outside_the_tests() -> None:
    public = {name for name, _ in inspect.getmembers(DatabaseManager, callable) if not name.startswith("_")}
    unused = sorted(public - _called_names() - INSPECTION)
    assert unused == [], f"DatabaseManager methods only tests call: {unused}"
