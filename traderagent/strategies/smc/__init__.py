"""Smart Money Concepts detection (vectorised numpy/pandas, no look-ahead).

Every detector reports an event on the candle where it becomes KNOWN: swings on their confirmation
candle (pivot + swing_length), BOS/CHoCH and order blocks on the breaking close, FVGs on their third
candle, sweeps on the sweeping candle. So the result for candle t computed on the whole series equals
the result computed on the series cut at t. Zone/pool tables carry formed_pos and mitigated/filled/taken
positions; filter them "as of t" with `active_zones` / `open_pools`.

Written in-house rather than on the `smartmoneyconcepts` package: its swing_highs_lows marks pivots
with future candles (shift(-n)) and forces artificial swings at the last candle, so backtests using it
look ahead.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from .liquidity import liquidity_pools, liquidity_sweeps, open_pools
from .structure import market_structure
from .swings import swing_highs_lows
from .zones import active_zones, fair_value_gaps, order_blocks


@dataclass(frozen=True)
class SMCResult:
    """All detections for one timeframe (frames aligned to the input, tables one row per zone/pool)."""

    swings: pd.DataFrame
    structure: pd.DataFrame
    order_blocks: pd.DataFrame
    fvgs: pd.DataFrame
    sweeps: pd.DataFrame
    pools: pd.DataFrame

    @property
    def zones(self) -> pd.DataFrame:
        """Order blocks and FVGs in one table."""
        return pd.concat([self.order_blocks, self.fvgs], ignore_index=True)


def analyze(
    df: pd.DataFrame,
    swing_length: int = 5,
    *,
    close_break: bool = True,
    close_mitigation: bool = False,
    min_fvg_pct: float = 0.0,
) -> SMCResult:
    """Run every detector on one OHLC frame (columns open/high/low/close)."""
    swings = swing_highs_lows(df, swing_length)
    structure = market_structure(df, swings, close_break=close_break)
    return SMCResult(
        swings=swings,
        structure=structure,
        order_blocks=order_blocks(df, structure, close_mitigation=close_mitigation),
        fvgs=fair_value_gaps(df, min_gap_pct=min_fvg_pct),
        sweeps=liquidity_sweeps(df, swings),
        pools=liquidity_pools(df, swings),
    )


__all__ = [
    "SMCResult",
    "active_zones",
    "analyze",
    "fair_value_gaps",
    "liquidity_pools",
    "liquidity_sweeps",
    "market_structure",
    "open_pools",
    "order_blocks",
    "swing_highs_lows",
]
