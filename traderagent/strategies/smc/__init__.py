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
from functools import cached_property

import pandas as pd

from ._arrays import Columns, ohlc_arrays
from .liquidity import POOL_COLUMNS, liquidity_pools, liquidity_sweeps, open_pools, pool_arrays, sweep_arrays
from .structure import market_structure, structure_arrays
from .swings import swing_arrays, swing_highs_lows
from .zones import active_zones, fair_value_gaps, fvg_arrays, order_block_arrays, order_blocks, zone_frame


@dataclass(frozen=True)
class SMCResult:
    """All detections for one timeframe: arrays by column (``*_columns``), and the same as DataFrames (frames
    aligned to the input, tables one row per zone/pool), built at their first use only: the live analysis
    reads the arrays."""

    index: pd.Index
    swing_columns: Columns
    structure_columns: Columns
    order_block_columns: Columns
    fvg_columns: Columns
    sweep_columns: Columns
    pool_columns: Columns

    @cached_property
    def swings(self) -> pd.DataFrame:
        return pd.DataFrame(self.swing_columns, index=self.index)

    @cached_property
    def structure(self) -> pd.DataFrame:
        return pd.DataFrame(self.structure_columns, index=self.index)

    @cached_property
    def order_blocks(self) -> pd.DataFrame:
        return zone_frame("ob", self.order_block_columns)

    @cached_property
    def fvgs(self) -> pd.DataFrame:
        return zone_frame("fvg", self.fvg_columns)

    @cached_property
    def sweeps(self) -> pd.DataFrame:
        return pd.DataFrame(self.sweep_columns, index=self.index)

    @cached_property
    def pools(self) -> pd.DataFrame:
        return pd.DataFrame(self.pool_columns, columns=list(POOL_COLUMNS))

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
    """Run every detector on one OHLC frame (columns open/high/low/close), on its arrays: no DataFrame is
    built until one of the result's frames is read."""
    ohlc = ohlc_arrays(df)
    swings = swing_arrays(ohlc[1], ohlc[2], swing_length)
    structure = structure_arrays(ohlc, swings, close_break=close_break)
    return SMCResult(
        index=df.index,
        swing_columns=swings,
        structure_columns=structure,
        order_block_columns=order_block_arrays(ohlc, structure, close_mitigation=close_mitigation),
        fvg_columns=fvg_arrays(ohlc, min_gap_pct=min_fvg_pct),
        sweep_columns=sweep_arrays(ohlc, swings),
        pool_columns=pool_arrays(ohlc, swings),
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
