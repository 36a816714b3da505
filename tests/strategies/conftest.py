"""Real-candle frames for the strategy tests."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from traderagent.strategies.indicators import load_candles_csv


@pytest.fixture(scope="session")
def xrp_5m(shared_data: Path) -> pd.DataFrame:
    return load_candles_csv(str(shared_data / "XRPUSDT-perp-5m.csv"))


@pytest.fixture(scope="session")
def eth_btc_5m(shared_data: Path) -> pd.DataFrame:
    return load_candles_csv(str(shared_data / "ETH_BTC-5m.csv"))


@pytest.fixture(scope="session")
def unittest_btc_1m(shared_data: Path) -> pd.DataFrame:
    """Has 538 gaps (minutes without trades)."""
    return load_candles_csv(str(shared_data / "UNITTEST_BTC-1m.csv"))
