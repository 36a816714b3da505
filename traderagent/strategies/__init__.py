"""Strategies (pure): the BaseStrategy contract and the registry ``create_strategy``."""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from traderagent.strategies.base import BaseStrategy

# The contract's classes (and pandas with them) load on first use: every command line start reads the
# parameter declarations (strategies.params, through config), and most commands never touch a strategy.
_TYPES = ("BaseMarketAnalysis", "BaseSignal", "ExitReason", "OrderIntent", "PositionInfo", "PreparedData",
          "SignalDirection", "StrategyPerformance")
_LAZY = {"BaseStrategy": "traderagent.strategies.base", **dict.fromkeys(_TYPES, "traderagent.strategies.types")}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_LAZY[name]), name)


# strategy_type -> (module, class name); imported lazily so a missing/broken adapter only
# affects its own type (the SMC adapter is written separately).
_REGISTRY: dict[str, tuple[str, str]] = {
    "trend_follower": ("traderagent.strategies.trend_follower_adapter", "TrendFollowerAdapter"),
    "grid": ("traderagent.strategies.grid_adapter", "GridAdapter"),
    "dca": ("traderagent.strategies.dca_adapter", "DCAAdapter"),
    "smc": ("traderagent.strategies.smc_adapter", "SMCStrategyAdapter"),
}

STRATEGY_TYPES: tuple[str, ...] = tuple(_REGISTRY)


def strategy_class(strategy_type: str) -> type[BaseStrategy]:
    """The adapter class for ``strategy_type`` (ValueError if unknown, ImportError if not installed)."""
    try:
        module_name, class_name = _REGISTRY[strategy_type]
    except KeyError:
        raise ValueError(
            f"unknown strategy type {strategy_type!r}; known: {', '.join(_REGISTRY)}"
        ) from None
    module = importlib.import_module(module_name)
    return getattr(module, class_name)


def strategy_defaults(strategy_type: str) -> dict[str, Any]:
    """The default parameters of a strategy type, from its ``PARAMS`` declarations."""
    return {p.name: p.default for p in strategy_class(strategy_type).PARAMS}


def with_bot_timeframes(strategy_type: str, params: Mapping[str, Any], timeframes: Sequence[str] | None) -> dict[str, Any]:
    """``params`` plus a bot's timeframes (highest first) in the parameter the strategy declares, unless
    ``params`` sets it: ``timeframes`` takes them all, ``timeframe`` the entry (last) one."""
    out = dict(params)
    names = {p.name for p in strategy_class(strategy_type).PARAMS}
    if timeframes and "timeframes" in names:
        out.setdefault("timeframes", tuple(timeframes))
    elif timeframes and "timeframe" in names:
        out.setdefault("timeframe", timeframes[-1])
    return out


def create_strategy(
    strategy_type: str,
    params: Mapping[str, Any] | None,
    *,
    qty_step: Decimal | str,
    tick_size: Decimal | str,
    allocated_capital: Decimal | str,
    market_type: str = "linear",
) -> BaseStrategy:
    """Build a strategy; unknown parameters raise ValueError naming the parameter."""
    cls = strategy_class(strategy_type)
    return cls(
        dict(params or {}),
        qty_step=qty_step,
        tick_size=tick_size,
        allocated_capital=allocated_capital,
        market_type=market_type,
    )


__all__ = [
    "STRATEGY_TYPES",
    "BaseMarketAnalysis",
    "BaseSignal",
    "BaseStrategy",
    "ExitReason",
    "OrderIntent",
    "PositionInfo",
    "PreparedData",
    "SignalDirection",
    "StrategyPerformance",
    "create_strategy",
    "strategy_class",
    "strategy_defaults",
    "with_bot_timeframes",
]
