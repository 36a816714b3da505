"""The import rules of docs/architecture.md ("Layers and import rules") hold: every module imports only
from its own layer or a lower one, by the layer table of that page (read from it: the table is the one
statement of the rule). Also checked, as the page states them: handlers/ is the top (only the
composition roots import it), nothing imports the composition root app.py, `sim/` and `api/` never
import each other, and from `api/` the orchestrator and the backtest import only the exception types
and the wire helpers (api/markets.py). Imports inside functions and under TYPE_CHECKING count too."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("traderagent", "handlers")
ROOTS = {"traderagent.app", "traderagent.fleet.console"}  # a desk's composition root; the console process's
API_FOR_COORDINATION = ("traderagent.api.exceptions", "traderagent.api.markets")


def _module(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> Iterator[tuple[str, int]]:
    """(imported module or module.name, line) of every import of the two packages in ``path``."""
    me = _module(path)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{up}.{base}" if base else up
            names = [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        yield from ((name, node.lineno) for name in names if name.split(".")[0] in PACKAGES)


def _layers() -> dict[str, int]:
    """module prefix -> layer, from the table of docs/architecture.md."""
    text = (REPO / "docs" / "architecture.md").read_text(encoding="utf-8")
    layers = {}
    for number, modules in re.findall(r"^\| (\d) [^|]*\|([^|]*)\|", text, flags=re.MULTILINE):
        for ref in re.findall(r"`([\w/.]+(?:\.py|/))`", modules):
            name = ref.removesuffix(".py").removesuffix("/").replace("/", ".")
            layers[name if name.startswith("handlers") else f"traderagent.{name}"] = int(number)
    return layers


LAYERS = _layers()


def _layer(module: str) -> int | None:
    """The layer of ``module`` (or of the module a ``module.name`` import names): its longest prefix's."""
    best = max((p for p in LAYERS if module == p or module.startswith(p + ".")), key=len, default=None)
    return None if best is None else LAYERS[best]


def _within(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


SOURCES = [p for package in PACKAGES for p in sorted((REPO / package).rglob("*.py"))]
EDGES = [(_module(p), name, line) for p in SOURCES for name, line in _imports(p)]


def test_the_layer_table_names_every_module():
    namespaces = {"traderagent", "traderagent.utils"}  # package files with no code of their own
    unplaced = [m for m in map(_module, SOURCES) if _layer(m) is None and m not in namespaces]
    assert LAYERS and not unplaced, f"docs/architecture.md's layer table does not place: {unplaced}"


def test_every_import_goes_down_or_stays_in_its_layer():
    upward = [f"{me}:{line} imports {name} (layer {_layer(name)} > {_layer(me)})" for me, name, line in EDGES
              if (mine := _layer(me)) is not None and (theirs := _layer(name)) is not None and theirs > mine]
    assert not upward, "\n".join(upward)


def test_handlers_are_the_top_and_the_composition_root_is_imported_by_nobody():
    into_handlers = [f"{me}:{line} imports {name}" for me, name, line in EDGES
                     if _within(name, "handlers") and not _within(me, "handlers") and me not in ROOTS]
    into_app = [f"{me}:{line} imports {name}" for me, name, line in EDGES
                if _within(name, "traderagent.app") and me != "traderagent.app"]
    assert not into_handlers + into_app, "\n".join(into_handlers + into_app)


def test_sim_and_api_stay_apart_and_coordination_takes_only_errors_and_wire_helpers_from_api():
    apart = [f"{me}:{line} imports {name}" for me, name, line in EDGES
             for a, b in (("traderagent.sim", "traderagent.api"), ("traderagent.api", "traderagent.sim"))
             if _within(me, a) and _within(name, b)]
    coordination = [f"{me}:{line} imports {name}" for me, name, line in EDGES
                    if (_within(me, "traderagent.orchestrator") or _within(me, "traderagent.backtest"))
                    and _within(name, "traderagent.api") and not any(_within(name, m) for m in API_FOR_COORDINATION)]
    assert not apart + coordination, "\n".join(apart + coordination)
