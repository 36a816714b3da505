"""Real-candle frames for the strategy tests."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from traderagent.strategies.indicators import load_candles_csv


@pytest.fixture(scope="session")
def xrp_5m(candles_dir: Path) -> pd.DataFrame:
    return load_candles_csv(str(candles_dir / "XRPUSDT-perp-5m.csv"))


@pytest.fixture(scope="session")
def eth_btc_5m(candles_dir: Path) -> pd.DataFrame:
    return load_candles_csv(str(candles_dir / "ETH_BTC-5m.csv"))


@pytest.fixture(scope="session")
def unittest_btc_1m(candles_dir: Path) -> pd.DataFrame:
    """Has 538 gaps (minutes without trades)."""
    return load_candles_csv(str(candles_dir / "UNITTEST_BTC-1m.csv"))
