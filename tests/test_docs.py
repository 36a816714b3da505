"""The maintainers' docs stay attached to the code: every file they name exists, every link
resolves, and every docs/ page a comment points to is in the repository."""

from __future__ import annotations

import ast
import io
import re
import tokenize
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
SOURCES = [p for d in ("traderagent", "handlers", "tests", "bench") for p in (REPO / d).rglob("*.py")]

# a path the docs name: `orchestrator/budget.py`, tests/sim/helpers.py, docs/exchange.md
FILE_REF = re.compile(r"(?<![\w/.-])((?:[\w-]+/)+[\w-]+\.(?:py|md|toml))\b")
MD_LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")
DOCS_REF = re.compile(r"\bdocs/[\w-]+\.md\b")


def _exists(ref: str) -> bool:
    """Paths are written from the repository root or, for the service, from traderagent/."""
    return (REPO / ref).exists() or (REPO / "traderagent" / ref).exists()


def test_the_docs_folder_exists():
    assert {p.name for p in PAGES} >= {"README.md", "architecture.md", "adding-a-strategy.md",
                                       "adding-an-endpoint.md", "exchange.md", "telegram.md"}


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_file_a_page_names_exists(page):
    text = page.read_text(encoding="utf-8")
    missing = sorted({ref for ref in FILE_REF.findall(text) if not _exists(ref)})
    assert not missing, f"{page.name} names files that do not exist: {missing}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_relative_link_resolves(page):
    text = page.read_text(encoding="utf-8")
    links = [link for link in MD_LINK.findall(text) if "://" not in link]
    missing = [link for link in links if not (page.parent / link).exists()]
    assert not missing, f"{page.name} links to missing files: {missing}"


def _comments_and_docstrings(source: str) -> str:
    """Only what a reader takes for documentation (a test's string data is not a pointer)."""
    comments = [t.string for t in tokenize.generate_tokens(io.StringIO(source).readline)
                if t.type == tokenize.COMMENT]
    nodes = [n for n in ast.walk(ast.parse(source))
             if isinstance(n, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)]
    return "\n".join(comments + [ast.get_docstring(n) or "" for n in nodes])


@pytest.mark.slow(10)
def test_every_docs_page_a_comment_points_to_exists():
    texts = {src: src.read_text(encoding="utf-8") for src in SOURCES}
    # tokenizing is slow: only files that name a docs page at all are read for comments and docstrings
    refs = {(src.relative_to(REPO).as_posix(), ref) for src, text in texts.items() if DOCS_REF.search(text)
            for ref in DOCS_REF.findall(_comments_and_docstrings(text))}
    missing = sorted((src, ref) for src, ref in refs if not (REPO / ref).exists())
    assert refs, "the code points to its docs somewhere"
    assert not missing, f"comments point to docs pages that do not exist: {missing}"
