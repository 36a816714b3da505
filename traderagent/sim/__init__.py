"""ByBit V5-compatible exchange simulator (paper trading and the test harness)."""

from __future__ import annotations

from traderagent.sim.config import ApiKeySettings, Faults, SimConfig
from traderagent.sim.market import SymbolSpec
from traderagent.sim.server import ExchangeSimulator

__all__ = ["ApiKeySettings", "ExchangeSimulator", "Faults", "SimConfig", "SymbolSpec"]
