"""Fixtures shared by the whole suite."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real-candle CSVs in ../shared/data (see its README)."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real candle data not found at {SHARED_DATA}")
    return SHARED_DATA
